"""`ILQLModel`: an HF causal LM (the policy) plus the ILQL heads on its final hidden states.

The transformer runs once; the LM head and the value heads are then applied only where they are
needed. In training those are the *states* of a response: position t-1 for every response token
t (the action taken in that state is token t). In decoding (`dorl.generate` with ILQL's adjustment,
`dorl.ilql.decode.Advantage`) it is the last position, with the KV cache carrying the rest.

Works with any `AutoModelForCausalLM` whose logits are `get_output_embeddings()` applied to the
`base_model`'s last hidden state (GPT-2, OPT, Llama, Mistral, …).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from dorl.ilql.heads import HeadsKind, QHeads, make_heads
from dorl.ilql.lse import lse_and_taken


@dataclass
class ILQLMeta:
    """What decoding and logging need to know besides the weights (saved as ilql_config.json)."""

    heads: HeadsKind = "efficient"
    two_qs: bool = True
    return_mean: float = 0.0  # returns were standardised as (R - mean) / std before training
    return_std: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the training hyperparameters

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ILQLOutput:
    """Values at the N action states of a batch, flattened row by row (each row's states in order)."""

    logits: Tensor | None  # (N, |V|) LM logits (tests; the model gives ce instead)
    v: Tensor  # (N,) V(s_t)
    q: list[Tensor]  # per Q head, (N,) Q_i(s_t, a_t)
    q_all: list[Tensor] | None  # per Q head, (N, |V|) Q_i(s_t, ·) (tests; the model gives q_lse instead)
    target_q: Tensor  # (N,) min_i target-Q_i(s_t, a_t), no gradient
    actions: Tensor  # (N,) a_t = the token that follows the state
    rows: Tensor  # (N,) batch row of each state
    q_lse: list[Tensor] | None = None  # per Q head, (N,) logsumexp_a Q_i(s_t, a) (what CQL needs of q_all)
    ce: Tensor | None = None  # (N,) the LM's cross-entropy at a_t (what the loss needs of logits)


class ILQLModel(nn.Module):
    def __init__(self, lm: nn.Module, meta: ILQLMeta | None = None):
        super().__init__()
        self.lm = lm
        self.meta = meta or ILQLMeta()
        vocab, d = self.lm_head.weight.shape
        self.heads: QHeads = make_heads(self.meta.heads, d, vocab, self.meta.two_qs)
        self.heads.to(self.lm_head.weight.device)
        self.heads.attach_embedding(self.lm_head.weight)  # efficient heads: their target copy starts as E

    @property
    def lm_head(self) -> nn.Module:
        return self.lm.get_output_embeddings()

    def hidden(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache: Any = None,
        use_cache: bool = False,
    ) -> tuple[Tensor, Any]:
        """Final hidden states (B, T, d) and the KV cache (when `use_cache`)."""
        out = self.lm.base_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
        )
        return out.last_hidden_state, out.cache if use_cache else None

    def forward(
        self, input_ids: Tensor, state_mask: Tensor, attention_mask: Tensor | None = None, cql: bool = True
    ) -> ILQLOutput:
        """Training forward. `state_mask` (B, T) marks the positions whose next token is an action
        (a response token); the last column must be False. A right-padded batch needs no
        `attention_mask`: causal attention never lets a real token see the padding after it, and
        without a mask SDPA keeps its fast causal path (as the TF methods' loss does)."""
        if state_mask[:, -1].any():
            raise ValueError("state_mask marks the last position, which has no next token")
        h, _ = self.hidden(input_ids, attention_mask)
        rows, cols = state_mask.nonzero(as_tuple=True)  # row-major: each row's states in order
        hs = h[rows, cols]  # (N, d)
        actions = input_ids[rows, cols + 1]
        emb = self.lm_head.weight
        q_lse = None
        if cql:  # Q over the vocabulary is needed anyway: the actions' values and the log-sum-exps from it
            q, q_lse = self.heads.q_lse(hs, emb, actions)
        else:
            q = self.heads.q(hs, emb, actions)
        logits, ce = None, None
        # CE(logits, a) without keeping the |V|-wide logits; under ZeRO-3 (ds_id) the LM head's own
        # forward must run, which gathers its partitioned weight
        if isinstance(self.lm_head, nn.Linear) and not hasattr(self.lm_head.weight, "ds_id"):
            taken, lse = lse_and_taken(hs, self.lm_head.weight, actions, self.lm_head.bias)
            ce = lse - taken
        else:
            logits = self.lm_head(hs)
        return ILQLOutput(
            logits=logits,
            v=self.heads.v(hs),
            q=q,
            q_all=None,
            q_lse=q_lse,
            ce=ce,
            target_q=self.heads.target_q(hs, emb, actions),
            actions=actions,
            rows=rows,
        )

    @torch.no_grad()
    def response_values(self, input_ids: Tensor, attention_mask: Tensor, last: Tensor) -> Tensor:
        """min target-Q(s, a) of the token at position `last[b]` of each row (B,): the value the
        model gives to the whole response when that token ends it."""
        h, _ = self.hidden(input_ids, attention_mask, self.position_ids(attention_mask))
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        return self.heads.target_q(h[rows, last - 1], self.lm_head.weight, input_ids[rows, last]).float()

    @staticmethod
    def position_ids(attention_mask: Tensor) -> Tensor:
        """Positions that skip left padding, as HF `generate` computes them."""
        return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
