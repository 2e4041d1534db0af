"""`dorl evaluate` on the GPU: the model generates in bf16 (`load_for_generation`), BERTScore encodes on the GPU,
and the predictions and metrics are those of the CPU's format (tests/stages/evaluate holds their exact values)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from dorl import config
from dorl.stages.evaluate import evaluate
from tests.gpu.conftest import CUDA

pytestmark = pytest.mark.gpu


def test_evaluate_on_the_gpu(tmp_path, gpu_data, gpu_base, metric_sets, record_property):
    cfg = config.load(preset="tiny", sets=[*metric_sets, "eval.n_examples=16", "eval.num_responses=3",
                                           "eval.batch_size=8", "eval.max_new_tokens=16"])  # fmt: skip
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    art = evaluate(cfg, method="tf", model_uri=gpu_base.uri, data_uri=gpu_data.uri,
                   out_uri=str(tmp_path / "eval")).artifact  # fmt: skip
    if CUDA:  # the model and the encoder ran there
        record_property("peak_gpu_mib", torch.cuda.max_memory_allocated() / 2**20)
        assert torch.cuda.max_memory_allocated() > 0
    pred = pd.read_csv(art.path("predictions.csv"), keep_default_na=False)
    assert len(pred) == 16
    assert (pred["response_1"].str.len() > 0).mean() > 0.5  # the trained base answers
    m = art.json("metrics.json")
    for name in ("bertscore", "meteor", "bleu"):
        assert len(m["best_of_k"][name]) == 3 and all(math.isfinite(x) for x in m["best_of_k"][name])
    assert art.manifest["metrics"]["generation"]["greedy"]["prompts"] == 16
