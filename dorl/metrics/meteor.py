"""Sentence METEOR through nltk with WordNet synonyms (alpha 0.9, beta 3, gamma 0.5).

The reference computed it with HF `evaluate`'s meteor: `single_meteor_score(word_tokenize(ref),
word_tokenize(pred), alpha, beta, gamma)`. `word_tokenize` splits sentences with the pretrained
English punkt model, then words with nltk's improved Treebank tokenizer. punkt's pretrained
parameters cannot be had offline, so dorl splits sentences with an *untrained* Punkt tokenizer (the
same algorithm, knowing a short list of common English abbreviations) and then applies the same
word tokenizer. The two agree wherever sentence ends are unambiguous; they can differ only around
rare abbreviations the trained model knows and the list does not.

WordNet comes from `make install` (`scripts/install_wordnet.sh` -> `.venv/nltk_data`, on nltk's
search path through sys.prefix) or from `metrics.wordnet` (a folder holding corpora/wordnet).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata

from dorl.config import MetricsConfig
from dorl.errors import ConfigError
from dorl.metrics import scored_pairs

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


class Tokenizer:
    """Sentence split (untrained Punkt + abbreviations), then nltk's improved Treebank word tokenizer."""

    def __init__(self):
        from nltk.tokenize import NLTKWordTokenizer
        from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

        params = PunktParameters()
        params.abbrev_types = set(ABBREVIATIONS)
        self.sentences = PunktSentenceTokenizer(params)
        self.words = NLTKWordTokenizer()

    def __call__(self, text: str) -> list[str]:
        return [w for s in self.sentences.tokenize(text) for w in self.words.tokenize(s)]


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
            "tokenizer": "punkt(untrained, abbreviations)+NLTKWordTokenizer",
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
