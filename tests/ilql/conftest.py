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


# ---------------------------------------------------------------- ILQL through the training engine

# A tiny run: 252 training samples (84 contexts x the human response and 3 other candidates), batches
# of 8 in two micro-batches of 4 (so the engine's weighting by actions across micro-batches counts).
ENGINE_SETS = ["ilql.train.batch_size=8", "ilql.train.micro_batch_size=4", "ilql.train.log_every=5"]


def ilql_config(*sets: str):
    from dorl import config

    return config.load(preset="tiny", sets=[*ENGINE_SETS, *sets])


@pytest.fixture(scope="session")
def ilql_relabel(tmp_path_factory, data_artifact):
    """A relabel artifact (tests/fixtures.py): ILQL trains on every candidate of it."""
    from tests.fixtures import make_relabel_artifact

    return make_relabel_artifact(str(tmp_path_factory.mktemp("ilql-relabel") / "relabel"), data_artifact)


@pytest.fixture(scope="package")
def trained(_one_thread, tmp_path_factory, ilql_relabel, tiny_model_artifact):
    """ILQL trained 3 epochs through the engine (`dorl.stages.train.train`), keeping the best weights; at
    lr 5e-3 the untrained tiny base learns words in these 93 steps (at 5e-4 it greedily decodes ",,,,")."""
    from dorl.stages.train import train

    cfg = ilql_config("ilql.train.epochs=3", "ilql.train.lr=5e-3")
    return train(
        cfg,
        method="ilql",
        data_uri=ilql_relabel.uri,
        base_uri=tiny_model_artifact.uri,
        out_uri=str(tmp_path_factory.mktemp("ilql") / "ilql"),
    ).artifact
