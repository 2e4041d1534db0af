"""The causal-LM batches and loss every text method trains with.

`CausalLMLoss` runs the transformer, then the output projection only where a label is, so the
|V|-wide head (half of distilgpt2's FLOPs per token) is not spent on context tokens the loss masks.
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


class CausalLMLoss(nn.Module):
    """forward(input_ids, labels) -> (mean cross-entropy over the labelled next tokens, stats)."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, **_) -> tuple[torch.Tensor, dict]:
        hidden = self.lm.base_model(input_ids=input_ids, use_cache=False)[0]
        targets = labels[:, 1:]
        keep = targets != IGNORE
        logits = self.lm.get_output_embeddings()(hidden[:, :-1][keep]).float()
        loss = F.cross_entropy(logits, targets[keep], reduction="sum") / keep.sum().clamp(min=1)
        return loss, {}
