"""LoRA on the GPU (peft, `model.lora_r` and `model.lora_alpha`): a method trains adapters in bf16 with a falling
loss, and the model it saves evaluates."""

from __future__ import annotations

import pytest

from dorl import config
from tests.gpu.conftest import FT_SETS, PRECISION, losses

pytestmark = pytest.mark.gpu


def test_lora_trains_in_bf16_and_evaluates(tmp_path, relabelled, gpu_base, gpu_data, metric_sets):
    from dorl.stages.evaluate import evaluate
    from dorl.stages.train import train

    cfg = config.load(
        preset="tiny",
        sets=[
            *FT_SETS,
            *metric_sets,
            "model.lora_r=8",
            "model.lora_alpha=16",
            "finetune.lr=5e-3",
            "eval.n_examples=8",
            "eval.max_new_tokens=8",
        ],
    )
    art = train(cfg, method="tf_top", data_uri=relabelled.uri, base_uri=gpu_base.uri,
                out_uri=str(tmp_path / "lora")).artifact  # fmt: skip
    assert art.info["precision"] == PRECISION
    curve = losses(art)
    assert len(curve) >= 4 and curve[-1] < curve[0], curve
    ev = evaluate(cfg, method="tf_top", model_uri=art.uri, data_uri=gpu_data.uri, out_uri=str(tmp_path / "ev"))
    assert ev.artifact.json("metrics.json")["n_examples"] == 8
