"""Relabel's work plan and its shards: chunks of contexts, which shard computes which, and the assembly of the
shards' rows into one table per split.

Work is cut into chunks of `relabel.chunk_size` contexts per split (chunk k of a split holds its examples
k*size … (k+1)*size-1); chunks are numbered across the splits in order, and shard i of n takes the chunks whose
number is i mod n (`plan`). Shard i of n is its own artifact at <out>/shards/i-of-n (stage `relabel-shard`);
`assemble` reads all n, checks that they were made with this configuration from these inputs, and concatenates
their chunk rows (`CHUNK_COLUMNS`).
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


def empty_chunk() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in CHUNK_COLUMNS}).astype(
        {"example_index": "int64", "turn_index": "int32", "candidate_index": "int32", "reward": "float64"}
    )


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
    want_inputs = {k: a.digest for k, a in inputs.items()}
    for s in shards:
        made = {k: v for k, v in s.config.items() if k != "shard"}
        if digest(made) != digest(config):
            raise StoreError(f"{s.uri} was made with another configuration than this assembly: re-run that shard")
        have = {k: v.get("manifest_sha256") for k, v in s.manifest.get("inputs", {}).items()}
        if have != want_inputs:
            raise StoreError(f"{s.uri} was made from other data or model artifacts than this assembly")
    rows: dict[str, pd.DataFrame] = {}
    for split in config["relabel"]["splits"]:
        parts = [readers.read_parquet(s.path(f"candidates/{split}.parquet")) for s in shards]
        rows[split] = pd.concat(parts, ignore_index=True) if parts else empty_chunk()
    ctx.info["reward"] = shards[0].info.get("reward")
    ctx.info["assembled_from"] = count
    totals: dict = {}
    for s in shards:
        for k, v in s.manifest.get("metrics", {}).items():
            if k in ("contexts", "candidates", "pairs_scored", "chunks_computed", "chunks_resumed"):
                totals[k] = totals.get(k, 0) + v
    ctx.metrics.update(totals, shards=[s.manifest.get("metrics", {}) for s in shards])
    return rows
