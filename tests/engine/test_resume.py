"""Kill -9 in the middle of training (after the first epoch), run the same command again: it resumes, and ends
with exactly the weights, token count and train time scale of a run that was never interrupted (CPU, fixed seed)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
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


STOP_SETS = [*SETS, "tf.max_steps=14", "tf.checkpoint_every=1000"]  # no periodic checkpoint: only epoch ends


@pytest.fixture(autouse=True)
def cli_sigterm_handler():
    """SIGTERM handled as `dorl`'s entrypoint handles it (dorl.cli.main), restored afterwards."""
    from dorl.cli import _stop

    previous = signal.signal(signal.SIGTERM, _stop)
    yield _stop
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_saves_a_checkpoint_at_the_step_reached_and_the_rerun_resumes_there(
    tmp_path, data_artifact, monkeypatch
):
    """A preempted pod's SIGTERM: the trainer checkpoints the step it reached (not only the last periodic or
    epoch-end checkpoint), exits as Stopped (75), and the same command resumes there to the uninterrupted weights."""
    from dorl.engine.trainer import Trainer
    from dorl.errors import Stopped

    cfg = config.load(preset="tiny", sets=STOP_SETS)
    ref = train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "ref")).artifact
    spe = ref.info["steps_per_epoch"]
    stop_at = spe + 2 if spe + 2 < 14 else 2  # inside an epoch, away from any checkpoint the run makes anyway
    assert stop_at % spe and stop_at < 14
    original, calls = Trainer._step, []

    def step_then_term(self, *args):
        out = original(self, *args)
        calls.append(out)
        if len(calls) == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)  # what the kubelet sends (torchrun forwards it to each worker)
        return out

    monkeypatch.setattr(Trainer, "_step", step_then_term)
    out = tmp_path / "stopped"
    with pytest.raises(Stopped, match=f"at step {stop_at} of 14"):
        train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(out))
    assert calls[-1] is None and len(calls) == stop_at + 1  # the step after the signal was agreed on, not taken
    assert (out / "checkpoints" / "latest").read_text().strip() == f"step-{stop_at:08d}"
    assert not (out / "manifest.json").exists()
    monkeypatch.undo()

    resumed = train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(out)).artifact
    assert resumed.info["resumed_from_step"] == stop_at
    got, want = load_file(out / "model.safetensors"), load_file(Path(ref.uri) / "model.safetensors")
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)


def test_sigterm_during_a_long_validation_still_exits_within_the_deadline(
    tmp_path, data_artifact, monkeypatch, cli_sigterm_handler
):
    """The kubelet kills a pod 30 s after SIGTERM: when no step end comes in time, Stopped is raised anyway."""
    from dorl.engine import preempt
    from dorl.engine.trainer import Trainer
    from dorl.errors import Stopped

    def hanging_validation(self, *args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)

    monkeypatch.setattr(preempt, "BUDGET_S", 0.5)
    monkeypatch.setattr(Trainer, "_validate", hanging_validation)
    cfg = config.load(preset="tiny", sets=STOP_SETS)
    started = time.monotonic()
    with pytest.raises(Stopped, match="no checkpoint could be saved within 0.5 s"):
        train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "o"))
    assert time.monotonic() - started < 30
    assert signal.getsignal(signal.SIGTERM) is cli_sigterm_handler  # the loop's handlers undone, its timer off
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
