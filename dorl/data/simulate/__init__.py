"""Synthetic dialogues in the exact raw formats of ABCD, MultiWOZ 2.2 and Taskmaster-3.

    simulate("abcd", 300, seed=42, out="sim/abcd")   # -> sim/abcd/abcd_v1.1.json.gz + SYNTHETIC.json

The output folder has the upstream layout, so `dorl data prepare --source DIR` reads it like the real
release. Every record carries `"synthetic": true` and the folder a `SYNTHETIC.json` marker (format,
count, seed, file checksums). Same (format, n, seed) -> same bytes.
"""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path

from dorl.errors import DataError

log = logging.getLogger("dorl.data")
FORMATS = {"abcd": "abcd", "multiwoz22": "multiwoz", "taskmaster3": "taskmaster"}


def simulate(fmt: str, n: int, seed: int, out: str | Path) -> Path:
    """Write `n` dialogues of format `fmt` under `out`; returns the folder."""
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if n < 1:
        raise DataError(f"simulate: the number of dialogues must be at least 1, got {n}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"simulate: {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    module = importlib.import_module(f"dorl.data.simulate.{FORMATS[fmt]}")
    module.write(n, seed, out)
    wall = time.perf_counter() - started
    log.info(
        "simulated %d %s dialogues (seed %d) into %s in %.1f s: %.0f dialogues/s", n, fmt, seed, out, wall, n / wall
    )
    return out
