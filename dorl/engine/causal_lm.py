"""The causal-LM batches and the one loss seam every text method trains with.

    collate_causal(examples)                  right-padded `input_ids` and `labels` (-100: no loss there)
    token_nll(lm, input_ids, labels)          -log p of every labelled next token, and the sequence it belongs to
    sequence_logps(lm, input_ids, labels)     log p(labelled tokens | what precedes them), summed per sequence
    CausalLMLoss(lm)(input_ids, labels[, weight])   mean cross-entropy over the labelled tokens, each token
                                              weighted by its sequence's `weight` when given
    LMLoss(lm, fn)(**batch)                   any loss written as fn(lm, **batch) -> (loss, stats)

The transformer runs once; the output projection runs only where a label is, so the |V|-wide head (half of
distilgpt2's FLOPs per token) is not spent on context tokens the loss masks. A weighted loss (AWR) passes
`weight`; a preference loss (DPO, KTO) is a function on `sequence_logps`, the same log-probabilities TRL sums
over a completion (`labels` = the completion's tokens), trained as an `LMLoss`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100


def collate_causal(examples: list[dict], pad_id: int = 0) -> dict:
    """Right-pad `input_ids`; `labels` = the ids from `label_start` on (default 0), -100 elsewhere.

    The pad value is never seen: padding comes after every real token, and causal attention never
    lets a real token look right, so no attention mask is needed (which keeps SDPA's fast causal path).
    """
    longest = max(len(e["input_ids"]) for e in examples)
    ids = np.full((len(examples), longest), pad_id, dtype=np.int64)
    labels = np.full((len(examples), longest), IGNORE, dtype=np.int64)
    for i, e in enumerate(examples):
        seq = e["input_ids"]
        ids[i, : len(seq)] = seq
        start = int(e.get("label_start", 0))
        labels[i, start : len(seq)] = seq[start:]
    return {"input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels)}


def token_nll(lm, input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(-log p of each labelled next token in fp32, the row of `input_ids` it belongs to), flat, row-major."""
    hidden = lm.base_model(input_ids=input_ids, use_cache=False)[0]
    targets = labels[:, 1:]
    keep = targets != IGNORE
    logits = lm.get_output_embeddings()(hidden[:, :-1][keep]).float()
    rows = torch.arange(len(input_ids), device=input_ids.device)[:, None].expand_as(targets)[keep]
    return F.cross_entropy(logits, targets[keep], reduction="none"), rows


def sequence_logps(lm, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p of each row's labelled tokens, summed over the row (fp32; 0 for a row without labels)."""
    nll, rows = token_nll(lm, input_ids, labels)
    return -torch.zeros(len(input_ids), device=nll.device, dtype=nll.dtype).index_add(0, rows, nll)


class CausalLMLoss(nn.Module):
    """forward(input_ids, labels, weight=None) -> (mean cross-entropy over the labelled next tokens, stats).

    With `weight` (one number per row), each token's cross-entropy is multiplied by its row's weight before the
    mean over the batch's labelled tokens: the engine's step loss stays a mean over its target tokens."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, weight=None, **_) -> tuple[torch.Tensor, dict]:
        nll, rows = token_nll(self.lm, input_ids, labels)
        if weight is not None:
            nll = nll * weight.to(nll.dtype)[rows]
        return nll.sum() / max(len(nll), 1), {}


class LMLoss(nn.Module):
    """forward(**batch) -> fn(lm, **batch) = (loss, stats): a loss written as a function of the LM and a collated
    batch (DPO's and KTO's on `sequence_logps`), trained by the engine as `CausalLMLoss` is."""

    def __init__(self, lm, fn):
        super().__init__()
        self.lm = lm
        self.fn = fn

    def forward(self, **batch) -> tuple[torch.Tensor, dict]:
        return self.fn(self.lm, **batch)
