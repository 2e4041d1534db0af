"""Two processes on one artifact (issue 27): one writer or many readers at a time, locally (a file lock) and on
S3 (conditional writes with a heartbeat). The second writer waits or fails with one line; a stage never commits
naming an input manifest that was replaced while it read it; a holder killed with SIGKILL never blocks for good."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dorl.errors import TransientError
from dorl.store import Artifact, Location, run_stage

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from dorl.store import Artifact, run_stage

    out, k, flag, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    inputs = {"x": Artifact(sys.argv[5])} if len(sys.argv) > 5 else {}

    def body(ctx):
        ctx.out.path("part-1.bin").write_bytes(b"one" * 1000)
        flag.write_text("inside")  # the test acts while this stage holds its artifact
        while not go.exists():
            time.sleep(0.05)
        ctx.out.path("part-2.bin").write_bytes(b"two" * 1000)

    run_stage("report", out, {"k": k}, inputs, body)
    """
)


_PROCS: list = []


@pytest.fixture(autouse=True)
def _no_orphans():
    """A holder left waiting by a failed test is killed (it would wait for its go file for ever)."""
    yield
    while _PROCS:
        proc = _PROCS.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _uri(backend, tmp_path, request, name):
    if backend == "s3":
        return f"s3://{request.getfixturevalue('s3')}/runs/{name}"
    return str(tmp_path / "runs" / name)


def _start(tmp_path, out, k, *inputs):
    flag, go = tmp_path / f"flag-{k}", tmp_path / f"go-{k}"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, out, str(k), str(flag), str(go), *inputs],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stderr=subprocess.PIPE,
        text=True,
    )
    _PROCS.append(proc)
    deadline = time.time() + 60
    while not flag.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.05)
    return proc, go


def _finish(proc, go):
    go.write_text("go")
    assert proc.wait(timeout=60) == 0, proc.stderr.read()


def _write(out, k, force=False):
    def body(ctx):
        ctx.out.path("part-1.bin").write_bytes(f"k={k}".encode())

    return run_stage("evaluate", out, {"k": k}, {}, body, force=force)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_second_writer_waits_or_fails_with_one_line(backend, tmp_path, request, monkeypatch):
    out = _uri(backend, tmp_path, request, "art")
    proc, go = _start(tmp_path, out, 1)
    monkeypatch.setenv("DORL_LOCK_WAIT", "1")
    started = time.time()
    with pytest.raises(TransientError) as e:
        _write(out, 2)  # another config: without the lock it would clear the first writer's files
    assert time.time() - started < 10
    text = str(e.value)
    assert "\n" not in text and f"pid {proc.pid}" in text and out in text and "DORL_LOCK_WAIT" in text, text
    _finish(proc, go)
    art = Artifact(out)
    assert art.config == {"k": 1} and sorted(art.files) == ["part-1.bin", "part-2.bin"]

    # Waiting: the same config started while the first holds the artifact is skipped once it commits.
    proc, go = _start(tmp_path, _uri(backend, tmp_path, request, "art2"), 3)
    monkeypatch.setenv("DORL_LOCK_WAIT", "60")
    import threading

    threading.Timer(1.0, go.write_text, ("go",)).start()
    result = run_stage("report", _uri(backend, tmp_path, request, "art2"), {"k": 3}, {}, lambda ctx: None)
    assert result.skipped and proc.wait(timeout=60) == 0


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_an_input_is_not_replaced_while_a_stage_reads_it(backend, tmp_path, request, monkeypatch):
    x = _uri(backend, tmp_path, request, "eval")
    _write(x, 1)
    report = _uri(backend, tmp_path, request, "report")
    proc, go = _start(tmp_path, report, 1, x)
    monkeypatch.setenv("DORL_LOCK_WAIT", "1")
    with pytest.raises(TransientError) as e:
        _write(x, 2, force=True)  # a second pipeline with another config replacing the evaluation
    assert "\n" not in str(e.value) and "read by" in str(e.value), str(e.value)
    _finish(proc, go)
    # The report names the manifest it read, and that manifest is still the one in place.
    recorded = Artifact(report).manifest["inputs"]["x"]["manifest_sha256"]
    assert recorded == Artifact(x).digest
    monkeypatch.setenv("DORL_LOCK_WAIT", "30")
    assert _write(x, 2, force=True).artifact.config == {"k": 2}  # free again once the reader committed


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_an_input_replaced_after_it_was_opened_is_refused(backend, tmp_path, request):
    x = _uri(backend, tmp_path, request, "eval")
    _write(x, 1)
    opened = Artifact(x)  # the stage read this manifest (and verified files against it) ...
    _write(x, 2, force=True)  # ... and another process replaced it before the stage began
    with pytest.raises(TransientError) as e:
        run_stage("report", _uri(backend, tmp_path, request, "report"), {}, {"x": opened}, lambda ctx: None)
    assert "\n" not in str(e.value) and "replaced" in str(e.value) and x in str(e.value)
    assert not Location(_uri(backend, tmp_path, request, "report")).exists("manifest.json")


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_killed_holder_does_not_block(backend, tmp_path, request, monkeypatch):
    out = _uri(backend, tmp_path, request, "art")
    monkeypatch.setenv("DORL_LOCK_TTL", "3")  # S3: a holder that stops renewing is stale after 3 s
    proc, _ = _start(tmp_path, out, 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    monkeypatch.setenv("DORL_LOCK_WAIT", "30")
    started = time.time()
    art = _write(out, 1).artifact  # same config: resumes the killed writer's folder
    assert art.config == {"k": 1} and time.time() - started < 10


def test_s3_lock_held_by_another_host_expires(s3, tmp_path, monkeypatch):
    """A holder on another machine (a lost pod) that stopped renewing: taken over after DORL_LOCK_TTL."""
    import boto3

    out = f"s3://{s3}/runs/art"
    holder = {"host": "another-pod", "pid": 1, "stage": "evaluate", "mode": "write", "since": "2026-01-01T00:00:00"}
    boto3.client("s3").put_object(Bucket=s3, Key="runs/.art.dorl-lock/writer", Body=json.dumps(holder).encode())
    # A TTL well above what one attempt takes on a loaded 2-core machine (2 s was not: the lock had expired
    # before the first attempt looked at it)
    monkeypatch.setenv("DORL_LOCK_TTL", "8")
    monkeypatch.setenv("DORL_LOCK_WAIT", "1")
    with pytest.raises(TransientError, match="another-pod"):
        _write(out, 1)  # renewed a moment ago by the server's clock: still held
    time.sleep(8.5)
    assert _write(out, 1).artifact.config == {"k": 1}
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=s3, Prefix="runs/")["Contents"]]
    assert not any(".dorl-lock" in k for k in keys), keys  # released after the commit


def test_lock_files_are_not_artifact_files(tmp_path):
    out = tmp_path / "runs" / "art"
    _write(str(out), 1)
    run_stage("report", str(tmp_path / "runs" / "rep"), {}, {"x": Artifact(str(out))}, lambda ctx: None)
    assert not list(tmp_path.rglob(".*.dorl-lock"))  # the last holder removes the lock file
    (tmp_path / "runs" / ".art.dorl-lock").write_text("")  # as a holder killed with SIGKILL leaves it
    assert sorted(Artifact(str(out)).files) == ["part-1.bin"]
    assert [e.name for e in Location(str(tmp_path / "runs")).listdir()] == ["art", "rep"]
    assert [e.name for e in Location(str(tmp_path / "runs")).walk()] == [
        "art/manifest.json",
        "art/part-1.bin",
        "rep/manifest.json",
    ]
