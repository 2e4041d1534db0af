"""Sentence BLEU as the reference computed it, through sacrebleu, on a 0..1 scale.

The reference called HF `evaluate`'s "bleu" on one (prediction, reference) pair at a time: 13a
tokenisation, n-grams up to 4, no smoothing, brevity penalty exp(1 - r/c) when the prediction is
shorter. Without smoothing any n-gram order with no match (or no n-gram at all: a prediction of
fewer than 4 tokens) makes the geometric mean 0. sacrebleu computes the same with
`smooth_method="none"` and `effective_order=False` (its sentence-level default would drop the
orders a short prediction cannot have).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata

from dorl.config import MetricsConfig
from dorl.metrics import scored_pairs

MAX_ORDER = 4


class Bleu:
    name = "bleu"

    def __init__(self, cfg: MetricsConfig | None = None):
        import logging

        from sacrebleu.metrics import BLEU

        # sacrebleu warns on every sentence that effective_order is off: off is the definition here.
        logging.getLogger("sacrebleu").setLevel(logging.ERROR)
        self.bleu = BLEU(
            tokenize="13a", smooth_method="none", effective_order=False, max_ngram_order=MAX_ORDER, lowercase=False
        )

    def identity(self) -> dict:
        return {
            "metric": "bleu",
            "max_order": MAX_ORDER,
            "smooth": "none",
            "tokenize": "13a",
            "scale": "0..1",
            "empty_score": 0.0,  # an empty prediction or reference, as the reference
            "sacrebleu": metadata.version("sacrebleu"),
        }

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> list[float]:
        out = [0.0] * len(predictions)
        for i in scored_pairs(predictions, references):
            out[i] = self.bleu.sentence_score(predictions[i], [references[i]]).score / 100.0
        return out
