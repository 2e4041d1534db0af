"""A tiny GPT-2 with dorl's tokenizer, saved once per session; tests load fresh copies."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    """Tiny models run fastest on one thread; with two threads on a shared 2-core machine every
    small op can wait ~10 ms for a busy core (measured: 17 s vs 0.15 s for one decode test)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from tests.fixtures import make_tiny_model_dir

    path = tmp_path_factory.mktemp("ilql-tiny")
    make_tiny_model_dir(path, seed=0)
    return path


@pytest.fixture
def tok(tiny_dir):
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(tiny_dir)
    t.padding_side = "left"
    return t


@pytest.fixture
def lm(tiny_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_dir).eval()


def randomise_heads(model, seed: int = 0, scale: float = 0.5):
    """Untrained heads give near-zero values; spread them so that beta visibly changes choices and
    the targets differ from the Q heads."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*model.heads.parameters(), *model.heads.buffers()]:  # the target heads are buffers
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model
