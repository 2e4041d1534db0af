"""BERTScore F1 against an independent computation: the encoder's embeddings with plain torch greedy
cosine matching, rescaled with the baseline numbers read from the file; and against bert-score itself."""

import csv
import functools

import pytest

from dorl import config
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


def test_empty_side_scores_bert_scores_rescaled_zero(scorer):
    """bert-score gives a pair whose prediction or reference tokenises to nothing a raw F of 0, rescaled.
    (bert-score 0.3.13 cannot encode "" under transformers 5, so the library is asked about strings of
    zero-width spaces, which its tokenizer reduces to nothing: the same case.)"""
    from bert_score import BERTScorer

    lib = BERTScorer(
        model_type=str(minilm_path()),
        num_layers=6,
        lang="en",
        rescale_with_baseline=True,
        baseline_path=str(MINILM_BASELINE),
    )
    zw = ["\u200b", PREDS[0], "\u200b \u200b", PREDS[1]]
    zw_refs = [REFS[0], "\u200b", REFS[2], REFS[1]]
    _, _, want = lib.score(zw, zw_refs)
    assert scorer.score(zw, zw_refs) == pytest.approx(want.tolist(), abs=2e-5)
    empty = want[0].item()
    assert empty == pytest.approx(-0.1377, abs=1e-4)  # (0 - b) / (1 - b) with MiniLM's layer-6 baseline
    assert scorer.score(["", "  \n", PREDS[0]], [REFS[0], REFS[1], ""]) == pytest.approx([empty] * 3, abs=2e-5)
    ident = scorer.identity()
    assert ident["empty_score"] == pytest.approx(empty, abs=2e-5) and "raw F 0" in ident["empty"]


def test_empty_side_unrescaled_is_zero():
    raw = get_metric("bertscore", MetricsConfig(bertscore_model="minilm", bertscore_layers=6, bertscore_rescale=False))
    assert raw.score(["", "\u200b"], [REFS[0], REFS[1]]) == [0.0, 0.0]


def test_identity(scorer):
    ident = scorer.identity()
    assert ident["model"] == "sentence-transformers/all-MiniLM-L6-v2" and ident["num_layers"] == 6
    assert ident["hash"].startswith("sentence-transformers/all-MiniLM-L6-v2_L6_no-idf_version=")
    assert ident["hash"].endswith("-custom-rescaled")
    assert ident["baseline"]["F"] == pytest.approx(baseline_f(6)) and ident["baseline"]["source"] == "dorl"
    # bert-score's distribution version and the one its hash string carries, both named.
    from importlib import metadata

    import bert_score

    assert ident["bert_score"] == metadata.version("bert-score")
    assert ident["bert_score_module_version"] == bert_score.__version__
    assert f"version={ident['bert_score_module_version']}(" in ident["hash"]


def test_reference_default_is_bert_scores_english_default():
    enc = resolve(MetricsConfig())
    assert (enc.model_type, enc.num_layers, enc.baseline) == ("roberta-large", 17, None)  # bert-score's own baseline


def test_unavailable_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="bertscore_layers must be set"):
        get_metric("bertscore", MetricsConfig(bertscore_model=str(tmp_path), bertscore_layers=None))
    with pytest.raises(ConfigError, match="1..6"):  # refused by the config (MetricsConfig.check), key named
        config.load(sets=["metrics.bertscore_model=minilm", "metrics.bertscore_layers=17"])
    with pytest.raises(ConfigError, match="cannot load the BERTScore encoder"):
        get_metric("bertscore", MetricsConfig(bertscore_model=str(tmp_path), bertscore_layers=3))
