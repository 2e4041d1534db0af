"""How a context becomes a prompt, and a response a training target: the one place both prompt formats live.

    fmt = PromptFormat.of(tok)          # the format a model was trained with, read from its tokenizer
    fmt.prompt(context)                 # what the model continues (evaluation, relabel, generate, chat)
    fmt.prompt(context, turn_token=REWARD_ONE, reply_token=RET)   # DT
    fmt.end                             # the token that ends a response (a training target and a stop token)
    fmt.conversation(text)              # a whole conversation (tf's training text)

Contexts are stored in dorl's text format (`dorl.text`: `<_soc_><_cus_start_>…`) whatever the model's format.

- `dorl` (`model.prompt_format=dorl`, the default; the paper's): prompt = context + `<_rep_start_>`, a response
  ends with `<_rep_end_>`. DT puts `turn_token` before every earlier `<_rep_start_>` and `reply_token` before
  the prompt's.
- `chat`: the context's turns as messages (customer = user, agent = assistant, a system turn = system, and
  `model.system_prompt` first when the context has no system turn), rendered by the tokenizer's chat template
  with `add_generation_prompt=True`: the response starts where that rendering ends and ends with the template's
  end-of-turn token (the first special token the template writes after an assistant message). DT's tokens open
  the assistant's turn: every earlier assistant message's content starts with `turn_token`, and `reply_token`
  follows the generation prompt (a template's assistant header cannot be split generically; in both formats
  the return token is the last thing the model reads before the response's own tokens).

The format is recorded in the tokenizer's config (`tokenizer_config.json`, key `dorl_prompt_format`) when tf
builds its tokenizer (`configure`), so every model trained from it, its relabelling, evaluation, `dorl generate`
and `dorl chat` prompt alike; a tokenizer without the key is dorl's format (every model made before it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dorl.errors import ConfigError, DataError
from dorl.text import REP_END, REP_START, parse_context

KEY = "dorl_prompt_format"  # in the tokenizer's init kwargs (tokenizer_config.json)
PLAIN = "dorl_plain"  # a render kwarg: a model folder's wrapper adds nothing (`folder_template`)
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
# ChatML (OpenAI's, as Qwen2 and SmolLM2 use it): what `model.chat_template=chatml` installs in a tokenizer
# that has no template of its own.
CHATML = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)
ROLES = {"customer": "user", "agent": "assistant", "system": "system"}
_PROBE = "dorl-end-of-turn-probe"


@dataclass(frozen=True)
class PromptFormat:
    kind: str = "dorl"  # "dorl" | "chat"
    system_prompt: str = ""
    tokenizer: Any = None  # chat: the tokenizer whose chat template renders
    end: str = REP_END  # the token that ends a response

    @classmethod
    def of(cls, tok) -> PromptFormat:
        """The format recorded in `tok`'s config (dorl's when none is)."""
        facts = tok.init_kwargs.get(KEY) if tok is not None else None
        if not facts or (isinstance(facts, dict) and facts.get("format", "dorl") == "dorl"):
            return cls()
        if not isinstance(facts, dict) or facts.get("format") != "chat":
            raise DataError(f"tokenizer_config.json: {KEY} is {facts!r}, not {{format: dorl | chat, system_prompt}}")
        if not isinstance(facts.get("system_prompt", ""), str):
            raise DataError(f"tokenizer_config.json: {KEY}.system_prompt is {facts['system_prompt']!r}, not a string")
        if not tok.chat_template:
            raise DataError(f"tokenizer_config.json: {KEY}.format is chat but the tokenizer has no chat template")
        return cls("chat", facts.get("system_prompt") or "", tok, end_of_turn(tok))

    # ---------------------------------------------------------------- rendering
    def messages(self, context: str, turn_token: str = "") -> list[dict]:
        """The context's turns as chat messages (DT: `turn_token` opens every assistant message)."""
        try:
            turns = parse_context(context)
        except ValueError as e:
            raise DataError(f"not a context in dorl's format: {e}") from None
        out = [{"role": ROLES[s], "content": (turn_token + t) if s == "agent" else t} for s, t in turns]
        if self.system_prompt and not any(m["role"] == "system" for m in out):
            out.insert(0, {"role": "system", "content": self.system_prompt})
        return out

    def render(self, messages: list[dict], generation_prompt: bool) -> str:
        from jinja2 import TemplateError

        try:
            return self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=generation_prompt, tokenize=False, **{PLAIN: True}
            )
        except TemplateError as e:
            raise DataError(f"the tokenizer's chat template cannot render this conversation: {e}") from None

    def prompt(self, context: str, reply_token: str = "", turn_token: str = "") -> str:
        """What the model continues to answer `context` (DT: with its return tokens)."""
        if self.kind == "dorl":
            if turn_token:
                context = context.replace(REP_START, turn_token + REP_START)
            return context + reply_token + REP_START
        return self.render(self.messages(context, turn_token), True) + reply_token

    def line(self, context: str, response: str, reply_token: str = "", turn_token: str = "") -> tuple[str, str]:
        """(prompt, target) of one training line: the loss falls on the target (the response and `end`)."""
        return self.prompt(context, reply_token, turn_token), response + self.end

    def conversation(self, text: str) -> str:
        """A whole conversation (dorl's text format, as a data artifact holds it) in this format."""
        if self.kind == "dorl":
            return text
        return self.render(self.messages(text), False)

    def facts(self) -> dict:
        """What a manifest records."""
        out = {"format": self.kind, "end": self.end}
        if self.kind == "chat":
            out["system_prompt"] = self.system_prompt
        return out


def end_of_turn(tok) -> str:
    """The chat template's end-of-turn token: the first special token it writes after an assistant message
    (`<|im_end|>` for ChatML, `<|eot_id|>` for Llama 3, `<end_of_turn>` for Gemma, EOS for Mistral)."""
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE}]
    text = tok.apply_chat_template(messages, tokenize=False, **{PLAIN: True})
    at = text.rfind(_PROBE)
    special = set(tok.all_special_tokens) | {t.content for t in tok.added_tokens_decoder.values() if t.special}
    if at >= 0:
        for t in tok.tokenize(text[at + len(_PROBE) :]):
            if t in special:
                return t
    raise ConfigError(
        "the tokenizer's chat template ends an assistant message with no special token, so a response would have "
        "no end; give a tokenizer whose template does (or model.chat_template=chatml)"
    )


# ---------------------------------------------------------------- building a tokenizer (tf)
def configure(tok, prompt_format: str, system_prompt: str = "", chat_template: str = "tokenizer", where="model"):
    """Record the format in `tok` (tf's fresh tokenizer); `chat_template=chatml` first installs ChatML and adds
    `<|im_start|>`/`<|im_end|>` as special tokens (new embeddings). A ConfigError when `chat` has no template."""
    if prompt_format == "dorl":
        tok.init_kwargs.pop(KEY, None)
        return tok
    if chat_template == "chatml":
        install_chatml(tok)
    if not tok.chat_template:
        raise ConfigError(
            f"config key '{where}.prompt_format': chat needs a tokenizer with a chat template and this one has none "
            f"(distilgpt2's and GPT-2's have none); use {where}.prompt_format=dorl, a tokenizer that carries a "
            f"template, or {where}.chat_template=chatml (installs ChatML and its two tokens)"
        )
    tok.init_kwargs[KEY] = {"format": "chat", "system_prompt": system_prompt}
    end_of_turn(tok)  # fails now, before training, if responses could not end
    return tok


def install_chatml(tok):
    """ChatML as `tok`'s chat template, its two tokens added as special tokens (idempotent)."""
    missing = [t for t in (IM_START, IM_END) if t not in tok.get_vocab()]
    if missing:
        tok.add_tokens(missing, special_tokens=True)
    tok.chat_template = CHATML
    return tok


def recorded(tokenizer_config: dict) -> str:
    """The format named in a tokenizer_config.json (dorl when none is)."""
    facts = tokenizer_config.get(KEY) or {}
    return facts.get("format", "dorl") if isinstance(facts, dict) else "dorl"


# ---------------------------------------------------------------- a model folder's template
def folder_template(template: str, system_prompt: str = "", turn_token: str = "", reply_token: str = "") -> str:
    """`template` wrapped so that plain `apply_chat_template(messages, add_generation_prompt=True)` renders what
    `PromptFormat.prompt` gives: `system_prompt` first when the messages have no system message, DT's
    `turn_token` opening every assistant message and `reply_token` after the generation prompt. dorl itself
    renders with `dorl_plain=True`, which skips the wrapper. `template` itself when there is nothing to add."""
    template = own_template(template)  # idempotent: a wrapped template is wrapped anew
    if not (system_prompt or turn_token or reply_token):
        return template
    system, turn, reply = (json.dumps(x, ensure_ascii=False) for x in (system_prompt, turn_token, reply_token))
    plain = f"({PLAIN} is defined and {PLAIN})"
    return (
        "{%- if not " + plain + " -%}"
        "{%- set ns = namespace(m=[], system=false) -%}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}{%- set ns.system = true -%}{%- endif -%}"
        "{%- if message['role'] == 'assistant' -%}"
        "{%- set ns.m = ns.m + [{'role': 'assistant', 'content': " + turn + " + message['content']}] -%}"
        "{%- else -%}{%- set ns.m = ns.m + [message] -%}{%- endif -%}"
        "{%- endfor -%}"
        "{%- if " + system + " and not ns.system -%}"
        "{%- set ns.m = [{'role': 'system', 'content': " + system + "}] + ns.m -%}"
        "{%- endif -%}"
        "{%- set messages = ns.m -%}"
        "{%- endif -%}" + OWN[0] + template + OWN[1] + "{%- if add_generation_prompt and not " + plain + " -%}"
        "{{- " + reply + " -}}"
        "{%- endif -%}"
    )


OWN = ("{#- dorl: the model's own template -#}", "{#- dorl: end of the model's own template -#}")


def own_template(template: str) -> str:
    """The model's own template inside a `folder_template` wrapper (`template` itself when not wrapped)."""
    if OWN[0] in template and OWN[1] in template:
        return template[template.index(OWN[0]) + len(OWN[0]) : template.rindex(OWN[1])]
    return template
