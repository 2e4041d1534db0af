"""Shared fixtures: offline environment, a real S3 endpoint (moto server over HTTP), a dorl runner."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Fuzzing budget (hypothesis): bounded in CI and `make test`; DORL_FUZZ=long for a long hunt. The deadline is each
# example's time bound (generous: the machine is shared), and "bounded time" is part of what the fuzz tests check.
settings.register_profile("ci", max_examples=150, deadline=timedelta(seconds=5), print_blob=True)
settings.register_profile("long", max_examples=20_000, deadline=timedelta(seconds=5), print_blob=True)
settings.load_profile("long" if os.environ.get("DORL_FUZZ") == "long" else "ci")

# Never wait on a model hub.
for _k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_k, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# DeepSpeed's accelerator must be the device dorl trains on (cuda whenever torch sees a GPU): a CPU
# accelerator under a CUDA device breaks every engine test on a GPU machine.
os.environ.setdefault("DS_ACCELERATOR", "cuda" if __import__("torch").cuda.is_available() else "cpu")


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` (tests/gpu) skip, with the reason, where torch sees no CUDA device."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    on_cpu = os.environ.get("DORL_GPU_TESTS_ON_CPU") == "1"  # tests/gpu/conftest.py: try them on the CPU
    if gpu and not on_cpu and not __import__("torch").cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (scripts/gpu/check.sh runs these on a lent one)")
        for item in gpu:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own dorl cache (S3 downloads, working folders)."""
    monkeypatch.setenv("DORL_CACHE", str(tmp_path_factory.mktemp("dorl-cache")))


@pytest.fixture(scope="session")
def moto_server():
    """An S3-compatible HTTP server on 127.0.0.1 (moto), reached by boto3 over the network."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as s:  # a fixed free port, so a stopped server can come back at the same address
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield server, f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(moto_server, monkeypatch):
    """AWS environment pointing at the moto server, and a fresh bucket: yields its name."""
    import uuid

    import boto3

    _, endpoint = moto_server
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("DORL_S3_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("DORL_S3_CONNECT_TIMEOUT", "2")
    from dorl.store import location

    location._S3Backend._clients.clear()
    bucket = f"dorl-test-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    yield bucket
    location._S3Backend._clients.clear()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (rendezvous and master ports of multi-process tests)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_dorl(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 600):
    """Run the real `dorl` entrypoint in a subprocess: exit code, stdout, stderr."""
    return subprocess.run(
        [sys.executable, "-m", "dorl", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def data_artifact(tmp_path_factory):
    """A small 'data' artifact (see tests/fixtures.py), shared read-only by the session."""
    from tests.fixtures import make_data_artifact

    return make_data_artifact(str(tmp_path_factory.mktemp("fixture-data") / "data"))


@pytest.fixture(scope="session")
def tiny_model_artifact(tmp_path_factory):
    """An untrained tiny GPT-2 'train/tf' artifact with dorl's tokenizer, shared read-only."""
    from tests.fixtures import make_tiny_model_artifact

    return make_tiny_model_artifact(str(tmp_path_factory.mktemp("fixture-model") / "tf"))
