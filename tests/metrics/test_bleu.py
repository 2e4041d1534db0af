"""Sentence BLEU (max order 4, no smoothing, 13a) against n-gram counts worked out by hand."""

import math

import pytest

from dorl.metrics import get_metric


@pytest.fixture(scope="module")
def bleu():
    return get_metric("bleu")


def test_hand_counted_ngrams(bleu):
    ref = "the cat sat on the mat"
    # "the cat sat on the mat today": 1-grams 6/7, 2-grams 5/6, 3-grams 4/5, 4-grams 3/4; longer than ref: BP 1.
    # "the cat sat on a mat": 1-grams 5/6, 2-grams 3/5 (the cat, cat sat, sat on), 3-grams 2/4, 4-grams 1/3.
    # "the cat sat on the": every n-gram matches; 5 tokens vs 6: BP = exp(1 - 6/5).
    preds = ["the cat sat on the mat today", "the cat sat on a mat", "the cat sat on the"]
    want = [
        (6 / 7 * 5 / 6 * 4 / 5 * 3 / 4) ** 0.25,
        (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25,
        math.exp(1 - 6 / 5),
    ]
    assert bleu.score(preds, [ref] * 3) == pytest.approx(want, abs=1e-9)


def test_no_smoothing_and_no_effective_order(bleu):
    # No 4-gram matches -> 0; fewer than 4 tokens -> no 4-grams at all -> 0 (the reference's definition).
    assert bleu.score(["the cat sat in a hat", "the cat"], ["the cat sat on the mat", "the cat"]) == [0.0, 0.0]


def test_13a_tokenisation_splits_punctuation(bleu):
    # 13a separates the final period: both sides become "the cat sat on the mat ." -> identical.
    assert bleu.score(["the cat sat on the mat."], ["the cat sat on the mat ."]) == [pytest.approx(1.0)]
    # and it is case-sensitive, as the reference.
    assert bleu.score(["The Cat Sat On The Mat"], ["the cat sat on the mat"]) == [0.0]


def test_empty_prediction_scores_zero(bleu):
    assert bleu.score(["", "   "], ["the cat sat on the mat", "anything"]) == [0.0, 0.0]
    assert bleu.identity()["tokenize"] == "13a" and bleu.identity()["smooth"] == "none"
