"""The fused log-sum-exp / taken-score op equals the unfused formulation: values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dorl.ilql.loss import LossConfig, ilql_loss
from dorl.ilql.lse import lse_and_taken
from dorl.ilql.model import ILQLMeta, ILQLModel, ILQLOutput


def unfused(x, w, actions, bias):
    groups = 1 if bias is None or bias.dim() == 1 else bias.shape[0]
    s = x @ w.T
    if bias is not None:
        s = (s.view(groups, -1, s.shape[-1]) + bias.view(groups, 1, -1)).view(s.shape)
    a = actions.repeat(groups)
    return s.gather(1, a[:, None])[:, 0], s - F.log_softmax(s, -1)  # taken; lse broadcast along the row


@pytest.mark.parametrize("bias", ["none", "one", "groups"])
@pytest.mark.parametrize("weight_grad", [True, False])
def test_values_and_gradients_equal_the_unfused_ones(bias, weight_grad):
    g = torch.Generator().manual_seed(0)
    m, d, v, groups = 6, 5, 37, 2 if bias == "groups" else 1
    x = torch.randn(groups * m, d, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(v, d, generator=g, dtype=torch.float64, requires_grad=weight_grad)
    b = {"none": None, "one": torch.randn(v, generator=g, dtype=torch.float64), "groups": torch.randn(2, v)}[bias]
    if b is not None:
        b = b.double().requires_grad_(True)
    actions = torch.randint(0, v, (m,), generator=g)
    gt, gl = torch.randn(groups * m, generator=g, dtype=torch.float64), torch.randn(groups * m, generator=g).double()

    taken, lse = lse_and_taken(x, w, actions, b)
    ref_taken, ref_lse = unfused(x, w, actions, b)
    ref_lse = ref_lse[:, 0]
    assert torch.allclose(taken, ref_taken.float()) and torch.allclose(lse, ref_lse.float())
    leaves = [t for t in (x, w, b) if t is not None and t.requires_grad]
    # float64 in, fp32 reductions: compare the fused gradients with autograd's of the unfused math
    fused = torch.autograd.grad((taken.double() * gt).sum() + (lse.double() * gl).sum(), leaves)
    ref = torch.autograd.grad((ref_taken * gt).sum() + (ref_lse * gl).sum(), leaves)
    for a, r in zip(fused, ref, strict=True):
        assert torch.allclose(a, r, atol=1e-5, rtol=1e-5)


def test_rows_must_match_the_groups():
    with pytest.raises(ValueError, match="rows for 2 group"):
        lse_and_taken(torch.zeros(5, 3), torch.zeros(7, 3), torch.zeros(3, dtype=torch.long), torch.zeros(2, 7))


def old_forward(model, ids, state_mask):
    """ILQLModel.forward as it was before the fused op: Q and logits over the vocabulary, kept."""
    h, _ = model.hidden(ids)
    rows, cols = state_mask.nonzero(as_tuple=True)
    hs, actions, emb = h[rows, cols], ids[rows, cols + 1], model.lm_head.weight
    q_all = model.heads.q(hs, emb)
    q = [qa.gather(-1, actions.unsqueeze(-1)).squeeze(-1) for qa in q_all]
    return ILQLOutput(logits=model.lm_head(hs), v=model.heads.v(hs), q=q, q_all=q_all,
                      target_q=model.heads.target_q(hs, emb, actions), actions=actions, rows=rows)  # fmt: skip


@pytest.mark.parametrize("kind", ["efficient", "reference"])
def test_the_ilql_loss_and_its_gradients_are_unchanged(lm, kind):
    model = ILQLModel(lm, ILQLMeta(heads=kind))
    torch.manual_seed(1)
    ids = torch.randint(1, lm.config.vocab_size, (2, 9))
    state_mask = torch.zeros(2, 9, dtype=torch.bool)
    state_mask[0, 3:8], state_mask[1, 5:7] = True, True
    rewards, cfg = torch.tensor([1.0, -0.5]), LossConfig(awac=True)

    def loss_and_grads(out):
        loss, stats = ilql_loss(out, rewards, cfg)
        params = [p for p in model.parameters() if p.requires_grad]
        return loss, stats, torch.autograd.grad(loss, params, allow_unused=True)

    new = model(ids, state_mask)
    assert new.q_all is None and new.logits is None and len(new.q_lse) == 2  # nothing |V|-wide is kept
    loss, stats, grads = loss_and_grads(new)
    old_loss, old_stats, old_grads = loss_and_grads(old_forward(model, ids, state_mask))
    assert loss.item() == pytest.approx(old_loss.item(), rel=1e-6)
    for k in ("loss_q", "loss_v", "loss_cql", "loss_ce"):
        assert stats[k] == pytest.approx(old_stats[k], rel=1e-5, abs=1e-7)
    for a, b in zip(grads, old_grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
