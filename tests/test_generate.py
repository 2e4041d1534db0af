"""Batched generation: the same responses as transformers' `generate` run one context at a time, in the
prompts' order, prompts left-truncated, special tokens stripped, sequences ended by stop tokens."""

import pytest
import torch

from dorl.generate import DecodeConfig, _beam_search, generate, stop_token_ids
from dorl.text import REP_END, examples, prompt
from tests.fixtures import dialogues

MAX_NEW = 24


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A tiny untrained GPT-2 nudged towards <_rep_end_>, so that its beams end at different lengths, as a
    trained model's do (and settled contexts leave the batch at different steps)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.fixtures import make_tiny_model_dir

    path = tmp_path_factory.mktemp("gen-model")
    make_tiny_model_dir(path, seed=3)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    v = torch.randn(model.config.n_embd, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.transformer.ln_f.bias.copy_(v / v.norm())
        model.transformer.wte.weight[tok.convert_tokens_to_ids(REP_END)] += 0.5 * v / v.norm()
    return model, tok


@pytest.fixture(scope="module")
def prompts():
    ctx = list(dict.fromkeys(prompt(c) for _, turns in dialogues(6, seed=5) for _, c, _ in examples(turns)))
    return ctx[:6] + [ctx[2]]  # a duplicate: generated once


@pytest.fixture(scope="module")
def stops():
    return [REP_END]


def one_at_a_time(model, tok, text, num_beams, stops, prompt_tokens=96):
    """The reference's way: transformers' generate on one context."""
    ids = tok(text, return_tensors="pt").input_ids[:, -prompt_tokens:]
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=MAX_NEW,
        num_beams=num_beams,
        num_return_sequences=num_beams,
        do_sample=False,
        eos_token_id=stop_token_ids(tok, stops),
        pad_token_id=tok.eos_token_id,
    )
    return [t.strip() for t in tok.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)]


@pytest.mark.parametrize("num_beams", [5, 1])
def test_batched_equals_one_context_at_a_time(lm, prompts, stops, num_beams):
    model, tok = lm
    dc = DecodeConfig(num_beams=num_beams, num_return=num_beams, max_new_tokens=MAX_NEW, batch_size=3)
    kw = dict(stop_tokens=stops, progress=False)
    out = generate(model, tok, prompts, dc, **kw)
    want = [one_at_a_time(model, tok, p, num_beams, stops) for p in prompts]
    assert out.texts == want
    assert out.stats["distinct_prompts"] == len(prompts) - 1
    specials = set(tok.all_special_tokens)
    assert not any(sp in t for texts in out.texts for t in texts for sp in specials)  # stripped
    assert generate(model, tok, prompts, dc.but(engine="hf"), **kw).texts == want


def test_prompts_are_left_truncated(lm, prompts, stops):
    model, tok = lm
    long = max(prompts, key=len)
    assert len(tok(long)["input_ids"]) > 20
    dc = DecodeConfig(prompt_tokens=20, num_beams=3, num_return=2, max_new_tokens=MAX_NEW)
    out = generate(model, tok, [long], dc, stop_tokens=stops, progress=False)
    assert out.texts == [one_at_a_time(model, tok, long, 3, stops, prompt_tokens=20)[:2]]


def test_beams_end_at_their_first_stop_token(lm, prompts, stops):
    model, tok = lm
    ids = stop_token_ids(tok, stops)
    enc = tok(prompts, return_tensors="pt", padding=True)
    seqs = _beam_search(model, enc.input_ids, enc.attention_mask, 5, 5, MAX_NEW, ids, tok.pad_token_id)
    flat = [s for item in seqs for s in item]
    assert all(len(s) == MAX_NEW or (s[-1] in ids and not set(s[:-1]) & set(ids)) for s in flat)
    assert len({len(s) for s in flat}) > 2  # ended at various lengths: the stop rule was exercised
