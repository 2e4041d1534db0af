"""Batched generation over many prompts: relabel candidates, evaluation responses, ILQL's decoding.

    out = generate(model, tokenizer, prompts, DecodeConfig(num_beams=5, num_return=5))  # out.texts[i]: best first

`DecodeConfig` holds every decoding setting (greedy / beams / sampling, ILQL's beta, top-k and
temperature, prompt length, batch size); relabel, evaluate and ILQL (`dorl.ilql.decode`) all take
one, and share the prompt encoding (`encode_prompts`) and the stop ids (`stop_token_ids`).

Prompts are tokenized once, left-truncated to the last `prompt_tokens` tokens, deduplicated,
sorted by length (little padding) and left-padded into batches; a batch never holds one context
at a time. Decoding is greedy (`num_beams=1`) or beam search without sampling; a sequence ends at
a stop token (`<_rep_end_>` by default, and EOS). Responses come back decoded with special tokens
stripped and whitespace trimmed, in the prompts' order.

Engine "dorl" (default) is transformers' beam search, re-done so that a batch does less work:
the prompt is run once per context and its KV cache then copied to the beams (transformers runs it
once per beam), only the last position's logits are computed, and a context whose beam search is
settled (transformers' early-stop rule) leaves the batch instead of riding along to the end. Every
scoring and selection step follows `GenerationMixin._beam_search` (length penalty 1, early_stopping
False, top (1 + #stop tokens) x beams continuations per step), so the candidates are the ones
`model.generate` returns; tests/test_generate.py checks that. Engine "hf" calls `model.generate`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from dorl.errors import ConfigError

log = logging.getLogger("dorl.generate")


@dataclass(frozen=True)
class DecodeConfig:
    """How to decode: one object from the config (relabel.*, eval.*, ilql.*) down to the decoding loop."""

    prompt_tokens: int = 96  # prompts are left-truncated to their last `prompt_tokens` tokens
    max_new_tokens: int = 32
    batch_size: int = 32  # prompts per batch
    num_beams: int = 1  # 1: greedy (or sampling); > 1: beam search (no sampling)
    num_return: int = 1  # responses per prompt (<= num_beams)
    sample: bool = False  # ILQL: sample from the scores (top-k, temperature) instead of taking the argmax
    beta: float = 0.0  # ILQL: scores = log_softmax(LM) + beta * (min target-Q - V)
    top_k: int = 20  # ILQL sampling: keep the k best scores (0: all)
    temperature: float = 1.0  # ILQL sampling: temperature of the LM logits (see `dorl.ilql.decode`)
    seed: int = 0  # ILQL sampling: seed of the generator
    engine: str = "dorl"  # beam search: "dorl" (batched, same candidates) or "hf" (model.generate)
    lm_head: str = "auto"  # engine dorl on a CPU: "auto" = the vocabulary projection through oneDNN (dorl.onednn)

    def but(self, **changes) -> DecodeConfig:
        return replace(self, **changes)


@dataclass
class Generation:
    texts: list[list[str]]  # per prompt: num_return responses, best first
    stats: dict = field(default_factory=dict)


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


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    decode: DecodeConfig = DecodeConfig(),
    *,
    stop_tokens: Sequence[str] | None = None,
    desc: str = "generating",
    progress: bool = True,
) -> Generation:
    import torch

    from dorl import log as dlog
    from dorl import onednn

    num_beams, num_return, engine = decode.num_beams, decode.num_return, decode.engine
    max_new_tokens, batch_size = decode.max_new_tokens, decode.batch_size
    if num_return > num_beams:
        raise ConfigError(f"num_return ({num_return}) cannot exceed num_beams ({num_beams})")
    if engine not in ("dorl", "hf"):
        raise ConfigError(f"unknown generation engine {engine!r}; choose dorl or hf")
    if decode.lm_head not in onednn.KERNELS:
        raise ConfigError(f"unknown lm_head kernel {decode.lm_head!r}; choose {' or '.join(onednn.KERNELS)}")
    started = time.perf_counter()
    eos = stop_token_ids(tokenizer, stop_tokens)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[-1]
    device = next(model.parameters()).device

    # Tokenize once, keep the last prompt_tokens, run each distinct prompt once.
    ids = encode_prompts(tokenizer, prompts, decode.prompt_tokens)
    unique: dict[tuple, int] = {}
    which = [unique.setdefault(tuple(x), len(unique)) for x in ids]
    distinct = [list(k) for k in unique]
    order = sorted(range(len(distinct)), key=lambda i: -len(distinct[i]))
    results: list[list[list[int]]] = [[] for _ in distinct]

    was_training = model.training
    model.eval()
    # No bar of its own inside a caller's bar (rich allows one live display at a time).
    bar = dlog.progress(transient=True) if progress else contextlib.nullcontext()
    # oneDNN's projection only for dorl's engine: 'hf' stays transformers' generate as it is
    head = onednn.lm_head(model, decode.lm_head if engine == "dorl" else "torch")
    with torch.inference_mode(), bar, head:
        task = bar.add_task(desc, total=len(distinct)) if progress else None
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(distinct[i]) for i in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                n = len(distinct[i])
                input_ids[row, width - n :] = torch.tensor(distinct[i])
                mask[row, width - n :] = 1
            input_ids, mask = input_ids.to(device), mask.to(device)
            if engine == "hf":
                seqs = _hf_generate(model, input_ids, mask, num_beams, num_return, max_new_tokens, eos, pad)
            elif num_beams == 1:
                seqs = _greedy(model, input_ids, mask, max_new_tokens, eos)
            else:
                seqs = _beam_search(model, input_ids, mask, num_beams, num_return, max_new_tokens, eos, pad)
            for row, i in enumerate(batch):
                results[i] = seqs[row]
            if progress:
                bar.advance(task, len(batch))
    model.train(was_training)

    flat = [s for r in results for s in r]
    decoded = [t.strip() for t in tokenizer.batch_decode(flat, skip_special_tokens=True)]
    per_distinct = [decoded[i * num_return : (i + 1) * num_return] for i in range(len(distinct))]
    seconds = time.perf_counter() - started
    new_tokens = sum(len(s) for w in which for s in results[w])
    stats = {
        "prompts": len(prompts),
        "distinct_prompts": len(distinct),
        "sequences": len(prompts) * num_return,
        "seconds": round(seconds, 3),
        "prompts_per_s": round(len(prompts) / max(seconds, 1e-9), 3),
        "new_tokens_per_s": round(new_tokens / max(seconds, 1e-9), 1),
    }
    return Generation([list(per_distinct[w]) for w in which], stats)


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


def _prefill(model, input_ids, mask):
    """Run the prompts once: last-position log-probs, the KV cache, the next position ids."""
    import torch
    from transformers import DynamicCache

    position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    cache = DynamicCache(config=model.config)
    out = model(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=position_ids,
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
    return logp, out.cache, position_ids[:, -1:] + 1


def _step(model, tokens, mask, positions, cache):
    import torch

    out = model(input_ids=tokens, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
    return torch.log_softmax(out.logits[:, -1, :].float(), dim=-1), out.cache


def _greedy(model, input_ids, mask, max_new, eos):
    """transformers' greedy search; a finished row leaves the batch."""
    import torch

    logp, cache, pos = _prefill(model, input_ids, mask)
    eos_t = torch.tensor(eos, device=input_ids.device)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)  # batch row of each live sequence
    seqs: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    for t in range(max_new):
        tok = logp.argmax(dim=-1)
        for r, v in zip(rows.tolist(), tok.tolist(), strict=True):
            seqs[r].append(v)
        keep = ~torch.isin(tok, eos_t)
        if t + 1 == max_new or not keep.any():
            break
        if not keep.all():
            idx = keep.nonzero().squeeze(1)
            cache.batch_select_indices(idx)
            rows, tok, mask, pos = rows[idx], tok[idx], mask[idx], pos[idx]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        logp, cache = _step(model, tok[:, None], mask, pos, cache)
        pos = pos + 1
    return [[s] for s in seqs]


def _beam_search(model, input_ids, mask, num_beams, num_return, max_new, eos, pad):
    """transformers' beam search (length penalty 1, early_stopping False), settled contexts leave the batch."""
    import torch

    K = num_beams
    B = input_ids.shape[0]
    dev = input_ids.device
    keep_k = max(2, 1 + len(eos)) * K  # candidates per step, as transformers
    top_mask = torch.cat([torch.ones(K, dtype=torch.bool), torch.zeros(keep_k - K, dtype=torch.bool)]).to(dev)
    eos_t = torch.tensor(eos, device=dev)

    logp, cache, pos = _prefill(model, input_ids, mask)
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
        scores = top_vals / float((t + 1) ** 1.0)
        scores = scores + (~just) * -1.0e9
        pad_cand = torch.nn.functional.pad(cand, (0, max_new - t - 1), value=pad)
        merged_scores = torch.cat([fin_scores, scores], dim=1)
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
        logp, cache = _step(model, run_tokens[:, :, -1].reshape(-1, 1), mask, pos, cache)
        pos = pos + 1
    for a in range(items.shape[0]):
        final[int(items[a])] = (fin_tokens[a], fin_len[a])

    out = []
    for b in range(B):
        tokens, lengths = final[b]
        out.append([tokens[k, : lengths[k]].tolist() for k in range(num_return)])
    return out
