"""`dorl train --method ilql` killed with SIGKILL after a checkpoint and run again: it resumes and ends
with exactly the weights of an uninterrupted run: the LM, the V and Q heads, and the target heads
(which only the Polyak updates move: they must come back from the checkpoint, not from their init)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from dorl.ilql import io
from dorl.stages.train import train
from tests.conftest import REPO, run_dorl
from tests.ilql.conftest import ENGINE_SETS, ilql_config

# 60 steps of 4 (two micro-batches of 2); a validation every 5 steps (the first before a checkpoint),
# the targets moving every step.
SETS = ["ilql.train.batch_size=4", "ilql.train.micro_batch_size=2", "ilql.train.max_steps=60"]
SETS += ["ilql.train.checkpoint_every=3", "ilql.train.keep_checkpoints=1", "ilql.train.eval_every=5"]
SETS += ["ilql.polyak_every=1", "ilql.polyak_alpha=0.05"]


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch, ilql_relabel, tiny_model_artifact):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the same float arithmetic in this process and the CLI's
    ref = train(
        ilql_config(*SETS),
        method="ilql",
        data_uri=ilql_relabel.uri,
        base_uri=tiny_model_artifact.uri,
        out_uri=str(tmp_path / "ref"),
    ).artifact

    out = tmp_path / "killed"
    args = ["train", "--method", "ilql", "--data", ilql_relabel.uri, "--base", tiny_model_artifact.uri]
    args += ["--out", str(out), "--preset", "tiny", *[a for s in ENGINE_SETS + SETS for a in ("--set", s)]]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dorl", *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    latest = out / "checkpoints" / "latest"
    deadline = time.time() + 120
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the run finished before it could be killed"
    killed_at = int(latest.read_text().strip().split("-")[1])
    assert 0 < killed_at < 60

    r = run_dorl(*args, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from step-" in r.stderr
    for name in ("model.safetensors", io.HEADS_FILE):
        got, want = load_file(out / name), load_file(Path(ref.uri) / name)
        assert got.keys() == want.keys()
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=f"{name}: {k}")
    heads = load_file(out / io.HEADS_FILE)
    assert not torch.equal(heads["target_q_heads.0.mlp.0.weight"], heads["q_heads.0.mlp.0.weight"])
    assert json.loads((out / io.CONFIG_FILE).read_text()) == json.loads((Path(ref.uri) / io.CONFIG_FILE).read_text())
