"""`make bench`: every benchmark of the project side by side, in one run, into one results file.

    python scripts/bench/run.py [--quick] [--only data,train,…] [--out build/bench] [--docs]
    python scripts/bench/run.py --gpu      # the GPU figures instead (scripts/bench/gpu.py: bf16, MFU, ~3 minutes)

Each module in scripts/bench/ exposes `run(quick: bool) -> list[dict]`; every row names the figure,
dorl's value, the comparison's value and their ratio, the ratio of each alternating round (the spread)
and, where the project set one, the goal and whether it is met. The results go to `<out>/results.json`
and `<out>/results.md` with the hardware, the load average and library versions; `scripts/bench/readme.py`
turns results.json into the table of docs/performance.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo, for `import dorl`
sys.path.insert(0, str(Path(__file__).resolve().parent))

BENCHES = ("data", "train", "prefs", "relabel", "ilql", "lora")


def _data(rows):
    for r in rows:
        yield {
            "figure": f"{r['bench'].split('.')[1]} {r['format']}, dialogues/s",
            "dorl": r["dialogues_per_s"],
            "notes": f"{r['dialogues']:,} dialogues, peak RSS {r['peak_rss_mib']:.0f} MiB",
        }
    own = {r["format"]: r for r in rows if r.get("dialogues") == 100_000 and r["bench"] == "data.prepare"}
    if len(own) == 2:  # issue 23: your own conversations at least as fast as ABCD's raw file
        mine, abcd = own["messages jsonl"], own["abcd (same dialogues)"]
        yield {
            "figure": "prepare 100,000 messages-format conversations vs the same dialogues as ABCD's file, dialogues/s",
            "dorl": mine["dialogues_per_s"],
            "baseline": abcd["dialogues_per_s"],
            "ratio": mine["dialogues_per_s"] / abcd["dialogues_per_s"],
            "goal": (">=", 1.0),
            "notes": f"peak RSS {mine['peak_rss_mib']:.0f} / {abcd['peak_rss_mib']:.0f} MiB; "
            f"{mine['raw_mib']} MiB of JSON Lines; byte-identical artifacts",
        }


# The goals of issue 18 (and the earlier ones docs/performance.md states), on the ratio dorl / comparison.
TRAIN_GOALS = {("trl", "lines"): (">=", 1.3), ("trl", "tf"): (">=", 1.0), ("hf", "lines"): (">=", 1.5),
               ("hf", "tf"): (">=", 1.0)}  # fmt: skip


def _train(rows):
    for r in rows:
        kind = "lines" if "method lines" in r["name"] else "tf"
        yield {
            "figure": f"{r['name'].removeprefix('train: ')}, {r['unit']}",
            "dorl": r["dorl"],
            "baseline": r["reference"],
            "ratio": r["ratio"],
            "round_ratios": r.get("round_ratios", []),
            "goal": TRAIN_GOALS.get((r.get("peer", "hf"), kind)),
            "notes": f"{r['model']}; {r['peer_setup']}; medians {r['dorl_median']:,} / {r['reference_median']:,}; "
            f"real tokens per step {r['real_tokens_per_step'][0]:,} / {r['real_tokens_per_step'][1]:,}"
            + (f"; MFU {r['dorl_mfu']:.1%}" if r.get("dorl_mfu") else ""),
        }


def _prefs(rows):
    """dorl's dpo and kto vs TRL's DPOTrainer and KTOTrainer (issue 25's goal: >= 1.3x each)."""
    for r in rows:
        first = r["first_batch_loss"]
        yield {
            "figure": f"{r['name'].removeprefix('train: ')}, {r['unit']}",
            "dorl": r["dorl"],
            "baseline": r["reference"],
            "ratio": r["ratio"],
            "round_ratios": r.get("round_ratios", []),
            "goal": (">=", 1.3),
            "notes": f"{r['model']}; {r['peer_setup']}; first-batch loss {first['dorl']:.6f} / {first['trl']:.6f}; "
            f"medians {r['dorl_median']:,} / {r['reference_median']:,}; real tokens per step "
            f"{r['real_tokens_per_step'][0]:,} / {r['real_tokens_per_step'][1]:,}"
            + (f"; MFU {r['dorl_mfu']:.1%}" if r.get("dorl_mfu") else ""),
        }


def _per_round(a: list[float], b: list[float]) -> list[float]:
    """Per-round ratio of speeds from per-round wall times: b's time / a's time."""
    return [round(y / x, 3) for x, y in zip(a, b, strict=True)]


def _relabel(rows):
    by = {(r["bench"], r["way"]): r for r in rows}
    ref, ours = by[("relabel", "reference (one context at a time)")], by[("relabel", "dorl")]
    yield {
        "figure": "relabel pairs/s vs one context at a time",
        "dorl": ours["pairs_per_s"],
        "baseline": ref["pairs_per_s"],
        "ratio": ours["pairs_per_s"] / ref["pairs_per_s"],
        "round_ratios": _per_round(ours.get("round_seconds", []), ref.get("round_seconds", [])),
        "goal": (">=", 5.0),
        "notes": f"{ours['contexts']} contexts, {ours['model']}; same candidates: {ours['same_candidates']}; "
        f"{ours['hardware']}",
    }
    hf = by.get(("relabel", "dorl with relabel.generator=hf (before)"))
    if hf:
        split = "generation {generate_s:.2f} s + scoring {score_s:.2f} s"
        yield {
            "figure": "relabel pairs/s, after vs before (relabel.generator=dorl vs hf, whole chunk)",
            "dorl": ours["pairs_per_s"],
            "baseline": hf["pairs_per_s"],
            "ratio": ours["pairs_per_s"] / hf["pairs_per_s"],
            "round_ratios": _per_round(ours.get("round_seconds", []), hf.get("round_seconds", [])),
            "notes": f"after: {split.format(**ours)}; before: {split.format(**hf)}",
        }
    for fam in sorted({r["bench"] for r in rows if r["bench"].startswith("relabel-")}):  # relabel-llama: #24
        ref, ours = by[(fam, "reference (one context at a time)")], by[(fam, "dorl")]
        yield {
            "figure": f"relabel pairs/s vs one context at a time, {fam.removeprefix('relabel-')}-shaped model",
            "dorl": ours["pairs_per_s"],
            "baseline": ref["pairs_per_s"],
            "ratio": ours["pairs_per_s"] / ref["pairs_per_s"],
            "round_ratios": _per_round(ours.get("round_seconds", []), ref.get("round_seconds", [])),
            "goal": (">=", 5.0),
            "notes": f"{ours['contexts']} contexts, {ours['model']}; same candidates: {ours['same_candidates']}",
        }
    bs = {r["way"]: r for r in rows if r["bench"] == "bertscore"}
    if bs:
        d, b = bs["dorl batched scorer"], bs["bert-score defaults, one call"]
        yield {
            "figure": "BERTScore pairs/s vs bert-score defaults",
            "dorl": d["pairs_per_s"],
            "baseline": b["pairs_per_s"],
            "ratio": d["pairs_per_s"] / b["pairs_per_s"],
            "round_ratios": _per_round(d.get("round_seconds", []), b.get("round_seconds", [])),
            "notes": d["model"],
        }


ILQL_GOALS = {"ILQL train step s (efficient heads) vs TF step": ("<=", 1.5),
              "ILQL decoding ms per new token (beta 1, efficient heads) vs HF greedy": ("<=", 1.5)}  # fmt: skip


def _ilql(rows):
    for r in rows:
        yield {**r, "goal": ILQL_GOALS.get(r["figure"])}


# Each benchmark's own rows -> the common shape (figure, dorl, baseline, ratio, round_ratios, goal, notes).
NORMALIZE = {"data": _data, "train": _train, "prefs": _prefs, "relabel": _relabel, "ilql": _ilql,
             "gpu": lambda result: result["rows"]}  # fmt: skip


def judge(row: dict) -> dict:
    """Add `goal` as {op, value, text}, `met` (None without a goal or a ratio) and the per-round spread text."""
    goal, ratio = row.get("goal"), row.get("ratio")
    rounds = row.get("round_ratios") or []
    if rounds:
        row["spread"] = f"{min(rounds):.2f}–{max(rounds):.2f}× over {len(rounds)} rounds"
    if goal:
        op, value = (goal["op"], goal["value"]) if isinstance(goal, dict) else goal  # judged already, or (op, value)
        text = row.pop("goal_text", None) or f"{'≥' if op == '>=' else '≤'} {value:g}×"
        row["goal"] = goal if isinstance(goal, dict) else {"op": op, "value": value, "text": text}
        row["met"] = None if ratio is None else (ratio >= value if op == ">=" else ratio <= value)
    else:
        row["goal"], row["met"] = None, None
    return row


def verdict(row: dict) -> str:
    if row["goal"] is None:
        return ""
    return f"{row['goal']['text']} " + {True: "met", False: "NOT met", None: "not measured"}[row["met"]]


def hardware() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
        info["cpu"] = model
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def fmt(v) -> str:
    return "–" if v is None else (f"{v:,.3g}" if isinstance(v, float) else str(v))


def markdown(rows: list[dict], hw: dict, quick: bool) -> str:
    where = hw.get("gpu") or f"{hw['cpu']} ({hw['cpu_count']} cores)"
    lines = [
        f"# dorl benchmarks ({'quick CPU' if quick else 'full'} mode)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {where}; torch {hw.get('torch', '')}; load average "
        f"{hw.get('load_before', '?')} before, {hw.get('load_after', '?')} after.",
        "",
        "| benchmark | figure | dorl | comparison | ratio | per-round ratios | goal | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['bench']} | {r['figure']} | {fmt(r.get('dorl'))} | {fmt(r.get('baseline'))} "
            f"| {fmt(r.get('ratio'))} | {r.get('spread', '')} | {verdict(r)} | {r.get('notes', '')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Small sizes: a few minutes on 2 CPU cores.")
    ap.add_argument("--only", default="", help=f"Comma-separated subset of {','.join(BENCHES)}.")
    ap.add_argument("--gpu", action="store_true", help="The GPU figures instead (scripts/bench/gpu.py; with --quick: "
                    "its tiny dry-run sizes).")  # fmt: skip
    ap.add_argument("--out", default="build/bench", help="Folder for results.json and results.md.")
    ap.add_argument(  # --readme: its name from when the table lived in README.md
        "--docs",
        "--readme",
        dest="docs",
        action="store_true",
        help="Then regenerate the table of docs/performance.md (scripts/bench/readme.py).",
    )
    args = ap.parse_args()
    names = ["gpu"] if args.gpu else [n for n in (args.only.split(",") if args.only else BENCHES) if n]
    from dorl.store.artifact import library_versions

    hw = hardware()
    hw["torch"] = library_versions().get("torch")
    hw["load_before"] = round(os.getloadavg()[0], 2)  # others' work on a shared machine slows every figure
    rows: list[dict] = []
    raw: dict[str, list[dict]] = {}
    durations: dict[str, float] = {}
    for name in names:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            print(f"[bench] {name}: not available ({e})", file=sys.stderr)
            continue
        started = time.perf_counter()
        print(f"[bench] {name} …", file=sys.stderr, flush=True)
        raw[name] = module.run(args.quick)
        for row in NORMALIZE.get(name, lambda r: r)(raw[name]):
            rows.append(judge({"bench": name, **row}))
            if rows[-1]["goal"]:
                print(f"[bench] {name}: {row['figure']}: {fmt(row.get('ratio'))}x, goal {verdict(rows[-1])}",
                      file=sys.stderr, flush=True)  # fmt: skip
        durations[name] = round(time.perf_counter() - started, 1)
        print(f"[bench] {name} done in {durations[name]:.0f} s", file=sys.stderr, flush=True)
    hw["load_after"] = round(os.getloadavg()[0], 2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "measured": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "quick": args.quick,
        "hardware": hw,
        "durations_s": durations,
        "versions": library_versions(),
        "rows": rows,
        "raw": raw,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "results.md").write_text(markdown(rows, hw, args.quick))
    print((out / "results.md").read_text())
    if args.docs:
        import readme

        readme.main(["--results", str(out / "results.json")])
    goals = [r for r in rows if r["goal"]]
    print(f"goals met: {sum(r['met'] is True for r in goals)} of {len(goals)}")
    for r in goals:
        print(f"  {r['bench']}: {r['figure']}: {fmt(r.get('ratio'))}x, {r.get('spread', '')}: {verdict(r)}")


if __name__ == "__main__":
    main()
