"""`make bench`'s LoRA benchmark drives the trainer's step itself (scripts/bench/lora.py): one step of each of its
configurations, at the dry-run shape, so that a change of the trainer cannot break it unnoticed until the next
whole `make bench` (it did: the accumulator gained a key the bench did not have)."""

from __future__ import annotations

import importlib

import pytest

from tests.conftest import REPO


@pytest.fixture
def lora_bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "scripts" / "bench"))
    module = importlib.import_module("lora")
    monkeypatch.setattr(module, "TRAIN", {**module.TRAIN, "steps": 1, "length": 32, "response": 8, "r": 4})
    return module


@pytest.mark.parametrize("kind", ["full", "lora", "lora_tokens"])
def test_each_configuration_takes_its_timed_step(lora_bench, kind):
    out = lora_bench.child_train("tiny", kind)
    assert out["step_s"] > 0 and out["precision"] == "fp32"
    assert (out["trainable"] < out["total"]) == (kind != "full")
