"""Target-Q heads follow the Q heads slowly: target <- (1 - alpha) * target + alpha * Q every N steps."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


@torch.no_grad()
def polyak_update(pairs: Iterable[tuple[Tensor, Tensor]], alpha: float) -> None:
    """In place, for each (target, source) pair. Computed in fp32 whatever the storage dtype."""
    for target, source in pairs:
        mixed = target.float().lerp_(source.float(), alpha)  # target + alpha * (source - target)
        target.copy_(mixed)


def is_sync_step(step: int, every: int) -> bool:
    """Whether optimizer step `step` (counted from 1) updates the targets: every `every` steps."""
    return every > 0 and step % every == 0
