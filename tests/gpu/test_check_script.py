"""The GPU check cannot rot: scripts/gpu/check.sh with DORL_GPU_DRY_RUN=1 runs end to end on the CPU (tiny shapes,
no installs, no nvidia-smi) and writes the keys a GPU run writes; every stage and bench part succeeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

TOP = {"check", "install", "versions", "nvidia_smi", "tests", "bench", "goals", "failures"}
ROW = {"part", "figure", "dorl", "unit", "baseline", "ratio", "notes", "goal", "met", "verdict"}
FIGURES = {
    "train tokens/s, bf16, sdpa",
    "train tokens/s, bf16, eager attention",
    "train tokens/s, bf16, sdpa + torch.compile",
    "train MFU, bf16, best variant",
    "relabel pairs/s vs the reference's one-context loop",
    "relabel pairs/s, bf16 weights vs fp32 (dorl)",
    "ILQL train step s (efficient heads) vs TF step",
    "ILQL train peak MiB (efficient heads) vs TF",
    "ILQL decoding ms per new token (beta 1, efficient heads) vs TF greedy",
    "ILQL decoding ms per new token (beta 0) vs TF greedy",
    "DT decoding ms per new token vs TF greedy",
}
GOALS = {  # the goals of issue 28
    "train MFU, bf16, best variant": (">=", 0.40),
    "relabel pairs/s vs the reference's one-context loop": (">=", 20.0),
    "ILQL train step s (efficient heads) vs TF step": ("<=", 1.5),
    "ILQL train peak MiB (efficient heads) vs TF": ("<=", 1.5),
    "ILQL decoding ms per new token (beta 1, efficient heads) vs TF greedy": ("<=", 1.5),
}


def test_the_dry_run_writes_what_a_gpu_run_writes(tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("DORL_GPU_TESTS_ON_CPU", "OUT")}
    env.update(OUT=str(out), DORL_GPU_DRY_RUN="1", PYTHON=sys.executable, DORL_GPU_BUDGET_S="1200")
    started = time.perf_counter()
    res = subprocess.run(["bash", "scripts/gpu/check.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=1500)  # fmt: skip
    wall = time.perf_counter() - started
    r = json.loads((out / "results.json").read_text())
    assert res.returncode == 0, f"{r['failures']}\n{res.stdout[-2000:]}"
    assert (out / "check.log").stat().st_size > 0 and "GPU check (DRY RUN, CPU)" in res.stdout
    assert set(r) == TOP and r["failures"] == []
    assert r["check"]["dry_run"] and r["check"]["ok"] and r["check"]["wall_s"] <= wall
    assert r["install"]["skipped"] and r["nvidia_smi"] == {"skipped": "dry run"}

    v = r["versions"]
    assert v["ok"] and set(v["imports"].values()) == {"ok"} and v["cuda_available"] is False
    assert v["packages"]["transformers"]["version"] and v["peak_bf16_tflops"] == 1.0  # DORL_PEAK_TFLOPS=1

    t = r["tests"]  # every GPU test collected, each skipped for want of CUDA (LoRA's may say issue 24)
    assert t["ok"] and set(t["counts"]) == {"skipped"} and t["counts"]["skipped"] >= 10
    assert all("CUDA" in c["message"] or "LoRA" in c["message"] for c in t["cases"])

    b = r["bench"]
    assert b["ok"] and b["tiny"] and all(p["ok"] for p in b["parts"].values()) and set(b["parts"]) == {
        "train", "relabel", "ilql"}  # fmt: skip
    rows = {row["figure"]: row for row in b["rows"]}
    assert set(rows) == FIGURES
    for row in b["rows"]:
        assert ROW <= set(row) and row["dorl"] is not None and row.get("error") is None, row
    for fig, (op, value) in GOALS.items():
        goal = rows[fig]["goal"]
        assert (goal["op"], goal["value"]) == (op, value) and rows[fig]["verdict"] in ("met", "NOT met")
    assert {g["figure"] for g in r["goals"]} == set(GOALS)
