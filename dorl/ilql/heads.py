"""ILQL value heads: V(s), one or two Q(s, ·) heads, and their Polyak-averaged target copies.

Two parameterisations of Q over a vocabulary of |V| tokens from a hidden state h (width d):

- `reference` (the released system): each Q head is an MLP d -> 2d -> |V|. With twin heads and
  their targets that is four 2d x |V| output layers: at distilgpt2 size (d = 768, |V| = 50,272)
  about 314M parameters next to the LM's 82M, the known cause of out-of-memory failures.
- `efficient` (dorl's default): each Q head is an MLP d -> 2d -> d whose output z is scored
  against the LM's output embedding E (|V| x d) plus a per-token bias b:

      Q(s, a) = z(h) · E[a] + b[a]

  so Q(s, ·) costs one LM-head-sized matmul, Q(s, a_taken) is a dot product, and a head holds
  ~2.4M parameters (four of them ~9.6M) at distilgpt2 size.

  E is read *detached* here: the value losses train the head MLPs, the biases and (through h)
  the shared transformer, as the reference's heads do, but no gradient flows into E through the
  scoring matmul. Reasons: (1) E is the LM head (and, tied, the input embedding), so a gradient
  from the Q regression would rewrite the policy's logits directly, outside the cross-entropy
  that trains them in the reference; (2) the target heads score against the same E, and a target
  that moved with every gradient step would undo the slow Polyak-averaged target; (3) no second
  |V| x d gradient for the largest matrix of the model.

Every head reads hidden states that the caller has already gathered at the positions that need
them (response positions in training, the last position in decoding): nothing here is computed
at prompt positions.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import Tensor, nn

HeadsKind = Literal["efficient", "reference"]


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class TiedQ(nn.Module):
    """Q(s, a) = mlp(h) · E[a] + bias[a], with E the LM's output embedding (passed in, detached)."""

    def __init__(self, d: int, vocab: int):
        super().__init__()
        self.mlp = mlp(d, 2 * d, d)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def project(self, h: Tensor) -> Tensor:
        """The d-dimensional query z(h) that is scored against the embedding rows."""
        return self.mlp(h)

    def forward(self, h: Tensor, emb: Tensor, actions: Tensor | None = None) -> Tensor:
        z = self.mlp(h)
        if actions is None:
            return z @ emb.T.to(z.dtype) + self.bias  # (..., |V|)
        return (z * emb[actions].to(z.dtype)).sum(-1) + self.bias[actions]  # (...,)


class QHeads(nn.Module):
    """V head, Q heads and target-Q heads; subclasses say how a Q head maps h to |V| values."""

    kind: HeadsKind

    def __init__(self, d: int, vocab: int, two_qs: bool = True):
        super().__init__()
        self.d, self.vocab, self.two_qs = d, vocab, two_qs
        self.v_head = mlp(d, 2 * d, 1)
        self.q_heads = nn.ModuleList(self.make_q() for _ in range(2 if two_qs else 1))
        # Targets start equal to the Q heads and only move by Polyak averaging (polyak.py).
        self.target_q_heads = as_buffers(copy.deepcopy(self.q_heads))

    def make_q(self) -> nn.Module:
        raise NotImplementedError

    def q_of(self, head: nn.Module, h: Tensor, emb: Tensor, actions: Tensor | None) -> Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------ the values

    def v(self, h: Tensor) -> Tensor:
        """V(s) for hidden states (..., d) -> (...)."""
        return self.v_head(h).squeeze(-1)

    def q(self, h: Tensor, emb: Tensor, actions: Tensor | None = None) -> list[Tensor]:
        """Q_i(s, a_taken) (...) per head, or Q_i(s, ·) (..., |V|) when `actions` is None."""
        return [self.q_of(head, h, emb, actions) for head in self.q_heads]

    @torch.no_grad()
    def target_q(self, h: Tensor, emb: Tensor, actions: Tensor | None = None) -> Tensor:
        """min_i target-Q_i(s, a_taken) (...), or over the vocabulary (..., |V|); never has a gradient."""
        h = h.to(next(self.target_q_heads.buffers()).dtype)  # fp32 targets under a bf16 model
        qs = [self.q_of(head, h, emb, actions) for head in self.target_q_heads]
        return qs[0] if len(qs) == 1 else torch.minimum(*qs)

    @torch.no_grad()
    def decode(self, h: Tensor, lm_head: nn.Module) -> tuple[Tensor, Tensor]:
        """(LM logits, min target-Q(s, ·) - V(s)) over the vocabulary for decoding states h (B, d)."""
        return lm_head(h), self.target_q(h, lm_head.weight) - self.v(h).unsqueeze(-1)

    def polyak_pairs(self) -> list[tuple[Tensor, Tensor]]:
        """(target tensor, Q parameter) pairs, matched by name."""
        targets = dict(self.target_q_heads.named_buffers())
        return [(targets[name], p) for name, p in self.q_heads.named_parameters()]


class ReferenceHeads(QHeads):
    """The released system's heads: Q = MLP d -> 2d -> |V|."""

    kind: HeadsKind = "reference"

    def make_q(self) -> nn.Module:
        return mlp(self.d, 2 * self.d, self.vocab)

    def q_of(self, head: nn.Module, h: Tensor, emb: Tensor, actions: Tensor | None) -> Tensor:
        out = head(h)
        return out if actions is None else out.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


class EfficientHeads(QHeads):
    """Q tied to the LM's output embedding: MLP d -> 2d -> d, scored against E, plus a bias."""

    kind: HeadsKind = "efficient"

    def make_q(self) -> nn.Module:
        return TiedQ(self.d, self.vocab)

    def q_of(self, head: nn.Module, h: Tensor, emb: Tensor, actions: Tensor | None) -> Tensor:
        return head(h, emb.detach(), actions)

    @torch.no_grad()
    def decode(self, h: Tensor, lm_head: nn.Module) -> tuple[Tensor, Tensor]:
        # The LM logits and every target head share E: stack their queries and read E once
        # (decoding a few sequences is bound by reading the |V| x d matrix, not by arithmetic).
        w = lm_head.weight
        th = h.to(next(self.target_q_heads.buffers()).dtype)
        queries = [h] + [head.project(th) for head in self.target_q_heads]
        scores = (torch.cat([q.to(w.dtype) for q in queries]) @ w.T).split(h.shape[0])
        logits = scores[0] if getattr(lm_head, "bias", None) is None else scores[0] + lm_head.bias
        qs = [s + head.bias for s, head in zip(scores[1:], self.target_q_heads, strict=True)]
        q = qs[0] if len(qs) == 1 else torch.minimum(*qs)
        return logits, q - self.v(h).unsqueeze(-1)


def as_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of `module` into a buffer of the same name. The target heads are not
    trained: as buffers they stay out of the optimizer, and DeepSpeed's bf16 mode, which casts
    parameters only, leaves them in fp32, where Polyak steps of alpha = 0.001 are not rounded
    away (bf16 keeps 8 bits of mantissa). They are still in the state dict, so checkpoints and
    saved models carry them."""
    for sub in module.modules():
        for name, p in list(sub.named_parameters(recurse=False)):
            del sub._parameters[name]
            sub.register_buffer(name, p.detach().clone())
    return module


def make_heads(kind: HeadsKind, d: int, vocab: int, two_qs: bool = True) -> QHeads:
    classes = {"efficient": EfficientHeads, "reference": ReferenceHeads}
    if kind not in classes:
        raise ValueError(f"unknown ILQL heads {kind!r}; choose efficient or reference")
    return classes[kind](d, vocab, two_qs)


def count_parameters(module: nn.Module) -> int:
    """Weights held, trained or not (the target heads are buffers)."""
    return sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers())
