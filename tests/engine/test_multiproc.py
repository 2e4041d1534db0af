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
