"""`dorl pipeline` end to end on a very small config: all stages and methods; re-run skips; kill + re-run resumes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dorl.store import Artifact
from tests.conftest import run_dorl

METHODS = os.environ.get("DORL_TEST_METHODS", "tf_top,tf_all,dt,ilql")
SMALL = [
    "--preset", "tiny", "--methods", METHODS,
    "--set", "data.simulate=60",
    "--set", "tf.epochs=4",
    "--set", "finetune.max_steps=20", "--set", "finetune.checkpoint_every=5",
    "--set", "ilql.train.max_steps=20", "--set", "ilql.train.checkpoint_every=5",
    "--set", "relabel.chunk_size=64",
    "--set", "eval.n_examples=20",
    "--set", "report.bootstrap=200",
]  # fmt: skip
STAGES = ["data", "tf", "relabel", *METHODS.split(","), *[f"eval/{m}" for m in ["tf", *METHODS.split(",")]]]
ENV = {"OMP_NUM_THREADS": "1"}


def _args(root: Path) -> list[str]:
    return ["pipeline", *SMALL, "--set", f"root={root}", "--set", "run=small"]


def _manifests(root: Path) -> dict[str, str]:
    run = root / "small"
    out = {s: Artifact(str(run / "abcd" / s)).digest for s in STAGES}
    out["report"] = Artifact(str(run / "report")).digest
    return out


@pytest.mark.slow
def test_pipeline_runs_skips_and_resumes(tmp_path):
    a = tmp_path / "a"
    r = run_dorl(*_args(a), env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    first = _manifests(a)  # every stage committed
    results = pd.read_csv(Artifact(str(a / "small" / "report")).path("results.csv"))
    assert set(results["method"]) == {"tf", *METHODS.split(",")}
    assert {"bertscore", "meteor", "bleu", "bert_click"} <= set(results["metric"])
    assert "| method |" in r.stdout  # the table is printed at the end

    again = run_dorl(*_args(a), env=ENV)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _manifests(a) == first  # every stage skipped: nothing rewritten
    assert again.stderr.count("skipped") >= len(STAGES) + 1

    # Kill a second run in the middle of method training, run it again: same report.
    b = tmp_path / "b"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dorl", *_args(b)],
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target = b / "small" / "abcd" / METHODS.split(",")[0] / "checkpoints"
    deadline = time.time() + 300
    while not target.exists():
        assert proc.poll() is None, "the pipeline ended before the kill"
        assert time.time() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (b / "small" / "report" / "manifest.json").exists()
    resumed = run_dorl(*_args(b), env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rb = pd.read_csv(Artifact(str(b / "small" / "report")).path("results.csv"))
    pd.testing.assert_frame_equal(results, rb)


def test_bad_pipeline_input(tmp_path):
    r = run_dorl("pipeline", "--preset", "tiny", "--methods", "tf_top,foo", "--set", f"root={tmp_path}")
    assert r.returncode == 2 and "pipeline.methods[1]" in r.stderr and "Traceback" not in r.stderr
    r = run_dorl("pipeline", "--preset", "tiny", "--set", f"root={tmp_path}", "--set", "data.source=/nonexistent/raw")
    assert r.returncode == 2 and "/nonexistent/raw" in r.stderr and "Traceback" not in r.stderr
