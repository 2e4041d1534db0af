"""Benchmark of the data stage: `simulate` and `prepare` at 10,000 dialogues per format.

Each measurement runs in a fresh Python process, so its peak resident memory (getrusage ru_maxrss)
is its own; `baseline_rss_mib` is that process's memory after imports, before the work.

    python scripts/bench/data.py            # 10,000 dialogues per format
    python scripts/bench/data.py --quick    # 1,000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

FORMATS = ("abcd", "multiwoz22", "taskmaster3")


REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: prints one JSON line with wall time and memory.
CHILD = """
import json, resource, sys, time
from pathlib import Path
step, fmt, n, src, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
from dorl.config import load
from dorl.stages.data import prepare
from dorl.data.simulate import simulate
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
r = {"baseline_rss_mib": rss()}
t = time.perf_counter()
if step == "simulate":
    simulate(fmt, n, 42, src)
    r["raw_mib"] = sum(p.stat().st_size for p in Path(src).rglob("*") if p.is_file()) / 2**20
else:
    art = prepare(load(), dataset=fmt, source=src, out_uri=out).artifact
    r["examples"] = art.info["examples"]
r["wall_s"] = time.perf_counter() - t
r["peak_rss_mib"] = rss()
print(json.dumps(r))
"""


def _in_child(step: str, fmt: str, n: int, src: str, out: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.setdefault("DORL_LOG_LEVEL", "WARNING")
    res = subprocess.run(
        [sys.executable, "-c", CHILD, step, fmt, str(n), src, out], capture_output=True, text=True, env=env
    )
    if res.returncode:
        raise RuntimeError(f"{step} {fmt} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list[dict]:
    """One row per (step, format): dialogues/s, wall time and peak memory."""
    n = 1_000 if quick else 10_000
    rows = []
    with tempfile.TemporaryDirectory(prefix="dorl-bench-data-") as tmp:
        for fmt in FORMATS:
            src, out = f"{tmp}/{fmt}/raw", f"{tmp}/{fmt}/data"
            sim = _in_child("simulate", fmt, n, src, out)
            prep = _in_child("prepare", fmt, n, src, out)
            for step, r in (("simulate", sim), ("prepare", prep)):
                row = {
                    "bench": f"data.{step}",
                    "format": fmt,
                    "dialogues": n,
                    "dialogues_per_s": round(n / r["wall_s"], 1),
                    "wall_s": round(r["wall_s"], 2),
                    "peak_rss_mib": round(r["peak_rss_mib"], 1),
                    "baseline_rss_mib": round(r["baseline_rss_mib"], 1),
                }
                if step == "simulate":
                    row["raw_mib"] = round(r["raw_mib"], 1)
                else:
                    row["examples"] = r["examples"]
                    row["examples_per_s"] = round(r["examples"] / r["wall_s"], 1)
                rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 dialogues per format instead of 10,000")
    ap.add_argument("--json", action="store_true", help="print JSON rows")
    args = ap.parse_args()
    rows = run(args.quick)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"# data stage benchmark ({platform.machine()}, {os.cpu_count()} CPUs)")
    print("| step | format | dialogues | dialogues/s | wall s | peak RSS MiB (baseline) | notes |")
    print("|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        notes = f"{r['raw_mib']} MiB raw" if "raw_mib" in r else f"{r['examples']:,} examples"
        print(
            f"| {r['bench']} | {r['format']} | {r['dialogues']:,} | {r['dialogues_per_s']:,.0f} | {r['wall_s']} | "
            f"{r['peak_rss_mib']:.0f} ({r['baseline_rss_mib']:.0f}) | {notes} |"
        )


if __name__ == "__main__":
    main()
