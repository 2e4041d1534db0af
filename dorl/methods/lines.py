"""What tf_top, tf_all and dt share: one training line per example, loss on the response only.

A line is `context<_rep_start_>response<_rep_end_>` (DT: with return tokens, see `dorl.methods.dt`),
read from the relabel artifact's `methods/<method>/{split}.parquet` `text` column, tokenized,
left-truncated to `finetune.max_length` (512) tokens, and masked up to and including its last
`<_rep_start_>`: the loss falls on the response tokens and `<_rep_end_>`. Batches are padded only
to their longest line (and grouped by length), never to `max_length`.

A subclass says which candidates become lines (`rows`) and how a line reads (`text`).
"""

from __future__ import annotations

import logging

import numpy as np

from dorl.engine.data import Examples
from dorl.errors import ConfigError, DataError
from dorl.methods.base import Method
from dorl.model_folder import context_length
from dorl.store import Artifact
from dorl.text import REP_END, REP_START, line

log = logging.getLogger("dorl.train")
SPLITS = ("train", "validation")


def read_lines(data: Artifact, name: str) -> list[str]:
    """The `text` column of one parquet file, each line checked for the two markers."""
    from dorl import readers

    df = readers.read_parquet(data.path(name))
    if "text" not in df.columns:
        raise DataError(f"{data.uri}/{name}: no 'text' column (columns: {', '.join(df.columns)})")
    texts = df["text"].tolist()
    for i, t in enumerate(texts):
        if not isinstance(t, str) or REP_START not in t or not t.endswith(REP_END):
            raise DataError(
                f"{data.uri}/{name}: record {i}, field 'text': a line must contain {REP_START} and end with "
                f"{REP_END}, got {str(t)[-80:]!r}"
            )
    return texts


def encode_lines(tok, texts: list[str], max_length: int, chunk: int = 2000) -> Examples:
    """Tokenize, keep the last `max_length` tokens, and record where the loss starts (`label_start`:
    just after the last `<_rep_start_>`; 0 if truncation cut it off, so the whole line is response)."""
    rep_start = tok.convert_tokens_to_ids(REP_START)
    seqs, starts = [], []
    for i in range(0, len(texts), chunk):
        for ids in tok(texts[i : i + chunk], add_special_tokens=False, verbose=False)["input_ids"]:
            ids = np.asarray(ids[-max_length:], dtype=np.int32)
            where = np.flatnonzero(ids == rep_start)
            seqs.append(ids)
            starts.append(int(where[-1]) + 1 if len(where) else 0)
    return Examples.from_lists(seqs, label_start=np.asarray(starts, dtype=np.int32))


class Lines(Method):
    def __init__(self, cfg, name):
        super().__init__(cfg, name)
        self._info: dict = {}

    # ---------------------------------------------------------------- the training set (relabel)
    def rows(self, candidates, return_bins: int):
        """Which candidates become lines (a boolean mask over the table's rows)."""
        raise NotImplementedError

    def text(self, context: str, response: str, ret: int, return_bins: int) -> str:
        return line(context, response)

    def training_set(self, candidates, return_bins: int):
        import pandas as pd

        part = candidates[self.rows(candidates, return_bins)]
        ctx, cand, ret = part["context"].tolist(), part["candidate"].tolist(), part["return"].tolist()
        return pd.DataFrame(
            {
                "text": [self.text(c, x, r, return_bins) for c, x, r in zip(ctx, cand, ret, strict=True)],
                "context": ctx,
                "response": cand,
                "return": np.asarray(ret, dtype=np.int64),
            }
        )

    # ---------------------------------------------------------------- training

    def files(self) -> list[str]:
        return [f"methods/{self.name}/{split}.parquet" for split in SPLITS]

    def check_inputs(self, data: Artifact, base: Artifact | None) -> None:
        check_relabel_inputs(self, data, base, f"{self.config_section}.max_length")

    def datasets(self, data: Artifact, tok):
        sets = []
        for name in self.files():
            ex = encode_lines(tok, read_lines(data, name), self.train_config().max_length)
            split = name.rsplit("/", 1)[1].removesuffix(".parquet")
            self._info[split] = {"lines": len(ex), "tokens": ex.n_tokens}
            sets.append(ex)
        return sets[0], sets[1]

    def info(self) -> dict:
        return {"data": self._info}


def check_relabel_inputs(method: Method, data: Artifact, base: Artifact | None, key: str, what: str = "") -> None:
    """The method's files are in the relabel artifact, and its lines fit the base model's positions."""
    for name in method.files():
        if name not in data.files:
            raise DataError(f"{data.uri} has no {name}: is it a `dorl relabel` artifact{what}?")
    limit = context_length_of(base)
    if limit is not None and method.train_config().max_length > limit:
        raise ConfigError(f"{key}={method.train_config().max_length} exceeds the {limit} positions of {base.uri}")


def context_length_of(base: Artifact | None) -> int | None:
    if base is None or "config.json" not in base.files:
        return None
    return context_length(base.json("config.json"))
