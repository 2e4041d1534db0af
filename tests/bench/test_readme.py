"""`make bench`'s goals and docs/performance.md's table made from its results file (scripts/bench/{run,readme}.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "scripts" / "bench"
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


@pytest.mark.parametrize("option", ["--doc", "--readme"])  # --readme: the option's older name
def test_table_is_rewritten_between_the_markers_only(tmp_path, option):
    text = f"# Performance\n\nhand-written intro\n\n{readme.BEGIN}\nold table\n{readme.END}\n\nprose after\n"
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results(1.29)))
    path = tmp_path / "performance.md"
    path.write_text(text)
    cmd = [sys.executable, str(BENCH / "readme.py"), "--results", str(results), option, str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    out = path.read_text()
    assert out.startswith("# Performance\n\nhand-written intro\n\n" + readme.BEGIN + "\n")
    assert out.endswith(readme.END + "\n\nprose after\n") and "old table" not in out
    assert "| 1 | train | method lines vs TRL | 1,300 | 1,000 | **1.29×** | 1.19–1.39× (2) | ≥ 1.3× ✘ not met |" in out
    assert "| 2 | ilql | ILQL step vs TF | 0.3 | 0.2 | **1.50×** | 1.40–1.60× (2) | ≤ 1.5× ✔ met |" in out
    assert "Goals met: 1 of 2." in out and "a loaded machine" in out and "1. GPT-2 4x256" in out
    subprocess.run(cmd, check=True, capture_output=True)
    assert path.read_text() == out  # regenerating from the same results changes nothing


def test_page_without_markers_is_refused():
    with pytest.raises(SystemExit, match="performance.md: expected one .*bench:begin"):
        readme.rewrite("# Performance\nno markers\n", _results(1.3))


def test_the_table_lives_in_docs_performance_not_in_the_readme():
    """The generator's default page is docs/performance.md, which holds the markers once; README.md, the
    front door, only links to it."""
    assert readme.DOC == REPO / "docs" / "performance.md"
    page = readme.DOC.read_text()
    out = readme.rewrite(page, _results(1.31))  # the real page takes a regenerated table
    head, tail = page.split(readme.BEGIN)[0], page.split(readme.END)[1]
    assert out.startswith(head + readme.BEGIN) and out.endswith(readme.END + tail) and "Goals met: 2 of 2." in out
    front = (REPO / "README.md").read_text()
    assert readme.BEGIN not in front and readme.END not in front and "docs/performance.md" in front


def test_your_own_conversations_are_judged_against_abcd_on_the_same_dialogues():
    rows = [
        {"bench": "data.prepare", "format": "abcd (same dialogues)", "dialogues": 100_000, "dialogues_per_s": 2000.0,
         "peak_rss_mib": 2900.0},
        {"bench": "data.prepare", "format": "messages jsonl", "dialogues": 100_000, "dialogues_per_s": 1800.0,
         "peak_rss_mib": 450.0, "raw_mib": 95.6},
    ]  # fmt: skip
    *_, own = [bench_run.judge(r) for r in bench_run._data(rows)]
    assert own["baseline"] == 2000.0 and own["ratio"] == 0.9 and own["met"] is False  # slower than ABCD: not met
    assert "byte-identical" in own["notes"]


def test_relabel_with_another_family_is_a_row_of_its_own():
    """scripts/bench/relabel.py's Llama-shaped rows (`run_family`) become their own judged row beside GPT-2's."""

    def way(bench, name, pairs_per_s, rounds):
        return {"bench": bench, "way": name, "pairs_per_s": pairs_per_s, "round_seconds": rounds, "contexts": 64,
                "model": bench, "same_candidates": True, "hardware": "2-core CPU"}  # fmt: skip

    rows = [way("relabel", "reference (one context at a time)", 10.0, [3.0]), way("relabel", "dorl", 70.0, [0.5]),
            way("relabel-llama", "reference (one context at a time)", 2.0, [30.0, 40.0]),
            way("relabel-llama", "dorl", 8.0, [10.0, 8.0])]  # fmt: skip
    out = [bench_run.judge({"bench": "relabel", **r}) for r in bench_run._relabel(rows)]
    llama = [r for r in out if "llama-shaped" in r["figure"]]
    assert len(out) == 2 and len(llama) == 1
    assert llama[0]["ratio"] == 4.0 and llama[0]["round_ratios"] == [3.0, 5.0] and llama[0]["met"] is False
