"""Each ILQL loss term against a hand computation on three actions (two rows, vocabulary of 3)."""

from __future__ import annotations

import math

import pytest
import torch

from dorl.ilql.loss import LossConfig, expectile, ilql_loss, terminal
from dorl.ilql.model import ILQLOutput


def lse(*xs):
    return math.log(sum(math.exp(x) for x in xs))


def make_output(cql: bool = True) -> ILQLOutput:
    # rows [0, 0, 1]: row 0 takes actions 2 then 0, row 1 takes action 1.
    q1_all = torch.tensor([[0.0, 0.0, 0.5], [-0.2, 1.0, 0.0], [0.0, 1.0, 2.0]], requires_grad=True)
    q2_all = torch.tensor([[0.4, 0.4, 0.4], [0.0, 0.0, 0.0], [0.6, 0.6, 0.6]], requires_grad=True)
    actions = torch.tensor([2, 0, 1])
    q = [qa.gather(1, actions[:, None])[:, 0] for qa in (q1_all, q2_all)]  # [0.5, -0.2, 1.0], [0.4, 0.0, 0.6]
    return ILQLOutput(
        logits=torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True),
        v=torch.tensor([0.1, 0.3, -0.4], requires_grad=True),
        q=q,
        q_all=[q1_all, q2_all] if cql else None,
        target_q=torch.tensor([0.2, 0.5, -1.0]),
        actions=actions,
        rows=torch.tensor([0, 0, 1]),
    )


REWARDS = torch.tensor([2.0, -1.0])  # standardised returns of rows 0 and 1
CFG = LossConfig(tau=0.7, gamma=0.9, cql_weight=0.1, ce_weight=1.0)

# By hand. Rewards fall on each row's last action: r = [0, 2, -1]; V(next) = [V(s_1) = 0.3, 0 (terminal), 0].
# Q targets: [0 + 0.9 * 0.3, 2, -1] = [0.27, 2, -1].
LOSS_Q1 = ((0.5 - 0.27) ** 2 + (-0.2 - 2) ** 2 + (1.0 + 1) ** 2) / 3
LOSS_Q2 = ((0.4 - 0.27) ** 2 + (0 - 2) ** 2 + (0.6 + 1) ** 2) / 3
LOSS_Q = LOSS_Q1 + LOSS_Q2
assert abs(LOSS_Q - (2.9643 + 2.1923)) < 1e-9
# u = target_q - v = [0.1, 0.2, -0.6]; weights tau, tau, 1 - tau.
LOSS_V = (0.7 * 0.1**2 + 0.7 * 0.2**2 + 0.3 * 0.6**2) / 3
LOSS_CQL = (lse(0, 0, 0.5) - 0.5 + lse(-0.2, 1, 0) + 0.2 + lse(0, 1, 2) - 1) / 3 + math.log(3)
CE = [lse(1, 0, 0) - 0, lse(0, 2, 0) - 0, math.log(3)]
LOSS_CE = sum(CE) / 3


def test_terminal_marks_each_rows_last_action():
    assert terminal(torch.tensor([0, 0, 1, 2, 2, 2])).tolist() == [False, True, True, False, False, True]


def test_expectile_weighs_above_and_below():
    assert expectile(torch.tensor([1.0, -1.0, 2.0]), 0.7).tolist() == pytest.approx([0.7, 0.3, 2.8])


def test_each_term_and_the_total():
    loss, stats = ilql_loss(make_output(), REWARDS, CFG)
    assert stats["loss_q"] == pytest.approx(LOSS_Q, abs=1e-6)
    assert stats["loss_v"] == pytest.approx(LOSS_V, abs=1e-6)
    assert stats["loss_cql"] == pytest.approx(LOSS_CQL, abs=1e-6)
    assert stats["loss_ce"] == pytest.approx(LOSS_CE, abs=1e-6)
    assert loss.item() == pytest.approx(LOSS_Q + LOSS_V + 0.1 * LOSS_CQL + LOSS_CE, abs=1e-5)
    assert stats["advantage"] == pytest.approx((0.1 + 0.2 - 0.6) / 3, abs=1e-6)
    assert stats["actions"] == 3


def test_weights_scale_their_terms():
    cfg = LossConfig(tau=0.7, gamma=0.9, cql_weight=0.5, ce_weight=0.0)
    loss, _ = ilql_loss(make_output(), REWARDS, cfg)
    assert loss.item() == pytest.approx(LOSS_Q + LOSS_V + 0.5 * LOSS_CQL, abs=1e-5)


def test_awac_weights_the_cross_entropy_by_clipped_exp_advantage():
    cfg = LossConfig(tau=0.7, gamma=0.9, awac=True, awac_beta=1.0, awac_max_weight=1.1)
    _, stats = ilql_loss(make_output(), REWARDS, cfg)
    w = [1.1, 1.1, math.exp(-0.6)]  # exp(0.1) = 1.105 and exp(0.2) = 1.221 are clipped to 1.1
    assert stats["loss_ce"] == pytest.approx(sum(wi * c for wi, c in zip(w, CE, strict=True)) / 3, abs=1e-6)
    assert stats["awac_weight"] == pytest.approx(sum(w) / 3, abs=1e-6)


def test_no_cql_term_without_full_q():
    _, stats = ilql_loss(make_output(cql=False), REWARDS, CFG)
    assert stats["loss_cql"] == 0.0


def test_v_learns_only_from_the_expectile_and_targets_are_constants():
    out = make_output()
    loss, _ = ilql_loss(out, REWARDS, CFG)
    loss.backward()
    # d loss_v / d v = -2 w u / 3: the Q targets' V(next) is detached, so nothing else reaches v.
    assert out.v.grad.tolist() == pytest.approx([-2 * 0.7 * 0.1 / 3, -2 * 0.7 * 0.2 / 3, 2 * 0.3 * 0.6 / 3], abs=1e-6)
    assert not out.target_q.requires_grad
