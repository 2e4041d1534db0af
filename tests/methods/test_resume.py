"""`dorl train --method kto|dpo|awr` killed with SIGKILL after a checkpoint and run again: it resumes and ends
with exactly the weights of an uninterrupted run, and records the same training set (DPO's and KTO's reference
log-probs: computed once, before the first step, and read back from checkpoints/reference by the resumed run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from dorl import config
from dorl.stages.train import train
from tests.conftest import REPO, run_dorl


def sets(method: str) -> list[str]:
    s = f"{method}.train"
    out = [f"{s}.batch_size=4", f"{s}.micro_batch_size=2", f"{s}.max_steps=60", f"{s}.checkpoint_every=3"]
    return out + [f"{s}.keep_checkpoints=1", f"{s}.eval_every=7", f"{s}.log_every=3", f"{s}.lr=1e-3"]


@pytest.fixture(scope="module")
def relabel(tmp_path_factory, data_artifact):
    from tests.fixtures import make_relabel_artifact

    return make_relabel_artifact(str(tmp_path_factory.mktemp("prefs-relabel") / "relabel"), data_artifact)


@pytest.mark.parametrize("method", ["kto", "dpo", "awr"])
def test_kill_and_resume_equals_an_uninterrupted_run(method, tmp_path, monkeypatch, relabel, tiny_model_artifact):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the same float arithmetic in this process and the CLI's
    base = tiny_model_artifact.uri
    cfg = config.load(preset="tiny", sets=sets(method))
    ref = train(cfg, method=method, data_uri=relabel.uri, base_uri=base, out_uri=str(tmp_path / "ref")).artifact

    out = tmp_path / "killed"
    args = ["train", "--method", method, "--data", relabel.uri, "--base", base, "--out", str(out), "--preset", "tiny"]
    args += [a for s in sets(method) for a in ("--set", s)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dorl", *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    latest = out / "checkpoints" / "latest"
    deadline = time.time() + 300
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the run finished before it could be killed"
    killed_at = int(latest.read_text().strip().split("-")[1])
    assert 0 < killed_at < 60
    if method != "awr":
        assert (out / "checkpoints" / "reference" / "train.parquet").exists()  # kept before the first step

    r = run_dorl(*args, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from step-" in r.stderr
    got, want = load_file(out / "model.safetensors"), load_file(Path(ref.uri) / "model.safetensors")
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=k)
    for split in ("train", "validation"):
        name = f"training_set/{split}.parquet"
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(Path(ref.uri) / name))
