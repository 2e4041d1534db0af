"""Fixtures for the Kubernetes tests: run configs on disk and a fake API server reached through a kubeconfig."""

from __future__ import annotations

import sys

import pytest
import yaml

from tests.conftest import REPO
from tests.k8s.fake_api import FakeCluster

EXAMPLE = REPO / "k8s" / "examples" / "run.yaml"

# Two datasets, two methods, two relabel shards: every kind of edge of the DAG, small enough to read. The models
# come from a mirror in the store, as a cluster without the Hub needs.
SMALL_RUN = {
    "run": "t1",
    "root": "s3://bucket/runs",
    "pipeline": {"datasets": ["abcd", "multiwoz22"], "methods": ["dt", "ilql"]},
    "k8s": {"relabel_shards": 2, "poll_seconds": 0.02, "namespace": "dorl", "models_uri": "s3://bucket/models"},
}
S3_SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "dorl-s3", "namespace": "dorl"},
    "data": {"AWS_ACCESS_KEY_ID": "a2V5", "AWS_SECRET_ACCESS_KEY": "c2VjcmV0"},
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
    """A fake cluster (Jobs finish on the second look) with the run's S3 Secret, and KUBECONFIG pointing at it."""
    with FakeCluster(finish_after=2) as cluster:
        cluster.add(dict(S3_SECRET))
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "kubeconfig")))
        yield cluster


def dorl_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The real entrypoint (`dorl.cli.main`, which turns user errors into exit 2), in this process: fast."""
    from dorl.cli import main

    monkeypatch.setattr(sys, "argv", ["dorl", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err
