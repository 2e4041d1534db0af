"""A trained model folder that works in plain transformers, as dorl prompts and decodes it.

`finish(folder, ...)` completes a `save_pretrained` folder with:

- `generation_config.json`: `<_rep_end_>` (and `<|endoftext|>`) end a response, greedy decoding,
  at most `max_new_tokens` new tokens: `model.generate(**inputs)` stops where dorl stops.
- the tokenizer's `model_max_length` = the model's context and `truncation_side = "left"`, so
  `tokenizer(prompt, truncation=True, max_length=96)` keeps the last 96 tokens, as dorl's prompts do.
- a chat template that renders a conversation in dorl's format (user = customer, assistant = agent;
  DT: `<_reward_one_>` before every earlier agent turn and the top return token before the reply),
  so `apply_chat_template(messages, add_generation_prompt=True)` is dorl's prompt, token for token.
- `README.md`: a model card (method, data, training, the prompt format, how to load ILQL's heads).
"""

from __future__ import annotations

import json
from pathlib import Path

from dorl.text import CUS_END, CUS_START, REP_END, REP_START, REWARD_ONE, SOC

CARD = "README.md"


def chat_template(turn_token: str = "", reply_token: str = "") -> str:
    """Jinja chat template of dorl's text format. `turn_token` goes before every earlier agent turn and
    `reply_token` before the generation prompt's `<_rep_start_>` (both empty except for DT)."""
    return (
        "{{- '" + SOC + "' -}}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'user' -%}"
        "{{- '" + CUS_START + "' + message['content'] + '" + CUS_END + "' -}}"
        "{%- elif message['role'] == 'assistant' -%}"
        "{{- '" + turn_token + REP_START + "' + message['content'] + '" + REP_END + "' -}}"
        "{%- else -%}"
        "{{- raise_exception('dorl models know two roles: user (the customer) and assistant (the agent), got ' "
        "+ message['role']) -}}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '" + reply_token + REP_START + "' -}}{%- endif -%}"
    )


def context_length(config: dict) -> int | None:
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(config.get(key), int):
            return config[key]
    return None


def finish(
    folder: Path,
    *,
    method: str,
    reply_token: str | None = None,
    max_new_tokens: int = 32,
    prompt_tokens: int = 96,
    facts: dict | None = None,
) -> None:
    """Complete the HF folder `folder` (weights, config.json and tokenizer files already written).
    `reply_token`: DT's top return token (its prompts ask for it); None for the other methods."""
    from transformers import AutoTokenizer, GenerationConfig

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(folder)
    limit = context_length(config)
    if limit is not None:
        tok.model_max_length = limit
    # dorl keeps a prompt's last tokens, and batched generation pads on the left (save_pretrained
    # writes these sides from init_kwargs, from_pretrained reads them back from the attributes)
    for side in ("truncation_side", "padding_side"):
        setattr(tok, side, "left")
        tok.init_kwargs[side] = "left"
    dt = reply_token is not None
    tok.chat_template = chat_template(REWARD_ONE if dt else "", reply_token or "")
    tok.save_pretrained(folder)

    stop = [tok.convert_tokens_to_ids(REP_END)]
    if tok.eos_token_id is not None and tok.eos_token_id not in stop:
        stop.append(tok.eos_token_id)
    gen = GenerationConfig(
        eos_token_id=stop,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else stop[-1],
        bos_token_id=tok.bos_token_id,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
    )
    gen.save_pretrained(folder)
    (folder / CARD).write_text(card(method, reply_token, prompt_tokens, max_new_tokens, facts or {}, limit))


def card(method: str, reply_token, prompt_tokens: int, max_new_tokens: int, facts: dict, limit) -> str:
    dataset = facts.get("dataset") or "unknown"
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        f"tags: [dorl, offline-rl, dialogue, {method}]",
        "---",
        "",
        f"# dorl `{method}` model ({dataset})",
        "",
        f"A dialogue response generator trained by dorl with the `{method}` method "
        f"on `{dataset}`: given a conversation so far, it writes the agent's next turn.",
        "",
        "## Training",
        "",
    ]
    for key in ("base", "steps", "epochs", "selected", "selected_step", "best_val_loss", "parameters", "precision"):
        if facts.get(key) is not None:
            lines.append(f"- {key}: {facts[key]}")
    lines += [
        "",
        "## Prompt format",
        "",
        f"A conversation renders as `{SOC}` then each turn as `{CUS_START}TEXT{CUS_END}` (customer) or "
        f"`{REP_START}TEXT{REP_END}` (agent), with no separator; the model continues `{REP_START}` and stops at "
        f"`{REP_END}`. dorl keeps the last {prompt_tokens} prompt tokens and generates at most {max_new_tokens}.",
    ]
    if reply_token is not None:
        lines += [
            "",
            f"Decision Transformer: every earlier agent turn is preceded by `{REWARD_ONE}` and the reply asks for the "
            f"top return, `{reply_token}{REP_START}`. The chat template does both.",
        ]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        "tok = AutoTokenizer.from_pretrained(FOLDER)",
        "model = AutoModelForCausalLM.from_pretrained(FOLDER)",
        'messages = [{"role": "user", "content": "hi, my order never arrived"}]',
        "ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors='pt',",
        f"                              truncation=True, max_length={prompt_tokens})",
        "out = model.generate(ids)  # generation_config.json: greedy, stops at <_rep_end_>",
        "print(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())",
        "```",
        "",
        "Or `dorl generate --model FOLDER --context TEXT` and `dorl chat --model FOLDER`.",
    ]
    if method == "ilql":
        lines += [
            "",
            "## ILQL heads",
            "",
            "The folder is a plain causal LM (the policy) plus `ilql_heads.safetensors` and `ilql_config.json` (V, "
            "Q and target-Q heads). Plain transformers decodes the policy greedily, which is dorl's ILQL evaluation "
            "at beta = 0. Advantage-guided decoding (log_softmax + beta * (min target-Q - V)) needs the heads: "
            "`from dorl.ilql import io; model = io.load(FOLDER)`, or `dorl generate --set ilql.beta=4`.",
        ]
    metrics = facts.get("metrics")
    if metrics:
        lines += ["", "## Evaluation", ""] + [f"- {k}: {v}" for k, v in metrics.items()]
    return "\n".join(lines) + "\n"
