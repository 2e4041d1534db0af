"""Token sequences in memory and the order they are trained in.

`Examples` keeps variable-length token sequences flat in numpy (a few bytes per token, not a
Python list per example), with per-example fields a method may add (e.g. where the loss starts).

The order of an epoch is a pure function of (seed, epoch, lengths, batch size), so a resumed run
recomputes it and skips the steps it already did. Each optimizer step takes `batch_size` examples;
with `group_by_length`, steps are cut from length-sorted groups of 50 steps' worth of shuffled
examples (as HF's LengthGroupedSampler) and the step order is shuffled again, so a batch is padded
only to its own longest line. The last partial step of an epoch is dropped (as torchtune does),
different examples each epoch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dorl.config import TrainConfig
from dorl.errors import ConfigError

GROUP_STEPS = 50  # steps per length-sorted group


class Examples:
    """Variable-length token sequences: `ids[offsets[i]:offsets[i+1]]`, plus per-example `fields`."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, fields: dict[str, np.ndarray] | None = None):
        self.ids = np.asarray(ids, dtype=np.int32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.fields = {k: np.asarray(v) for k, v in (fields or {}).items()}
        for k, v in self.fields.items():
            if len(v) != len(self):
                raise ValueError(f"field {k!r} has {len(v)} values for {len(self)} examples")

    @classmethod
    def from_lists(cls, seqs: Sequence[Sequence[int]], **fields) -> Examples:
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.concatenate([np.asarray(s, dtype=np.int32) for s in seqs]) if seqs else np.zeros(0, np.int32)
        return cls(ids, offsets, fields)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        out = {"input_ids": self.ids[self.offsets[i] : self.offsets[i + 1]]}
        for k, v in self.fields.items():
            out[k] = v[i]
        return out


def accumulation_steps(tc: TrainConfig, world: int) -> int:
    """Micro-batches per process per step; a clear error when the batch does not split over the processes
    (the configuration checks the rest: ranges, and batch_size a multiple of micro_batch_size)."""
    per_step = tc.micro_batch_size * world
    if tc.batch_size % per_step:
        raise ConfigError(
            f"batch_size={tc.batch_size} is not divisible by micro_batch_size={tc.micro_batch_size} x "
            f"{world} process(es) = {per_step}; choose a batch_size that is a multiple of {per_step}"
        )
    return tc.batch_size // per_step


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return n_examples // batch_size


def epoch_steps(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[np.ndarray]:
    """The example indices of every optimizer step of `epoch` (each of `batch_size`, longest first)."""
    n_steps = steps_per_epoch(len(lengths), batch_size)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))[: n_steps * batch_size]
    if not group_by_length:
        return [order[i * batch_size : (i + 1) * batch_size] for i in range(n_steps)]
    group = batch_size * GROUP_STEPS
    steps = []
    for g in range(0, len(order), group):
        chunk = order[g : g + group]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        steps += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [steps[i] for i in rng.permutation(len(steps))]


def rank_micro_batches(step: np.ndarray, micro_batch_size: int, rank: int, world: int) -> list[np.ndarray]:
    """This rank's micro-batches of one step: micro-batch k of rank r is slice k*world + r, so ranks
    that run in lockstep get neighbouring (similar-length) slices."""
    micros = [step[i : i + micro_batch_size] for i in range(0, len(step), micro_batch_size)]
    return micros[rank::world]


def eval_batches(lengths: np.ndarray, micro_batch_size: int, rank: int, world: int) -> list[np.ndarray | None]:
    """Every example once, length-sorted into micro-batches, dealt round-robin to ranks. Ranks get the
    same number of batches (`None` = nothing left: run a batch that counts for nothing) because a
    ZeRO-3 forward is collective."""
    order = np.argsort(-lengths, kind="stable")
    batches = [order[i : i + micro_batch_size] for i in range(0, len(order), micro_batch_size)]
    mine: list[np.ndarray | None] = list(batches[rank::world])
    per_rank = -(-len(batches) // world)
    return mine + [None] * (per_rank - len(mine))
