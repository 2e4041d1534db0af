"""The exit-code contract through the launcher: `dorl launch torchrun` with 2 CPU worker processes keeps a
user error as 2 (torchrun alone makes it 1) and turns an S3 outage (the loopback moto server stopped) into 75."""

import os
import subprocess
import sys

import pytest

from dorl.errors import exit_code_of
from tests.conftest import REPO

TORCHRUN = ["--standalone", "--nproc_per_node=2", "-m", "dorl"]


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dorl", *args], cwd=REPO, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _train(data: str, out: str) -> list[str]:
    return [
        "train",
        "--method",
        "tf",
        "--data",
        data,
        "--out",
        out,
        "--preset",
        "tiny",
        "--set",
        "tf.micro_batch_size=2",
    ]


def test_group_exit_code_follows_the_contract():
    assert exit_code_of([0, 0]) == 0
    assert exit_code_of([2, -15]) == 2  # the others were stopped by the agent
    assert exit_code_of([75, 1]) == 75 and exit_code_of([75, 2]) == 2
    assert exit_code_of([1, -9]) == 1 and exit_code_of([-9]) == 1


def test_user_error_stays_2_through_torchrun(tmp_path):
    args = _train(str(tmp_path / "no-such-data"), str(tmp_path / "out"))
    plain = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", *TORCHRUN, *args], cwd=REPO, capture_output=True, timeout=300
    )
    assert plain.returncode == 1  # what torchrun alone reports: a crash, retried by the cluster
    r = _run("launch", "torchrun", *TORCHRUN, *args)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "no artifact at" in r.stdout + r.stderr


@pytest.mark.usefixtures("s3")
def test_s3_outage_gives_75_through_torchrun(tmp_path, moto_server, s3):
    server, _ = moto_server
    server.stop()
    try:
        r = _run("launch", "torchrun", *TORCHRUN, *_train(f"s3://{s3}/data", f"s3://{s3}/tf"))
    finally:
        server.start()
    assert r.returncode == 75, r.stderr[-2000:]
    assert "transient" in r.stderr


def test_s3_outage_gives_75_without_a_launcher(tmp_path, moto_server, s3):
    server, _ = moto_server
    server.stop()
    try:
        r = _run("artifacts", "ls", f"s3://{s3}/data")
    finally:
        server.start()
    assert r.returncode == 75, r.stderr[-2000:]
