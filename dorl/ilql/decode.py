"""Advantage-guided decoding with a KV cache, and value re-ranking of sampled responses.

Each new token costs one forward of the batch's newest tokens over the cached keys/values:

    greedy:   argmax  log_softmax(LM logits) + beta * (min target-Q(s, ·) - V(s))          (as trlx at T -> 0)
    sampling: sample  softmax(top-k(log_softmax(LM logits / temperature) + beta * (min target-Q - V)))

With beta = 0 the heads are not evaluated at all and greedy decoding is exactly HF
`generate(do_sample=False)`: the reference's evaluation of its ILQL model. When sampling, the
temperature scales the LM logits only (trlx divides the sum by it): a low temperature sharpens the
LM and so cancels beta (at T = 1e-3, 0.95 of the mass stays on the LM's argmax); the greedy path
takes no temperature. Settings come in one `dorl.generate.DecodeConfig`; prompts are encoded, and
responses stopped (<_rep_end_> or <|endoftext|>), as `dorl.generate` does; prompts are left-padded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dorl.errors import ConfigError
from dorl.generate import DecodeConfig, encode_prompts, stop_token_ids
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


def next_tokens(
    logits: Tensor,
    adv: Tensor | None,
    beta: float,
    top_k: int,
    temperature: float,
    greedy: bool,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pick one token per row from LM logits (B, |V|) and advantages (B, |V|) or None."""
    if greedy and adv is None:
        return logits.argmax(-1)  # the plain LM's greedy choice, bit for bit
    # greedy is the T -> 0 limit of trlx's softmax((log_softmax(LM) + beta * adv) / T): no temperature
    scores = F.log_softmax(logits if greedy else logits / temperature, dim=-1)
    if adv is not None:
        scores = scores + beta * adv
    if greedy:
        return scores.argmax(-1)
    if 0 < top_k < scores.shape[-1]:
        kth = scores.topk(top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    return torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model: ILQLModel,
    input_ids: Tensor,
    attention_mask: Tensor,
    *,
    stop_ids: list[int],
    pad_id: int,
    max_new_tokens: int = 32,
    beta: float = 0.0,
    top_k: int = 20,
    temperature: float = 1.0,
    greedy: bool = True,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> tuple[Tensor, Tensor]:
    """Decode a left-padded batch: new tokens (B, L) (pad after a stop) and finished flags (B,).
    `use_cache=False` re-runs the whole sequence every step (slow; kept to check the cache)."""
    if temperature <= 0 or top_k < 0:
        raise ConfigError(f"ILQL decoding needs temperature > 0 and top_k >= 0 (got {temperature}, {top_k})")
    advantage = beta != 0
    stops = torch.tensor(stop_ids, dtype=torch.long, device=input_ids.device)
    positions = model.position_ids(attention_mask)
    seq, mask = input_ids, attention_mask
    step_ids, step_pos, cache = input_ids, positions, None
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    new = []
    for _ in range(max_new_tokens):
        if use_cache:
            logits, adv, cache = model.step(step_ids, mask, step_pos, cache, advantage)
        else:
            logits, adv, _ = model.step(seq, mask, positions, None, advantage)
        token = next_tokens(logits, adv, beta, top_k, temperature, greedy, generator)
        token = token.masked_fill(done, pad_id)
        new.append(token)
        done |= torch.isin(token, stops)
        step_ids, step_pos = token[:, None], step_pos[:, -1:] + 1
        seq, positions = torch.cat([seq, step_ids], 1), torch.cat([positions, step_pos], 1)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
        if done.all():
            break
    empty = input_ids.new_zeros(input_ids.shape[0], 0)
    return (torch.stack(new, 1) if new else empty), done


def left_pad(rows: list[list[int]], pad_id: int, device=None) -> tuple[Tensor, Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        if r:
            ids[b, width - len(r) :] = torch.tensor(r)
            mask[b, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


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
    use_cache: bool = True,
    **settings,
) -> Samples:
    """Responses to text prompts (each repeated `num_samples` times, consecutively), decoded as
    `config` (or `DecodeConfig(**settings)`; settings also override a config) says. Sampling is
    seeded by `config.seed` (one generator over the batches, so results depend on `batch_size`)."""
    if "greedy" in settings:  # the decoding loop's name for not sampling
        settings["sample"] = not settings.pop("greedy")
    dc = (config or DecodeConfig()).but(**settings)
    model.eval()
    device = device_of(model)
    generator = torch.Generator(device).manual_seed(dc.seed)
    rows = [ids for ids in encode_prompts(tok, prompts, dc.prompt_tokens) for _ in range(num_samples)]
    stops, pad = stop_token_ids(tok), tok.pad_token_id
    out = Samples([], [], [])
    for start in range(0, len(rows), dc.batch_size):
        ids, mask = left_pad(rows[start : start + dc.batch_size], pad, device)
        new, done = generate(
            model,
            ids,
            mask,
            stop_ids=stops,
            pad_id=pad,
            max_new_tokens=dc.max_new_tokens,
            beta=dc.beta,
            top_k=dc.top_k,
            temperature=dc.temperature,
            greedy=not dc.sample,
            generator=generator,
            use_cache=use_cache,
        )
        for seq, fin in zip(new.tolist(), done.tolist(), strict=True):
            n = next((i + 1 for i, t in enumerate(seq) if t in stops), len(seq))
            out.ids.append(seq[:n])
            out.finished.append(fin)
            out.texts.append(tok.decode(seq[: n - 1] if fin else seq[:n], skip_special_tokens=True))
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
    **settings,
) -> list[list[Candidate]]:
    """Sample `num_candidates` responses per prompt (as `decode`, always sampling) and return them
    sorted by `response_values`, best first."""
    dc = (config or DecodeConfig()).but(**settings, sample=True)
    gen = decode(model, tok, prompts, dc, num_samples=num_candidates)
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
