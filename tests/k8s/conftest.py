"""Fixtures for the Kubernetes tests: run configs on disk and a fake API server reached through a kubeconfig."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO
from tests.k8s.fake_api import FakeCluster

EXAMPLE = REPO / "k8s" / "examples" / "run.yaml"

# Two datasets, two methods, two relabel shards: every kind of edge of the DAG, small enough to read.
SMALL_RUN = {
    "run": "t1",
    "root": "s3://bucket/runs",
    "pipeline": {"datasets": ["abcd", "multiwoz22"], "methods": ["dt", "ilql"]},
    "k8s": {"relabel_shards": 2, "poll_seconds": 0.02, "namespace": "dorl"},
}


def write_run(tmp_path, data: dict, name: str = "run.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def small_run(tmp_path):
    return write_run(tmp_path, SMALL_RUN)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fake cluster (Jobs finish on the second look) and KUBECONFIG pointing at it."""
    with FakeCluster(finish_after=2) as cluster:
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "kubeconfig")))
        yield cluster
