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
  that trains them in the reference; (2) no second |V| x d gradient for the largest matrix.

  E still moves (the LM's cross-entropy trains it), so a target head reads a *target copy* of it,
  `target_emb`: an fp32 buffer that starts equal to E and follows it by the same Polyak averaging
  as the target MLPs and biases (`polyak_pairs` pairs it with E). Scored against the live E, the
  slow targets would move with every step of the LM, and on a skewed task (the rewarded response
  the less likely one) they followed the LM's preference instead of the return. The copy costs
  |V| x d fp32 (154 MB at distilgpt2 size), a fifth of what the reference's heads hold.

Every head reads hidden states that the caller has already gathered at the positions that need
them (response positions in training, the last position in decoding): nothing here is computed
at prompt positions.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import Tensor, nn

from dorl.ilql.lse import lse_and_taken

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

    def q_lse(self, h: Tensor, emb: Tensor, actions: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Per Q head, Q_i(s, a_taken) (...) and logsumexp_a Q_i(s, a) (...): what the Q regression
        and CQL's cross-entropy need of Q over the vocabulary."""
        q_all = self.q(h, emb)
        return [qa.gather(-1, actions.unsqueeze(-1)).squeeze(-1) for qa in q_all], [qa.logsumexp(-1) for qa in q_all]

    def attach_embedding(self, emb: nn.Parameter) -> None:
        """Tell the heads which output embedding the LM has (heads that read it keep a target copy)."""

    def target_embedding(self, emb: Tensor) -> Tensor:
        """What the target heads score against, in place of the LM's embedding `emb`."""
        return emb

    @torch.no_grad()
    def target_q(self, h: Tensor, emb: Tensor, actions: Tensor | None = None) -> Tensor:
        """min_i target-Q_i(s, a_taken) (...), or over the vocabulary (..., |V|); never has a gradient.
        `emb` is the LM's output embedding; heads tied to it score against their target copy."""
        h = h.to(next(self.target_q_heads.buffers()).dtype)  # fp32 targets under a bf16 model
        temb = self.target_embedding(emb)
        qs = [self.q_of(head, h, temb, actions) for head in self.target_q_heads]
        return qs[0] if len(qs) == 1 else torch.minimum(*qs)

    @torch.no_grad()
    def advantage(self, h: Tensor, emb: Tensor) -> Tensor:
        """min target-Q(s, ·) - V(s) over the vocabulary (B, |V|) for decoding states h (B, d); `emb` is the
        LM's output embedding."""
        return self.target_q(h, emb) - self.v(h).unsqueeze(-1)

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

    def __init__(self, d: int, vocab: int, two_qs: bool = True):
        super().__init__(d, vocab, two_qs)
        # The target copy of the LM's output embedding E (|V| x d, fp32 like the other targets); it
        # is set to E by `attach_embedding` and then moves only by Polyak averaging.
        self.register_buffer("target_emb", torch.zeros(vocab, d))
        self._emb: list[nn.Parameter] = []  # the live E, kept out of this module's parameters

    def attach_embedding(self, emb: nn.Parameter) -> None:
        if tuple(emb.shape) != (self.vocab, self.d):
            raise ValueError(f"output embedding of shape {tuple(emb.shape)}; the heads need {(self.vocab, self.d)}")
        self._emb = [emb]
        with torch.no_grad():
            self.target_emb.copy_(emb.detach())

    def target_embedding(self, emb: Tensor) -> Tensor:
        return self.target_emb

    def polyak_pairs(self) -> list[tuple[Tensor, Tensor]]:
        if not self._emb:
            raise RuntimeError("efficient heads without an output embedding: call attach_embedding first")
        return super().polyak_pairs() + [(self.target_emb, self._emb[0])]

    def make_q(self) -> nn.Module:
        return TiedQ(self.d, self.vocab)

    def q_lse(self, h: Tensor, emb: Tensor, actions: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        # The heads' queries in one matmul against E, reduced on the fly (no |V|-wide Q is kept).
        z = torch.cat([head.project(h) for head in self.q_heads])
        bias = torch.stack([head.bias for head in self.q_heads])
        taken, lse = lse_and_taken(z, emb.detach(), actions, bias)
        n = len(self.q_heads)
        return list(taken.chunk(n)), list(lse.chunk(n))

    def q_of(self, head: nn.Module, h: Tensor, emb: Tensor, actions: Tensor | None) -> Tensor:
        return head(h, emb.detach(), actions)

    @torch.no_grad()
    def advantage(self, h: Tensor, emb: Tensor) -> Tensor:
        # The target heads share the target copy of E: stack their queries and read it once
        # (decoding a few sequences is bound by reading |V| x d matrices, not by arithmetic).
        te = self.target_emb
        th = h.to(te.dtype)
        scores = (torch.cat([head.project(th) for head in self.target_q_heads]) @ te.T).split(h.shape[0])
        qs = [s + head.bias for s, head in zip(scores, self.target_q_heads, strict=True)]
        q = qs[0] if len(qs) == 1 else torch.minimum(*qs)
        return q - self.v(h).unsqueeze(-1)


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
