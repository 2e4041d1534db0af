"""Ranking responses by the ILQL value V of their last state: the reference's `ilql_scorer` evaluation
and the value-ranking validation metric.

The reference (asappresearch/dialogue-offline-rl, `evaluate_reward_metrics.py`,
`generate_ilql_scorer_on_tf`) appends `<_rep_end_>` to each decoded candidate (special tokens
skipped), runs the ILQL model and keeps `V = vs[:, :-1]`, `V[-1]`: V at the last *action* state, the
state after the response's text whose action is `<_rep_end_>`. That is where every training sample
ends (response = candidate + `<_rep_end_>`, reward on that last action), so it is the one state of a
response whose V is trained on the response's whole return. A candidate that stopped at
`<|endoftext|>` is valued at the same state: the stop token is dropped, never valued itself (nothing
trains Q(s, EOS), nor V after it).
"""

from __future__ import annotations

import numpy as np
import torch

from dorl.generate import encode_prompts, left_pad, stop_token_ids
from dorl.ilql.decode import device_of
from dorl.ilql.model import ILQLModel


def response_text_ids(response_ids: list[int], stop_ids: list[int]) -> list[int]:
    """A response's tokens before its first stop token (`<_rep_end_>` or `<|endoftext|>`)."""
    n = next((i for i, t in enumerate(response_ids) if t in stop_ids), len(response_ids))
    return response_ids[:n]


@torch.no_grad()
def last_state_values(
    model: ILQLModel,
    prompt_ids: list[list[int]],
    response_ids: list[list[int]],
    stop_ids: list[int],
    pad_id: int,
    batch_size: int = 32,
) -> list[float]:
    """V(s_T) of each response: s_T = prompt + the response's text (cut at its first stop token), the
    state whose action is `<_rep_end_>` in training. An empty response is valued at the prompt's end."""
    if len(prompt_ids) != len(response_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
    if not all(prompt_ids):
        raise ValueError("an empty prompt has no state to value")
    model.eval()
    device = device_of(model)
    values: list[float] = []
    for start in range(0, len(prompt_ids), batch_size):
        part = slice(start, start + batch_size)
        seqs = [p + response_text_ids(r, stop_ids) for p, r in zip(prompt_ids[part], response_ids[part], strict=True)]
        ids, mask = left_pad(seqs, pad_id, device)
        h, _ = model.hidden(ids, mask, model.position_ids(mask))
        values += model.heads.v(h[:, -1]).float().tolist()  # left padding: every state ends at the right
    return values


def score_texts(model: ILQLModel, tok, prompts: list[str], texts: list[str], prompt_tokens: int, batch_size: int = 32):
    """`last_state_values` of decoded texts (as the reference: re-tokenised, so any model's candidates can be
    scored), each after its prompt left-truncated to `prompt_tokens` as generation does."""
    prompt_ids = encode_prompts(tok, prompts, prompt_tokens)
    response_ids = tok(list(texts), add_special_tokens=False)["input_ids"]
    return last_state_values(model, prompt_ids, response_ids, stop_token_ids(tok), tok.pad_token_id, batch_size)


def order_by_value(values: list[float]) -> list[int]:
    """Indices from the highest value down; ties keep their order (the greedy response first)."""
    return sorted(range(len(values)), key=lambda i: -values[i])


def value_ranking(values, groups, returns) -> dict:
    """How often V ranks a context's top-return response above its others, over the contexts whose
    responses do not all share one return (the rest say nothing about ranking).

    value_ranking: the share of those contexts whose highest-V response has the context's top return
                   (ties in V count against: the top-return response must stand above the others);
    value_pairs:   the share of (top-return, lower-return) pairs of a context that V orders correctly;
    value_contexts: how many contexts counted."""
    values, returns = np.asarray(values, dtype=np.float64), np.asarray(returns, dtype=np.float64)
    _, group_ids = np.unique(np.asarray(groups), return_inverse=True)
    hits = pairs = right = contexts = 0
    for g in range(group_ids.max() + 1 if len(group_ids) else 0):
        v, r = values[group_ids == g], returns[group_ids == g]
        top = r == r.max()
        if top.all():
            continue
        contexts += 1
        best_other = v[~top].max()
        hits += int(v[top].max() > best_other)
        cmp = v[top][:, None] > v[~top][None, :]
        pairs += cmp.size
        right += int(cmp.sum())
    return {
        "value_ranking": hits / contexts if contexts else None,
        "value_pairs": right / pairs if pairs else None,
        "value_contexts": contexts,
    }
