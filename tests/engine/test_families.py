"""Every model family `model.source=config` builds (`model.arch`) works with every method's code: tiny random models
(2 layers, width 64, 4 heads; 2 key/value heads where the family has grouped-query attention) with GPT-2's tokenizer.

Per family: the config maps dorl's size keys onto the family's own; the TF loss equals transformers' own on the same
batch and a step trains; DT's new return tokens get rows in both embeddings (tied or not); ILQL's loss trains its
heads and the LM; relabel's batched beam search over left-padded prompts gives transformers' `generate` candidates
(positions skip the padding: RoPE families have no position embeddings to hide it); ILQL decoding at beta 0 is the
LM's greedy decoding; the saved folder loads back the same."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

from dorl import config
from dorl.config.schema import ARCHS, NO_GQA
from dorl.errors import ConfigError
from dorl.methods.dt import dt_line
from dorl.text import prompt
from tests.methods.helpers import CTX

PROMPTS = [prompt(CTX), prompt(CTX[:40]), prompt(CTX), prompt("<_soc_><_cus_start_>my boots<_cus_end_>")]
ROPE = {"llama", "qwen2", "qwen3", "mistral", "gemma", "gpt_neox"}


def family_cfg(arch: str, *sets: str, tie: bool | None = None):
    kv = "null" if arch in NO_GQA else "2"
    tied = [] if tie is None else [f"model.tie_embeddings={str(tie).lower()}"]
    return config.load(
        preset="tiny",
        sets=["model.tokenizer=gpt2", f"model.arch={arch}", "model.n_head=4", f"model.n_kv_head={kv}", *tied, *sets],
    )


@functools.cache
def _gpt2_tokenizer():
    from dorl.engine.models import tokenizer_from_config

    return tokenizer_from_config(config.load(sets=["model.tokenizer=gpt2"]).model)


def build(cfg):
    """(model, tokenizer): GPT-2's tokenizer with dorl's tokens (built once: 1 s), a copy per model."""
    from dorl.engine.models import model_from_config

    tok = copy.deepcopy(_gpt2_tokenizer())
    return model_from_config(cfg.model, tok, seed=0), tok


def batch(tok, lines):
    from dorl.engine.causal_lm import collate_causal

    ids = tok(lines, add_special_tokens=False)["input_ids"]
    return collate_causal([{"input_ids": x, "label_start": len(x) // 2} for x in ids], tok.pad_token_id)


def test_every_family_of_the_config_is_built():
    from dorl.engine.families import FAMILIES, available

    assert tuple(FAMILIES) == ARCHS
    assert "qwen3" in available()  # transformers here has it: the tests below cover it


@pytest.mark.parametrize(
    "arch,tie",
    [(a, None) for a in ARCHS] + [("llama", True), ("opt", False)],  # tied by default: gpt2, gemma, opt
)
def test_family_trains_relabels_and_decodes(arch, tie, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    from dorl.engine.causal_lm import CausalLMLoss
    from dorl.generate import DecodeConfig, generate
    from dorl.ilql.decode import decode as ilql_decode
    from dorl.ilql.model import ILQLModel

    cfg = family_cfg(arch, tie=tie)
    lm, tok = build(cfg)
    c = lm.config
    assert c.model_type == arch and (c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (64, 2, 4)
    assert c.max_position_embeddings == 512 and lm.get_input_embeddings().weight.shape == (len(tok), 64)
    if arch not in NO_GQA:
        assert (c.num_key_value_heads, c.head_dim) == (2, 16)
        assert lm.model.layers[0].self_attn.k_proj.out_features == 32  # 2 key/value heads of 16
    tied = AutoConfig.for_model(arch).tie_word_embeddings if tie is None else tie
    assert (lm.get_output_embeddings().weight is lm.get_input_embeddings().weight) == tied
    # learned positions (GPT-2: wpe, OPT: embed_positions), none in the RoPE families
    learned = [n for n, _ in lm.named_parameters() if "position" in n or ".wpe." in n]
    assert bool(learned) == (arch not in ROPE)

    # DT: new return tokens get embedding rows, in the output layer too when it is not the input's (as the
    # method does, before any training)
    n = len(tok)
    tok.add_tokens(["<_return_0_>", "<_return_1_>", "<_return_2_>"], special_tokens=True)
    from dorl.engine.models import fit_embeddings

    fit_embeddings(lm, tok)
    assert lm.get_input_embeddings().weight.shape[0] == lm.get_output_embeddings().weight.shape[0] == n + 3

    # TF (tf, tf_top, tf_all): dorl's loss is transformers' own on the same batch, and a step lowers it
    lines = [prompt(CTX) + "I can help.<_rep_end_>", dt_line(CTX[:30], "Sure.", "<_return_2_>")]
    b = batch(tok, lines)
    loss_fn = CausalLMLoss(lm.eval())  # no dropout: the two forward passes comparable
    loss, _ = loss_fn(**b)
    torch.testing.assert_close(loss, lm(input_ids=b["input_ids"], labels=b["labels"]).loss, rtol=1e-5, atol=1e-5)
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-2)
    loss.backward()
    new_row = lm.get_input_embeddings().weight.grad[tok.convert_tokens_to_ids("<_return_2_>")]
    assert new_row.abs().sum() > 0  # DT's return token trains
    opt.step()
    opt.zero_grad()
    assert loss_fn(**b)[0] < loss

    # ILQL: one step trains the heads and the LM (the heads' width is the family's hidden size)
    import pandas as pd

    from dorl.ilql.data import Collator, ReturnStats, encode
    from dorl.ilql.loss import ILQLLoss, LossConfig

    model = ILQLModel(lm)
    assert model.heads.d == 64
    rows = pd.DataFrame({"prompt": [prompt(CTX)] * 2, "response": ["I can help.<_rep_end_>", "no<_rep_end_>"]})
    rows["return"] = [1.0, 0.0]
    ib = Collator(tok.pad_token_id)(encode(rows, tok, 64, ReturnStats.fit(rows["return"])))
    ilql_loss, _ = ILQLLoss(model, LossConfig())(**ib)
    ilql_loss.backward()
    assert all(p.grad is not None for p in model.heads.parameters() if p.requires_grad)
    assert lm.get_input_embeddings().weight.grad is not None

    # relabel's candidates: dorl's batched beam search over left-padded prompts of different lengths is `generate`'s
    dc = DecodeConfig(num_beams=3, num_return=3, max_new_tokens=5, batch_size=4)
    ours = generate(lm, tok, PROMPTS, dc, progress=False)
    theirs = generate(lm, tok, PROMPTS, dc.but(engine="hf"), progress=False)
    assert ours.texts == theirs.texts and ours.texts[0] == ours.texts[2]
    # a context alone decodes as in a padded batch (the positions skip the padding)
    assert generate(lm, tok, PROMPTS[1:2], dc, progress=False).texts[0] == ours.texts[1]

    # ILQL decoding at beta 0 is the LM's greedy decoding
    greedy = generate(lm, tok, PROMPTS, dc.but(num_beams=1, num_return=1), progress=False)
    assert [[t.strip()] for t in ilql_decode(model, tok, PROMPTS, dc.but(num_beams=1, num_return=1)).texts] == [
        [t.strip() for t in g] for g in greedy.texts
    ]

    # the saved folder loads back the same model
    lm.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    lm.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=b["input_ids"]).logits, lm(input_ids=b["input_ids"]).logits)


def test_flop_shape_counts_an_untied_input_embedding_as_a_lookup():
    from dorl.engine.models import flop_shape

    lm, tok = build(family_cfg("llama", "model.n_inner=128", tie=False))
    d, v = 64, len(tok)
    # per layer: q, o 64x64; k, v 64x32 (2 kv heads); gate, up, down 64x128; 2 RMSNorms; a final norm
    per_layer = 2 * d * d + 2 * d * 32 + 3 * d * 128 + 2 * d
    assert flop_shape(lm) == (2 * per_layer + d, v * d, 2, d)


def test_the_config_refuses_what_a_family_cannot_build():
    with pytest.raises(ConfigError, match="gpt_neox has no grouped-query attention"):
        family_cfg("gpt_neox", "model.n_kv_head=2")
    with pytest.raises(ConfigError, match="do not share"):
        family_cfg("llama", "model.n_kv_head=3")
    with pytest.raises(ConfigError, match="model.arch"):
        config.load(preset="tiny", sets=["model.arch=bert"])


def test_gradient_checkpointing_gives_the_same_gradients():
    from dorl.engine.causal_lm import CausalLMLoss

    grads = []
    for on in (False, True):
        lm, tok = build(family_cfg("qwen3", f"model.gradient_checkpointing={str(on).lower()}", "model.dropout=0"))
        assert lm.is_activation_checkpointing == on
        lm.train()
        loss, _ = CausalLMLoss(lm)(**batch(tok, [prompt(CTX) + "Sure.<_rep_end_>"]))
        loss.backward()
        grads.append(lm.model.layers[0].mlp.up_proj.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_attn_implementation_is_passed_through():
    lm, _ = build(family_cfg("mistral", "model.attn_implementation=eager"))
    assert lm.config._attn_implementation == "eager"
    lm, _ = build(family_cfg("mistral"))
    assert lm.config._attn_implementation == "sdpa"  # transformers' default
    with pytest.raises(ConfigError, match="model.attn_implementation"):
        build(family_cfg("mistral", "model.attn_implementation=no_such_kernel"))


def test_compute_dtype():
    from dorl.engine.models import compute_dtype

    auto = config.load().model
    assert compute_dtype(auto, "cpu") == torch.float32 and compute_dtype(auto, "cuda:0") == torch.bfloat16
    assert compute_dtype(auto, "cuda", auto=torch.float32) == torch.float32  # relabel: as saved
    bf16 = config.load(sets=["model.dtype=bfloat16"]).model
    assert compute_dtype(bf16, "cpu") == torch.bfloat16 == compute_dtype(bf16, "cpu", auto=torch.float32)


def test_a_vocabulary_without_endoftext_keeps_its_own_eos():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from dorl.tokenizer import add_special_tokens

    for special, eos in ((["</s>"], "</s>"), ([], None)):
        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=special)
        bpe.train_from_iterator(["hello world"] * 10, trainer=trainer)
        tok = add_special_tokens(PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=eos))
        want = "</s>" if special else "<|endoftext|>"  # its own EOS, else GPT-2's added
        assert tok.eos_token == tok.pad_token == want and tok.eos_token_id == tok.convert_tokens_to_ids(want)
        assert tok.eos_token_id is not None
