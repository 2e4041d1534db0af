"""LoRA on the GPU (issue 24 adds it through peft, config keys `model.lora_r` and `model.lora_alpha`): a method
trains adapters in bf16 with a falling loss, and the model it saves evaluates. Skipped, saying why, until the
configuration has those keys; it turns on by itself when LoRA lands."""

from __future__ import annotations

import dataclasses

import pytest

from dorl import config
from tests.gpu.conftest import FT_SETS, PRECISION, losses

pytestmark = pytest.mark.gpu


def lora_keys() -> bool:
    from dorl.config.schema import ModelConfig

    names = {f.name for f in dataclasses.fields(ModelConfig)}
    return {"lora_r", "lora_alpha"} <= names


@pytest.mark.skipif(not lora_keys(), reason="no model.lora_r / model.lora_alpha in the config yet (issue 24 adds "
                    "LoRA): this test runs once they exist")  # fmt: skip
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
