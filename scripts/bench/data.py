"""Benchmark of the data stage: `simulate` and `prepare` at 10,000 dialogues per format, and preparing 100,000 of
your own conversations in the messages format against the same 100,000 in ABCD's raw format.

Each measurement runs in a fresh Python process, so its peak resident memory (getrusage ru_maxrss)
is its own; `baseline_rss_mib` is that process's memory after imports, before the work.

Your own conversations: the ABCD simulator's dialogues (invented), written twice: as ABCD's raw file
(`simulate`) and as a JSON Lines file of `{"id", "split", "messages": [{role, content}, ...]}` rows (customer ->
user, agent -> assistant, action rows left out as ABCD's parser leaves them; the split as the raw file's keys), so
both prepare into byte-identical data artifacts (checked) and their rates compare like for like.

    python scripts/bench/data.py            # 10,000 dialogues per format; 100,000 conversations
    python scripts/bench/data.py --quick    # 1,000; still 100,000 conversations (the figure issue 23 asks for)
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
OWN = 100_000  # conversations of your own, in both modes


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
elif step == "messages":  # the simulator's ABCD dialogues as messages rows, streamed to one JSON Lines file
    from dorl.data.simulate.abcd import conversation
    from dorl.data.simulate.common import dialogue_rng, split_counts
    role = {"customer": "user", "agent": "assistant"}
    with open(src, "w") as f:
        i = 0
        for split, k in split_counts(n).items():  # the raw file's splits, in its order
            for j in range(i, i + k):
                c = conversation(dialogue_rng("abcd", 42, j), 100_000 + j)
                msgs = [{"role": role[s], "content": t} for s, t in c["original"] if s in role]
                row = {"id": str(c["convo_id"]), "split": {"dev": "validation"}.get(split, split), "messages": msgs}
                f.write(json.dumps(row) + "\\n")
            i += k
    r["raw_mib"] = Path(src).stat().st_size / 2**20
else:
    art = prepare(load(), dataset=fmt, source=src, out_uri=out).artifact
    r["examples"] = art.info["examples"]
    r["files"] = art.files
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
        rows += _own(tmp)
    return rows


def _own(tmp: str) -> list[dict]:
    """100,000 conversations of your own (messages JSON Lines) vs the same dialogues in ABCD's raw file."""
    src, msgs = f"{tmp}/own/abcd-raw", f"{tmp}/own/chats.jsonl"
    Path(f"{tmp}/own").mkdir()
    _in_child("simulate", "abcd", OWN, src, "")
    made = _in_child("messages", "-", OWN, msgs, "")
    abcd = _in_child("prepare", "abcd", OWN, src, f"{tmp}/own/abcd-data")
    mine = _in_child("prepare", "own", OWN, msgs, f"{tmp}/own/own-data")
    if abcd["files"] != mine["files"]:
        raise RuntimeError("the messages rows and the ABCD file of the same dialogues prepared differently")
    out = []
    for fmt, r in (("abcd (same dialogues)", abcd), ("messages jsonl", mine)):
        out.append(
            {
                "bench": "data.prepare",
                "format": fmt,
                "dialogues": OWN,
                "dialogues_per_s": round(OWN / r["wall_s"], 1),
                "wall_s": round(r["wall_s"], 2),
                "peak_rss_mib": round(r["peak_rss_mib"], 1),
                "baseline_rss_mib": round(r["baseline_rss_mib"], 1),
                "examples": r["examples"],
                "examples_per_s": round(r["examples"] / r["wall_s"], 1),
            }
        )
    out[-1]["raw_mib"] = round(made["raw_mib"], 1)
    out[-1]["same_artifact"] = True
    return out


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
        notes = f"{r['raw_mib']} MiB raw" if "examples" not in r else f"{r['examples']:,} examples"
        print(
            f"| {r['bench']} | {r['format']} | {r['dialogues']:,} | {r['dialogues_per_s']:,.0f} | {r['wall_s']} | "
            f"{r['peak_rss_mib']:.0f} ({r['baseline_rss_mib']:.0f}) | {notes} |"
        )


if __name__ == "__main__":
    main()
