"""The decoding loop: relabel's candidates, evaluation's responses and ILQL's decoding, batched over many prompts.

    out = generate(model, tokenizer, prompts, DecodeConfig(num_beams=5, num_return=5))  # out.texts[i]: best first

`DecodeConfig` holds every decoding setting; each step chooses the next tokens one of three ways:

    greedy (num_beams=1):     argmax of the LM logits (transformers' greedy search, bit for bit), or of the
                              adjusted scores adjust(log_softmax(LM logits))
    sampling (sample=True):   one draw from softmax(top-k(adjust(log_softmax(LM logits / temperature)))),
                              from a generator seeded with `seed`
    beam search (num_beams>1): transformers' beam search over adjust(log_softmax(LM logits))

A logits adjustment (`Adjustment`, optional) is called at every step with the step's log-probs and, when
it asks for them (`wants_hidden`), the last position's final hidden states; it returns the scores to
choose from. ILQL's advantage-guided decoding is one (`dorl.ilql.decode.Advantage`: + beta * (min
target-Q - V)); without one, the step is the plain LM's. Every mode uses the KV cache: the prompt is
run once, then one position per step.

Prompts are tokenized once (`encode_prompts`), left-truncated to their last `prompt_tokens` tokens and
left-padded (`left_pad`). Greedy decoding and beam search run each distinct prompt once, in batches of
`batch_size` prompts sorted by length (little padding). Sampling keeps the prompts' order, each prompt
`num_return` times in a row, `batch_size` sequences a batch: a seeded run's draws follow the rows in
that order (so they depend on `batch_size`). A sequence ends at its first stop token (`stop_token_ids`:
`<_rep_end_>` and EOS) or after `max_new_tokens`; a finished sequence leaves the batch. Responses come
back decoded with special tokens stripped and whitespace trimmed, and as token ids, in the prompts' order.

Beam search is transformers' (`GenerationMixin._beam_search`: length penalty 1, early_stopping False,
top (1 + #stop tokens) x beams continuations per step), re-done so that a batch does less work: the
prompt is run once per context and its KV cache copied to the beams, only the last position's logits
are computed, and a context whose search is settled leaves the batch. tests/test_generate.py checks
that the candidates are `model.generate`'s. Engine "hf" calls `model.generate` (plain greedy or beams).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from dorl.errors import ConfigError

log = logging.getLogger("dorl.generate")


@dataclass(frozen=True)
class DecodeConfig:
    """How to decode: one object from the config (relabel.*, eval.*, ilql.*) down to the decoding loop."""

    prompt_tokens: int = 96  # prompts are left-truncated to their last `prompt_tokens` tokens
    max_new_tokens: int = 32
    batch_size: int = 32  # prompts per batch (sampling: sequences per batch)
    num_beams: int = 1  # 1: greedy (or sampling); > 1: beam search (no sampling)
    num_return: int = 1  # responses per prompt (<= num_beams; sampling: samples per prompt)
    sample: bool = False  # sample from the scores (top-k, temperature) instead of taking the argmax
    beta: float = 0.0  # ILQL: scores = log_softmax(LM) + beta * (min target-Q - V) (its `Advantage` reads it)
    top_k: int = 20  # sampling: keep the k best scores (0: all)
    temperature: float = 1.0  # sampling: the LM logits are divided by it before the adjustment
    seed: int = 0  # sampling: seed of the generator
    engine: str = "dorl"  # "dorl" (this loop) or "hf" (model.generate; plain greedy or beam search)
    lm_head: str = "auto"  # engine dorl on a CPU: "auto" = the vocabulary projection through oneDNN (dorl.onednn)

    def but(self, **changes) -> DecodeConfig:
        return replace(self, **changes)


@dataclass
class Generation:
    texts: list[list[str]]  # per prompt: num_return responses, best first
    ids: list[list[list[int]]] = field(default_factory=list)  # their new tokens, up to and including a stop token
    stats: dict = field(default_factory=dict)


class Adjustment(Protocol):
    """A per-step change of the scores a decoding step chooses from."""

    wants_hidden: bool  # whether the step must also hand over the last position's final hidden states (B, d)

    def __call__(self, logp, hidden):
        """(B, |V|) log-probs of the step's LM (after temperature when sampling) -> (B, |V|) scores."""


def stop_token_ids(tokenizer, stop_tokens: Sequence[str] | None = None) -> list[int]:
    """The ids that end a response: the stop tokens (by default the tokenizer's prompt format's end: `<_rep_end_>`
    or the chat template's end-of-turn token, `dorl.prompts`), and EOS (`<|endoftext|>`)."""
    if stop_tokens is None:
        from dorl.prompts import PromptFormat

        stop_tokens = (PromptFormat.of(tokenizer).end,)
    vocab = tokenizer.get_vocab()
    missing = [t for t in stop_tokens if t not in vocab]
    if missing:
        raise ConfigError(f"the tokenizer lacks the stop token(s) {', '.join(missing)}; use a model trained by dorl")
    ids = [vocab[t] for t in stop_tokens]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def encode_prompts(tokenizer, prompts: Sequence[str], prompt_tokens: int) -> list[list[int]]:
    """Token ids of each prompt (no special tokens added), left-truncated to its last `prompt_tokens`."""
    return [x[-prompt_tokens:] for x in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device=None):
    """(input_ids, attention_mask), each (len(rows), longest row), the rows aligned on the right."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        if r:
            ids[b, width - len(r) :] = torch.tensor(r)
            mask[b, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def check(decode: DecodeConfig, adjust: Adjustment | None = None) -> None:
    from dorl import onednn

    if decode.engine not in ("dorl", "hf"):
        raise ConfigError(f"unknown generation engine {decode.engine!r}; choose dorl or hf")
    if decode.lm_head not in onednn.KERNELS:
        raise ConfigError(f"unknown lm_head kernel {decode.lm_head!r}; choose {' or '.join(onednn.KERNELS)}")
    if decode.temperature <= 0 or decode.top_k < 0:
        raise ConfigError(f"decoding needs temperature > 0 and top_k >= 0 (got {decode.temperature}, {decode.top_k})")
    if decode.sample and decode.num_beams > 1:
        raise ConfigError(f"sampling draws one sequence at a time: num_beams must be 1, got {decode.num_beams}")
    if not decode.sample and decode.num_return > decode.num_beams:
        raise ConfigError(f"num_return ({decode.num_return}) cannot exceed num_beams ({decode.num_beams})")
    if decode.engine == "hf" and (decode.sample or adjust is not None):
        raise ConfigError("engine hf (model.generate) decodes greedily or by beam search, unadjusted: use engine dorl")


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    decode: DecodeConfig = DecodeConfig(),
    *,
    adjust: Adjustment | None = None,
    stop_tokens: Sequence[str] | None = None,
    desc: str = "generating",
    progress: bool = True,
) -> Generation:
    import torch

    from dorl import log as dlog
    from dorl import onednn

    check(decode, adjust)
    started = time.perf_counter()
    eos = stop_token_ids(tokenizer, stop_tokens)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[-1]
    device = next(model.parameters()).device
    ids = encode_prompts(tokenizer, prompts, decode.prompt_tokens)
    generator = None
    if decode.sample:  # each prompt num_return times, in order: the seeded draws follow the rows
        rows = [x for x in ids for _ in range(decode.num_return)]
        order = list(range(len(rows)))
        generator = torch.Generator(device).manual_seed(decode.seed)
    else:  # each distinct prompt once, longest first
        unique: dict[tuple, int] = {}
        which = [unique.setdefault(tuple(x), len(unique)) for x in ids]
        rows = [list(k) for k in unique]
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    results: list[list[list[int]]] = [[] for _ in rows]

    was_training = model.training
    model.eval()
    # No bar of its own inside a caller's bar (rich allows one live display at a time).
    bar = dlog.progress(transient=True) if progress else contextlib.nullcontext()
    # oneDNN's projection only for dorl's engine: 'hf' stays transformers' generate as it is
    head = onednn.lm_head(model, decode.lm_head if decode.engine == "dorl" else "torch")
    with torch.inference_mode(), bar, head:
        task = bar.add_task(desc, total=len(order)) if progress else None
        for start in range(0, len(order), decode.batch_size):
            batch = order[start : start + decode.batch_size]
            input_ids, mask = left_pad([rows[i] for i in batch], pad, device)
            seqs = decode_batch(model, input_ids, mask, decode, eos, pad, adjust=adjust, generator=generator)
            for row, i in enumerate(batch):
                results[i] = seqs[row]
            if progress:
                bar.advance(task, len(batch))
    model.train(was_training)

    if decode.sample:
        k = decode.num_return
        per_prompt = [[s for r in results[i * k : (i + 1) * k] for s in r] for i in range(len(prompts))]
    else:
        per_prompt = [results[w] for w in which]
    flat = [s for r in per_prompt for s in r]
    decoded = iter(t.strip() for t in tokenizer.batch_decode(flat, skip_special_tokens=True))
    texts = [[next(decoded) for _ in r] for r in per_prompt]
    seconds = time.perf_counter() - started
    stats = {
        "prompts": len(prompts),
        "distinct_prompts": len({tuple(x) for x in ids}),
        "sequences": len(flat),
        "seconds": round(seconds, 3),
        "prompts_per_s": round(len(prompts) / max(seconds, 1e-9), 3),
        "new_tokens_per_s": round(sum(len(s) for s in flat) / max(seconds, 1e-9), 1),
    }
    return Generation(texts, per_prompt, stats)


def decode_batch(model, input_ids, mask, decode: DecodeConfig, eos, pad, *, adjust=None, generator=None):
    """One left-padded batch: per row, its sequences (num_return; one when sampling) of new tokens."""
    beams, n, max_new = decode.num_beams, decode.num_return, decode.max_new_tokens
    if decode.engine == "hf":
        return _hf_generate(model, input_ids, mask, beams, n, max_new, eos, pad)
    if beams > 1:
        return _beam_search(model, input_ids, mask, beams, n, max_new, eos, pad, adjust)
    return _one_by_one(model, input_ids, mask, decode, eos, adjust, generator)


def _cut(tokens: list[int], eos: list[int]) -> list[int]:
    """Generated tokens up to and including the first stop token."""
    for k, t in enumerate(tokens):
        if t in eos:
            return tokens[: k + 1]
    return tokens


def _hf_generate(model, input_ids, mask, num_beams, num_return, max_new, eos, pad):
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=max_new,
        num_beams=num_beams,
        num_return_sequences=num_return,
        do_sample=False,
        length_penalty=1.0,
        early_stopping=False,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    out = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
    gen = out[:, input_ids.shape[1] :].tolist()
    return [[_cut(gen[b * num_return + k], eos) for k in range(num_return)] for b in range(input_ids.shape[0])]


def _forward(model, input_ids, mask, positions, cache, hidden: bool):
    """The last position's LM logits (B, |V|) in fp32, its final hidden states (B, d) when `hidden`
    (the model's logits must be its output embedding of them), and the KV cache."""
    if not hidden:
        out = model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :].float(), None, out.cache
    out = model.base_model(
        input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True
    )
    h = out.last_hidden_state[:, -1]
    return model.get_output_embeddings()(h).float(), h, out.cache


def _prefill(model, input_ids, mask, hidden: bool = False):
    """Run the prompts once: last-position logits (and hidden states), the KV cache, the next position ids."""
    from transformers import DynamicCache

    position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    logits, h, cache = _forward(model, input_ids, mask, position_ids, DynamicCache(config=model.config), hidden)
    return logits, h, cache, position_ids[:, -1:] + 1


def _choose(logits, h, decode: DecodeConfig, adjust, generator, rows, width: int):
    """The next token of each live row (`rows`: their rows in the batch of `width`)."""
    import torch

    if not decode.sample:
        if adjust is None:
            return logits.argmax(-1)  # transformers' greedy choice, bit for bit
        return adjust(torch.log_softmax(logits, -1), h).argmax(-1)
    scores = torch.log_softmax(logits / decode.temperature, -1)
    if adjust is not None:
        scores = adjust(scores, h)
    if 0 < decode.top_k < scores.shape[-1]:
        kth = scores.topk(decode.top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = scores.softmax(-1)
    if probs.shape[0] == width:
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    # Rows have finished: draw for the whole batch all the same (they take token 0), so that a row's
    # draws do not depend on when the others finished.
    full = probs.new_zeros((width, probs.shape[1]))
    full[:, 0] = 1.0
    full[rows] = probs
    return torch.multinomial(full, 1, generator=generator).squeeze(-1)[rows]


def _one_by_one(model, input_ids, mask, decode: DecodeConfig, eos, adjust, generator):
    """Greedy decoding or sampling, one token per row and step; a finished row leaves the batch."""
    import torch

    hidden = adjust is not None and adjust.wants_hidden
    logits, h, cache, pos = _prefill(model, input_ids, mask, hidden)
    width = input_ids.shape[0]
    eos_t = torch.tensor(eos, dtype=torch.long, device=input_ids.device)
    rows = torch.arange(width, device=input_ids.device)  # batch row of each live sequence
    seqs: list[list[int]] = [[] for _ in range(width)]
    for t in range(decode.max_new_tokens):
        tok = _choose(logits, h, decode, adjust, generator, rows, width)
        for r, v in zip(rows.tolist(), tok.tolist(), strict=True):
            seqs[r].append(v)
        keep = ~torch.isin(tok, eos_t)
        if t + 1 == decode.max_new_tokens or not keep.any():
            break
        if not keep.all():
            idx = keep.nonzero().squeeze(1)
            cache.batch_select_indices(idx)
            rows, tok, mask, pos = rows[idx], tok[idx], mask[idx], pos[idx]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        logits, h, cache = _forward(model, tok[:, None], mask, pos, cache, hidden)
        pos = pos + 1
    return [[s] for s in seqs]


def _beam_search(model, input_ids, mask, num_beams, num_return, max_new, eos, pad, adjust=None):
    """transformers' beam search (length penalty 1, early_stopping False), settled contexts leave the batch."""
    import torch

    K = num_beams
    B = input_ids.shape[0]
    dev = input_ids.device
    keep_k = max(2, 1 + len(eos)) * K  # candidates per step, as transformers
    top_mask = torch.cat([torch.ones(K, dtype=torch.bool), torch.zeros(keep_k - K, dtype=torch.bool)]).to(dev)
    eos_t = torch.tensor(eos, dtype=torch.long, device=dev)
    hidden = adjust is not None and adjust.wants_hidden

    def scores(logits, h):
        logp = torch.log_softmax(logits, dim=-1)
        return logp if adjust is None else adjust(logp, h)

    logits, h, cache, pos = _prefill(model, input_ids, mask, hidden)
    logp = scores(logits, h)
    vocab = logp.shape[-1]
    cache.batch_repeat_interleave(K)  # one prompt pass, copied to the beams
    mask = mask.repeat_interleave(K, dim=0)
    pos = pos.repeat_interleave(K, dim=0)
    logp = logp[:, None, :].expand(B, K, vocab).contiguous()  # every beam starts from the prompt's distribution

    items = torch.arange(B, device=dev)  # batch item of each live context
    run_scores = torch.zeros((B, K), device=dev)
    run_scores[:, 1:] = -1e9  # only the first beam's continuations count at the first step
    run_tokens = torch.zeros((B, K, 0), dtype=torch.long, device=dev)
    fin_tokens = torch.full((B, K, max_new), pad, dtype=torch.long, device=dev)
    fin_len = torch.zeros((B, K), dtype=torch.long, device=dev)
    fin_scores = torch.full((B, K), -1e9, device=dev)
    fin_flag = torch.zeros((B, K), dtype=torch.bool, device=dev)
    final: dict[int, tuple] = {}

    for t in range(max_new):
        A = items.shape[0]
        acc = logp.view(A, K, vocab).add_(run_scores[:, :, None]).view(A, K * vocab)  # in place: a 32 MB pass less
        top_vals, top_idx = torch.topk(acc, keep_k)
        parent, tok = top_idx // vocab, top_idx % vocab
        cand = torch.cat([torch.gather(run_tokens, 1, parent[:, :, None].expand(-1, -1, t)), tok[:, :, None]], dim=2)
        hits = torch.isin(tok, eos_t) | (t + 1 >= max_new)

        # Beams that go on: the best K continuations that did not stop.
        run_vals = top_vals + hits.to(torch.float32) * -1.0e9
        nxt = torch.topk(run_vals, K)[1]
        run_tokens = torch.gather(cand, 1, nxt[:, :, None].expand(-1, -1, t + 1))
        run_scores = torch.gather(run_vals, 1, nxt)
        run_parent = torch.gather(parent, 1, nxt)

        # Finished hypotheses: stopped continuations among the top K, length-normalised, merged with the kept ones.
        just = hits & top_mask[None, :]
        norm = top_vals / float((t + 1) ** 1.0)
        norm = norm + (~just) * -1.0e9
        pad_cand = torch.nn.functional.pad(cand, (0, max_new - t - 1), value=pad)
        merged_scores = torch.cat([fin_scores, norm], dim=1)
        sel = torch.topk(merged_scores, K)[1]
        fin_scores = torch.gather(merged_scores, 1, sel)
        fin_tokens = torch.gather(torch.cat([fin_tokens, pad_cand], 1), 1, sel[:, :, None].expand(-1, -1, max_new))
        fin_len = torch.gather(torch.cat([fin_len, torch.full_like(tok, t + 1)], 1), 1, sel)
        fin_flag = torch.gather(torch.cat([fin_flag, just], 1), 1, sel)

        # transformers' early-stop rule: can the best running beam still beat the worst finished one?
        best = run_scores[:, :1] / float((t + 1) ** 1.0)
        worst = torch.where(fin_flag, fin_scores.min(dim=1, keepdim=True)[0], -1.0e9)
        open_ = torch.any(best > worst, dim=-1)
        if t + 1 >= max_new:
            break
        for a in (~open_).nonzero().squeeze(1).tolist():  # settled: record and drop from the batch
            final[int(items[a])] = (fin_tokens[a], fin_len[a])
        if not open_.any():
            break
        live = open_.nonzero().squeeze(1)
        rows = (live[:, None] * K + run_parent[live]).reshape(-1)  # cache rows of the surviving parents
        cache.reorder_cache(rows)
        mask = torch.cat([mask[rows], mask.new_ones((rows.shape[0], 1))], dim=1)
        pos = pos[rows]
        items, run_scores, run_tokens = items[live], run_scores[live], run_tokens[live]
        fin_tokens, fin_len, fin_scores, fin_flag = fin_tokens[live], fin_len[live], fin_scores[live], fin_flag[live]
        logits, h, cache = _forward(model, run_tokens[:, :, -1].reshape(-1, 1), mask, pos, cache, hidden)
        logp = scores(logits, h)
        pos = pos + 1
    for a in range(items.shape[0]):
        final[int(items[a])] = (fin_tokens[a], fin_len[a])

    out = []
    for b in range(B):
        tokens, lengths = final[b]
        out.append([tokens[k, : lengths[k]].tolist() for k in range(num_return)])
    return out
