"""Candidates and rewards for one chunk of contexts: the unit of work, checkpointing and sharding.

For every context: the base model's `num_candidates` beam-search responses to context +
<_rep_start_> (generated in length-sorted batches over the whole chunk), each scored against the
human response with the reward metric (all pairs of the chunk in one call), plus the human
response itself as candidate 0 with reward 1.
"""

from __future__ import annotations

import logging
import time

import pandas as pd

from dorl.config import RelabelConfig
from dorl.generate import DecodeConfig, generate
from dorl.prompts import PromptFormat

log = logging.getLogger("dorl.relabel")

# Columns of a chunk (and of a shard's table): the candidates table plus the example's position.
CHUNK_COLUMNS = [
    "example_index",
    "dialogue_id",
    "turn_index",
    "context",
    "response",
    "candidate_index",
    "candidate",
    "reward",
]
# The candidates table (`candidates/{split}.parquet` of a relabel artifact): what every method builds its
# training set from (dorl/methods/training_set.py). The return is the reward's bin (dorl.relabel.returns).
CANDIDATE_COLUMNS = [c for c in CHUNK_COLUMNS if c != "example_index"] + ["return"]
HUMAN_REWARD = 1.0


def decode_config(cfg: RelabelConfig) -> DecodeConfig:
    """relabel.*'s beam search: num_candidates of num_beams, no sampling."""
    return DecodeConfig(
        prompt_tokens=cfg.prompt_tokens,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        num_beams=cfg.num_beams,
        num_return=cfg.num_candidates,
        engine=cfg.generator,
        lm_head=cfg.lm_head,
    )


def relabel_chunk(
    examples: pd.DataFrame, first_index: int, model, tokenizer, metric, cfg: RelabelConfig
) -> tuple[pd.DataFrame, dict]:
    """Candidates with rewards for `examples` (rows first_index, first_index+1, … of their split)."""
    started = time.perf_counter()
    contexts = examples["context"].tolist()
    humans = examples["response"].tolist()
    fmt = PromptFormat.of(tokenizer)  # the base model's prompt format (dorl.prompts)
    gen = generate(
        model,
        tokenizer,
        [fmt.prompt(c) for c in contexts],
        decode_config(cfg),
        progress=False,  # inside the stage's chunk bar (rich shows one live display at a time)
    )
    generated = time.perf_counter()

    # Score each distinct (candidate, human response) pair once, all in one call.
    pairs = [(c, h) for cands, h in zip(gen.texts, humans, strict=True) for c in cands]
    distinct = list(dict.fromkeys(pairs))
    scores = metric.score([c for c, _ in distinct], [h for _, h in distinct])
    reward = dict(zip(distinct, scores, strict=True))
    scored = time.perf_counter()

    rows = []
    dids, turns = examples["dialogue_id"].tolist(), examples["turn_index"].tolist()
    for i, (ctx, human, cands) in enumerate(zip(contexts, humans, gen.texts, strict=True)):
        base = (first_index + i, dids[i], int(turns[i]), ctx, human)
        rows.append((*base, 0, human, HUMAN_REWARD))
        rows.extend((*base, k + 1, c, float(reward[(c, human)])) for k, c in enumerate(cands))
    frame = pd.DataFrame(rows, columns=CHUNK_COLUMNS).astype(
        {"example_index": "int64", "turn_index": "int32", "candidate_index": "int32", "reward": "float64"}
    )
    stats = {
        "contexts": len(contexts),
        "candidates": len(pairs),
        "pairs_scored": len(distinct),
        "generate_s": generated - started,
        "score_s": scored - generated,
        "seconds": scored - started,
    }
    return frame, stats
