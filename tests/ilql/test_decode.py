"""Decoding: beta = 0 is HF greedy, the KV cache changes nothing, beta and top-k act as specified,
and value re-ranking orders samples by min target-Q of their last action."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dorl.generate import stop_token_ids as stop_ids
from dorl.ilql.decode import decode, generate, ilql_scorer, left_pad
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


def test_beta_zero_is_hf_greedy(lm, tok):
    ids, mask = batch(tok)
    model, pad = ILQLModel(lm), tok.pad_token_id
    free = hf_greedy(lm, ids, mask, stop_ids(tok), pad, 24)
    new, done = generate(model, ids, mask, stop_ids=stop_ids(tok), pad_id=pad, max_new_tokens=24)
    assert torch.equal(new, free)
    # With a stop token that row 0 emits at its 5th step: rows stop and pad exactly as HF's do.
    stop = [free[0, 4].item()]
    hf = hf_greedy(lm, ids, mask, stop, pad, 24)
    new, done = generate(model, ids, mask, stop_ids=stop, pad_id=pad, max_new_tokens=24)
    assert torch.equal(new, hf) and done[0]
    assert (new[0, 5:] == pad).all()


@pytest.mark.parametrize("greedy, beta", [(True, 0.0), (True, 3.0), (False, 0.0), (False, 3.0)])
def test_kv_cache_equals_rerunning_the_sequence(lm, tok, greedy, beta):
    model = randomise_heads(ILQLModel(lm, ILQLMeta(heads="efficient")))
    ids, mask = batch(tok)
    kw = dict(stop_ids=stop_ids(tok), pad_id=tok.pad_token_id, max_new_tokens=16, beta=beta, greedy=greedy, top_k=5)
    cached, _ = generate(model, ids, mask, generator=torch.Generator().manual_seed(3), **kw)
    rerun, _ = generate(model, ids, mask, generator=torch.Generator().manual_seed(3), use_cache=False, **kw)
    assert torch.equal(cached, rerun)


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
    kw = dict(stop_ids=stop_ids(tok), pad_id=tok.pad_token_id, max_new_tokens=1, temperature=temperature)
    new, _ = generate(model, ids, mask, beta=beta, **kw)
    assert new[:, 0].tolist() == scores.argmax(-1).tolist()
    plain, _ = generate(model, ids, mask, beta=0.0, **kw)
    assert new[:, 0].tolist() != plain[:, 0].tolist()  # the heads do change the choice here
    # sampling from the top-1 token is the greedy choice
    top1, _ = generate(model, ids, mask, beta=beta, greedy=False, top_k=1, generator=torch.Generator(), **kw)
    assert torch.equal(top1, new)


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
