"""Target-Q heads move toward the Q heads by Polyak averaging, on schedule."""

from __future__ import annotations

import pytest
import torch

from dorl.ilql.heads import make_heads
from dorl.ilql.polyak import is_sync_step, polyak_update, schedule, steps_to_move, target_weight


def test_update_by_hand():
    target, source = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([3.0, 2.0, 0.5])
    polyak_update([(target, source)], alpha=0.25)
    # (1 - 0.25) * target + 0.25 * source
    assert target.tolist() == pytest.approx([0.75 * 1 + 0.25 * 3, 0.75 * -2 + 0.25 * 2, 0.5])
    assert source.tolist() == [3.0, 2.0, 0.5]


def test_bf16_targets_are_mixed_in_fp32():
    target, source = torch.tensor([1.0], dtype=torch.bfloat16), torch.tensor([2.0], dtype=torch.bfloat16)
    polyak_update([(target, source)], alpha=0.5)
    assert target.dtype == torch.bfloat16 and target.item() == 1.5


@pytest.mark.parametrize("kind", ["efficient", "reference"])
def test_heads_targets_start_equal_and_follow_q(kind):
    heads = make_heads(kind, d=8, vocab=11, two_qs=True)
    emb = torch.nn.Parameter(torch.randn(11, 8))
    heads.attach_embedding(emb)
    pairs = heads.polyak_pairs()
    assert len(list(heads.q_heads.parameters())) == len(list(heads.target_q_heads.buffers()))
    if kind == "efficient":  # and the target copy of the output embedding follows the embedding
        assert len(pairs) == len(list(heads.q_heads.parameters())) + 1 and pairs[-1] == (heads.target_emb, emb)
    else:
        assert len(pairs) == len(list(heads.q_heads.parameters()))
    assert all(torch.equal(t, s) for t, s in pairs)
    assert not any(t.requires_grad for t, _ in pairs) and all(s.requires_grad for _, s in pairs)
    with torch.no_grad():
        for _, s in pairs:
            s.add_(1.0)
    before = [t.clone() for t, _ in pairs]
    polyak_update(pairs, alpha=0.1)
    for (t, s), b in zip(pairs, before, strict=True):
        assert torch.allclose(t, 0.9 * b + 0.1 * s)


def test_sync_schedule():
    assert [s for s in range(1, 16) if is_sync_step(s, 5)] == [5, 10, 15]
    assert not any(is_sync_step(s, 0) for s in range(1, 10))


def test_schedule_says_when_a_run_is_too_short():
    # the reference's alpha 0.001 every 5 steps: 600 steps put 11.3% of the targets' weight on the trained heads
    assert target_weight(600, 0.001, 5) == pytest.approx(1 - 0.999**120)
    assert steps_to_move(0.001, 5) == 3465 and target_weight(3465, 0.001, 5) >= 0.5 > target_weight(3460, 0.001, 5)
    assert schedule(600, 0.001, 5)["too_short"] and not schedule(4000, 0.001, 5)["too_short"]
    assert schedule(100, 0.0, 5)["too_short"] and steps_to_move(0.5, 0) is None and steps_to_move(1.0, 2) == 2
