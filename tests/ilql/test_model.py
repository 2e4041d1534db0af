"""ILQLModel: one transformer pass, LM and heads at the action states only."""

from __future__ import annotations

import pytest
import torch

from dorl.ilql.data import Collator, Sample
from dorl.ilql.model import ILQLMeta, ILQLModel


def batch():
    return Collator(pad_id=0)([Sample([5, 6, 7, 8, 9, 10], 3, 1.0), Sample([11, 12, 13, 14], 2, -1.0)])


@pytest.mark.parametrize("kind", ["efficient", "reference"])
def test_forward_at_action_states(lm, kind):
    model = ILQLModel(lm, ILQLMeta(heads=kind))
    b = batch()
    out = model(b["input_ids"], b["state_mask"])
    # states: row 0 positions 2, 3, 4 (actions 8, 9, 10); row 1 positions 1, 2 (actions 13, 14)
    assert out.rows.tolist() == [0, 0, 0, 1, 1] and out.actions.tolist() == [8, 9, 10, 13, 14]
    # right padding needs no mask: the values at the states equal those of a masked forward
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    full = lm(input_ids=b["input_ids"], attention_mask=mask).logits
    ce = torch.nn.functional.cross_entropy(full[[0, 0, 0, 1, 1], [2, 3, 4, 1, 2]], out.actions, reduction="none")
    assert torch.allclose(out.ce, ce, atol=1e-5)  # the LM's CE at the states (the logits are not kept)
    masked = model(b["input_ids"], b["state_mask"], attention_mask=mask)
    assert torch.allclose(masked.v, out.v, atol=1e-5) and torch.allclose(masked.target_q, out.target_q, atol=1e-5)
    assert out.v.shape == out.target_q.shape == (5,) and len(out.q) == len(out.q_lse) == 2
    no_cql = model(b["input_ids"], b["state_mask"], cql=False)
    assert no_cql.q_lse is None
    for q, q2 in zip(out.q, no_cql.q, strict=True):
        assert torch.allclose(q, q2, atol=1e-5)


def test_q_loss_trains_the_shared_transformer_and_not_the_targets(lm):
    model = ILQLModel(lm, ILQLMeta(heads="efficient", two_qs=False))
    b = batch()
    out = model(b["input_ids"], b["state_mask"], cql=False)
    out.q[0].pow(2).sum().backward()
    assert lm.transformer.h[0].attn.c_attn.weight.grad is not None
    assert not list(model.heads.target_q_heads.parameters())  # buffers: never trained
    assert all(p.grad is None for p in model.heads.v_head.parameters())


def test_state_mask_on_the_last_position_is_refused(lm):
    model = ILQLModel(lm)
    b = batch()
    b["state_mask"][0, -1] = True
    with pytest.raises(ValueError, match="last position"):
        model(b["input_ids"], b["state_mask"])
