"""dt: Decision Transformer. Every candidate becomes a line conditioned on its return token; at
evaluation the model is asked for the top return.

    line   = context' + <return token> + <_rep_start_> + response + <_rep_end_>
    prompt = context' + <top return token> + <_rep_start_>

where context' asks for the high return before every earlier agent turn (each of its
<_rep_start_> is preceded by <_reward_one_>, as the reference). The return tokens: with the
default 2 return bins the reference's `<_reward_zero_>` / `<_reward_one_>`; with N > 2 bins
(`relabel.return_bins`) new tokens `<_return_0_>` … `<_return_{N-1}_>`, added to the tokenizer
(embeddings resized). Training records them in its manifest as `info.return_tokens`, and
evaluation prompts with the last of them. This file is the only one that knows them.

Whether DT reads its token: evaluation also answers every context greedily with the *lowest* return token and
records how many greedy responses change (`metrics.generation.return_token` of the evaluation: top, bottom, n,
changed). A DT whose response does not depend on the token is a fine-tuned LM under another name.

In the chat format (`dorl.prompts`) the same tokens open the assistant's turns: every earlier assistant message
starts with <_reward_one_>, and the return token follows the generation prompt, right before the response.
"""

from __future__ import annotations

import logging

from dorl.methods.base import prompt_format
from dorl.methods.lines import Lines
from dorl.store import Artifact
from dorl.text import REP_START, REWARD_ONE, REWARD_ZERO, line, prompt

log = logging.getLogger("dorl.train")


def return_tokens(bins: int) -> list[str]:
    """DT token of each return (index = bin)."""
    if bins == 2:
        return [REWARD_ZERO, REWARD_ONE]
    return [f"<_return_{k}_>" for k in range(bins)]


def dt_context(context: str, return_token: str) -> str:
    """Every earlier agent turn asks for the high return; the target's return token goes right before
    its <_rep_start_>."""
    return context.replace(REP_START, REWARD_ONE + REP_START) + return_token


def dt_line(context: str, response: str, return_token: str) -> str:
    return line(dt_context(context, return_token), response)


def dt_prompt(context: str, return_token: str = REWARD_ONE) -> str:
    return prompt(dt_context(context, return_token))


def relabel_bins(data: Artifact) -> int:
    """The return bins of the relabel artifact `data` (its info.return_bins)."""
    from dorl.methods.training_set import return_bins

    return return_bins(data)


class DT(Lines):
    def __init__(self, cfg, name):
        super().__init__(cfg, name)
        self.tokens: list[str] = []

    def rows(self, candidates, return_bins: int):
        import numpy as np

        return np.ones(len(candidates), dtype=bool)

    def text(self, context: str, response: str, ret: int, return_bins: int) -> str:
        return dt_line(context, response, return_tokens(return_bins)[ret])

    def prompted(self, context: str, response: str, ret: int, return_bins: int) -> tuple[str, str]:
        return self.fmt.line(context, response, reply_token=return_tokens(return_bins)[ret], turn_token=REWARD_ONE)

    def check_inputs(self, data: Artifact, base: Artifact | None) -> None:
        super().check_inputs(data, base)
        relabel_bins(data)

    def tokenizer(self, data: Artifact, base: Artifact | None):
        tok = super().tokenizer(data, base)
        missing = [t for t in return_tokens(relabel_bins(data)) if t not in tok.get_vocab()]
        if missing:
            tok.add_tokens(missing, special_tokens=True)
            log.info("dt: added %d return tokens to the tokenizer: %s", len(missing), " ".join(missing))
        return tok

    def untrained_tokens(self, tok) -> list[str]:
        """The return tokens (the base tf never saw them): their embeddings train under LoRA."""
        return [t for t in tok.added_tokens_encoder if t in (REWARD_ZERO, REWARD_ONE) or t.startswith("<_return_")]

    def datasets(self, data: Artifact, tok, rows: dict):
        self.tokens = return_tokens(relabel_bins(data))
        return super().datasets(data, tok, rows)

    def info(self) -> dict:
        return {**super().info(), "return_tokens": self.tokens}

    def prompt(self, context: str, model_info: dict, fmt=None) -> str:
        tokens = model_info.get("return_tokens") or return_tokens(2)
        if fmt is None or fmt.kind == "dorl":
            return dt_prompt(context, tokens[-1])
        return fmt.prompt(context, reply_token=tokens[-1], turn_token=REWARD_ONE)

    def respond_to(self, model, contexts, decode, num_responses, candidates=None):
        """Its responses (asking for the top return), and how many greedy ones change when it asks for the lowest."""
        out, stats = super().respond_to(model, contexts, decode, num_responses, candidates)
        tokens = model.info.get("return_tokens") or return_tokens(2)
        fmt, low_info = prompt_format(model.local_dir()), {**model.info, "return_tokens": [tokens[0]]}
        low, _ = self.respond(model.local_dir(), [self.prompt(c, low_info, fmt) for c in contexts], decode, 1)
        changed = sum(a[0] != b[0] for a, b in zip(out, low, strict=True))
        stats["return_token"] = {"top": tokens[-1], "bottom": tokens[0], "n": len(contexts), "changed": changed}
        log.info("dt: %d of %d greedy responses change when asked for %s instead of %s", changed, len(contexts),
                 tokens[0], tokens[-1])  # fmt: skip
        return out, stats
