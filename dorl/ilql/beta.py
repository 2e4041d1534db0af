"""Choosing ILQL's decoding beta on validation: decode held-out contexts greedily at each beta of a small grid and
keep the one whose responses score best against the human responses.

    record = sweep(model, tok, prompts, references, grid, decode_cfg, metric)
    record["beta"]   # the chosen beta (> 0), what `dorl evaluate` decodes with under ilql.beta=auto

In: a trained ILQL model and its tokenizer, validation prompts (context + <_rep_start_>) with their human
responses, the betas to try (> 0), the evaluation's decoding settings and the training reward's metric. Out: per
beta (0 as well, for comparison: the plain LM's greedy responses) the mean reward of the responses, the model's own
value of them (V at each response's last state, in return units: what the heads believe the response earns), and
the share of responses that differ from beta 0's; and the chosen beta, the best reward among the betas > 0 (the
smaller beta of equal ones). Beta 0 is never chosen: with beta = 0 the heads are not used, and a run that would
choose it says so through `beats_beta_0`.
"""

from __future__ import annotations

import numpy as np

from dorl.ilql.decode import decode
from dorl.ilql.ranking import score_texts


def sweep(model, tok, prompts: list[str], references: list[str], grid, decode_cfg, metric) -> dict:
    meta = model.meta
    rows, base = [], None
    for beta in (0.0, *sorted(grid)):
        texts = [t.strip() for t in decode(model, tok, prompts, decode_cfg.but(beta=float(beta), sample=False)).texts]
        reward = np.asarray(metric.score(texts, references), dtype=float)
        values = np.asarray(score_texts(model, tok, prompts, texts, decode_cfg.prompt_tokens, decode_cfg.batch_size))
        base = texts if base is None else base
        rows.append(
            {
                "beta": float(beta),
                "reward": round(float(reward.mean()), 6),
                "value": round(float(values.mean() * meta.return_std + meta.return_mean), 6),
                "changed": round(float(np.mean([a != b for a, b in zip(texts, base, strict=True)])), 4),
            }
        )
    positive = [r for r in rows if r["beta"] > 0]
    best = max(positive, key=lambda r: r["reward"])  # max keeps the first (smallest beta) of equal rewards
    return {
        "beta": best["beta"],
        "contexts": len(prompts),
        "metric": metric.name,
        "grid": rows,
        "beats_beta_0": best["reward"] > rows[0]["reward"],
    }


def sample_contexts(val, n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Up to `n` validation contexts (a fixed sample, in their first order) and their human responses, from ILQL's
    validation rows (`prompt`, `response` = text + <_rep_end_>, `candidate_index` 0 = the human response)."""
    from dorl.text import REP_END

    human = val[val["candidate_index"] == 0].drop_duplicates("prompt")
    if len(human) > n:
        keep = np.sort(np.random.default_rng(seed).choice(len(human), size=n, replace=False))
        human = human.iloc[keep]
    return human["prompt"].tolist(), [r.removesuffix(REP_END) for r in human["response"]]
