"""Two nodes (two torchrun agents, each with its own disk) train into S3; both are killed after a
checkpoint, and the same command on two fresh machines resumes from S3 and commits."""

import json
import os
import subprocess
import sys
import time

import psutil
import torch
from safetensors.torch import load_file

from dorl import config
from dorl.stages.train import train
from dorl.store import Artifact, Location
from tests.conftest import REPO, free_port

SETS = ["tf.max_length=32", "tf.batch_size=4", "tf.micro_batch_size=2", "tf.max_steps=60", "tf.checkpoint_every=3"]
SETS += ["model.dropout=0.0", "tf.zero_stage=1"]


def _launch(tmp_path, tag: str, data_uri: str, out: str) -> list[subprocess.Popen]:
    port, procs = free_port(), []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node)]
        cmd += ["--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port)]
        cmd += ["-m", "dorl", "train", "--method", "tf", "--data", data_uri, "--out", out, "--preset", "tiny"]
        cmd += [a for s in SETS for a in ("--set", s)]
        env = {**os.environ, "DORL_CACHE": str(tmp_path / f"cache-{tag}-node{node}")}  # a disk per machine
        log = open(tmp_path / f"{tag}-node{node}.log", "w")
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def test_two_nodes_resume_from_s3_on_fresh_machines(tmp_path, data_artifact, s3):
    out = f"s3://{s3}/run/tf"
    store = Location(out)
    procs = _launch(tmp_path, "first", data_artifact.uri, out)
    deadline = time.time() + 300
    while not store.exists("checkpoints/latest") and time.time() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.02)
    for p in procs:  # the whole tree: the torchrun agents and their workers
        for proc in [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        p.wait()
    assert not store.exists("manifest.json"), "the run finished before it could be killed"
    killed_at = int(store.read_bytes("checkpoints/latest").decode().split("-")[1])

    procs = _launch(tmp_path, "second", data_artifact.uri, out)
    assert [p.wait(timeout=300) for p in procs] == [0, 0], (tmp_path / "second-node0.log").read_text()[-3000:]
    art = Artifact(out)
    assert art.info["world_size"] == 2 and art.info["resumed_from_step"] == killed_at < 60
    assert not store.exists("checkpoints")
    log = [json.loads(x) for x in art.read_bytes("train_log.jsonl").decode().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "train"] == list(range(10, 61, 10))

    # the same model one process trains with the same effective batch (60 Adam steps: float noise ~1e-5;
    # a different batch would move weights by ~lr = 2e-3 per step)
    one = train(
        config.load(preset="tiny", sets=SETS), method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "one")
    ).artifact
    got, want = load_file(art.path("model.safetensors")), load_file(one.path("model.safetensors"))
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-4)
