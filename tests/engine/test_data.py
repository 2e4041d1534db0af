"""Batch order and splitting: deterministic per (seed, epoch), complete, balanced, length-grouped."""

import numpy as np
import pytest

from dorl.config import TrainConfig
from dorl.engine.data import (
    Examples,
    accumulation_steps,
    epoch_steps,
    eval_batches,
    rank_micro_batches,
    steps_per_epoch,
)
from dorl.errors import ConfigError

LENGTHS = np.random.default_rng(0).integers(5, 500, size=1000)


def test_examples_store_sequences_and_fields():
    ex = Examples.from_lists([[1, 2, 3], [4], [5, 6]], label_start=[1, 0, 2])
    assert len(ex) == 3 and ex.n_tokens == 6
    assert ex.lengths.tolist() == [3, 1, 2]
    assert ex[0]["input_ids"].tolist() == [1, 2, 3] and ex[0]["label_start"] == 1
    assert ex[2]["input_ids"].tolist() == [5, 6] and ex[2]["label_start"] == 2


@pytest.mark.parametrize("group", [False, True])
def test_epoch_order_is_a_function_of_seed_and_epoch(group):
    a = epoch_steps(LENGTHS, 32, seed=42, epoch=0, group_by_length=group)
    b = epoch_steps(LENGTHS, 32, seed=42, epoch=0, group_by_length=group)
    c = epoch_steps(LENGTHS, 32, seed=42, epoch=1, group_by_length=group)
    assert [s.tolist() for s in a] == [s.tolist() for s in b]
    assert [s.tolist() for s in a] != [s.tolist() for s in c]
    # 1000 // 32 = 31 full steps; the 8 left over are dropped, each index used at most once
    assert len(a) == steps_per_epoch(1000, 32) == 31
    flat = np.concatenate(a)
    assert all(len(s) == 32 for s in a) and len(set(flat.tolist())) == 31 * 32


def test_grouping_by_length_cuts_padding():
    def padding(steps):
        return sum(int(LENGTHS[s].max()) * len(s) - int(LENGTHS[s].sum()) for s in steps)

    plain = padding(epoch_steps(LENGTHS, 32, 42, 0, group_by_length=False))
    grouped = padding(epoch_steps(LENGTHS, 32, 42, 0, group_by_length=True))
    real = int(LENGTHS.sum())
    assert grouped < 0.05 * real < plain  # uniform lengths: ~1/2 padding plain, a few % grouped
    # the step order is shuffled, not sorted by length
    maxima = [int(LENGTHS[s].max()) for s in epoch_steps(LENGTHS, 32, 42, 0, True)]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)


def test_micro_batches_of_a_step_are_dealt_to_ranks():
    step = np.arange(32)
    per_rank = [rank_micro_batches(step, 4, r, 2) for r in range(2)]
    assert [len(m) for m in per_rank] == [4, 4]  # 32 = 4 micro x 2 ranks x 4 accumulation
    assert per_rank[0][0].tolist() == [0, 1, 2, 3] and per_rank[1][0].tolist() == [4, 5, 6, 7]
    assert sorted(np.concatenate([b for m in per_rank for b in m]).tolist()) == list(range(32))


def test_eval_batches_cover_everything_once_with_equal_counts():
    lengths = np.arange(1, 12)  # 11 examples, micro 2 -> 6 batches over 4 ranks
    per_rank = [eval_batches(lengths, 2, r, 4) for r in range(4)]
    assert {len(b) for b in per_rank} == {2}
    seen = [i for b in per_rank for x in b if x is not None for i in x.tolist()]
    assert sorted(seen) == list(range(11))
    assert sum(x is None for b in per_rank for x in b) == 2


def test_accumulation_keeps_the_effective_batch():
    tc = TrainConfig(batch_size=32, micro_batch_size=8)
    assert accumulation_steps(tc, 1) == 4
    assert accumulation_steps(tc, 2) == 2
    assert accumulation_steps(tc, 4) == 1
    with pytest.raises(ConfigError, match=r"batch_size=32 is not divisible by micro_batch_size=8 x 3 process"):
        accumulation_steps(tc, 3)
