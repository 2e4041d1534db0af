"""What tf_top, tf_all and dt share: one training line per example, loss on the response only, and their
settings (the `finetune` section, `FinetuneConfig`).

A line is `context<_rep_start_>response<_rep_end_>` (DT: with return tokens, see `dorl.methods.dt`), one per
chosen candidate of the relabel artifact (`training_set`: its `text` column; the train stage shuffles the rows and
records them), tokenized, left-truncated to `finetune.max_length` (512) tokens, and masked up to and including
its last `<_rep_start_>`: the loss falls on the response tokens and `<_rep_end_>`. Batches are padded only
to their longest line (and grouped by length), never to `max_length`.

In the chat format (`dorl.prompts`) a line is the rendered prompt + response + the template's end-of-turn token;
the training set also records the `prompt`, tokenized apart from the rest (as generation sees it), and the loss
starts right after it.

A subclass says which candidates become lines (`rows`) and how a line reads (`text`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from dorl.config import TrainConfig
from dorl.config.loader import default
from dorl.engine.data import Examples
from dorl.errors import ConfigError
from dorl.methods.base import Method
from dorl.model_folder import context_length, model_config
from dorl.store import Artifact
from dorl.text import REP_START, line

log = logging.getLogger("dorl.train")
SPLITS = ("train", "validation")


@dataclass
class FinetuneConfig(TrainConfig):
    """Fine-tuning of the line methods (tf_top, tf_all, dt) from the base model."""

    # The reference's fine-tuning: effective batch 32, 5 epochs, lines of 512 tokens, the best checkpoint kept.
    epochs: int = default(TrainConfig, "epochs", 5)
    batch_size: int = default(TrainConfig, "batch_size", 32)
    micro_batch_size: int = default(TrainConfig, "micro_batch_size", 8)
    max_length: int = default(TrainConfig, "max_length", 512)
    keep_best: bool = default(TrainConfig, "keep_best", True)


def encode_lines(
    tok, texts: list[str], max_length: int, chunk: int = 2000, prompts: list[str] | None = None
) -> Examples:
    """Tokenize, keep the last `max_length` tokens, and record where the loss starts (`label_start`:
    just after the last `<_rep_start_>`, or with `prompts` (the chat format) just after the line's prompt,
    tokenized apart; 0 if truncation cut it off, so the whole line is response)."""
    if prompts is not None:
        return encode_prompted(tok, prompts, texts, max_length, chunk)
    rep_start = tok.convert_tokens_to_ids(REP_START)
    seqs, starts = [], []
    for i in range(0, len(texts), chunk):
        for ids in tok(texts[i : i + chunk], add_special_tokens=False, verbose=False)["input_ids"]:
            ids = np.asarray(ids[-max_length:], dtype=np.int32)
            where = np.flatnonzero(ids == rep_start)
            seqs.append(ids)
            starts.append(int(where[-1]) + 1 if len(where) else 0)
    return Examples.from_lists(seqs, label_start=np.asarray(starts, dtype=np.int32))


def encode_prompted(tok, prompts: list[str], texts: list[str], max_length: int, chunk: int = 2000) -> Examples:
    """Lines whose prompt (each a prefix of its text) and target are tokenized apart: the target's tokens are
    those generation would produce after the prompt's."""
    seqs, starts = [], []
    for i in range(0, len(texts), chunk):
        ps, ts = prompts[i : i + chunk], texts[i : i + chunk]
        if any(not t.startswith(p) for p, t in zip(ps, ts, strict=True)):
            raise ValueError("a line's text does not start with its prompt")
        p_ids = tok(ps, add_special_tokens=False, verbose=False)["input_ids"]
        r_ids = tok([t[len(p) :] for p, t in zip(ps, ts, strict=True)], add_special_tokens=False, verbose=False)
        for p, r in zip(p_ids, r_ids["input_ids"], strict=True):
            ids = np.asarray((p + r)[-max_length:], dtype=np.int32)
            seqs.append(ids)
            starts.append(max(len(ids) - len(r), 0))
    return Examples.from_lists(seqs, label_start=np.asarray(starts, dtype=np.int32))


class Lines(Method):
    def __init__(self, cfg, name):
        super().__init__(cfg, name)
        self._info: dict = {}

    # ---------------------------------------------------------------- the training set
    def rows(self, candidates, return_bins: int):
        """Which candidates become lines (a boolean mask over the table's rows)."""
        raise NotImplementedError

    def text(self, context: str, response: str, ret: int, return_bins: int) -> str:
        return line(context, response)

    def prompted(self, context: str, response: str, ret: int, return_bins: int) -> tuple[str, str]:
        """The chat format's (prompt, target) of a line (`dorl.prompts.PromptFormat.line`)."""
        return self.fmt.line(context, response)

    def training_set(self, candidates, return_bins: int):
        import pandas as pd

        part = candidates[self.rows(candidates, return_bins)]
        ctx, cand, ret = part["context"].tolist(), part["candidate"].tolist(), part["return"].tolist()
        if self.fmt.kind == "dorl":
            texts = [self.text(c, x, r, return_bins) for c, x, r in zip(ctx, cand, ret, strict=True)]
            prompts = None
        else:
            pairs = [self.prompted(c, x, r, return_bins) for c, x, r in zip(ctx, cand, ret, strict=True)]
            texts, prompts = [p + t for p, t in pairs], [p for p, _ in pairs]
        return pd.DataFrame(
            {
                "text": texts,
                "context": ctx,
                "response": cand,
                "return": np.asarray(ret, dtype=np.int64),
                **({"prompt": prompts} if prompts is not None else {}),
            }
        )

    # ---------------------------------------------------------------- training

    def check_inputs(self, data: Artifact, base: Artifact | None) -> None:
        check_relabel_inputs(self, data, base, f"{self.config_section}.max_length")

    def datasets(self, data: Artifact, tok, rows: dict):
        sets = []
        for split in SPLITS:
            frame = rows[split]
            prompts = frame["prompt"].tolist() if "prompt" in frame.columns else None
            ex = encode_lines(tok, frame["text"].tolist(), self.train_config().max_length, prompts=prompts)
            self._info[split] = {"lines": len(ex), "tokens": ex.n_tokens}
            sets.append(ex)
        return sets[0], sets[1]

    def info(self) -> dict:
        return {"data": self._info}


def check_relabel_inputs(method: Method, data: Artifact, base: Artifact | None, key: str) -> None:
    """The relabel artifact has the candidates (and the facts) a training set is built from, and the method's
    lines fit the base model's positions."""
    from dorl.methods.training_set import check_relabel

    check_relabel(data)
    check_prompt_format(method, base)
    limit = context_length_of(base)
    if limit is not None and method.train_config().max_length > limit:
        raise ConfigError(f"{key}={method.train_config().max_length} exceeds the {limit} positions of {base.uri}")


def check_prompt_format(method: Method, base: Artifact | None) -> None:
    """The base model's prompt format is the one the config names (the format is chosen when tf is trained)."""
    from dorl.prompts import recorded

    if base is None or "tokenizer_config.json" not in base.files:
        return
    have, want = recorded(base.json("tokenizer_config.json")), method.cfg.model.prompt_format
    if have != want:
        raise ConfigError(
            f"config key 'model.prompt_format': {want}, but the base model {base.uri} was trained with the {have} "
            f"format; set model.prompt_format={have} (the format is chosen when tf is trained)"
        )


def context_length_of(base: Artifact | None) -> int | None:
    if base is not None and "adapter_config.json" in base.files and "config.json" not in base.files:
        return context_length(model_config(base.local_dir()))  # a LoRA adapter (dorl.engine.lora): its base's
    if base is None or "config.json" not in base.files:
        return None
    return context_length(base.json("config.json"))
