"""Processes: one CPU process without any launcher, or N per node under torchrun / the DeepSpeed launcher.

Launchers set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; a plain `dorl train` gets
single-process defaults (and a free port), so DeepSpeed never goes looking for MPI. The process
group is DeepSpeed's (NCCL on GPU, gloo on CPU); a second gloo group with a long timeout carries the
control messages (go / skip / error) and the waits around the store's commit, which can outlast
NCCL's timeout while rank 0 uploads a model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from dataclasses import dataclass
from datetime import timedelta

CONTROL_TIMEOUT = timedelta(hours=4)
log = logging.getLogger("dorl.train")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def world_size_from_env() -> int:
    """The number of processes the launcher started (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


DEFAULTS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@contextlib.contextmanager
def rendezvous_env():
    """Single-process defaults while training when no launcher set the rendezvous variables, removed
    afterwards (so a `dorl` started from this process later does not take them for a launcher's)."""
    added = [k for k in DEFAULTS if k not in os.environ]
    defaults = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for k in added:
        os.environ[k] = defaults[k] if k in defaults else str(_free_port())
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


@dataclass
class Dist:
    rank: int
    world: int
    local_rank: int
    device: object  # torch.device
    control: object = None  # gloo process group for control messages

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def local_main(self) -> bool:
        return self.local_rank == 0

    def barrier(self) -> None:
        import torch.distributed as td

        if self.world > 1:
            td.barrier(group=self.control)

    def broadcast(self, obj=None):
        """Rank 0's `obj` on every rank (picklable objects)."""
        import torch.distributed as td

        if self.world == 1:
            return obj
        box = [obj]
        td.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def all_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks of a few numbers (float64 on the control group: exact for counts)."""
        import torch
        import torch.distributed as td

        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        td.all_reduce(t, group=self.control)
        return t.tolist()


def _extension_cache(cuda: bool) -> None:
    """DeepSpeed's process group on CPU JIT-compiles a C++ extension, its shared-memory allreduce
    (deepspeed_shm_comm, a minute or more): needless for one process, which never reduces across processes, so
    it is skipped there. Several processes build it once into a folder of this venv (TORCH_EXTENSIONS_DIR,
    default <venv>/torch_extensions: venvs sharing ~/.cache would rebuild it for each other), after a log line."""
    if cuda:
        return
    import deepspeed.ops

    if world_size_from_env() == 1:
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        return
    cache = os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(sys.prefix, "torch_extensions"))
    log.info("DeepSpeed: loading its CPU shared-memory allreduce (built once into %s: minutes the first time)", cache)


def setup() -> Dist:
    """Initialise the process group once per process (DeepSpeed's), on GPU when there is one.
    Call inside `rendezvous_env()`."""
    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    import torch.distributed as td

    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    _extension_cache(cuda)
    with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed prints its op builds; stdout is for results
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", verbose=False)  # idempotent
    world = td.get_world_size()
    control = None
    if world > 1:
        control = td.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    return Dist(rank=td.get_rank(), world=world, local_rank=local_rank, device=device, control=control)
