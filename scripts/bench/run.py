"""`make bench`: every benchmark of the project side by side, in one run, into one results file.

    python scripts/bench/run.py [--quick] [--only data,train,…] [--out build/bench]

Each module in scripts/bench/ exposes `run(quick: bool) -> list[dict]`; every row names the figure,
dorl's value, the comparison's value and their ratio (plus the spread over repeats). The results go to
`<out>/results.json` and `<out>/results.md` with the hardware and library versions.
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

BENCHES = ("data", "train", "relabel", "ilql")


def _data(rows):
    for r in rows:
        yield {
            "figure": f"{r['bench'].split('.')[1]} {r['format']}, dialogues/s",
            "dorl": r["dialogues_per_s"],
            "notes": f"{r['dialogues']:,} dialogues, peak RSS {r['peak_rss_mib']:.0f} MiB",
        }


def _train(rows):
    for r in rows:
        yield {
            "figure": f"{r['name']}, {r['unit']}",
            "dorl": r["dorl"],
            "baseline": r["reference"],
            "ratio": r["ratio"],
            "spread": f"medians {r['dorl_median']} / {r['reference_median']}",
            "notes": r["model"] + (f", MFU {r['dorl_mfu']:.1%}" if r.get("dorl_mfu") else ""),
        }


def _relabel(rows):
    by = {(r["bench"], r["way"]): r for r in rows}
    ref, ours = by[("relabel", "reference (one context at a time)")], by[("relabel", "dorl")]
    yield {
        "figure": "relabel pairs/s vs one context at a time",
        "dorl": ours["pairs_per_s"],
        "baseline": ref["pairs_per_s"],
        "ratio": ours["pairs_per_s"] / ref["pairs_per_s"],
        "spread": "fastest of rounds",
        "notes": f"{ours['contexts']} contexts, {ours['model']}; same candidates: {ours['same_candidates']}",
    }
    hf = by.get(("relabel", "dorl with relabel.generator=hf (before)"))
    if hf:
        split = "generation {generate_s:.2f} s + scoring {score_s:.2f} s"
        yield {
            "figure": "relabel pairs/s, after vs before (relabel.generator=dorl vs hf, whole chunk)",
            "dorl": ours["pairs_per_s"],
            "baseline": hf["pairs_per_s"],
            "ratio": ours["pairs_per_s"] / hf["pairs_per_s"],
            "spread": "fastest of rounds",
            "notes": f"after: {split.format(**ours)}; before: {split.format(**hf)}",
        }
    bs = {r["way"]: r for r in rows if r["bench"] == "bertscore"}
    if bs:
        d, b = bs["dorl batched scorer"], bs["bert-score defaults, one call"]
        yield {
            "figure": "BERTScore pairs/s vs bert-score defaults",
            "dorl": d["pairs_per_s"],
            "baseline": b["pairs_per_s"],
            "ratio": d["pairs_per_s"] / b["pairs_per_s"],
            "notes": d["model"],
        }


# Each benchmark's own rows -> the common shape (figure, dorl, baseline, ratio, spread, notes).
NORMALIZE = {"data": _data, "train": _train, "relabel": _relabel}


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


def markdown(rows: list[dict], hw: dict, quick: bool) -> str:
    where = hw.get("gpu") or f"{hw['cpu']} ({hw['cpu_count']} cores)"
    lines = [
        f"# dorl benchmarks ({'quick CPU' if quick else 'full'} mode)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {where}; torch {hw.get('torch', '')}.",
        "",
        "| benchmark | figure | dorl | comparison | ratio | spread (dorl) | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:

        def fmt(v):
            return "–" if v is None else (f"{v:,.3g}" if isinstance(v, float) else str(v))

        lines.append(
            f"| {r['bench']} | {r['figure']} | {fmt(r.get('dorl'))} | {fmt(r.get('baseline'))} "
            f"| {fmt(r.get('ratio'))} | {r.get('spread', '')} | {r.get('notes', '')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Small sizes: a few minutes on 2 CPU cores.")
    ap.add_argument("--only", default="", help=f"Comma-separated subset of {','.join(BENCHES)}.")
    ap.add_argument("--out", default="build/bench", help="Folder for results.json and results.md.")
    args = ap.parse_args()
    names = [n for n in (args.only.split(",") if args.only else BENCHES) if n]
    from dorl.store.artifact import library_versions

    hw = hardware()
    hw["torch"] = library_versions().get("torch")
    rows: list[dict] = []
    raw: dict[str, list[dict]] = {}
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
            rows.append({"bench": name, **row})
        print(f"[bench] {name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"quick": args.quick, "hardware": hw, "versions": library_versions(), "rows": rows, "raw": raw}
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "results.md").write_text(markdown(rows, hw, args.quick))
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()
