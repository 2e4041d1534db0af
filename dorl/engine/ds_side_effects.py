"""What DeepSpeed does to the process beyond one training run, undone: the `linear` ZeRO-3 leaves patched, the
build lock a process killed while JIT-compiling DeepSpeed's CPU op leaves behind."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import torch

log = logging.getLogger("dorl.train")


@contextlib.contextmanager
def torch_linear_kept():
    """Give `torch.nn.functional.linear` back on the way out. ZeRO-3 replaces it process-wide with its own
    (mathematically equal, numerically not) and leaves it so; a later stage in the same process
    (`dorl pipeline`, tests) would otherwise score and decode with different float rounding."""
    linear = torch.nn.functional.linear
    try:
        yield
    finally:
        torch.nn.functional.linear = linear


STALE_LOCK_S = 600.0  # a JIT build of DeepSpeed's CPU ops takes about a minute here


def clear_stale_build_locks(now: float | None = None) -> list[Path]:
    """Remove torch-extension build locks left by a killed process.

    DeepSpeed JIT-builds its CPU communication op through torch's cpp_extension, which holds a `lock` file in
    the build folder while compiling and waits, silently and forever, while one exists. A run killed mid-build
    leaves it behind; it is stale when the build finished anyway (the `.so` is there) or older than
    STALE_LOCK_S (no build takes that long)."""
    import os

    from torch.utils.cpp_extension import get_default_build_root

    now = time.time() if now is None else now
    removed = []
    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())
    for lock in sorted({*root.glob("*/lock"), *root.glob("*/*/lock")}):
        try:
            built = any(lock.parent.glob("*.so"))
            if built or now - lock.stat().st_mtime > STALE_LOCK_S:
                lock.unlink()
                removed.append(lock)
                log.warning("removed a stale build lock %s (left by a process killed while compiling)", lock)
        except FileNotFoundError:
            continue
    return removed
