"""The `dorl` entrypoint stops promptly on SIGTERM with the transient exit code (75), alone or under `dorl launch
torchrun`: a pod being deleted, preempted or drained is retried and resumes, instead of waiting out its grace
period to be killed (Python as a container's PID 1 ignores SIGTERM unless it handles it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.k8s.conftest import S3_SECRET, SMALL_RUN, write_run
from tests.k8s.fake_api import FakeCluster


@pytest.fixture
def waiting_submit(tmp_path):
    """A `dorl k8s submit` argv that waits for ever (its Jobs never finish), and the fake cluster it talks to."""
    with FakeCluster(finish_after=10**9) as fake:
        fake.add(dict(S3_SECRET))
        env = {**os.environ, "KUBECONFIG": str(fake.kubeconfig(tmp_path / "kubeconfig"))}
        run = write_run(tmp_path, SMALL_RUN)
        yield fake, env, ["k8s", "submit", "--config", str(run), "--skip-preflight"]


def _stop_once_waiting(fake, proc) -> tuple[int, str, float]:
    deadline = time.monotonic() + 120
    while not fake.created("jobs"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    time.sleep(1.0)  # well inside its polling loop
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err, time.monotonic() - sent


def test_sigterm_exits_75_promptly(waiting_submit):
    fake, env, args = waiting_submit
    proc = subprocess.Popen([sys.executable, "-m", "dorl", *args], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    code, err, took = _stop_once_waiting(fake, proc)
    assert code == 75, err[-2000:]
    assert "stopped by signal 15" in err and took < 10


def test_sigterm_through_dorl_launch_torchrun_is_75_too(waiting_submit):
    fake, env, args = waiting_submit
    launch = ["launch", "torchrun", "--standalone", "--nproc_per_node=2", "-m", "dorl"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dorl", *launch, *args], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    code, err, took = _stop_once_waiting(fake, proc)
    assert code == 75, err[-2000:]  # torchrun alone: 143 (128 + SIGTERM), read as a crash
    assert "dorl launch: stopped by signal 15: exit 75" in err
