"""ILQL training data: the ILQL method's rows (`dorl.methods.ilql.ILQL.training_set`, built from relabel's scored
candidates) -> token ids, action states, rewards.

A sample is prompt + response, where prompt = context + <_rep_start_> and response = candidate +
<_rep_end_>. Only response tokens are actions; the state of action t is position t-1. The
sample's return, standardised over the training set (`ReturnStats`), is the reward of its last
action; every other reward is 0, and the state after the last action is terminal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dorl.errors import DataError


@dataclass(frozen=True)
class ReturnStats:
    """Mean and standard deviation of the training returns (the reference's: unbiased std)."""

    mean: float
    std: float
    n: int

    @classmethod
    def fit(cls, values) -> ReturnStats:
        x = torch.as_tensor(list(values), dtype=torch.float64)
        if x.numel() == 0:
            raise DataError("no training returns to standardise")
        std = x.std().item() if x.numel() > 1 else 0.0
        # Constant returns carry no signal to scale; keep them centred (all zeros) rather than divide by 0.
        return cls(mean=x.mean().item(), std=std if std > 0 else 1.0, n=x.numel())

    def standardise(self, value: float) -> float:
        return (value - self.mean) / self.std


@dataclass
class Sample:
    input_ids: list[int]
    n_actions: int  # the last n_actions tokens are actions
    reward: float  # standardised return of the whole response


def encode(
    df, tok, max_length: int, stats: ReturnStats, value: str = "return", prompt_tokens: int | None = None
) -> list[Sample]:
    """Tokenise prompt and response separately (the boundary is a special token, so this equals
    tokenising the line) and left-truncate to `max_length`, cutting the prompt first. `prompt_tokens`: keep
    only the prompt's last so many tokens first, as decoding and the scorer prompt (the validation samples)."""
    prompts = tok(list(df["prompt"]), add_special_tokens=False)["input_ids"]
    responses = tok(list(df["response"]), add_special_tokens=False)["input_ids"]
    out = []
    for p, r, v in zip(prompts, responses, df[value], strict=True):
        p = p[-prompt_tokens:] if prompt_tokens else p
        ids = (p + r)[-max_length:]
        out.append(Sample(ids, n_actions=min(len(r), len(ids) - 1), reward=stats.standardise(float(v))))
    return out


@dataclass
class Collator:
    """Right-pads samples into a batch: input_ids, state_mask (B, T), rewards (B,). No attention
    mask: with right padding and causal attention no real token sees a pad (see ILQLModel.forward)."""

    pad_id: int

    def __call__(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        width = max(len(s.input_ids) for s in samples)
        ids = torch.full((len(samples), width), self.pad_id, dtype=torch.long)
        states = torch.zeros((len(samples), width), dtype=torch.bool)
        for b, s in enumerate(samples):
            n = len(s.input_ids)
            ids[b, :n] = torch.tensor(s.input_ids)
            states[b, n - 1 - s.n_actions : n - 1] = True
        rewards = torch.tensor([s.reward for s in samples], dtype=torch.float32)
        return {"input_ids": ids, "state_mask": states, "rewards": rewards}
