"""Sizes of a data artifact: dialogues, examples and token-length percentiles per split, and how much of the
held-out splits repeats the training split word for word (`overlap`).

Lengths are counted in whitespace tokens (special tokens count as separators) unless a tokenizer
is given: 'gpt2' (GPT-2's BPE, offline), an HF tokenizer id or folder, or a model artifact URI.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from dorl.data.splits import SPLITS
from dorl.store import Artifact
from dorl.text import SPECIAL_TOKENS

PERCENTILES = (50, 90, 99)
_SPECIAL = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))


def whitespace_lengths(texts: list[str]) -> list[int]:
    return [len(_SPECIAL.sub(" ", t).split()) for t in texts]


def tokenizer_lengths(name: str) -> Callable[[list[str]], list[int]]:
    """Token counts with a real tokenizer (with dorl's special tokens, so each counts as one token)."""
    from dorl.store import Location
    from dorl.store.artifact import MANIFEST
    from dorl.tokenizer import build_tokenizer

    if name == "gpt2":
        tok = build_tokenizer("gpt2")
    else:
        if "://" in name or Location(name).exists(MANIFEST):
            name = str(Artifact(name).local_dir())
        tok = build_tokenizer("pretrained", name)

    def lengths(texts: list[str]) -> list[int]:
        out: list[int] = []
        for i in range(0, len(texts), 1000):
            out += [len(ids) for ids in tok(texts[i : i + 1000], add_special_tokens=False)["input_ids"]]
        return out

    return lengths


def describe(lengths: list[int]) -> dict:
    if not lengths:
        return {f"p{p}": 0 for p in PERCENTILES} | {"max": 0, "mean": 0.0}
    arr = np.asarray(lengths)
    out = {f"p{p}": int(np.percentile(arr, p)) for p in PERCENTILES}
    return out | {"max": int(arr.max()), "mean": round(float(arr.mean()), 1)}


def stats(uri: str, tokenizer: str | None = None) -> dict:
    """{"dataset", "unit", "splits": {split: {dialogues, examples, context, response, conversation}}}."""
    import pyarrow.parquet as pq

    art = Artifact(uri, expect_stage="data")
    count = tokenizer_lengths(tokenizer) if tokenizer else whitespace_lengths
    out = {"uri": art.uri, "dataset": art.info.get("dataset", "?"), "unit": tokenizer or "whitespace", "splits": {}}
    for split in SPLITS:
        ex = pq.read_table(art.path(f"examples/{split}.parquet"), columns=["context", "response"]).to_pydict()
        conv = pq.read_table(art.path(f"conversations/{split}.parquet"), columns=["text"]).to_pydict()
        out["splits"][split] = {
            "dialogues": len(conv["text"]),
            "examples": len(ex["response"]),
            "context": describe(count(ex["context"])),
            "response": describe(count(ex["response"])),
            "conversation": describe(count(conv["text"])),
        }
    out["overlap"] = overlap(art)
    return out


def overlap(art: Artifact, split: str = "test") -> dict:
    """How much of `split` occurs verbatim in the training split: `responses`, the share of its examples whose
    response (the exact string) is also a training response; `pairs`, the share whose context and response are
    both a training example's. A model can score on those by recalling the training data."""
    import pyarrow.parquet as pq

    def read(name: str) -> dict:
        return pq.read_table(art.path(f"examples/{name}.parquet"), columns=["context", "response"]).to_pydict()

    train, held = read("train"), read(split)
    return verbatim(train["context"], train["response"], held["context"], held["response"]) | {"split": split}


def verbatim(train_contexts, train_responses, contexts, responses) -> dict:
    """{"examples", "responses", "pairs"}: the counts and shares of (contexts, responses) found verbatim in train."""
    seen, pairs = set(train_responses), set(zip(train_contexts, train_responses, strict=True))
    n = len(responses)
    hits = sum(r in seen for r in responses)
    both = sum(p in pairs for p in zip(contexts, responses, strict=True))
    return {
        "examples": n,
        "responses_in_train": hits,
        "responses": round(hits / n, 4) if n else 0.0,
        "pairs_in_train": both,
        "pairs": round(both / n, 4) if n else 0.0,
    }


def table(result: dict):
    from rich.table import Table

    t = Table(title=f"{result['uri']} ({result['dataset']}); lengths in {result['unit']} tokens")
    o = result.get("overlap")
    if o:
        t.caption = (
            f"{o['split']} responses found verbatim among train responses: {o['responses_in_train']:,} of "
            f"{o['examples']:,} ({o['responses']:.1%}); context and response both: {o['pairs_in_train']:,} "
            f"({o['pairs']:.1%})"
        )
    for name in ("split", "dialogues", "examples", "length of"):
        t.add_column(name, justify="left" if name in ("split", "length of") else "right")
    for name in (*(f"p{p}" for p in PERCENTILES), "max", "mean"):
        t.add_column(name, justify="right")
    for split, s in result["splits"].items():
        for k, part in enumerate(("context", "response", "conversation")):
            d = s[part]
            head = [split, f"{s['dialogues']:,}", f"{s['examples']:,}"] if k == 0 else ["", "", ""]
            label = "dialogue" if part == "conversation" else part
            t.add_row(
                *head, label, *(str(d[f"p{p}"]) for p in PERCENTILES), str(d["max"]), str(d["mean"]), end_section=k == 2
            )
    return t
