"""Compute a BERTScore rescaling baseline the way bert-score made its own.

bert-score's baselines (`get_rescale_baseline/get_rescale_baseline.py` in its repository) are the
mean P, R and F, for every layer of the encoder, over random pairs of *unrelated* sentences: it
reads up to 1M lines of monolingual text (WMT news crawl 2017 for English), keeps those with fewer
than 32 words, draws two disjoint random halves, pairs them up, scores the pairs with
`BERTScorer(model_type, all_layers=True)` in blocks of 1,000 and writes the running means as a
`LAYER,P,R,F` table. Rescaling then maps that "unrelated" level to 0: (F - b) / (1 - b).

dorl does the same, seeded, on any one-sentence-per-line corpus. News crawl cannot be downloaded
here; the default corpus is the usage examples of WordNet 3.0 (installed for METEOR): 48k short
sentences written by lexicographers across all of English, none related to another, which is what
a baseline needs. `baselines/all-MiniLM-L6-v2.tsv` was made with:

    python -m dorl.metrics.baseline --model minilm --corpus wordnet --seed 0 \
        --out dorl/metrics/baselines/all-MiniLM-L6-v2.tsv
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import click

log = logging.getLogger("dorl.metrics")

MAX_WORDS = 32  # bert-score keeps lines with fewer words than this
BLOCK = 1000  # pairs per scoring call, as bert-score


def wordnet_examples(root: str | Path | None = None) -> list[str]:
    """The distinct usage examples (the quoted sentences of the glosses) of WordNet's data files."""
    if root is None:
        import nltk

        root = nltk.data.find("corpora/wordnet")
    root = Path(str(root))
    found: set[str] = set()
    for pos in ("noun", "verb", "adj", "adv"):
        with open(root / f"data.{pos}", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:  # licence header
                    continue
                gloss = line.split(" | ", 1)[1]
                found.update(s.strip() for s in re.findall(r'"([^"]+)"', gloss) if s.strip())
    return sorted(found)


def read_corpus(corpus: str) -> list[str]:
    if corpus == "wordnet":
        return wordnet_examples()
    with open(corpus, encoding="utf-8") as f:
        return [ln.strip() for ln in f if ln.strip()]


def compute_baseline(model_type: str, sentences: list[str], seed: int = 0, batch_size: int = 64, device=None):
    """bert-score's recipe: mean P/R/F per layer over random disjoint pairs -> DataFrame LAYER,P,R,F."""
    import numpy as np
    import pandas as pd
    import torch
    from bert_score import BERTScorer

    lines = [s for s in sentences if 0 < len(s.split(" ")) < MAX_WORDS]
    if len(lines) < 2:
        raise ValueError("the corpus needs at least two sentences of fewer than 32 words")
    picks = np.random.default_rng(seed).choice(len(lines), size=(2, len(lines) // 2), replace=False)
    hyp, cand = [lines[i] for i in picks[0]], [lines[i] for i in picks[1]]
    from transformers import AutoConfig

    layers = AutoConfig.from_pretrained(model_type).num_hidden_layers  # all are scored; BERTScorer wants a count
    scorer = BERTScorer(model_type=model_type, num_layers=layers, all_layers=True, device=device)
    means, count = None, 0
    with torch.no_grad():
        for start in range(0, len(hyp), BLOCK):
            h, c = hyp[start : start + BLOCK], cand[start : start + BLOCK]
            scores = torch.stack(scorer.score(h, c, batch_size=batch_size), dim=0)  # [3, layers, pairs]
            block = scores.mean(dim=-1)
            means = block if means is None else means * count / (count + len(h)) + block * len(h) / (count + len(h))
            count += len(h)
            log.info("baseline: %d / %d pairs", count, len(hyp))
    table = pd.DataFrame(means.numpy().transpose(), columns=["P", "R", "F"])
    table.index.name = "LAYER"
    return table


@click.command()
@click.option("--model", "model", required=True, help="'minilm', a model id, or a local encoder folder.")
@click.option("--corpus", default="wordnet", show_default=True, help="'wordnet' or a text file, one sentence a line.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random pairing.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Baseline file to write (LAYER,P,R,F).")
def main(model: str, corpus: str, seed: int, batch_size: int, out: str) -> None:
    """Compute a BERTScore rescaling baseline for MODEL from a corpus, as bert-score made its own."""
    from dorl import log as dlog
    from dorl.metrics.bertscore import MINILM, minilm_path

    dlog.setup()
    model_type = str(minilm_path()) if model == MINILM else model
    sentences = read_corpus(corpus)
    log.info("baseline for %s from %d sentences of %s (seed %d)", model, len(sentences), corpus, seed)
    table = compute_baseline(model_type, sentences, seed=seed, batch_size=batch_size)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out)
    click.echo(table.to_string())


if __name__ == "__main__":
    main()
