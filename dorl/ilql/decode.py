"""ILQL's decoding: advantage-guided scores as a logits adjustment of the shared loop, and value re-ranking.

`dorl.generate` decodes (one loop, with the KV cache); ILQL supplies `Advantage`, called at each step
with the step's log-probs and last hidden states:

    greedy:   argmax  log_softmax(LM logits) + beta * (min target-Q(s, ·) - V(s))          (as trlx at T -> 0)
    sampling: sample  softmax(top-k(log_softmax(LM logits / temperature) + beta * (min target-Q - V)))

With beta = 0 there is no adjustment, the heads are not evaluated at all and greedy decoding is
exactly HF `generate(do_sample=False)`: the reference's evaluation of its ILQL model. When sampling,
the temperature scales the LM logits only (trlx divides the sum by it): a low temperature sharpens
the LM and so cancels beta (at T = 1e-3, 0.95 of the mass stays on the LM's argmax); the greedy path
takes no temperature. Settings come in one `dorl.generate.DecodeConfig` (`decode`).

`ilql_scorer` samples responses and re-ranks them by `response_values`: min target-Q of each
response's last action (an EOS-stopped sample valued with Q(s, <_rep_end_>)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dorl.generate import DecodeConfig, encode_prompts, generate, left_pad, stop_token_ids
from dorl.ilql.model import ILQLModel
from dorl.prompts import PromptFormat


@dataclass
class Samples:
    ids: list[list[int]]  # new tokens per sequence, the stop token included when there was one
    finished: list[bool]  # ended with a stop token (else: ran out of max_new_tokens)
    texts: list[str]  # the tokens before the stop token, decoded without special tokens


@dataclass
class Candidate:
    text: str
    value: float  # min target-Q of the response's last action (see `response_values`)
    finished: bool
    ids: list[int]


class Advantage:
    """ILQL's logits adjustment (`dorl.generate.Adjustment`): scores = logp + beta * (min target-Q(s, ·) - V(s)),
    from the heads at the step's last hidden states."""

    wants_hidden = True

    def __init__(self, model: ILQLModel, beta: float):
        self.model, self.beta = model, beta

    def __call__(self, logp: Tensor, hidden: Tensor) -> Tensor:
        return logp + self.beta * self.model.heads.advantage(hidden, self.model.lm_head.weight).float()


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def decode(
    model: ILQLModel,
    tok,
    prompts: list[str],
    config: DecodeConfig | None = None,
    *,
    num_samples: int = 1,
    desc: str = "ilql decoding",
    progress: bool = False,
    **settings,
) -> Samples:
    """Responses to text prompts (each repeated `num_samples` times, consecutively), decoded by
    `dorl.generate` as `config` (or `DecodeConfig(**settings)`; settings also override a config) says,
    with the `Advantage` adjustment when beta != 0. Sampling is seeded by `config.seed` (one generator
    over the batches of `batch_size` sequences, so results depend on `batch_size`). Always dorl's loop
    and torch's matmul for the LM head (lm_head=torch): at beta = 0 greedy is HF greedy bit for bit."""
    if "greedy" in settings:  # the decoding loop's name for not sampling
        settings["sample"] = not settings.pop("greedy")
    dc = (config or DecodeConfig()).but(**settings)
    dc = dc.but(num_beams=1, num_return=num_samples if dc.sample else 1, engine="dorl", lm_head="torch")
    model.eval()
    adjust = Advantage(model, dc.beta) if dc.beta != 0 else None
    gen = generate(model.lm, tok, prompts, dc, adjust=adjust, desc=desc, progress=progress)
    stops = stop_token_ids(tok)
    repeat = 1 if dc.sample else num_samples  # greedy: one decoding per prompt, repeated
    out = Samples([], [], [])
    for seqs in gen.ids:
        for ids in seqs * repeat:
            fin = bool(ids) and ids[-1] in stops
            out.ids.append(ids)
            out.finished.append(fin)
            out.texts.append(tok.decode(ids[:-1] if fin else ids, skip_special_tokens=True))
    return out


@torch.no_grad()
def response_values(
    model: ILQLModel, prompt_ids: list[list[int]], response_ids: list[list[int]], pad_id: int, batch_size: int = 32
) -> list[float]:
    """The value of each complete response: min target-Q(s, a) of its last action (<_rep_end_>).

    Why that value: rewards fall only on a response's last action and the state after it is
    terminal, so Q(s_T, a_T) estimates the (standardised) return of the whole response. It also
    ranks like the sum of the response's advantages: with gamma = 1 that sum telescopes to
    Q(s_T, a_T) - V(s_0), and V(s_0) is the same for every response to one prompt. A response cut
    off by max_new_tokens is valued at its last token, i.e. by what continuing is worth."""
    device = device_of(model)
    values: list[float] = []
    if len(prompt_ids) != len(response_ids) or not all(response_ids):
        raise ValueError("need one non-empty response per prompt")
    for start in range(0, len(prompt_ids), batch_size):
        part = slice(start, start + batch_size)
        seqs = [p + r for p, r in zip(prompt_ids[part], response_ids[part], strict=True)]
        ids, mask = left_pad(seqs, pad_id, device)
        last = torch.full((len(seqs),), ids.shape[1] - 1, device=device)  # left padding: all end at the right
        values += model.response_values(ids, mask, last).tolist()
    return values


@torch.no_grad()
def ilql_scorer(
    model: ILQLModel,
    tok,
    prompts: list[str],
    config: DecodeConfig | None = None,
    *,
    num_candidates: int = 5,
    progress: bool = False,
    **settings,
) -> list[list[Candidate]]:
    """Sample `num_candidates` responses per prompt (as `decode`, always sampling) and return them
    sorted by `response_values`, best first."""
    dc = (config or DecodeConfig()).but(**settings, sample=True)
    gen = decode(model, tok, prompts, dc, num_samples=num_candidates, desc="ilql samples", progress=progress)
    prompt_ids = [ids for ids in encode_prompts(tok, prompts, dc.prompt_tokens) for _ in range(num_candidates)]
    # A sample that stopped at <|endoftext|> is valued by Q(s, <_rep_end_>), the action that ends every training
    # response: nothing trains Q(s, EOS).
    rep_end = tok.convert_tokens_to_ids(PromptFormat.of(tok).end)  # <_rep_end_>, or the chat template's
    ends = [
        ids[:-1] + [rep_end] if fin and ids[-1] != rep_end else ids
        for ids, fin in zip(gen.ids, gen.finished, strict=True)
    ]
    values = response_values(model, prompt_ids, ends, tok.pad_token_id, dc.batch_size)
    cands = [Candidate(*c) for c in zip(gen.texts, values, gen.finished, gen.ids, strict=True)]
    return [sorted(cands[i : i + num_candidates], key=lambda c: -c.value) for i in range(0, len(cands), num_candidates)]
