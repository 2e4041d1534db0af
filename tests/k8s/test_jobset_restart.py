"""The rendered JobSet's pods, run as local processes: two "pods" run the container's command and args with
its environment and c10d rendezvous (the pod-0 hostname pointed at 127.0.0.1) against a loopback S3 (moto).
One pod is killed after a checkpoint; the group restart (JobSet's Recreate: every pod replaced by a fresh one,
fresh disk) resumes from S3 and ends with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import psutil
import torch
from safetensors.torch import load_file

from dorl import config, layout
from dorl.k8s.render import render
from dorl.stages.train import train
from dorl.store import Artifact, Location
from tests.conftest import REPO, free_port

SETS = ["tf.max_length=32", "tf.batch_size=4", "tf.micro_batch_size=2", "tf.max_steps=12", "tf.checkpoint_every=2"]
SETS += ["model.dropout=0.0", "tf.zero_stage=1"]


def _pod_processes(js: dict, run_yaml, tmp_path, attempt: str, port: int) -> list[subprocess.Popen]:
    """Start every pod of the JobSet as a process: the container's command + args, its env, a disk of its own."""
    [rj] = js["spec"]["replicatedJobs"]
    job = rj["template"]["spec"]
    [c] = job["template"]["spec"]["containers"]
    procs = []
    for index in range(job["completions"]):
        disk = tmp_path / f"{attempt}-pod{index}"  # the pod's scratch emptyDir, mounted at /work
        env = dict(os.environ)  # PATH, PYTHONPATH, the S3 credentials (in a cluster: the Secret via envFrom)
        for e in c["env"]:
            if e["name"] == "TORCH_EXTENSIONS_DIR":  # a build cache, not state: reuse this machine's compiled ops
                continue
            if "value" in e:
                env[e["name"]] = (
                    e["value"].replace("/work", str(disk), 1) if e["value"].startswith("/work") else e["value"]
                )
            else:  # JOB_COMPLETION_INDEX, from the pod's annotation
                env[e["name"]] = str(index)

        def expand(word: str, env: dict = env) -> str:
            word = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], word)
            word = re.sub(r"--rdzv_endpoint=[^:]+:\d+", f"--rdzv_endpoint=127.0.0.1:{port}", word)
            return word.replace("/etc/dorl/run.yaml", str(run_yaml))

        assert c["command"][0] == "dorl"  # the image's `dorl`
        cmd = [sys.executable, "-m", "dorl", *[expand(w) for w in c["command"][1:] + c["args"]]]
        log = open(tmp_path / f"{attempt}-pod{index}.log", "w")
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def _kill(p: subprocess.Popen) -> None:
    """Delete the pod: its launcher and every worker."""
    try:
        tree = [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for proc in tree:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    p.wait()


def test_group_restart_of_the_rendered_jobset_resumes_to_the_same_weights(tmp_path, s3):
    from tests.fixtures import make_data_artifact

    sets = [f"root=s3://{s3}/runs", "run=js", "k8s.nodes=2", "k8s.device=cpu", "pipeline.datasets=[abcd]", *SETS]
    cfg = config.load(preset="tiny", sets=sets)
    m = render(cfg)
    js = m.jobsets["dorl-js-abcd-train-tf"]
    run_yaml = tmp_path / "run.yaml"  # the ConfigMap, as mounted
    run_yaml.write_text(m.config_map["data"]["run.yaml"])
    make_data_artifact(layout.stage_uri(cfg, "abcd", "data"))
    out = layout.stage_uri(cfg, "abcd", "tf")
    store = Location(out)

    pods = _pod_processes(js, run_yaml, tmp_path, "first", free_port())
    try:
        _first_attempt(pods, store, tmp_path)
    finally:
        for p in pods:
            _kill(p)
    assert not store.exists("manifest.json"), "the run finished before a pod could be killed"
    killed_at = int(store.read_bytes("checkpoints/latest").decode().split("-")[1])

    pods = _pod_processes(js, run_yaml, tmp_path, "restart", free_port())  # fresh pods, fresh disks
    try:
        codes = [p.wait(timeout=600) for p in pods]
    finally:
        for p in pods:
            _kill(p)
    assert codes == [0, 0], (tmp_path / "restart-pod0.log").read_text()[-3000:]
    art = Artifact(out)
    assert art.info["world_size"] == 2 and art.info["resumed_from_step"] == killed_at < 12

    # an uninterrupted run of the same config (one process, same effective batch; see tests/engine/test_multinode.py)
    data = layout.stage_uri(cfg, "abcd", "data")
    one = train(
        config.load(preset="tiny", sets=SETS), method="tf", data_uri=data, out_uri=str(tmp_path / "one")
    ).artifact
    got, want = load_file(art.path("model.safetensors")), load_file(one.path("model.safetensors"))
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-4)


def _first_attempt(pods, store, tmp_path) -> None:
    deadline = time.time() + 600  # start-up (imports, DeepSpeed op builds) is slow on a loaded 2-core machine
    while not store.exists("checkpoints/latest") and time.time() < deadline and all(p.poll() is None for p in pods):
        time.sleep(0.5)
    assert store.exists("checkpoints/latest"), (tmp_path / "first-pod0.log").read_text()[-3000:]
    _kill(pods[1])  # one pod lost (a node failed): its Job fails (backoffLimit 0), the JobSet restarts the group
    try:  # the survivor's workers lose their peer; JobSet deletes it anyway
        pods[0].wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    _kill(pods[0])
