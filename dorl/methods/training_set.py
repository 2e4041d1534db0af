"""A method's training set, built from a relabel artifact's scored candidates: the interface between relabel and
the methods.

    rows = training_sets(method, relabel)   # {"train": DataFrame, "validation": DataFrame}, or None

In: the relabel artifact's `candidates/{split}.parquet` (`CANDIDATE_COLUMNS`: for every context the human
response as candidate 0, reward 1, top return, then the base model's candidates, each with its reward and
return), the seed it was made with (`relabel.seed`, its manifest's config) and its return bins (`info.return_bins`).
Out: each split's rows (`Method.training_set`) shuffled with numpy's default_rng([relabel.seed,
crc32("<method>/<split>")]), the rows and order relabel itself wrote before the methods built their own sets.
A relabel artifact from then also holds those sets (`methods/<method>/{split}.parquet`): equal to these rows
and no longer read, so it trains every method as it did and any method added since.

Every rank of a training run builds the same rows; the train stage records them in its artifact
(`training_set/{split}.parquet`). Reading the candidates checks every record a method reads (one line naming
the file, the record and the field).
"""

from __future__ import annotations

import math
import zlib
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dorl import readers
from dorl.errors import DataError
from dorl.relabel.candidates import CANDIDATE_COLUMNS

if TYPE_CHECKING:
    from dorl.methods.base import Method
    from dorl.store import Artifact

SPLITS = ("train", "validation")
FOLDER = "training_set"  # where the train stage records the rows: training_set/{split}.parquet


def training_sets(method: Method, data: Artifact) -> dict[str, pd.DataFrame] | None:
    """The method's shuffled rows of the train and validation candidates of `data`, or None: it does not train
    on relabelled data."""
    seed, bins = relabel_facts(data)
    out = {}
    for split in SPLITS:
        rows = method.training_set(read_candidates(data, split, bins), bins)
        if rows is None:
            return None
        out[split] = shuffled(rows.reset_index(drop=True), seed, method.name, split)
    return out


def shuffled(frame: pd.DataFrame, seed: int, method: str, split: str) -> pd.DataFrame:
    rng = np.random.default_rng([seed, zlib.crc32(f"{method}/{split}".encode())])
    return frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)


def check_relabel(data: Artifact) -> None:
    """Cheap checks of a relabel artifact before anything is written: its candidates and facts are there."""
    for split in SPLITS:
        name = f"candidates/{split}.parquet"
        if name not in data.files:
            raise DataError(f"{data.uri} has no {name}: is it a `dorl relabel` artifact of the train and validation "
                            "splits (relabel.splits)?")  # fmt: skip
    relabel_facts(data)


def relabel_facts(data: Artifact) -> tuple[int, int]:
    """(relabel.seed, return bins) of the relabel artifact `data`."""
    made_with = data.config.get("relabel")
    seed = made_with.get("seed") if isinstance(made_with, dict) else None
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise DataError(
            f"{data.uri}/manifest.json: config.relabel.seed is {seed!r}, not the seed of a relabel run; make the "
            "artifact again with `dorl relabel --force`"
        )
    return seed, return_bins(data)


def return_bins(data: Artifact) -> int:
    bins = data.info.get("return_bins", 2)
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 2:
        raise DataError(f"{data.uri}/manifest.json: info.return_bins must be an integer >= 2, got {bins!r}")
    return bins


def read_candidates(data: Artifact, split: str, bins: int) -> pd.DataFrame:
    """One split's candidates table, every field a method reads checked."""
    name = f"candidates/{split}.parquet"
    where = f"{data.uri}/{name}"
    frame = readers.read_parquet(data.path(name))
    missing = [c for c in CANDIDATE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}; expected {', '.join(CANDIDATE_COLUMNS)}")
    for col in ("context", "response", "candidate"):
        _refuse(where, frame, col, ~frame[col].map(lambda v: isinstance(v, str)).to_numpy(dtype=bool), "text")
    reward, ret = _numbers(frame["reward"]), _numbers(frame["return"], integer=True)
    _refuse(where, frame, "reward", ~np.isfinite(reward), "a finite number")
    ok = (ret >= 0) & (ret < bins) & (ret == np.floor(ret))
    _refuse(where, frame, "return", ~ok, f"an integer in [0, {bins}) (info.return_bins={bins})")
    return frame


def _numbers(col: pd.Series, integer: bool = False) -> np.ndarray:
    """The column as floats, NaN where a record is not a number (or, `integer`, not an integer)."""
    kind = col.dtype.kind
    if kind in ("i", "u") or (kind == "f" and not integer):
        return col.to_numpy(dtype=np.float64)

    def number(v) -> float:
        types = (int, np.integer) if integer else (int, float, np.integer, np.floating)
        return float(v) if isinstance(v, types) and not isinstance(v, (bool, np.bool_)) else math.nan

    return np.fromiter((number(v) for v in col), dtype=np.float64, count=len(col))


def _refuse(where: str, frame: pd.DataFrame, col: str, bad: np.ndarray, want: str) -> None:
    if bad.any():
        i = int(bad.nonzero()[0][0])
        value = frame[col].iloc[i]
        value = value.item() if isinstance(value, np.generic) else value
        raise DataError(f"{where}: record {i}, field '{col}': expected {want}, got {value!r}")
