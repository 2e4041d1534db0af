"""Kill -9 in the middle of training (after the first epoch), run the same command again: it resumes, and ends
with exactly the weights, token count and train time scale of a run that was never interrupted (CPU, fixed seed)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from dorl import config
from dorl.stages.train import train
from dorl.store import Artifact
from tests.conftest import REPO, run_dorl

SETS = ["tf.max_length=32", "tf.batch_size=4", "tf.micro_batch_size=2", "tf.max_steps=60", "tf.checkpoint_every=3"]
SETS += ["tf.log_every=3", "tf.keep_checkpoints=1"]


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path, data_artifact):
    ref = train(
        config.load(preset="tiny", sets=SETS), method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "ref")
    ).artifact

    out = tmp_path / "killed"
    args = ["train", "--method", "tf", "--data", data_artifact.uri, "--out", str(out), "--preset", "tiny"]
    args += [a for s in SETS for a in ("--set", s)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dorl", *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    latest = out / "checkpoints" / "latest"
    spe = ref.info["steps_per_epoch"]
    assert 3 * spe < 60, "the run must span several epochs"

    def at() -> int:
        try:
            return int(latest.read_text().strip().split("-")[1])
        except (OSError, IndexError, ValueError):
            return 0

    deadline = time.time() + 180
    while at() <= spe and proc.poll() is None and time.time() < deadline:  # past the first epoch's end
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the run finished before it could be killed"
    killed_at = at()
    assert spe < killed_at < 60

    r = run_dorl(*args, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from step-" in r.stderr
    got, want = load_file(out / "model.safetensors"), load_file(Path(ref.uri) / "model.safetensors")
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
    # totals kept in checkpoints: the whole run's tokens, not only those since the resume
    resumed = Artifact(str(out))
    assert resumed.info["resumed_from_step"] == killed_at
    assert resumed.manifest["metrics"]["tokens"] == ref.manifest["metrics"]["tokens"]
    assert resumed.manifest["metrics"]["train_time_s"] > 0
