"""ILQL on the GPU: training through the engine in bf16 (loss falling), then beta-decoding.

Decoding is checked where it can be exact: the decoding scores log_softmax(LM) + beta * (min target-Q - V) of the
GPU in fp32 equal the CPU's to fp32 rounding, and in bf16 (what `dorl evaluate` loads on a GPU) to bf16's; greedy
beta-decoding on the GPU (fp32) picks the CPU's tokens, except at a tie (the CPU's two best scores at the first
differing step within TIE); the evaluation path (`ILQL.respond`, bf16) answers every prompt."""

from __future__ import annotations

import pytest
import torch

from dorl import config
from dorl.stages.train import train
from tests.gpu.conftest import DEVICE, ILQL_SETS, PRECISION, losses

pytestmark = pytest.mark.gpu
BETA, TIE = 1.0, 1e-3


@pytest.fixture(scope="module")
def ilql_model(tmp_path_factory, relabelled, gpu_base):
    cfg = config.load(preset="tiny", sets=[*ILQL_SETS, "ilql.train.max_steps=40", "ilql.polyak_every=1",
                                           "ilql.polyak_alpha=0.2"])  # fmt: skip
    return train(cfg, method="ilql", data_uri=relabelled.uri, base_uri=gpu_base.uri,
                 out_uri=str(tmp_path_factory.mktemp("gpu-ilql") / "ilql")).artifact  # fmt: skip


def test_ilql_trains_in_bf16(ilql_model):
    assert ilql_model.info["precision"] == PRECISION
    curve = losses(ilql_model)
    assert len(curve) >= 4 and curve[-1] < curve[0], curve


def _prompts(gpu_data, tok, n: int = 12):
    import pandas as pd

    from dorl.generate import left_pad
    from dorl.text import prompt

    contexts = pd.read_parquet(gpu_data.path("examples/validation.parquet"))["context"].drop_duplicates()
    rows = [tok(prompt(c), add_special_tokens=False)["input_ids"][-96:] for c in contexts.tolist()[:n]]
    return left_pad(rows, tok.pad_token_id)


def _scores(model, ids, mask):
    """The first decoding step's scores, as `dorl.generate` computes them with ILQL's `Advantage`."""
    from dorl.generate import _prefill

    logits, h, _, _ = _prefill(model.lm, ids, mask, hidden=True)
    return torch.log_softmax(logits.double(), -1) + BETA * model.heads.advantage(h, model.lm_head.weight).double()


def _greedy(model, ids, mask, stops, pad):
    """Greedy beta-decoding of a left-padded batch: (B, 16) new tokens, `pad` after a row's stop."""
    from dorl.generate import DecodeConfig, decode_batch
    from dorl.ilql.decode import Advantage

    seqs = decode_batch(model.lm, ids, mask, DecodeConfig(max_new_tokens=16), stops, pad, adjust=Advantage(model, BETA))
    return torch.tensor([s[0] + [pad] * (16 - len(s[0])) for s in seqs])


@torch.no_grad()
def test_beta_decoding_on_the_gpu(ilql_model, gpu_data, record_property):
    from dorl.generate import stop_token_ids
    from dorl.ilql import io as ilql_io
    from dorl.methods.base import load_tokenizer

    folder = ilql_model.local_dir()
    tok = load_tokenizer(folder)
    ids, mask = _prompts(gpu_data, tok)
    assert len(ids) >= 8
    cpu = ilql_io.load(folder, device="cpu", dtype=torch.float32)
    gpu = ilql_io.load(folder, device=DEVICE, dtype=torch.float32)
    gpu16 = ilql_io.load(folder, device=DEVICE, dtype=torch.bfloat16 if DEVICE == "cuda" else torch.float32)
    want = _scores(cpu, ids, mask)
    got = _scores(gpu, ids.to(DEVICE), mask.to(DEVICE)).cpu()
    got16 = _scores(gpu16, ids.to(DEVICE), mask.to(DEVICE)).cpu()
    record_property("fp32_max_abs_difference", float((got - want).abs().max()))
    record_property("bf16_relative_difference", float((got16 - want).norm() / want.norm()))
    assert (got - want).abs().max() < 1e-3
    assert (got16 - want).norm() / want.norm() < 3e-2

    stops = stop_token_ids(tok)
    a = _greedy(cpu, ids, mask, stops, tok.pad_token_id)
    b = _greedy(gpu, ids.to(DEVICE), mask.to(DEVICE), stops, tok.pad_token_id)
    ties = 0
    for row in range(len(ids)):
        diff = (a[row] != b[row]).nonzero()
        if len(diff) == 0:
            continue
        t = int(diff[0])  # the first step where the devices chose differently: the CPU's margin there
        seq = torch.cat([ids[row : row + 1], a[row : row + 1, :t]], 1)
        m = torch.cat([mask[row : row + 1], torch.ones(1, t, dtype=mask.dtype)], 1)
        top2 = _scores(cpu, seq, m)[0].topk(2).values
        assert float(top2[0] - top2[1]) <= TIE, f"prompt {row}: the GPU's greedy tokens differ at step {t}, no tie"
        ties += 1
    record_property("greedy_ties", ties)
    assert ties <= len(ids) // 4
    # the evaluation path: bf16 on the GPU, response 1 greedy, 2 re-ranked samples
    from dorl import methods
    from dorl.generate import DecodeConfig

    m = methods.get("ilql", config.load(preset="tiny", sets=[f"ilql.beta={BETA}"]))
    prompts = [tok.decode(r[r != tok.pad_token_id]) for r in ids[:4]]
    out, stats = m.respond(folder, prompts, DecodeConfig(max_new_tokens=16, beta=BETA, batch_size=4), 3)
    assert len(out) == 4 and all(len(r) == 3 for r in out) and stats["seconds"] > 0
