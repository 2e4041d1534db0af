"""Relabel's work plan and its shards: chunks of contexts, which shard computes which, and the assembly of the
shards' rows into one table per split.

Work is cut into chunks of `relabel.chunk_size` contexts per split (chunk k of a split holds its examples
k*size … (k+1)*size-1); chunks are numbered across the splits in order, and shard i of n takes the chunks whose
number is i mod n (`plan`). Shard i of n is its own artifact at <out>/shards/i-of-n (stage `relabel-shard`);
`assemble` reads all n, checks that they were made with this configuration from these inputs, and concatenates
their chunk rows (`CHUNK_COLUMNS`).

Each shard records which shard of how many it is (its config's `shard`, its info's `shard`/`shards`) and its
contexts (info `contexts`: per split, the [start, stop) example ranges of its chunks). `assemble` checks that
the folder i-of-n holds shard i of n, and that the shards' rows cover every example of every split exactly once,
each in the shard the plan gives it: a shard folder copied over another, a missing, duplicate or foreign shard
is one line naming the folder and the examples, never an artifact with half the examples twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from dorl import readers
from dorl.errors import ConfigError, StoreError
from dorl.relabel.candidates import CHUNK_COLUMNS
from dorl.store import Artifact, digest

SHARD_STAGE = "relabel-shard"


@dataclass(frozen=True)
class Chunk:
    split: str
    index: int  # chunk number within its split
    start: int  # first example (row of examples/{split}.parquet)
    stop: int
    number: int  # across all splits: shard i of n takes number % n == i

    @property
    def checkpoint(self) -> str:
        return f"checkpoints/{self.split}/{self.index:05d}"


def plan(sizes: dict[str, int], chunk_size: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for split, n in sizes.items():
        for k in range(math.ceil(n / chunk_size)):
            chunks.append(Chunk(split, k, k * chunk_size, min(n, (k + 1) * chunk_size), len(chunks)))
    return chunks


def shard_uri(out_uri: str, index: int, count: int) -> str:
    return f"{out_uri.rstrip('/')}/shards/{index}-of-{count}"


# The chunk rows' column types (as `relabel_chunk` makes them; text columns: pandas' string type). An empty table has
# them too, so a shard without chunks of a split stores the same parquet types and the assembly's file is
# byte-identical to one process's.
CHUNK_DTYPES = {c: str for c in CHUNK_COLUMNS} | {
    "example_index": "int64",
    "turn_index": "int32",
    "candidate_index": "int32",
    "reward": "float64",
}


def empty_chunk() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=CHUNK_DTYPES[c]) for c in CHUNK_COLUMNS})


def contexts(chunks: list[Chunk], splits: list[str]) -> dict[str, list[list[int]]]:
    """What a shard records: per split, the [start, stop) example ranges of its chunks."""
    return {s: [[c.start, c.stop] for c in chunks if c.split == s] for s in splits}


def _ranges(indices) -> str:
    """`[0, 1, 2, 5]` -> "0-2, 5" (at most 3 ranges shown)."""
    out: list[list[int]] = []
    for i in sorted(indices):
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    shown = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in out[:3])
    return shown + (f" and {len(out) - 3} more range(s)" if len(out) > 3 else "")


def assemble_shards(ctx, out_uri: str, count: int, config: dict, inputs: dict, sizes: dict) -> dict[str, pd.DataFrame]:
    """Chunk rows of every split from the `count` shard artifacts, checked to be complete and consistent."""
    if count < 1:
        raise ConfigError(f"--assemble {count}: need at least one shard")
    shards, missing = [], []
    for i in range(count):
        uri = shard_uri(out_uri, i, count)
        try:
            shards.append(Artifact(uri, expect_stage=SHARD_STAGE))
        except StoreError:
            missing.append(uri)
    if missing:
        names = ", ".join(u.rsplit("/", 1)[1] for u in missing)
        raise StoreError(
            f"cannot assemble {out_uri}: {len(missing)} of {count} shard(s) missing or unfinished "
            f"({names}); run `dorl relabel --shard I/{count}` for each, e.g. {missing[0]}"
        )
    for i, s in enumerate(shards):  # which shard each folder holds: a folder copied over another is refused
        said = s.config.get("shard"), (s.info.get("shard"), s.info.get("shards"))
        if said != ({"index": i, "count": count}, (i, count)):
            made = f"shard {said[1][0]} of {said[1][1]}" if None not in said[1] else "another shard"
            raise StoreError(
                f"cannot assemble {out_uri}: {s.uri} holds {made}, not shard {i} of {count} (a shard folder copied "
                f"over another?); remove it and run `dorl relabel --shard {i}/{count}`"
            )
    want_inputs = {k: a.digest for k, a in inputs.items()}
    for s in shards:
        made = {k: v for k, v in s.config.items() if k != "shard"}
        if digest(made) != digest(config):
            raise StoreError(f"{s.uri} was made with another configuration than this assembly: re-run that shard")
        have = {k: v.get("manifest_sha256") for k, v in s.manifest.get("inputs", {}).items()}
        if have != want_inputs:
            raise StoreError(f"{s.uri} was made from other data or model artifacts than this assembly")
    splits = config["relabel"]["splits"]
    chunks = plan(sizes, config["relabel"]["chunk_size"])
    per_example = config["relabel"]["num_candidates"] + 1
    rows: dict[str, pd.DataFrame] = {}
    for split in splits:
        parts = [readers.read_parquet(s.path(f"candidates/{split}.parquet")) for s in shards]
        for i, (s, part) in enumerate(zip(shards, parts, strict=True)):
            mine = [c for c in chunks if c.number % count == i]
            _check_coverage(s, split, part, mine, per_example, f"cannot assemble {out_uri}", f"{i}/{count}")
        rows[split] = pd.concat(parts, ignore_index=True).astype(CHUNK_DTYPES)
    ctx.info["reward"] = shards[0].info.get("reward")
    ctx.info["assembled_from"] = count
    totals: dict = {}
    for s in shards:
        for k, v in s.manifest.get("metrics", {}).items():
            if k in ("contexts", "candidates", "pairs_scored", "chunks_computed", "chunks_resumed"):
                totals[k] = totals.get(k, 0) + v
    ctx.metrics.update(totals, shards=[s.manifest.get("metrics", {}) for s in shards])
    return rows


def _check_coverage(shard, split: str, part, mine: list[Chunk], per_example: int, what: str, which: str) -> None:
    """`shard` (shard `which`, "I/N", planned chunks `mine`) recorded those contexts and holds each of their
    examples' `per_example` rows, and no other example: together the shards then cover every example exactly
    once."""
    redo = f"remove it and run `dorl relabel --shard {which}`"
    recorded = shard.info.get("contexts")
    want = contexts(mine, [split])[split]
    if recorded is not None and recorded.get(split) != want:
        raise StoreError(
            f"{what}: {shard.uri} records other contexts of split {split} than its shard "
            f"computes ({_ranges(i for a, b in want for i in range(a, b)) or 'none'}); {redo}"
        )
    planned = {i for c in mine if c.split == split for i in range(c.start, c.stop)}
    counts = part["example_index"].value_counts() if "example_index" in part.columns else pd.Series(dtype="int64")
    have = {int(i) for i in counts.index}
    where = f"{what}: {shard.uri}"
    if have - planned:
        raise StoreError(
            f"{where} holds examples {_ranges(have - planned)} of split {split}, which are another shard's (a "
            f"foreign or duplicate shard); {redo}"
        )
    if planned - have:
        raise StoreError(f"{where} lacks examples {_ranges(planned - have)} of split {split}; {redo}")
    wrong = counts[counts != per_example]
    if len(wrong):
        raise StoreError(
            f"{where}: example {int(wrong.index[0])} of split {split} has {int(wrong.iloc[0])} candidate rows, "
            f"expected {per_example}; {redo}"
        )
