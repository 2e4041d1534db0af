"""Q/V heads: parameter counts at distilgpt2 size, values at taken actions, gradients, decoding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dorl.ilql.heads import QHeads, count_parameters, make_heads

D, V = 768, 50_272  # distilgpt2 with dorl's 15 special tokens


def mlp_params(d_in, d_hidden, d_out):
    return d_in * d_hidden + d_hidden + d_hidden * d_out + d_out


@pytest.mark.parametrize("two_qs", [True, False])
def test_parameter_counts_at_distilgpt2_size(two_qs):
    n_q = 4 if two_qs else 2  # Q heads and their targets
    with torch.device("meta"):
        ref = count_parameters(make_heads("reference", D, V, two_qs))
        eff = count_parameters(make_heads("efficient", D, V, two_qs))
    assert ref == mlp_params(D, 2 * D, 1) + n_q * mlp_params(D, 2 * D, V)
    # efficient: plus the target copy of the output embedding, |V| x d
    assert eff == mlp_params(D, 2 * D, 1) + n_q * (mlp_params(D, 2 * D, D) + V) + V * D
    if two_qs:  # measured: 314,979,713 vs 49,439,105 (distilgpt2 itself: 81,924,096)
        assert (ref, eff) == (314_979_713, 49_439_105)


def small(kind, two_qs=True, seed=0):
    torch.manual_seed(seed)
    heads = make_heads(kind, d=8, vocab=13, two_qs=two_qs)
    emb = nn.Parameter(torch.randn(13, 8))
    heads.attach_embedding(emb)
    with torch.no_grad():  # make the targets (and the efficient heads' target copy of E) differ from what they follow
        for p in heads.buffers():
            p.add_(torch.randn_like(p))
    return heads, emb, torch.randn(5, 8), torch.tensor([0, 3, 12, 7, 3])


@pytest.mark.parametrize("kind", ["efficient", "reference"])
def test_taken_actions_match_the_vocabulary_values(kind):
    heads, emb, h, a = small(kind)
    full, taken = heads.q(h, emb), heads.q(h, emb, a)
    assert [f.shape for f in full] == [(5, 13)] * 2
    for f, t in zip(full, taken, strict=True):
        assert torch.allclose(f.gather(1, a[:, None])[:, 0], t, atol=1e-6)
    temb = heads.target_emb if kind == "efficient" else None  # efficient targets read the target copy of E
    targets = [head(h, temb) if kind == "efficient" else head(h) for head in heads.target_q_heads]
    assert torch.allclose(heads.target_q(h, emb), torch.minimum(*targets), atol=1e-6)
    assert torch.allclose(heads.target_q(h, emb, a), torch.minimum(*targets).gather(1, a[:, None])[:, 0], atol=1e-6)
    assert not heads.target_q(h, emb).requires_grad and heads.v(h).shape == (5,)


def test_efficient_q_is_the_embedding_score_plus_bias():
    heads, emb, h, a = small("efficient", two_qs=False)
    head = heads.q_heads[0]
    with torch.no_grad():
        head.bias.copy_(torch.arange(13.0))
    z = head.mlp(h)
    expected = torch.stack([torch.stack([z[i] @ emb[j] + j for j in range(13)]) for i in range(5)])
    assert torch.allclose(heads.q(h, emb)[0], expected, atol=1e-5)


def test_efficient_q_sends_no_gradient_into_the_embedding():
    heads, emb, h, a = small("efficient")
    h.requires_grad_(True)
    (sum(q.sum() for q in heads.q(h, emb)) + sum(q.sum() for q in heads.q(h, emb, a))).backward()
    assert emb.grad is None
    assert h.grad is not None and heads.q_heads[0].bias.grad is not None  # the trunk and the heads do learn


@pytest.mark.parametrize("kind", ["efficient", "reference"])
def test_decode_advantage(kind):
    heads, emb, h, _ = small(kind)
    adv = heads.advantage(h, emb)
    generic = QHeads.advantage(heads, h, emb)  # unfused: target-Q and V apart
    assert torch.allclose(adv, heads.target_q(h, emb) - heads.v(h)[:, None], atol=1e-5)
    assert torch.allclose(adv, generic, atol=1e-5)


def test_targets_stay_fp32_when_the_parameters_are_cast_to_bf16():
    # DeepSpeed's bf16 mode casts parameters only (deepspeed/runtime/engine.py, _cast_module_mixed_precision)
    heads, emb, h, a = small("efficient")
    for p in heads.parameters():
        p.data = p.data.to(torch.bfloat16)
    assert {b.dtype for b in heads.target_q_heads.buffers()} == {torch.float32}
    assert set(heads.state_dict()) >= {f"target_q_heads.{k}" for k, _ in heads.target_q_heads.named_buffers()}
    q = heads.target_q(h.bfloat16(), emb.detach().bfloat16(), a)
    assert q.dtype == torch.float32 and q.shape == (5,)
    adv = heads.advantage(h.bfloat16(), nn.Linear(8, 13, bias=False).bfloat16().weight)
    assert adv.shape == (5, 13) and adv.dtype == torch.float32


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown ILQL heads"):
        make_heads("big", 8, 13)
