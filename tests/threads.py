"""Training tests run single-threaded (here and in the processes they start): tiny models gain nothing
from a second thread, and on a shared 2-core machine a preempted OpenMP thread makes every small op
wait (measured: 28,500 vs 1,500 tokens/s for the tiny preset). One thread also keeps the float
arithmetic of in-process and subprocess runs identical, which the exact-resume test compares."""

import pytest


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(before)
