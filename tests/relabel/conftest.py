"""A relabel run of the tiny model on the fixture data, shared by the relabel tests.

Relabel runs in these tests use one CPU thread (in-process and in subprocesses alike): with two
threads on a machine whose cores are busy with other work, every small op waits on the thread barrier
and the tiny model gets 10x slower. One thread keeps the tests fast and every run comparable.
"""

import contextlib

import pytest

from dorl import config

SETS = ["relabel.chunk_size=4"]  # 90 examples -> 23 chunks: enough to kill a run half-way
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1"}


@contextlib.contextmanager
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="session")
def relabel_cfg():
    return config.load(preset="tiny", sets=SETS)


@pytest.fixture(scope="session")
def relabelled(tmp_path_factory, data_artifact, tiny_model_artifact, relabel_cfg):
    """The uninterrupted, single-process run every other way of running must reproduce."""
    from dorl.stages.relabel import relabel

    out = tmp_path_factory.mktemp("relabel") / "single"
    with one_thread():
        return relabel(
            relabel_cfg, data_uri=data_artifact.uri, base_uri=tiny_model_artifact.uri, out_uri=str(out)
        ).artifact
