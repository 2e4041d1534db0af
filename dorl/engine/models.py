"""Building and loading the models and tokenizers every method trains.

- `ModelConfig` → tokenizer (`pretrained` / `gpt2` / `bpe`, with the 15 special tokens) and model
  (an HF id or folder, or a fresh GPT-2 from a config), embeddings resized to the tokenizer.
- A `train/tf` artifact → the same pair, for the methods that start from the base model.
- `flop_shape`: the weight counts the engine's MFU figure needs.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from dorl.config import ModelConfig
from dorl.errors import ConfigError
from dorl.store import Artifact
from dorl.tokenizer import build_tokenizer, check_special_tokens

log = logging.getLogger("dorl.train")


# ---------------------------------------------------------------- building from the config (base tf)


def tokenizer_from_config(mc: ModelConfig, texts=None):
    return build_tokenizer(mc.tokenizer, name=mc.name, texts=texts, vocab_size=mc.bpe_vocab_size)


def model_from_config(mc: ModelConfig, tok, seed: int):
    """A pretrained model (mc.name) or a fresh GPT-2 of the configured size, embeddings sized to `tok`."""
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    if mc.source == "pretrained":
        try:
            lm = AutoModelForCausalLM.from_pretrained(mc.name, dtype=torch.float32)
        except OSError as e:
            raise ConfigError(
                f"cannot load the model {mc.name!r} ({e.__class__.__name__}): offline, give a local folder in "
                "model.name, or use model.source=config (e.g. --preset tiny)"
            ) from None
    else:
        torch.manual_seed(seed)
        lm = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=len(tok),
                n_positions=mc.n_positions,
                n_embd=mc.n_embd,
                n_layer=mc.n_layer,
                n_head=mc.n_head,
                bos_token_id=tok.eos_token_id,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
            )
        )
    if mc.dropout is not None:
        set_dropout(lm, mc.dropout)
    fit_embeddings(lm, tok)
    return lm


def set_dropout(lm, p: float) -> None:
    for module in lm.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "dropout", "attention_dropout", "hidden_dropout"):
        if hasattr(lm.config, key):
            setattr(lm.config, key, p)


def fit_embeddings(lm, tok) -> None:
    """Resize the embeddings to the tokenizer (special tokens added) and set its EOS/PAD ids."""
    if lm.get_input_embeddings().weight.shape[0] != len(tok):
        lm.resize_token_embeddings(len(tok))
    lm.config.eos_token_id = tok.eos_token_id
    lm.config.pad_token_id = tok.pad_token_id
    if lm.generation_config is not None:
        lm.generation_config.eos_token_id = tok.eos_token_id
        lm.generation_config.pad_token_id = tok.pad_token_id


# ---------------------------------------------------------------- loading a base model (methods)


def load_base_tokenizer(base: Artifact):
    from dorl import readers

    tok = readers.tokenizer(base.local_dir())
    check_special_tokens(tok, where=f"the tokenizer of {base.uri}")
    return tok


def load_base_model(base: Artifact, tok):
    from dorl import readers

    lm = readers.causal_lm(base.local_dir(), dtype=torch.float32)
    fit_embeddings(lm, tok)
    return lm


def flop_shape(lm) -> tuple[int, int, int, int]:
    """(N without the output head, the head's N, layers, width) for `monitor.model_flops`: every weight a
    token multiplies, the tied embedding counted once (as the output head), position embeddings not (a lookup)."""
    head = lm.get_output_embeddings().weight
    seen, n = {id(head)}, 0
    for name, p in lm.named_parameters():
        if id(p) in seen or "wpe" in name or "position" in name:
            continue
        seen.add(id(p))
        n += p.numel()
    return n, head.numel(), lm.config.num_hidden_layers, lm.config.hidden_size
