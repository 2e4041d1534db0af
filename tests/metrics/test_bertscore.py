"""BERTScore F1 against an independent computation: the encoder's embeddings with plain torch greedy
cosine matching, rescaled with the baseline numbers read from the file; and against bert-score itself."""

import csv
import functools

import pytest

from dorl.config import MetricsConfig
from dorl.errors import ConfigError
from dorl.metrics import get_metric
from dorl.metrics.bertscore import MINILM_BASELINE, minilm_path, resolve

PREDS = ["a cat sits on the mat", "hello world", "I can help you with that today.", "Your refund is on its way!"]
REFS = ["the cat is sitting on the mat", "goodbye moon", "Sure, what can I do for you?", "The refund was sent."]


@pytest.fixture(scope="module")
def minilm_cfg():
    return MetricsConfig(bertscore_model="minilm", bertscore_layers=6)


@pytest.fixture(scope="module")
def scorer(minilm_cfg):
    return get_metric("bertscore", minilm_cfg)


@functools.cache
def encoder():
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def plain_f1(pred: str, ref: str) -> float:
    """Greedy cosine matching on layer-6 token embeddings, [CLS]/[SEP] excluded from the averages."""
    import torch

    tok, model = encoder()

    def emb(text):
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            h = model(**enc, output_hidden_states=True).hidden_states[6][0]
        return torch.nn.functional.normalize(h, dim=-1)

    h, r = emb(pred), emb(ref)
    sim = h @ r.T
    p = sim[1:-1].max(dim=1).values.mean().item()  # every candidate word piece against all reference tokens
    rec = sim[:, 1:-1].max(dim=0).values.mean().item()
    return 2 * p * rec / (p + rec)


def baseline_f(layer: int) -> float:
    with open(MINILM_BASELINE) as f:
        return float(next(row for row in csv.DictReader(f) if int(row["LAYER"]) == layer)["F"])


def test_f1_matches_plain_torch_and_baseline(scorer):
    b = baseline_f(6)
    want = [(plain_f1(p, r) - b) / (1 - b) for p, r in zip(PREDS, REFS, strict=True)]
    assert scorer.score(PREDS, REFS) == pytest.approx(want, abs=2e-5)


def test_unrescaled_matches_bert_score(minilm_cfg):
    from bert_score import BERTScorer

    raw = get_metric("bertscore", MetricsConfig(bertscore_model="minilm", bertscore_layers=6, bertscore_rescale=False))
    _, _, f = BERTScorer(model_type=str(minilm_path()), num_layers=6).score(PREDS, REFS)
    assert raw.score(PREDS, REFS) == pytest.approx(f.tolist(), abs=2e-5)
    assert raw.score(PREDS[:1], REFS[:1])[0] == pytest.approx(plain_f1(PREDS[0], REFS[0]), abs=2e-5)


def test_empty_prediction_scores_zero(scorer):
    scores = scorer.score(["", "  ", PREDS[0]], [REFS[0], REFS[1], REFS[0]])
    assert scores[:2] == [0.0, 0.0] and scores[2] > 0.5


def test_identity(scorer):
    ident = scorer.identity()
    assert ident["model"] == "sentence-transformers/all-MiniLM-L6-v2" and ident["num_layers"] == 6
    assert ident["hash"].startswith("sentence-transformers/all-MiniLM-L6-v2_L6_no-idf_version=")
    assert ident["hash"].endswith("-custom-rescaled")
    assert ident["baseline"]["F"] == pytest.approx(baseline_f(6)) and ident["baseline"]["source"] == "dorl"


def test_reference_default_is_bert_scores_english_default():
    enc = resolve(MetricsConfig())
    assert (enc.model_type, enc.num_layers, enc.baseline) == ("roberta-large", 17, None)  # bert-score's own baseline


def test_unavailable_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="bertscore_layers must be set"):
        get_metric("bertscore", MetricsConfig(bertscore_model=str(tmp_path), bertscore_layers=None))
    with pytest.raises(ConfigError, match="1..6"):
        get_metric("bertscore", MetricsConfig(bertscore_model="minilm", bertscore_layers=17))
    with pytest.raises(ConfigError, match="cannot load the BERTScore encoder"):
        get_metric("bertscore", MetricsConfig(bertscore_model=str(tmp_path), bertscore_layers=3))
