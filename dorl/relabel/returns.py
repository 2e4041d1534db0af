"""Returns: rewards cut into bins.

With the default 2 bins the return is the reference's binary one: 1 if reward > threshold else 0.
With N > 2 bins, edges e_1 < … < e_{N-1} (`relabel.return_edges`, default threshold*k/(N-1)) give
return = #{k : reward > e_k}, so the top bin is always "reward > threshold" when the default edges
are used. The human response (candidate 0) always gets the top return. (The tokens DT writes for
the returns are DT's: `dorl.methods.dt`.)
"""

from __future__ import annotations

import numpy as np

from dorl.config import RelabelConfig


def edges(cfg: RelabelConfig) -> list[float]:
    """The N-1 bin edges (`RelabelConfig.check` has refused edges that do not fit the bins)."""
    if cfg.return_edges is not None:
        return [float(x) for x in cfg.return_edges]
    bins = cfg.return_bins
    return [cfg.threshold * k / (bins - 1) for k in range(1, bins)]


def to_returns(rewards, bin_edges: list[float]) -> np.ndarray:
    """Return bin of each reward: how many edges it exceeds."""
    r = np.asarray(rewards, dtype=np.float64)
    return (r[:, None] > np.asarray(bin_edges, dtype=np.float64)[None, :]).sum(axis=1).astype(np.int64)
