"""A trained model folder that works in plain transformers, as dorl prompts and decodes it.

`finish(folder, ...)` completes a `save_pretrained` folder with:

- `generation_config.json`: `<_rep_end_>` (and `<|endoftext|>`) end a response, greedy decoding,
  at most `max_new_tokens` new tokens: `model.generate(**inputs)` stops where dorl stops.
- the tokenizer's `model_max_length` = the model's context and `truncation_side = "left"`, so
  `tokenizer(prompt, truncation=True, max_length=96)` keeps the last 96 tokens, as dorl's prompts do.
- a chat template that renders a conversation in dorl's format (user = customer, assistant = agent;
  DT: `<_reward_one_>` before every earlier agent turn and the top return token before the reply),
  so `apply_chat_template(messages, add_generation_prompt=True)` is dorl's prompt, token for token.
  A model trained in the chat format (`dorl.prompts`) keeps the template it was trained with, wrapped
  (`prompts.folder_template`) only to add `model.system_prompt` and DT's return tokens; its responses
  end with the template's end-of-turn token.
- `README.md`: a model card (method, data, training, the prompt format, how to load ILQL's heads).

The train stage calls `finish` before it commits (so the folder's files are in the manifest), and
checks there that the chat template renders exactly what the method's `prompt` gives. A committed
artifact is immutable: `pull` copies one to a local folder and, given an evaluation of that very
model (`dorl artifacts pull URI DIR --eval EVAL_URI`), writes the evaluation's metrics into the
copy's card.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from dorl.errors import DataError, StoreError
from dorl.prompts import PromptFormat, folder_template
from dorl.text import CUS_END, CUS_START, REP_END, REP_START, REWARD_ONE, SOC, SYS_END, SYS_START, render_conversation

CARD = "README.md"


def context_length(config: dict) -> int | None:
    """Positions a model config allows (n_positions / max_position_embeddings), if it says."""
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(config.get(key), int):
            return config[key]
    return None


def model_config(folder: Path) -> dict:
    """The config.json of a model folder, or of the base of a LoRA adapter folder (`dorl.engine.lora`)."""
    from dorl import readers

    if readers.is_adapter(folder):
        base = readers.adapter_base(folder)
        if Path(base).is_dir():
            return model_config(Path(base))
        from transformers import AutoConfig

        with readers.reading(base, "the adapter's base config"):
            return AutoConfig.from_pretrained(base).to_dict()
    return json.loads((Path(folder) / "config.json").read_text())


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
        "{%- elif message['role'] == 'system' -%}"
        "{{- '" + SYS_START + "' + message['content'] + '" + SYS_END + "' -}}"
        "{%- else -%}"
        "{{- raise_exception('dorl models know the roles user (the customer), assistant (the agent) and system "
        "(context), got ' + message['role']) -}}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '" + reply_token + REP_START + "' -}}{%- endif -%}"
    )


def finish(
    folder: Path,
    *,
    method: str,
    reply_token: str | None = None,
    max_new_tokens: int = 32,
    prompt_tokens: int = 96,
    facts: dict | None = None,
    prompt: Callable[[str], str] | None = None,
    notes: list[str] | None = None,
) -> None:
    """Complete the HF folder `folder` (weights, config.json and tokenizer files already written).
    `reply_token`: DT's top return token (its prompts ask for it); None for the other methods.
    `prompt`: the method's prompt of a context; the chat template must render the same text.
    `notes`: markdown lines the method adds to the card (`Method.card_notes`; ILQL: its heads)."""
    from transformers import AutoTokenizer, GenerationConfig

    folder = Path(folder)
    config = model_config(folder)
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
    fmt = PromptFormat.of(tok)
    if fmt.kind == "dorl":
        tok.chat_template = chat_template(REWARD_ONE if dt else "", reply_token or "")
    else:  # the template trained with, plus what dorl adds to its prompts
        tok.chat_template = folder_template(
            tok.chat_template, fmt.system_prompt, REWARD_ONE if dt else "", reply_token or ""
        )
    if prompt is not None:
        check_template(tok, prompt)
    tok.save_pretrained(folder)

    stop = [tok.convert_tokens_to_ids(fmt.end)]
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
    (folder / CARD).write_text(card(method, reply_token, prompt_tokens, max_new_tokens, facts or {}, limit, fmt, notes))


SAMPLE = [
    ("agent", "Hi, how can I help?"),
    ("customer", "My order never came."),
    ("agent", "May I have your name?"),
    ("customer", "Ana Li."),
]


def check_template(tok, prompt: Callable[[str], str]) -> None:
    """The chat template renders a conversation as the method prompts it (else the folder would
    answer differently in plain transformers than in dorl)."""
    messages = [{"role": "user" if s == "customer" else "assistant", "content": t} for s, t in SAMPLE]
    rendered = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    want = prompt(render_conversation(SAMPLE))
    if rendered != want:
        raise RuntimeError(f"the chat template renders {rendered!r}, the method prompts {want!r}")


def with_metrics(text: str, metrics: dict, source: str) -> str:
    """The card `text` with its "## Evaluation" section (replaced if there is one) listing `metrics`."""
    head = text.split("\n## Evaluation\n")[0].rstrip("\n")
    lines = ["", "## Evaluation", "", f"From `{source}`:", ""] + [f"- {k}: {v}" for k, v in metrics.items()]
    return head + "\n" + "\n".join(lines) + "\n"


def eval_metrics(evaluation) -> dict:
    """The card's figures from an evaluation artifact: response 1's mean score per metric, and best-of-k."""
    summary = evaluation.json("metrics.json")
    out = {"dataset": summary.get("dataset"), "test examples": summary.get("n_examples")}
    for name, values in summary.get("best_of_k", {}).items():
        out[f"{name} (response 1)"] = round(values[0], 4)
        if len(values) > 1:
            out[f"{name} (best of {len(values)})"] = round(values[-1], 4)
    if summary.get("bert_click"):
        out["BERT-click (response 1)"] = round(summary["bert_click"][0], 4)
    return out


def pull(uri: str, dest: Path, eval_uri: str | None = None) -> Path:
    """Copy the artifact at `uri` (local or S3) into the new folder `dest`, every file verified
    against its manifest's sha256; with `eval_uri` (an evaluation of this model), its metrics go
    into the copy's card. Written beside `dest` and renamed into place: no half-copied folder."""
    from dorl.store import Artifact

    art = Artifact(uri)
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise StoreError(f"{dest} exists and is not an empty folder; pull into a new one")
    evaluation = None
    if eval_uri:
        evaluation = Artifact(eval_uri, expect_stage="evaluate")
        seen = evaluation.manifest.get("inputs", {}).get("model", {}).get("manifest_sha256")
        if seen != art.digest:
            raise DataError(f"{evaluation.uri} evaluated another model than {art.uri} (its inputs.model differs)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        for name in sorted(art.files):
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(art.path(name), target)  # art.path verifies the sha256 (and downloads from S3)
        manifest = art.manifest
        if evaluation is not None and CARD in art.files:
            # the copy's card and its manifest entry change; the copy records what it was pulled from
            text = with_metrics((tmp / CARD).read_text(), eval_metrics(evaluation), evaluation.uri).encode()
            (tmp / CARD).write_bytes(text)
            manifest = json.loads(json.dumps(manifest))
            manifest["files"][CARD] = {"size": len(text), "sha256": hashlib.sha256(text).hexdigest()}
            manifest["pulled"] = {"from": art.uri, "manifest_sha256": art.digest, "card_metrics": evaluation.uri}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        else:
            (tmp / "manifest.json").write_bytes(art.loc.read_bytes("manifest.json"))
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def chat_format_text(fmt, reply_token, prompt_tokens: int, max_new_tokens: int) -> str:
    """The card's prompt format of a model trained in the chat format."""
    out = (
        "Trained in the chat format: the conversation (user = customer, assistant = agent) rendered by the chat "
        f"template it was trained with; the model continues the generation prompt and stops at `{fmt.end}`. "
        f"dorl keeps the last {prompt_tokens} prompt tokens and generates at most {max_new_tokens}."
    )
    if fmt.system_prompt:
        out += f" Without a system message the template adds the one it was trained with: {fmt.system_prompt!r}."
    if reply_token is not None:
        out += (
            f" Decision Transformer: every earlier assistant message starts with `{REWARD_ONE}` and the reply asks "
            f"for the top return, `{reply_token}` after the generation prompt. The chat template does both."
        )
    return out


def card(
    method: str, reply_token, prompt_tokens: int, max_new_tokens: int, facts: dict, limit, fmt=None, notes=None
) -> str:
    dataset = facts.get("dataset") or "unknown"
    origin = f"trained by dorl with the `{method}` method on `{dataset}`"
    src = facts.get("source") if facts.get("released") else None
    if src:  # `dorl models import`: the reference's own release
        origin = (
            f"released by the reference (`{src['name']}`, trained on `{dataset}` by the paper's code) and imported by "
            f"`dorl models import` from {src['url'] or src['path']} (archive sha256 {src['archive_sha256'] or 'none'})"
        )
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        f"tags: [dorl, offline-rl, dialogue, {method}]",
        "---",
        "",
        f"# dorl `{method}` model ({dataset})",
        "",
        f"A dialogue response generator {origin}: given a conversation so far, it writes the agent's next turn.",
        "",
        "## Training",
        "",
    ]
    for key in (
        "data",
        "base",
        "steps",
        "epochs",
        "selected",
        "selected_step",
        "best_val_loss",
        "parameters",
        "precision",
    ):
        if facts.get(key) is not None:
            lines.append(f"- {key}: {facts[key]}")
    end = fmt.end if fmt is not None else REP_END
    if fmt is not None and fmt.kind == "chat":
        lines += ["", "## Prompt format", "", chat_format_text(fmt, reply_token, prompt_tokens, max_new_tokens)]
    else:
        lines += [
            "",
            "## Prompt format",
            "",
            f"A conversation renders as `{SOC}` then each turn as `{CUS_START}TEXT{CUS_END}` (customer) or "
            f"`{REP_START}TEXT{REP_END}` (agent), with no separator; the model continues `{REP_START}` and stops at "
            f"`{REP_END}`. dorl keeps the last {prompt_tokens} prompt tokens and generates at most {max_new_tokens}.",
        ]
    if reply_token is not None and (fmt is None or fmt.kind == "dorl"):
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
        "inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors='pt',",
        f"                                 truncation=True, max_length={prompt_tokens})",
        f"out = model.generate(**inputs)  # generation_config.json: greedy, stops at {end}",
        "print(tok.decode(out[0, inputs['input_ids'].shape[1]:], skip_special_tokens=True).strip())",
        "```",
        "",
        f"`pipeline('text-generation', model=FOLDER)` takes the same messages and stops at `{end}` too.",
        "",
        "Or `dorl generate --model FOLDER --context TEXT` and `dorl chat --model FOLDER`.",
    ]
    lines += notes or []  # the method's (e.g. ILQL: its heads)
    if facts.get("lora"):
        lines += lora_card(facts["lora"], facts.get("base"))
    metrics = facts.get("metrics")
    if metrics:
        lines += ["", "## Evaluation", ""] + [f"- {k}: {v}" for k, v in metrics.items()]
    return "\n".join(lines) + "\n"


def lora_card(lora: dict, base) -> list[str]:
    """The card's section on a LoRA run (`dorl.engine.lora`): what the folder holds and how to load it."""
    lines = ["", "## LoRA adapter", ""]
    lines.append(
        f"Trained with LoRA (peft): rank {lora['r']}, alpha {lora['alpha']}, dropout {lora['dropout']}, target modules "
        f"{lora['target_modules'] or 'peft default'}; the added tokens' embedding rows trained too."
    )
    if lora.get("saved") == "merged":
        lines += ["", "The weights here are merged (a plain model, loaded as above); the adapter is in `adapter/`."]
        return lines
    return lines + [
        "",
        "This folder holds the adapter alone (`adapter_config.json`, `adapter_model.safetensors`) on its base, "
        f"{base}:",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        "tok = AutoTokenizer.from_pretrained(FOLDER)",
        "base = AutoModelForCausalLM.from_pretrained(BASE)  # adapter_config.json's base_model_name_or_path",
        "base.resize_token_embeddings(len(tok))  # where training added tokens",
        "model = PeftModel.from_pretrained(base, FOLDER).merge_and_unload()",
        "```",
        "",
        "`dorl generate`, `dorl chat` and `dorl evaluate` load it so, given the folder alone.",
    ]
