"""Checkpoints under `<artifact>/checkpoints/`, written atomically, resumed exactly.

    checkpoints/latest                 the name of the newest complete checkpoint (written last)
    checkpoints/step-00000120/         ds/ (DeepSpeed: model, optimizer, scheduler), rng/rank<r>.json,
                                       trainer.json (step, epoch, batch index, best), logs/
    checkpoints/best-step-00000100/    the best weights so far by validation loss (keep_best)
    checkpoints/tokenizer/             the tokenizer the run started with

A checkpoint is written into `.tmp-<name>/`, renamed, synced to the store (S3), and only then does
`latest` point at it: a kill at any moment leaves the previous checkpoint in force. With an S3
output every node keeps its own copy (DeepSpeed's node-local storage) and uploads its files; a
fresh pod pulls them back before resuming.

Checkpoints are data, never code: anyone who can write to the bucket must not be able to run code in a
training pod. RNG states are JSON, and DeepSpeed's own `.pt` files are read with `weights_only=True`
(plain tensors and containers, plus the three DeepSpeed value classes its ZeRO files hold).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dorl.errors import StoreError
from dorl.store.location import atomic_write

log = logging.getLogger("dorl.train")

LATEST = "latest"
STATE = "trainer.json"
DS_TAG = "ds"


def rng_state() -> dict:
    """Every RNG's state as JSON-able lists (python, numpy, torch CPU and CUDA)."""
    version, internal, gauss = random.getstate()
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, key.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(key, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _ds_safe_globals() -> list:
    """The classes DeepSpeed 0.19's ZeRO / bf16 optimizer files pickle besides tensors: plain values."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def safe_load(path, map_location=None):
    """`torch.load` that refuses code: `weights_only=True`, DeepSpeed's value classes allowed."""
    import pickle
    import re

    try:
        with torch.serialization.safe_globals(_ds_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        why = f"it calls {m.group(1)}" if m else str(e).splitlines()[0][:200]
        raise StoreError(
            f"{path}: refused to load a checkpoint file that is not plain tensors and data ({why}); "
            "replace or delete this checkpoint"
        ) from None


def safe_checkpoint_loads(engine) -> None:
    """Make DeepSpeed read its checkpoint files through `safe_load` (weights only): its own
    TorchCheckpointEngine unpickles arbitrary objects, and every read of `load_checkpoint` goes through
    that engine, so replacing its `load` covers them all."""
    ce = engine.checkpoint_engine
    if ce is not None:
        ce.load = lambda path, map_location=None: safe_load(path, map_location)


def per_rank_file(path: str) -> bool:
    """A file one rank alone writes: its RNG state, DeepSpeed's ZeRO shards (`*zero_pp_rank_<r>_*`)."""
    return "/rng/" in path or "zero_pp_rank_" in path.rsplit("/", 1)[-1]


def _size(path: Path | None) -> int:
    if path is None or not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def verify_and_sync(folder: Path) -> None:
    """fsync every file and folder of a finished checkpoint, then check each `.pt` is a whole zip archive
    (torch's format: its central directory is written last, so a cut-short file has none)."""
    for p in sorted(folder.rglob("*"), reverse=True):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if p.is_file() and p.suffix == ".pt":
            try:
                with zipfile.ZipFile(p) as z:
                    z.namelist()
            except (zipfile.BadZipFile, OSError) as e:
                raise StoreError(
                    f"{p}: the checkpoint file is incomplete ({e}); the previous checkpoint stays in force"
                ) from None
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Checkpointer:
    """Save / find / load checkpoints. Every rank calls `save` and `load` (they are collective)."""

    def __init__(
        self,
        root: Path,
        dist,
        node_local: bool,
        keep: int,
        sync: Callable[..., None] = lambda prefix, only=None: None,
        remove: Callable[[str], None] | None = None,
    ):
        self.root = root  # <workdir>/checkpoints
        self.dist = dist
        self.node_local = node_local
        # Who renames and uploads: one process per node when each node has its own disk, else rank 0.
        self.finalizer = dist.local_main if node_local else dist.main
        self.keep = max(1, keep)
        self.sync = sync  # sync("checkpoints/<name>", only=predicate): upload a folder or a file to the store
        self.remove = remove or (lambda prefix: shutil.rmtree(self.root.parent / prefix, ignore_errors=True))

    # ---------------------------------------------------------------- finding
    def find(self) -> Path | None:
        """The newest complete checkpoint, decided by rank 0 for every rank (collective)."""
        name = None
        if self.dist.main and (self.root / LATEST).exists():
            name = (self.root / LATEST).read_text().strip()
            if not (self.root / name / STATE).exists():
                log.warning("checkpoints/%s names %s, which is incomplete or missing: starting afresh", LATEST, name)
                name = None
        name = self.dist.broadcast(name)
        return self.root / name if name else None

    # ---------------------------------------------------------------- saving
    def _publish(self, tmp: Path, name: str) -> None:
        """Rename a finished folder into place and upload it (finalizer ranks): rank 0's node uploads all of
        it, the other nodes only their ranks' own files (the rest are copies of rank 0's)."""
        final = self.root / name
        if final.exists():  # left by a run killed after the rename but before `latest` moved
            shutil.rmtree(final)
        os.replace(tmp, final)
        self.sync(f"checkpoints/{name}", None if self.dist.main else per_rank_file)

    def save(self, engine, state: dict, write_extra: Callable[[Path], None]) -> str:
        """DeepSpeed state, RNG of every rank, the trainer state and logs (`write_extra`, rank 0).

        Written, fsynced and verified (every `.pt` a whole zip archive) before `latest` points at it: a
        checkpoint cut short (a full disk, a kill) is never resumed from. A full disk is a StoreError naming
        the folder and about how much space the checkpoint needs."""
        name = f"step-{state['step']:08d}"
        tmp = self.root / f".tmp-{name}"
        if self.finalizer:
            shutil.rmtree(tmp, ignore_errors=True)
        self.dist.barrier()
        try:
            engine.save_checkpoint(str(tmp), tag=DS_TAG, client_state={}, save_latest=False)
            rng_file = tmp / "rng" / f"rank{self.dist.rank}.json"
            rng_file.parent.mkdir(parents=True, exist_ok=True)
            rng_file.write_text(json.dumps(rng_state()))
            if self.dist.main:
                write_extra(tmp)
                (tmp / STATE).write_text(json.dumps(state, indent=2))
            if self.finalizer:
                verify_and_sync(tmp)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            written = _size(tmp)
            shutil.rmtree(tmp, ignore_errors=True)  # give the space back
            previous = self.find_local()
            need = max(written, _size(previous) if previous else 0)
            free = shutil.disk_usage(self.root).free
            raise StoreError(
                f"no space left on the device of {self.root}: checkpoint {name} needs about {_mib(need)} "
                f"({_mib(free)} free); free some space or write the output elsewhere"
            ) from None
        self.dist.barrier()
        if self.finalizer:
            self._publish(tmp, name)
        self.dist.barrier()
        if self.dist.main:
            atomic_write(self.root / LATEST, name.encode())
            self.sync(f"checkpoints/{LATEST}")
        self.dist.barrier()
        if self.finalizer:
            self._prune(state)
        if self.dist.main:
            log.info("checkpoint %s saved", name)
        return name

    def find_local(self) -> Path | None:
        """The checkpoint `latest` names on this machine, if complete (no collective)."""
        if not (self.root / LATEST).exists():
            return None
        path = self.root / (self.root / LATEST).read_text().strip()
        return path if (path / STATE).exists() else None

    def save_folder(self, name: str, write: Callable[[Path], None]) -> None:
        """A folder written by rank 0 alone (the best weights, the tokenizer), atomically."""
        tmp = self.root / f".tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write(tmp)
        self._publish(tmp, name)

    def _prune(self, state: dict) -> None:
        """Keep the new checkpoint and the keep-1 before it; drop later ones (a killed run's leftovers), the
        best weights no longer best, and unfinished folders."""
        current = f"step-{state['step']:08d}"
        steps = sorted(p.name for p in self.root.glob("step-*") if p.is_dir() and p.name != current)
        earlier = [s for s in steps if s < current]
        old = earlier[: max(0, len(earlier) - (self.keep - 1))] + [s for s in steps if s > current]
        old += [p.name for p in self.root.glob("best-step-*") if p.name != state.get("best_dir")]
        old += [p.name for p in self.root.glob(".tmp-*")]
        for name in old:
            if self.dist.main:
                self.remove(f"checkpoints/{name}")  # local and in the store
            else:
                shutil.rmtree(self.root / name, ignore_errors=True)

    # ---------------------------------------------------------------- loading
    def load(self, engine, path: Path) -> dict:
        """Restore DeepSpeed state and this rank's RNG; return the trainer state (rank 0's, on every rank)."""
        safe_checkpoint_loads(engine)
        loaded, _ = engine.load_checkpoint(
            str(path), tag=DS_TAG, load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if loaded is None:
            raise RuntimeError(f"DeepSpeed could not load the checkpoint in {path}")
        state = json.loads((path / STATE).read_text()) if self.dist.main else None
        state = self.dist.broadcast(state)
        rng_file = path / "rng" / f"rank{self.dist.rank}.json"
        if rng_file.exists():
            try:
                set_rng_state(json.loads(rng_file.read_text()))
            except (ValueError, TypeError, KeyError) as e:
                raise StoreError(f"{rng_file}: not a dorl RNG state ({e})") from None
        else:  # another world size than the saved run: a fresh, still deterministic, stream
            log.warning("no RNG state for rank %d in %s: reseeding", self.dist.rank, path)
            torch.manual_seed(state["seed"] + state["step"] * 1000 + self.dist.rank)
        return state
