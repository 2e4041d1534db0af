"""Per-example numbers from one frozen forward pass over a data set, computed once and held by every process.

    values = per_example(fn, examples, collate, micro_batch_size, dist)   # float64 array [len(examples), k]

`fn(batch)` returns a [batch, k] tensor for a collated micro-batch on the device (DPO's and KTO's reference
log-probs: `dorl.engine.causal_lm.sequence_logps` of the model before its first step). Each process runs its
share of the examples, length-sorted into micro-batches and dealt round-robin as validation does (a ZeRO-3
forward is collective: every process runs as many batches, an empty share a batch that counts for nothing);
the shares are summed over the processes, so each one ends with every value.
"""

from __future__ import annotations

import numpy as np
import torch

from dorl import log as dlog
from dorl.engine.data import Examples, eval_batches


@torch.no_grad()
def per_example(fn, data: Examples, collate, micro_batch_size: int, dist, desc: str = "reference") -> np.ndarray:
    if len(data) == 0:
        return np.zeros((0, 0))
    out: np.ndarray | None = None
    batches = eval_batches(data.lengths, micro_batch_size, dist.rank, dist.world)
    with dlog.progress() as bar:
        task = bar.add_task(desc, total=len(batches))
        for idx in batches:
            batch = collate([data[int(i)] for i in (idx if idx is not None else [0])])
            values = fn({k: v.to(dist.device) if torch.is_tensor(v) else v for k, v in batch.items()})
            values = values.detach().double().cpu().numpy().reshape(len(values), -1)
            if out is None:
                out = np.zeros((len(data), values.shape[1]))
            if idx is not None:
                out[idx] = values
            bar.update(task, advance=1)
    if out is None:  # this process had no batch at all (world > number of batches)
        raise RuntimeError("per_example: no micro-batch ran on this process")
    if dist.world > 1:
        out = np.asarray(dist.all_sum(out.ravel().tolist())).reshape(out.shape)
    return out
