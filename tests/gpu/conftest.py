"""The GPU tests' fixtures, and the record scripts/gpu/check.py reads.

Tests marked `gpu` skip without CUDA (tests/conftest.py). With DORL_GPU_TEST_LOG set, every test's outcome is
appended to that file as one JSON line the moment it is known ({test, outcome, seconds, message, properties}),
so that a run cut short by the check's time limit still says what passed.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

# Where the tests put what they check on the GPU. DORL_GPU_TESTS_ON_CPU=1 runs them on the CPU (fp32), to try
# the tests themselves before a GPU is lent: their GPU-only facts (bf16, equality across devices) then hold trivially.
CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
PRECISION = "bf16" if CUDA else "fp32"

# Small and quick on a GPU; bf16 comes from train.precision=auto there.
TF_SETS = ["tf.max_length=64", "tf.batch_size=8", "tf.micro_batch_size=4", "tf.lr=2e-3", "tf.log_every=5"]
FT_SETS = ["finetune.max_length=128", "finetune.batch_size=8", "finetune.micro_batch_size=4", "finetune.lr=2e-3",
           "finetune.log_every=5", "finetune.max_steps=30"]  # fmt: skip
ILQL_SETS = ["ilql.train.max_length=128", "ilql.train.batch_size=8", "ilql.train.micro_batch_size=4",
             "ilql.train.lr=2e-3", "ilql.train.log_every=5", "ilql.train.max_steps=30"]  # fmt: skip


def pytest_runtest_logreport(report):
    path = os.environ.get("DORL_GPU_TEST_LOG")
    if not path or not (report.when == "call" or report.outcome != "passed"):
        return  # one line per test: its call, or the setup/teardown that failed or skipped it
    outcome = "error" if report.when != "call" and report.outcome == "failed" else report.outcome
    message = ""
    if report.skipped and isinstance(report.longrepr, tuple):
        message = report.longrepr[2]
    elif report.failed:
        message = str(report.longrepr)[-1500:]
    line = {"test": report.nodeid, "outcome": outcome, "phase": report.when, "seconds": round(report.duration, 2),
            "message": message, "properties": dict(report.user_properties)}  # fmt: skip
    with open(path, "a") as f:
        f.write(json.dumps(line, default=str) + "\n")


def losses(art) -> list[float]:
    recs = [json.loads(x) for x in art.read_bytes("train_log.jsonl").decode().splitlines()]
    return [r["loss"] for r in recs if r["kind"] == "train"]


@pytest.fixture(scope="session")
def encoder(tmp_path_factory):
    """A random 2-layer BERT with MiniLM's tokenizer: BERTScore's code paths on the GPU without MiniLM's weights."""
    from tests.fixtures import make_bert_encoder

    return make_bert_encoder(tmp_path_factory.mktemp("encoder") / "bert")


@pytest.fixture(scope="session")
def metric_sets(encoder):
    return [f"metrics.bertscore_model={encoder}", "metrics.bertscore_layers=2", "metrics.bertscore_rescale=false"]


@pytest.fixture(scope="session")
def gpu_data(tmp_path_factory):
    """300 fixture dialogues: a few hundred steps per epoch at these sizes, so runs are not all epoch ends."""
    from tests.fixtures import make_data_artifact

    return make_data_artifact(str(tmp_path_factory.mktemp("gpu-data") / "data"), n=300)


@pytest.fixture(scope="session")
def gpu_base(tmp_path_factory, gpu_data, metric_sets):
    """The tiny base model trained on the GPU (bf16) until it answers in-domain: relabel, ILQL and evaluate
    start from it."""
    from dorl import config
    from dorl.stages.train import train

    cfg = config.load(preset="tiny", sets=[*TF_SETS, "tf.max_steps=150", "tf.checkpoint_every=1000", *metric_sets])
    out = tmp_path_factory.mktemp("gpu-base") / "tf"
    return train(cfg, method="tf", data_uri=gpu_data.uri, out_uri=str(out)).artifact


@pytest.fixture(scope="session")
def relabelled(tmp_path_factory, gpu_data):
    """A relabel artifact (candidates chosen without a model: tests/fixtures.py) for the methods."""
    from tests.fixtures import make_relabel_artifact

    return make_relabel_artifact(str(tmp_path_factory.mktemp("gpu-relabel") / "relabel"), gpu_data)
