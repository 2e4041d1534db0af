"""The ILQL loss (Snell et al. 2022, as the reference trained it), over the N actions of a batch.

With r_t the reward (the standardised return on a response's last action, 0 elsewhere), V_next
the value of the next state (0 after the last action: terminal) and means over all N actions:

    loss_q   = sum_i mean (Q_i(s_t, a_t) - (r_t + gamma * V_next.detach()))^2
    loss_v   = mean |tau - 1[u < 0]| * u^2,   u = min_i target-Q_i(s_t, a_t) - V(s_t)  (target: no grad)
    loss_cql = sum_i mean CE(Q_i(s_t, ·), a_t)
    loss_ce  = mean w_t * CE(LM logits(s_t), a_t),   w_t = 1, or min(exp(awac_beta * u), awac_max_weight)
    loss     = loss_q + loss_v + cql_weight * loss_cql + ce_weight * loss_ce

`ILQLLoss` is the module the training engine trains: the model whose forward is this loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dorl.ilql.model import ILQLOutput


@dataclass
class LossConfig:
    tau: float = 0.7
    gamma: float = 0.99
    cql_weight: float = 0.1
    ce_weight: float = 1.0
    awac: bool = False
    awac_beta: float = 1.0
    awac_max_weight: float = 20.0

    @classmethod
    def of(cls, cfg) -> LossConfig:
        """From an `ILQLConfig` (or anything with these attributes)."""
        return cls(**{k: getattr(cfg, k) for k in cls.__dataclass_fields__})


def terminal(rows: Tensor) -> Tensor:
    """True for the last action of each row (rows are sorted, each row's actions contiguous)."""
    last = torch.ones_like(rows, dtype=torch.bool)
    last[:-1] = rows[1:] != rows[:-1]
    return last


def expectile(u: Tensor, tau: float) -> Tensor:
    """|tau - 1[u < 0]| * u^2: above the target (u < 0) weighs 1 - tau, below it weighs tau."""
    return torch.where(u < 0, 1 - tau, tau) * u.pow(2)


def ilql_loss(
    out: ILQLOutput, rewards: Tensor, cfg: LossConfig, sync: bool = True
) -> tuple[Tensor, dict[str, float | Tensor]]:
    """`rewards` (B,): the standardised return of each row. Returns (loss, stats): stats as floats,
    or (`sync=False`, for a training loop that accumulates them on the device) as 0-dim tensors."""
    # The value regressions in fp32 whatever the model's dtype: a bf16 difference keeps ~3 digits,
    # and these are N numbers, not N x |V|.
    v, qs, target_q = out.v.float(), [q.float() for q in out.q], out.target_q.float()
    done = terminal(out.rows)
    r = torch.where(done, rewards.float()[out.rows], 0.0)
    v_next = torch.cat([v[1:], v.new_zeros(1)]).masked_fill(done, 0.0)
    q_target = r + cfg.gamma * v_next.detach()
    loss_q = sum((q - q_target).pow(2).mean() for q in qs)

    u = target_q.detach() - v
    loss_v = expectile(u, cfg.tau).mean()

    loss_cql = torch.zeros((), device=out.v.device)
    if out.q_lse is not None:  # CE(Q_i(s, ·), a) = logsumexp Q_i(s, ·) - Q_i(s, a)
        loss_cql = sum((lse.float() - q).mean() for lse, q in zip(out.q_lse, qs, strict=True))
    elif out.q_all is not None:
        loss_cql = sum(F.cross_entropy(qa.float(), out.actions) for qa in out.q_all)

    ce = out.ce.float() if out.ce is not None else F.cross_entropy(out.logits.float(), out.actions, reduction="none")
    weight = torch.ones_like(ce)
    if cfg.awac:
        weight = torch.exp(cfg.awac_beta * u.detach().float()).clamp(max=cfg.awac_max_weight)
    loss_ce = (weight * ce).mean()

    loss = loss_q + loss_v + cfg.cql_weight * loss_cql + cfg.ce_weight * loss_ce
    named = {
        "loss": loss,
        "loss_q": loss_q,
        "loss_v": loss_v,
        "loss_cql": loss_cql,
        "loss_ce": loss_ce,
        "v": v.mean(),
        "q": torch.stack(qs).mean(),
        "target_q": target_q.mean(),
        "advantage": u.mean(),
        "awac_weight": weight.mean(),
    }
    if not sync:
        return loss, {k: t.detach().float() for k, t in named.items()} | {"actions": out.actions.numel()}
    values = torch.stack([t.detach().float() for t in named.values()]).tolist()  # one device sync
    stats = dict(zip(named, values, strict=True)) | {"actions": out.actions.numel()}
    return loss, stats


class ILQLLoss(nn.Module):
    """What DeepSpeed trains: forward(input_ids, state_mask, rewards) -> (ILQL loss, stats), the loss
    and every stat a mean over the batch's actions (the engine weights them by `target_count`)."""

    def __init__(self, model, loss_cfg):
        super().__init__()
        self.model = model
        self.loss_cfg = loss_cfg
        self.cql = loss_cfg.cql_weight > 0  # Q over the whole vocabulary only when its term counts
        self.last_values = None  # in evaluation mode: (B,) V at each row's last action state (before <_rep_end_>)

    @property
    def lm(self):
        return self.model.lm

    def forward(self, input_ids, state_mask, rewards, **_):
        out = self.model(input_ids, state_mask, cql=self.cql)
        if not self.training:  # validation: V where each response's last action (<_rep_end_>) is taken
            last = torch.ones_like(out.rows, dtype=torch.bool)
            last[:-1] = out.rows[1:] != out.rows[:-1]  # states are row-major: each row's last one
            self.last_values = out.v.new_zeros(input_ids.shape[0]).index_copy(0, out.rows[last], out.v[last].detach())
        loss, stats = ilql_loss(out, rewards, self.loss_cfg, sync=False)
        return loss, {k: v for k, v in stats.items() if k != "loss" and not isinstance(v, int)}
