"""Scored candidates -> TRL-ready rows: SFT, KTO and DPO datasets of one split's candidates table.

    out = trl_rows(candidates, return_bins, conversational=True, respond_as="assistant")
    out["sft"]   # prompt, completion: the top-return candidates (tf_top's rows)
    out["kto"]   # prompt, completion, label: every candidate, label = in the top return bin (TRL's KTO format)
    out["dpo"]   # prompt, chosen, rejected: per context its best vs its worst candidate by reward; ties skipped

Formats, as TRL's trainers read them: conversational when the data was your own conversations (the prompt a list of
{role, content} messages with the roles of the source: the system prompt, then user and assistant; the completion,
chosen and rejected a list of one message of the role dorl responds as), else standard: the prompt is dorl's prompt
text (`context<_rep_start_>`) and the completion the response with `<_rep_end_>`, so a trainer using a dorl
tokenizer sees dorl's own training line. In DPO, a context whose best and worst rewards are equal, or whose best and
worst texts are the same, has no preference and is skipped (counted).
"""

from __future__ import annotations

import pandas as pd

from dorl.text import REP_END, parse_context, prompt

KINDS = ("sft", "kto", "dpo")
COLUMNS = {"sft": ["prompt", "completion"], "kto": ["prompt", "completion", "label"],
           "dpo": ["prompt", "chosen", "rejected"]}  # fmt: skip


class Format:
    """How a context and a response are written: TRL's conversational format or dorl's text."""

    def __init__(self, conversational: bool, respond_as: str = "assistant"):
        self.conversational = conversational
        other = "user" if respond_as == "assistant" else "assistant"
        self.roles = {"system": "system", "agent": respond_as, "customer": other}
        self.respond_as = respond_as

    def prompt(self, context: str):
        if not self.conversational:
            return prompt(context)
        return [{"role": self.roles[s], "content": t} for s, t in parse_context(context)]

    def completion(self, text: str):
        return [{"role": self.respond_as, "content": text}] if self.conversational else text + REP_END


def trl_rows(candidates: pd.DataFrame, return_bins: int, fmt: Format) -> tuple[dict[str, list[dict]], dict]:
    """{kind: rows} of one split's candidates table (`CANDIDATE_COLUMNS`), and what DPO skipped."""
    top = return_bins - 1
    out: dict[str, list[dict]] = {k: [] for k in KINDS}
    prompts: dict[str, object] = {}
    skipped = {"tie": 0, "same_text": 0, "single": 0}
    keys = ["dialogue_id", "turn_index", "context"]
    for (_, _, context), group in candidates.groupby(keys, sort=False):
        p = prompts.setdefault(context, fmt.prompt(context))
        texts, rewards, returns = group["candidate"].tolist(), group["reward"].tolist(), group["return"].tolist()
        for text, ret in zip(texts, returns, strict=True):
            if ret == top:
                out["sft"].append({"prompt": p, "completion": fmt.completion(text)})
            out["kto"].append({"prompt": p, "completion": fmt.completion(text), "label": bool(ret == top)})
        if len(texts) < 2:
            skipped["single"] += 1
            continue
        best = max(range(len(texts)), key=lambda i: rewards[i])  # the first of equal rewards
        worst = min(range(len(texts)), key=lambda i: rewards[i])
        if rewards[best] == rewards[worst]:
            skipped["tie"] += 1
        elif texts[best] == texts[worst]:
            skipped["same_text"] += 1
        else:
            out["dpo"].append(
                {"prompt": p, "chosen": fmt.completion(texts[best]), "rejected": fmt.completion(texts[worst])}
            )
    return out, skipped
