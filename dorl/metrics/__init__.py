"""Reward and evaluation metrics: one implementation serves relabelling and evaluation.

    metric = get_metric("bertscore", cfg.metrics)
    scores = metric.score(predictions, references)   # one float per pair
    metric.identity()                                # what produced the numbers, for manifests

Metrics: `bertscore` (F1, bert-score), `meteor` (nltk + WordNet), `bleu` (sentence BLEU, sacrebleu),
`bleurt` (a configured checkpoint). Modules import their heavy libraries only when a metric is built.

An empty prediction (or reference): METEOR and BLEU score 0, as the reference did; BERTScore gives
bert-score's value, a raw F of 0 rescaled with the baseline, (0 - b) / (1 - b). Each metric's
identity says which (`empty` / `empty_score`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol

from dorl.config import MetricsConfig
from dorl.errors import ConfigError

# name -> "module:class"
METRICS = {
    "bertscore": "dorl.metrics.bertscore:BERTScore",
    "meteor": "dorl.metrics.meteor:Meteor",
    "bleu": "dorl.metrics.bleu:Bleu",
    "bleurt": "dorl.metrics.bleurt:Bleurt",
}


class Metric(Protocol):
    name: str

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> list[float]: ...

    def identity(self) -> dict: ...


def get_metric(name: str, metrics_cfg: MetricsConfig | None = None) -> Metric:
    """Build metric `name` from the `metrics` config section (models are loaded here, once)."""
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")
    module, attr = METRICS[name].split(":")
    return getattr(importlib.import_module(module), attr)(metrics_cfg or MetricsConfig())


def scored_pairs(predictions: Sequence[str], references: Sequence[str]) -> list[int]:
    """Indices of the pairs a metric must compute: the others have an empty prediction or reference
    (after stripping) and get the metric's empty score. Also checks that the two lists pair up."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    return [i for i, (p, r) in enumerate(zip(predictions, references, strict=True)) if p.strip() and r.strip()]


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
