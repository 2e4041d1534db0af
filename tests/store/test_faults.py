"""Faults: S3 gone mid-upload, a writer killed with SIGKILL mid-artifact."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dorl.errors import StoreError
from dorl.store import Artifact, Location, run_stage
from dorl.store import location as location_mod


def test_s3_server_stopped_mid_upload(s3, moto_server, monkeypatch):
    server, endpoint = moto_server
    out = f"s3://{s3}/runs/art"
    real_upload = location_mod._S3Backend.upload
    calls = {"n": 0}

    def flaky_upload(self, local, key):
        calls["n"] += 1
        if calls["n"] == 2:  # the server dies after the first file went up
            server.stop()
        return real_upload(self, local, key)

    def body(ctx):
        for i in range(4):
            ctx.out.path(f"part-{i}.bin").write_bytes(os.urandom(1000))

    monkeypatch.setattr(location_mod._S3Backend, "upload", flaky_upload)
    try:
        with pytest.raises(StoreError, match=r"uploading to s3://.*part-1\.bin"):
            run_stage("tf", out, {"k": 1}, {}, body)
    finally:
        monkeypatch.setattr(location_mod._S3Backend, "upload", real_upload)
        server.start()  # moto keeps its state in-process: same buckets, same port

    with pytest.raises(StoreError, match="not a complete artifact"):
        Artifact(out)
    done = run_stage("tf", out, {"k": 1}, {}, body)
    assert not done.skipped and len(Artifact(out).files) == 4


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from dorl.store import run_stage

    out, flag = sys.argv[1], Path(sys.argv[2])

    def body(ctx):
        for i in range(6):
            ctx.out.path(f"shard-{i}.bin").write_bytes(bytes([i]) * 100_000)
            if i == 2:
                flag.write_text("half")  # tell the test we are in the middle
                time.sleep(60)

    run_stage("relabel", out, {"n": 6}, {}, body)
    """
)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_sigkill_mid_artifact_then_rerun(backend, tmp_path, request):
    if backend == "s3":
        out = f"s3://{request.getfixturevalue('s3')}/runs/killed"
    else:
        out = str(tmp_path / "killed")
    flag = tmp_path / "flag"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, out, str(flag)], env=os.environ.copy())
    deadline = time.time() + 60
    while not flag.exists():
        assert proc.poll() is None, "writer exited early"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    with pytest.raises(StoreError, match="not a complete artifact"):
        Artifact(out)
    assert not Location(out).exists("manifest.json")

    def finish(ctx):
        for i in range(6):
            ctx.out.path(f"shard-{i}.bin").write_bytes(bytes([i]) * 100_000)

    res = run_stage("relabel", out, {"n": 6}, {}, finish)
    assert not res.skipped
    art = Artifact(out)
    assert sorted(art.files) == [f"shard-{i}.bin" for i in range(6)]
    assert art.read_bytes("shard-5.bin") == bytes([5]) * 100_000


def test_stale_local_working_copy_of_an_s3_output_is_not_resumed(s3):
    """A run into s3://…/tf killed, its S3 objects deleted, another config run into the same URI: it must not
    continue from the first config's local checkpoint."""
    import boto3

    out = f"s3://{s3}/runs/tf"

    def killed(ctx):
        ctx.out.path("checkpoints/step-15/weights.bin").write_bytes(b"lr=0.1")
        ctx.out.sync("checkpoints")
        raise KeyboardInterrupt  # killed mid-run

    with pytest.raises(KeyboardInterrupt):
        run_stage("tf", out, {"lr": 0.1}, {}, killed)
    client = boto3.client("s3")
    for o in client.list_objects_v2(Bucket=s3, Prefix="runs/")["Contents"]:
        client.delete_object(Bucket=s3, Key=o["Key"])

    seen = {}

    def other(ctx):
        seen["stale"] = (ctx.out.dir / "checkpoints").exists()
        ctx.out.path("model.bin").write_bytes(b"lr=0.2")

    run_stage("tf", out, {"lr": 0.2}, {}, other)
    assert seen["stale"] is False

    # The same config, its S3 marker in place: the working copy is resumed from as before.
    def killed_again(ctx):
        ctx.out.path("checkpoints/step-3/weights.bin").write_bytes(b"lr=0.3")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage("tf", f"{out}2", {"lr": 0.3}, {}, killed_again)

    def resumed(ctx):
        seen["kept"] = (ctx.out.dir / "checkpoints" / "step-3" / "weights.bin").exists()

    run_stage("tf", f"{out}2", {"lr": 0.3}, {}, resumed)
    assert seen["kept"] is True
