"""Vocabulary-wide scores reduced on the fly: log-sum-exp and the taken action's score, one |V| buffer.

    taken, lse = lse_and_taken(x, weight, actions, bias)   # s = x @ weight.T + bias, (M, |V|)
    cross_entropy(s, actions) == (lse - taken).mean()

ILQL's losses need, per action state, only two numbers of each |V|-wide row: the score of the
token taken (the Q regression, the LM's and CQL's cross-entropy) and the row's log-sum-exp (the
cross-entropies). Written with `F.cross_entropy` and `gather`, autograd keeps the scores, their
log-softmax and, in backward, two zero-filled |V|-wide gradients that are scattered into and
added. Here the scores are turned in place into the softmax that backward needs
(d lse / d s = softmax(s), d taken / d s = one-hot), so a row costs one |V| buffer and a few
passes over it. Same math: values and gradients equal the unfused ones to fp32 rounding
(tests/ilql/test_lse.py). Rows may come in G equal groups with a bias each (the twin Q heads
share one matmul against the output embedding).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class _LseTaken(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, actions: Tensor):
        groups = 1 if bias is None or bias.dim() == 1 else bias.shape[0]
        s = x @ weight.T
        if bias is not None:
            s.view(groups, -1, s.shape[-1]).add_(bias.view(groups, 1, -1))
        s = s.float()  # the reductions in fp32 under a bf16 model, as the loss's .float() did
        index = actions.repeat(groups)[:, None]
        taken = s.gather(1, index)[:, 0]
        # softmax(s) in place of the scores, and the log-sum-exp on the way: no |V|-wide temporary
        # (torch.logsumexp allocates one; this is ~2x faster on a CPU, measured on 256 x 50,272)
        top = s.amax(dim=1, keepdim=True)
        probs = s.sub_(top).exp_()
        total = probs.sum(dim=1, keepdim=True)
        probs.div_(total)
        lse = (top + total.log())[:, 0]
        ctx.groups, ctx.bias_shape = groups, None if bias is None else bias.shape
        ctx.save_for_backward(x, weight, probs, index)
        return taken, lse

    @staticmethod
    @once_differentiable
    def backward(ctx, g_taken: Tensor, g_lse: Tensor):
        x, weight, probs, index = ctx.saved_tensors
        grad_s = probs.mul_(g_lse[:, None])  # d lse / d s = softmax(s); in place: backward runs once
        grad_s.scatter_add_(1, index, g_taken[:, None])  # d taken / d s = one-hot(action)
        grad_s = grad_s.to(x.dtype)
        grad_x = grad_s @ weight.to(x.dtype) if ctx.needs_input_grad[0] else None
        grad_w = grad_s.T @ x if ctx.needs_input_grad[1] else None
        grad_b = None
        if ctx.needs_input_grad[2]:
            grad_b = grad_s.view(ctx.groups, -1, grad_s.shape[-1]).sum(1).view(ctx.bias_shape)
        return grad_x, grad_w, grad_b, None


def lse_and_taken(x: Tensor, weight: Tensor, actions: Tensor, bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """For scores s = x @ weight.T (+ bias) of shape (G*M, |V|), the taken scores s[i, a_i] and the
    log-sum-exps logsumexp(s[i]), both (G*M,) in fp32. `actions` (M,) apply to each of the G
    groups of M rows; `bias` is (|V|,) or (G, |V|), one per group. Differentiable in x, weight
    (unless detached) and bias."""
    groups = 1 if bias is None or bias.dim() == 1 else bias.shape[0]
    if x.shape[0] != groups * actions.shape[0]:
        raise ValueError(f"{x.shape[0]} rows for {groups} group(s) of {actions.shape[0]} actions")
    return _LseTaken.apply(x, weight, bias, actions)
