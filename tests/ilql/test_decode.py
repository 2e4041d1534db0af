"""ILQL's decoding through the shared loop (`dorl.generate` with `dorl.ilql.decode.Advantage`): beta = 0 is
HF greedy, the KV cache changes nothing, beta and top-k act as specified, the tokens are those of the loop
ILQL had before (kept below as the reference), and value re-ranking orders samples by min target-Q of their
last action."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dorl.generate import DecodeConfig, decode_batch, left_pad
from dorl.generate import stop_token_ids as stop_ids
from dorl.ilql.decode import Advantage, decode, ilql_scorer
from dorl.ilql.model import ILQLMeta, ILQLModel
from dorl.text import REP_END, prompt
from tests.ilql.conftest import randomise_heads

PROMPTS = [
    prompt("<_soc_><_cus_start_>I need to return my boots.<_cus_end_>"),
    prompt("<_soc_>"),
    prompt("<_soc_><_rep_start_>Hi, how can I help?<_rep_end_><_cus_start_>My hat arrived broken.<_cus_end_>"),
]


def batch(tok):
    return left_pad(tok(PROMPTS, add_special_tokens=False)["input_ids"], tok.pad_token_id)


def hf_greedy(lm, ids, mask, stops, pad, n):
    out = lm.generate(ids, attention_mask=mask, max_new_tokens=n, do_sample=False, eos_token_id=stops, pad_token_id=pad)
    return out[:, ids.shape[1] :]


def padded(seqs, width, pad):
    """decode_batch's sequences as HF returns them: (B, width), pad after a stop."""
    return torch.tensor([s[0] + [pad] * (width - len(s[0])) for s in seqs])


def test_beta_zero_is_hf_greedy(lm, tok):
    ids, mask = batch(tok)
    pad = tok.pad_token_id
    free = hf_greedy(lm, ids, mask, stop_ids(tok), pad, 24)
    dc = DecodeConfig(max_new_tokens=24)
    new = decode_batch(lm, ids, mask, dc, stop_ids(tok), pad)
    assert torch.equal(padded(new, free.shape[1], pad), free)
    # With a stop token that row 0 emits at its 5th step: rows stop and pad exactly as HF's do.
    stop = [free[0, 4].item()]
    hf = hf_greedy(lm, ids, mask, stop, pad, 24)
    new = decode_batch(lm, ids, mask, dc, stop, pad)
    assert torch.equal(padded(new, hf.shape[1], pad), hf) and len(new[0][0]) == 5 and new[0][0][-1] == stop[0]


# ---------------------------------------------------------------- the loop ILQL had before, as the reference
# (dorl/ilql/decode.py `generate` / `next_tokens` / `decode` and `ILQLModel.step` before the shared loop): every
# row stays in the batch to the end (pad after its stop), one multinomial draw over the whole batch per step.


def old_step(model, input_ids, mask, positions, cache, advantage):
    h, cache = model.hidden(input_ids, mask, positions, cache, use_cache=True)
    if not advantage:
        return model.lm_head(h[:, -1:, :])[:, 0].float(), None, cache
    h = h[:, -1]
    return model.lm_head(h).float(), model.heads.advantage(h, model.lm_head.weight).float(), cache


def old_next_tokens(logits, adv, beta, top_k, temperature, greedy, generator=None):
    if greedy and adv is None:
        return logits.argmax(-1)
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
def old_generate(model, input_ids, mask, *, stop_ids, pad_id, max_new_tokens, beta=0.0, top_k=20, temperature=1.0,
                 greedy=True, generator=None, use_cache=True):  # fmt: skip
    advantage = beta != 0
    stops = torch.tensor(stop_ids, dtype=torch.long)
    positions = model.position_ids(mask)
    seq, step_ids, step_pos, cache = input_ids, input_ids, positions, None
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
    new = []
    for _ in range(max_new_tokens):
        if use_cache:
            logits, adv, cache = old_step(model, step_ids, mask, step_pos, cache, advantage)
        else:
            logits, adv, _ = old_step(model, seq, mask, positions, None, advantage)
        token = old_next_tokens(logits, adv, beta, top_k, temperature, greedy, generator).masked_fill(done, pad_id)
        new.append(token)
        done |= torch.isin(token, stops)
        step_ids, step_pos = token[:, None], step_pos[:, -1:] + 1
        seq, positions = torch.cat([seq, step_ids], 1), torch.cat([positions, step_pos], 1)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
        if done.all():
            break
    return torch.stack(new, 1), done


def old_decode(model, tok, prompts, dc: DecodeConfig, num_samples=1):
    """The old text-level entry: each prompt num_samples times in order, batch_size rows a batch, one generator."""
    model.eval()
    generator = torch.Generator().manual_seed(dc.seed)
    rows = [ids for ids in tok(prompts, add_special_tokens=False)["input_ids"] for _ in range(num_samples)]
    rows = [r[-dc.prompt_tokens :] for r in rows]
    stops, out = stop_ids(tok), []
    for start in range(0, len(rows), dc.batch_size):
        ids, mask = left_pad(rows[start : start + dc.batch_size], tok.pad_token_id)
        new, _ = old_generate(model, ids, mask, stop_ids=stops, pad_id=tok.pad_token_id, beta=dc.beta, top_k=dc.top_k,
                              max_new_tokens=dc.max_new_tokens, temperature=dc.temperature, greedy=not dc.sample,
                              generator=generator)  # fmt: skip
        for seq in new.tolist():
            out.append(seq[: next((i + 1 for i, t in enumerate(seq) if t in stops), len(seq))])
    return out


@pytest.fixture
def stopping(lm, tok):
    """The tiny LM nudged towards <_rep_end_>, so that rows of a batch stop at different steps."""
    v = torch.randn(lm.config.n_embd, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        lm.transformer.ln_f.bias.add_(v / v.norm())
        lm.lm_head.weight[tok.convert_tokens_to_ids(REP_END)] += 1.5 * v / v.norm()
    return lm


SETTINGS = [  # (sample, beta, top_k, temperature, batch_size, samples per prompt)
    (False, 0.0, 20, 1.0, 2, 1),
    (False, 2.0, 20, 0.7, 4, 1),
    (True, 0.0, 20, 1.0, 3, 4),
    (True, 1.5, 5, 0.7, 5, 4),
    (True, 1.5, 0, 1.3, 32, 3),
]


@pytest.mark.parametrize("kind", ["efficient", "reference"])
def test_same_tokens_as_the_loop_ilql_had_before(stopping, tok, kind):
    """Greedy and seeded sampling decode exactly the tokens the old ILQL loop decoded, whatever the batch."""
    model = randomise_heads(ILQLModel(stopping, ILQLMeta(heads=kind)))
    prompts = PROMPTS + [prompt("<_soc_><_cus_start_>Where is my refund?<_cus_end_>"), PROMPTS[0]]
    lengths = set()
    for sample, beta, top_k, temperature, batch_size, n in SETTINGS:
        dc = DecodeConfig(max_new_tokens=12, sample=sample, beta=beta, top_k=top_k, temperature=temperature,
                          batch_size=batch_size, seed=7)  # fmt: skip
        want = old_decode(model, tok, prompts, dc, num_samples=n)
        assert decode(model, tok, prompts, dc, num_samples=n).ids == want, (sample, beta, top_k, temperature)
        lengths |= {len(s) for s in want}
    assert len(lengths) > 3  # rows stopped at various steps: finished rows left the shared loop's batch


@pytest.mark.parametrize("greedy, beta", [(True, 0.0), (True, 3.0), (False, 0.0), (False, 3.0)])
def test_kv_cache_equals_rerunning_the_sequence(lm, tok, greedy, beta):
    model = randomise_heads(ILQLModel(lm, ILQLMeta(heads="efficient")))
    ids, mask = batch(tok)
    dc = DecodeConfig(max_new_tokens=16, beta=beta, sample=not greedy, top_k=5)
    adjust = Advantage(model, beta) if beta else None
    cached = decode_batch(
        lm, ids, mask, dc, [], tok.pad_token_id, adjust=adjust, generator=torch.Generator().manual_seed(3)
    )
    kw = dict(stop_ids=[], pad_id=tok.pad_token_id, max_new_tokens=16, beta=beta, greedy=greedy, top_k=5)
    rerun, _ = old_generate(model, ids, mask, generator=torch.Generator().manual_seed(3), use_cache=False, **kw)
    assert [s[0] for s in cached] == rerun.tolist()


@pytest.mark.parametrize("kind", ["efficient", "reference"])
def test_first_token_is_the_argmax_of_the_adjusted_scores(lm, tok, kind):
    model = randomise_heads(ILQLModel(lm, ILQLMeta(heads=kind)))
    ids, mask = batch(tok)
    beta, temperature = 2.0, 0.7
    # by hand, from one full forward without cache
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    h = lm.transformer(input_ids=ids, attention_mask=mask, position_ids=pos).last_hidden_state[:, -1]
    temb = model.heads.target_emb if kind == "efficient" else None  # the target copy of E
    qs = [head(h, temb) if kind == "efficient" else head(h) for head in model.heads.target_q_heads]
    v = model.heads.v_head(h)  # (B, 1)
    scores = F.log_softmax(lm.lm_head(h) / temperature, -1) + beta * (torch.minimum(*qs) - v)
    kw = dict(max_new_tokens=1, temperature=temperature)
    new = decode(model, tok, PROMPTS, beta=beta, **kw).ids
    assert [s[0] for s in new] == scores.argmax(-1).tolist()
    plain = decode(model, tok, PROMPTS, beta=0.0, **kw).ids
    assert new != plain  # the heads do change the choice here
    # sampling from the top-1 token is the greedy choice
    assert decode(model, tok, PROMPTS, beta=beta, greedy=False, top_k=1, **kw).ids == new


def test_decode_texts_stop_at_rep_end(lm, tok):
    model = ILQLModel(lm)
    with torch.no_grad():  # every final hidden state gets a component along 1, which only <_rep_end_> reads
        lm.transformer.ln_f.bias.fill_(1.0)
        lm.lm_head.weight[tok.convert_tokens_to_ids(REP_END)] = 5.0
    gen = decode(model, tok, PROMPTS, max_new_tokens=8, batch_size=2)
    assert gen.finished == [True, True, True]
    assert all(ids[-1] == tok.convert_tokens_to_ids(REP_END) for ids in gen.ids)
    assert all(REP_END not in t for t in gen.texts)


def test_sampling_is_seeded(lm, tok):
    model = randomise_heads(ILQLModel(lm))
    kw = dict(greedy=False, beta=1.0, max_new_tokens=8, num_samples=4)
    a, b = decode(model, tok, PROMPTS, seed=5, **kw), decode(model, tok, PROMPTS, seed=5, **kw)
    c = decode(model, tok, PROMPTS, seed=6, **kw)
    assert a.ids == b.ids and a.ids != c.ids and len(a.ids) == 12


def test_ilql_scorer_ranks_by_the_value_of_the_last_action(lm, tok):
    model = randomise_heads(ILQLModel(lm))
    ranked = ilql_scorer(model, tok, PROMPTS[:2], num_candidates=4, max_new_tokens=6, beta=1.0, batch_size=3)
    assert [len(r) for r in ranked] == [4, 4]
    for p, cands in zip(PROMPTS, ranked, strict=False):
        assert [c.value for c in cands] == sorted((c.value for c in cands), reverse=True)
        for c in cands:  # recompute on the unpadded sequence: min target-Q(state before the last token, last token)
            ids = torch.tensor([tok(p, add_special_tokens=False)["input_ids"] + c.ids])
            h = lm.transformer(input_ids=ids).last_hidden_state[0, -2]
            qs = [head(h, model.heads.target_emb) for head in model.heads.target_q_heads]
            assert c.value == pytest.approx(torch.minimum(*qs)[c.ids[-1]].item(), abs=1e-4)
