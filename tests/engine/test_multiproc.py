"""Two CPU processes under torchrun: they train one model together, and it is the model one process
trains with the same effective batch (gradient accumulation makes up for the missing process)."""

import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from dorl import config
from dorl.stages.train import train
from dorl.store import Artifact
from tests.conftest import REPO, free_port

SETS = ["tf.max_length=32", "tf.batch_size=4", "tf.micro_batch_size=2", "tf.max_steps=6", "tf.log_every=2"]
SETS += ["model.dropout=0.0"]  # dropout masks depend on the process layout; the arithmetic must not


def test_torchrun_two_processes_train_the_same_model(tmp_path, data_artifact):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "tf2"
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    args += ["-m", "dorl", "train", "--method", "tf", "--data", data_artifact.uri, "--out", str(out)]
    args += ["--preset", "tiny", *[a for s in SETS for a in ("--set", s)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    art = Artifact(str(out))
    assert art.info["world_size"] == 2 and art.info["batch"] == {"effective": 4, "micro": 2, "accumulation": 1}
    lm = AutoModelForCausalLM.from_pretrained(art.local_dir())
    assert lm.config.vocab_size == art.info["vocab_size"]

    one = train(
        config.load(preset="tiny", sets=SETS), method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "tf1")
    ).artifact
    assert one.info["batch"]["accumulation"] == 2
    got, want = load_file(out / "model.safetensors"), load_file(one.path("model.safetensors"))
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5)


def test_sigterm_under_torchrun_both_processes_checkpoint_the_same_step_and_exit_75(tmp_path, data_artifact):
    """The kubelet's SIGTERM reaches the launcher, torchrun forwards it to both workers, which agree on one step,
    save its checkpoint together and exit 75 (the launcher's code too): the retried pod resumes from that step."""
    import json
    import signal
    import time

    out = tmp_path / "stopped"
    sets = [*SETS, "tf.max_steps=2000", "tf.checkpoint_every=100000", "tf.log_every=1"]
    args = [sys.executable, "-m", "dorl", "launch", "torchrun", "--standalone", "--nproc_per_node=2", "-m", "dorl"]
    args += ["train", "--method", "tf", "--data", data_artifact.uri, "--out", str(out), "--preset", "tiny"]
    args += [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log_file = out / "train_log.jsonl"
    deadline = time.monotonic() + 300
    while not (log_file.exists() and len(log_file.read_text().splitlines()) >= 3):  # a few steps in
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err[-3000:]
    assert "dorl launch: stopped by signal 15: exit 75" in err
    latest = (out / "checkpoints" / "latest").read_text().strip()
    step = json.loads((out / "checkpoints" / latest / "trainer.json").read_text())["step"]
    assert latest == f"step-{step:08d}" and 3 <= step < 2000
    assert sorted(p.name for p in (out / "checkpoints" / latest / "rng").iterdir()) == ["rank0.json", "rank1.json"]
    assert f"stopped by signal 15 at step {step} of 2000" in err  # both workers name the same step
    assert err.count(f"at step {step} of 2000") == 2
