"""`make bench`'s goals and the README table made from its results file (scripts/bench/{run,readme}.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench"
sys.path.insert(0, str(BENCH))

import readme  # noqa: E402
import run as bench_run  # noqa: E402


def _results(ratio: float) -> dict:
    rows = [
        bench_run.judge(
            {"bench": "train", "figure": "method lines vs TRL", "dorl": 1300.0, "baseline": 1000.0, "ratio": ratio,
             "round_ratios": [ratio - 0.1, ratio + 0.1], "goal": (">=", 1.3), "notes": "GPT-2 4x256"}
        ),
        bench_run.judge({"bench": "ilql", "figure": "ILQL step vs TF", "dorl": 0.3, "baseline": 0.2, "ratio": 1.5,
                         "round_ratios": [1.4, 1.6], "goal": ("<=", 1.5)}),
        bench_run.judge({"bench": "data", "figure": "prepare abcd, dialogues/s", "dorl": 4480.0}),
    ]  # fmt: skip
    hw = {"cpu": "AMD EPYC", "cpu_count": 2, "torch": "2.13.0", "load_before": 5.9, "load_after": 6.1}
    return {"measured": "2026-12-02 01:00 UTC", "quick": True, "hardware": hw, "rows": rows}


def test_goals_are_judged_on_the_ratio_with_the_round_spread():
    met, ilql, data = _results(1.31)["rows"]
    assert met["met"] is True and met["goal"]["text"] == "≥ 1.3×"
    assert met["spread"] == "1.21–1.41× over 2 rounds"
    assert ilql["met"] is True  # <= goal, met on the boundary
    assert data["goal"] is None and data["met"] is None
    assert _results(1.29)["rows"][0]["met"] is False


def test_readme_block_is_rewritten_between_the_markers_only(tmp_path):
    text = f"# dorl\n\n## Performance\n\nhand-written intro\n\n{readme.BEGIN}\nold table\n{readme.END}\n\nprose after\n"
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results(1.29)))
    path = tmp_path / "README.md"
    path.write_text(text)
    cmd = [sys.executable, str(BENCH / "readme.py"), "--results", str(results), "--readme", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    out = path.read_text()
    assert out.startswith("# dorl\n\n## Performance\n\nhand-written intro\n\n" + readme.BEGIN + "\n")
    assert out.endswith(readme.END + "\n\nprose after\n") and "old table" not in out
    assert "| 1 | train | method lines vs TRL | 1,300 | 1,000 | **1.29×** | 1.19–1.39× (2) | ≥ 1.3× ✘ not met |" in out
    assert "| 2 | ilql | ILQL step vs TF | 0.3 | 0.2 | **1.50×** | 1.40–1.60× (2) | ≤ 1.5× ✔ met |" in out
    assert "Goals met: 1 of 2." in out and "a loaded machine" in out and "1. GPT-2 4x256" in out
    subprocess.run(cmd, check=True, capture_output=True)
    assert path.read_text() == out  # regenerating from the same results changes nothing


def test_readme_without_markers_is_refused():
    with pytest.raises(SystemExit, match="bench:begin"):
        readme.rewrite("# dorl\nno markers\n", _results(1.3))
