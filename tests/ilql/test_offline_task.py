"""The offline task ILQL exists for: the data's behaviour policy answers each context with two
responses half the time each, and only one of them earns return 1 (a different one in each
context). Teacher forcing on this data learns the 50/50 behaviour; ILQL's beta > 0 decoding must
pick the rewarded response far more often.

Measured (2-core CPU, one thread, 2-layer 32-wide GPT-2, 600 steps of 32, seed 0; ~12 s per
run), share of 200 seeded samples (top-k 20, temperature 1) that are the rewarded response,
context 0 / context 1:
    efficient heads: beta = 0 (behaviour) 40.0% / 54.0%, beta = 4: 100.0% / 99.0%
    reference heads: beta = 0 (behaviour) 39.5% / 52.5%, beta = 4:  98.5% / 99.5%
The test asserts >= 85% with beta = 4 against 30-70% with beta = 0, in both contexts, and that
greedy beta = 4 decoding answers each context with its rewarded response.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from dorl.ilql.data import Collator, ReturnStats, encode
from dorl.ilql.decode import decode
from dorl.ilql.loss import LossConfig, ilql_loss
from dorl.ilql.model import ILQLMeta, ILQLModel
from dorl.ilql.polyak import is_sync_step, polyak_update
from dorl.text import REP_END, prompt
from dorl.tokenizer import build_tokenizer

CONTEXTS = [
    "<_soc_><_cus_start_>My jeans arrived broken.<_cus_end_>",
    "<_soc_><_cus_start_>Where is my parcel?<_cus_end_>",
]
RESPONSES = ["I can refund that.", "Please call back later."]
REWARDED = {0: RESPONSES[0], 1: RESPONSES[1]}
STEPS, BETA = 600, 4.0


def offline_data() -> pd.DataFrame:
    rows = [
        (prompt(CONTEXTS[c]), RESPONSES[i % 2] + REP_END, float(RESPONSES[i % 2] == REWARDED[c]))
        for c in range(2)
        for i in range(32)  # each response half the time: the behaviour policy
    ]
    return pd.DataFrame(rows, columns=["prompt", "response", "return"])


def train(kind: str, df: pd.DataFrame, seed: int = 0, width: int = 32, layers: int = 2, polyak=(0.1, 1)):
    """`polyak`: (alpha, every). 600 steps: the targets follow faster than the reference's alpha 0.001
    every 5 steps, which is meant for thousands of steps (the skewed task below uses that schedule)."""
    tok = build_tokenizer("bpe", texts=list(df.prompt + df.response), vocab_size=300)
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(tok), n_positions=64, n_embd=width, n_layer=layers, n_head=2,
        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    stats = ReturnStats.fit(df["return"])
    model = ILQLModel(GPT2LMHeadModel(cfg), ILQLMeta(heads=kind, return_mean=stats.mean, return_std=stats.std))
    samples, collate = encode(df, tok, 64, stats), Collator(tok.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    loss_cfg = LossConfig()  # the reference's tau, gamma, CQL and CE weights
    order = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(1, STEPS + 1):
        batch = collate([samples[i] for i in torch.randperm(len(samples), generator=order)[:32].tolist()])
        out = model(batch["input_ids"], batch["state_mask"])
        loss, stats_ = ilql_loss(out, batch["rewards"], loss_cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if is_sync_step(step, polyak[1]):
            polyak_update(model.heads.polyak_pairs(), alpha=polyak[0])
    return model, tok, stats_


def share_rewarded(model, tok, c: int, beta: float) -> float:
    gen = decode(model, tok, [prompt(CONTEXTS[c])], beta=beta, greedy=False, seed=1, num_samples=200, batch_size=200)
    return sum(t == REWARDED[c] for t in gen.texts) / 200


@pytest.mark.parametrize("kind", ["efficient", "reference"])
def test_beta_decoding_prefers_the_rewarded_response(kind):
    model, tok, last = train(kind, offline_data())
    assert last["loss_ce"] < 0.2  # the LM learnt both responses
    for c in range(2):
        behaviour, guided = share_rewarded(model, tok, c, 0.0), share_rewarded(model, tok, c, BETA)
        print(f"context {c}: rewarded response {behaviour:.1%} with beta=0, {guided:.1%} with beta={BETA}")
        assert 0.3 <= behaviour <= 0.7
        assert guided >= 0.85
        greedy = decode(model, tok, [prompt(CONTEXTS[c])], beta=BETA)
        assert greedy.texts == [REWARDED[c]] and greedy.finished == [True]


# ---------------------------------------------------------------- the skewed task, default Polyak schedule
# The rewarded response is the *less* likely one (a quarter of the data), and the targets follow the
# reference's schedule (alpha 0.001 every 5 steps): after 600 steps they are still ~89% their initial
# weights. Scored against the live output embedding E (which the LM's cross-entropy trains toward the
# likely response), efficient target heads steered beta decoding *away* from the rewarded response;
# scored against their Polyak-averaged copy of E they do as well as the reference heads.
#
# Measured (2-core CPU, one thread, 1-layer 16-wide GPT-2, 600 steps of 32; ~12 s of CPU per run), share of
# 200 seeded samples with beta = 4 that are the rewarded response, contexts 0 and 1, seeds 0 / 1 / 2:
#     efficient heads, targets against the live E (before):  0.0 0.0 / 3.5 10.5 / 7.5 20.0 %  (mean 6.9%)
#     efficient heads, targets against the target copy:     16.5 33.0 / 37.0 13.0 / 33.5 19.0 %  (mean 25.3%)
#     reference heads:                                      12.5 5.0 / 50.0 10.0 / 56.0 6.5 %  (mean 23.3%)
# The behaviour policy (beta = 0) gives it 13-36%. The test runs seeds 0 and 1 (four runs: 45 s of CPU,
# 58 s wall on the shared 2 cores) and asserts that efficient heads' mean share is no worse than the
# reference heads' less 5 points (before the fix: 3.5% against 19.4%).
SKEWED_SEEDS, DEFAULT_POLYAK = (0, 1), (0.001, 5)


def skewed_data() -> pd.DataFrame:
    rows = [
        (prompt(CONTEXTS[c]), r + REP_END, float(r == REWARDED[c]))
        for c in range(2)
        for r in (REWARDED[c] if i % 4 == 0 else RESPONSES[1 - c] for i in range(32))
    ]
    return pd.DataFrame(rows, columns=["prompt", "response", "return"])


@pytest.mark.slow  # ~45 s of CPU (four 600-step runs)
def test_efficient_heads_are_no_worse_than_reference_heads_on_the_skewed_task():
    df = skewed_data()
    assert df["return"].mean() == 0.25
    shares = {}
    for kind in ("efficient", "reference"):
        runs = [train(kind, df, seed, width=16, layers=1, polyak=DEFAULT_POLYAK)[:2] for seed in SKEWED_SEEDS]
        shares[kind] = [share_rewarded(model, tok, c, BETA) for model, tok in runs for c in range(2)]
        print(kind, [f"{s:.1%}" for s in shares[kind]])
    mean = {k: sum(v) / len(v) for k, v in shares.items()}
    assert mean["efficient"] >= mean["reference"] - 0.05, mean
