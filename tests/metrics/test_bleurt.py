"""BLEURT: the missing-checkpoint error, and the scoring mechanics on a tiny randomly initialised BERT
regression checkpoint built here (its numbers mean nothing; what is tested is that dorl feeds
(reference, candidate) pairs, batched and padded, and returns the single logit of each)."""

import pytest

from dorl.config import MetricsConfig
from dorl.errors import ConfigError
from dorl.metrics import get_metric

WORDS = "the cat sat on a mat is sitting dog hello world refund sent your way . , ? !".split()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    path = tmp_path_factory.mktemp("bleurt-tiny")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=1,
    )  # fmt: skip
    BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_scores_are_the_logit_of_reference_candidate_pairs(checkpoint):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    preds = ["the cat sat on a mat", "hello", "your refund is on its way !", ""]
    refs = ["the cat is sitting on the mat", "hello world", "refund sent .", "the dog"]
    scores = get_metric("bleurt", MetricsConfig(bleurt_checkpoint=checkpoint, batch_size=2)).score(preds, refs)

    tok = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    with torch.no_grad():  # one pair at a time, no padding
        want = [
            model(**tok(r, p, return_tensors="pt")).logits[0, 0].item()
            for p, r in zip(preds[:3], refs[:3], strict=True)
        ]
    assert scores[:3] == pytest.approx(want, abs=1e-5)
    assert scores[3] == 0.0  # empty prediction


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="BLEURT needs a checkpoint: set metrics.bleurt_checkpoint"):
        get_metric("bleurt", MetricsConfig())
    with pytest.raises(ConfigError, match="not a checkpoint folder"):
        get_metric("bleurt", MetricsConfig(bleurt_checkpoint=str(tmp_path)))


def test_unknown_metric():
    with pytest.raises(ConfigError, match="unknown metric 'rouge'"):
        get_metric("rouge")
