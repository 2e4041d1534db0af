"""Target-Q heads follow the Q heads slowly: target <- (1 - alpha) * target + alpha * Q every N steps.

The rate is scaled to the run unless given (`ilql.polyak_alpha: auto`, `auto_alpha`): the targets average the Q
heads over a time constant of 5% of the run's steps, alpha = every / (0.05 * steps). trlx's 0.001 every 5 steps
is that rate at 100,000 steps; on the demo's ~1,000 steps it left the targets 82% their random initial weights,
so the heads the decoding reads (min target-Q - V) were mostly untrained. A given number is used as is.
"""

from __future__ import annotations

import math
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


TIME_CONSTANT = 0.05  # auto: the targets' time constant, as a share of the run's steps


def auto_alpha(steps: int, every: int, fraction: float = TIME_CONSTANT) -> float:
    """The Polyak rate whose time constant (every / alpha steps) is `fraction` of `steps` (at most 1)."""
    return min(1.0, every / max(fraction * steps, 1e-9))


# A run "moves its targets much" when, holding the Q heads fixed, the targets would put at least this
# weight on them (and at most 1 - it on their initial, random values): 1 - (1 - alpha)^(steps // every).
MOVED = 0.5


def target_weight(steps: int, alpha: float, every: int) -> float:
    """The weight on the trained heads after `steps`: 1 - (1 - alpha)^syncs, syncs = steps // every."""
    syncs = steps // every if every > 0 else 0
    return 1.0 - (1.0 - alpha) ** syncs


def steps_to_move(alpha: float, every: int, bound: float = MOVED) -> int | None:
    """The fewest steps whose target weight reaches `bound` (None: the targets never move)."""
    if every <= 0 or alpha <= 0:
        return None
    if alpha >= 1:
        return every
    return every * math.ceil(math.log(1 - bound) / math.log(1 - alpha))


def schedule(steps: int, alpha: float | str, every: int) -> dict:
    """What a run's Polyak schedule does to the targets, for its log and manifest (`alpha` "auto": `auto_alpha`)."""
    setting = alpha
    if alpha == "auto":
        alpha = round(auto_alpha(steps, every), 8)
    weight = target_weight(steps, alpha, every)
    return {
        "alpha": alpha,
        "setting": setting,
        "every": every,
        "steps": steps,
        "target_weight": round(weight, 6),
        "bound": MOVED,
        "steps_to_bound": steps_to_move(alpha, every),
        "too_short": weight < MOVED,
    }
