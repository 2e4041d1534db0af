"""Training on a GPU through the engine: bf16 (train.precision=auto), ZeRO-0 and ZeRO-2, tf and dt; the loss falls;
a run killed with SIGKILL and started again resumes to the weights of an uninterrupted run within bf16 tolerance:
1% (relative L2 of all weights), or 5x what two uninterrupted runs on the GPU differ by if that is more (on the CPU,
tests/engine/test_resume.py asks for equality; a GPU's atomics leave rounding differences that training carries)."""

from __future__ import annotations

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
from tests.conftest import REPO
from tests.gpu.conftest import CUDA, FT_SETS, PRECISION, TF_SETS, losses

pytestmark = pytest.mark.gpu


def check_bf16_run(art: Artifact) -> None:
    assert art.info["precision"] == PRECISION and (art.info["device"] != "cpu") == CUDA
    curve = losses(art)
    assert len(curve) >= 4 and curve[-1] < 0.9 * curve[0], curve  # falling, not merely noisy
    weights = load_file(Path(art.uri) / "model.safetensors")
    assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in weights.values())  # fp32 masters
    assert not CUDA or art.manifest["metrics"].get("mfu", 0) > 0  # the GPU's peak is known: MFU is reported


@pytest.mark.parametrize("zero", [0, 2])
def test_tf_trains_in_bf16(tmp_path, gpu_data, zero):
    cfg = config.load(preset="tiny", sets=[*TF_SETS, "tf.max_steps=40", f"tf.zero_stage={zero}"])
    art = train(cfg, method="tf", data_uri=gpu_data.uri, out_uri=str(tmp_path / "tf")).artifact
    assert art.info["zero_stage"] == zero
    check_bf16_run(art)


@pytest.mark.parametrize("zero", [0, 2])
def test_dt_trains_in_bf16(tmp_path, relabelled, tiny_model_artifact, zero):
    cfg = config.load(preset="tiny", sets=[*FT_SETS, f"finetune.zero_stage={zero}"])
    art = train(cfg, method="dt", data_uri=relabelled.uri, base_uri=tiny_model_artifact.uri,
                out_uri=str(tmp_path / "dt")).artifact  # fmt: skip
    check_bf16_run(art)


def _weights(path: Path) -> torch.Tensor:
    w = load_file(path / "model.safetensors")
    return torch.cat([w[k].flatten().double() for k in sorted(w)])


# ZeRO-0 for tf, ZeRO-2 for dt: both stages' checkpoints (fp32 masters beside bf16 weights; sharded optimizer state)
RESUME = {
    "tf": (0, [*TF_SETS, "tf.max_steps=300", "tf.checkpoint_every=25", "tf.keep_checkpoints=1"]),
    "dt": (2, [*FT_SETS, "finetune.max_steps=300", "finetune.checkpoint_every=25", "finetune.keep_checkpoints=1",
               "finetune.keep_best=false"]),
}  # fmt: skip


@pytest.mark.parametrize("method", ["tf", "dt"])
def test_kill_and_resume_within_bf16_tolerance(tmp_path, method, gpu_data, relabelled, tiny_model_artifact,
                                               record_property):  # fmt: skip
    zero, sets = RESUME[method]
    section = "tf" if method == "tf" else "finetune"
    sets = [*sets, f"{section}.zero_stage={zero}"]
    inputs = {"data_uri": gpu_data.uri} if method == "tf" else {"data_uri": relabelled.uri,
                                                                     "base_uri": tiny_model_artifact.uri}  # fmt: skip
    ref = train(config.load(preset="tiny", sets=sets), method=method, out_uri=str(tmp_path / "ref"), **inputs).artifact
    # the same run again: how far two uninterrupted runs on this GPU differ (its atomics are not deterministic)
    again = train(config.load(preset="tiny", sets=sets), method=method, out_uri=str(tmp_path / "again"), **inputs)

    out = tmp_path / "killed"
    args = ["train", "--method", method, "--data", inputs["data_uri"], "--out", str(out), "--preset", "tiny"]
    args += ["--base", inputs["base_uri"]] if "base_uri" in inputs else []
    args += [a for s in sets for a in ("--set", s)]
    proc = subprocess.Popen([sys.executable, "-m", "dorl", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    latest = out / "checkpoints" / "latest"

    def at() -> int:
        try:
            return int(latest.read_text().strip().split("-")[1])
        except (OSError, IndexError, ValueError):
            return 0

    deadline = time.time() + 120
    while at() < 50 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = at()
    assert not (out / "manifest.json").exists(), "the run finished before it could be killed"
    assert 0 < killed_at < 300

    resumed = train(config.load(preset="tiny", sets=sets), method=method, out_uri=str(out), **inputs).artifact
    assert resumed.info["resumed_from_step"] == killed_at
    assert resumed.manifest["metrics"]["tokens"] == ref.manifest["metrics"]["tokens"]
    got, want = _weights(out), _weights(Path(ref.uri))
    start = _weights(Path(tiny_model_artifact.uri)) if method == "dt" else None
    diff = float((got - want).norm() / want.norm())
    noise = float((_weights(Path(again.artifact.uri)) - want).norm() / want.norm())
    record_property("killed_at_step", killed_at)
    record_property("relative_difference", diff)
    record_property("run_to_run_difference", noise)
    tol = max(1e-2, 5 * noise)
    assert diff < tol, (
        f"resumed weights differ from an uninterrupted run's by {diff:.2e} (relative L2; two "
        f"uninterrupted runs: {noise:.2e})"
    )
    if start is not None and start.shape == want.shape:  # training moved the weights far more than that
        moved = float((want - start).norm() / want.norm())
        record_property("relative_movement", moved)
        assert diff < 0.1 * moved
    # the curve after the resume goes on as the uninterrupted one's
    a, b, c = losses(resumed), losses(ref), losses(again.artifact)
    assert len(a) == len(b) == len(c)

    def gap(u, v):
        return max(abs(x - y) / abs(y) for x, y in zip(u, v, strict=True))

    assert gap(a, b) < max(5e-2, 5 * gap(c, b))
