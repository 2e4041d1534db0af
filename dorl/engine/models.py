"""Building and loading the models and tokenizers every method trains.

- `ModelConfig` → tokenizer (`pretrained` / `gpt2` / `bpe`, with the 15 special tokens) and model
  (an HF id or folder, or a fresh model of any family in `dorl.engine.families`), embeddings resized to the
  tokenizer; its attention kernel, gradient checkpointing and compute dtype (`compute_dtype`).
- A `train/tf` artifact → the same pair, for the methods that start from the base model.
- `flop_shape`: the weight counts the engine's MFU figure needs.
"""

from __future__ import annotations

import contextlib
import functools
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
    """A pretrained model (mc.name) or a fresh `mc.arch` model of the configured size, embeddings sized to `tok`,
    in float32 (training keeps fp32 master weights; DeepSpeed's bf16 mode casts the live copy)."""
    from transformers import AutoModelForCausalLM

    if mc.source == "pretrained":
        lm = _pretrained(mc)
    else:
        from dorl.engine.families import family_config

        config = family_config(mc, len(tok), tok.eos_token_id, tok.pad_token_id)
        torch.manual_seed(seed)
        with _attn_errors(mc):
            lm = AutoModelForCausalLM.from_config(config, dtype=torch.float32, **_attn(mc))
    if mc.dropout is not None:
        set_dropout(lm, mc.dropout)
    fit_embeddings(lm, tok)
    for_training(lm, mc)
    return lm


def _pretrained(mc: ModelConfig):
    from transformers import AutoModelForCausalLM

    try:
        with _attn_errors(mc):
            return AutoModelForCausalLM.from_pretrained(mc.name, dtype=torch.float32, **_attn(mc))
    except OSError as e:
        raise ConfigError(
            f"cannot load the model {mc.name!r} ({e.__class__.__name__}): offline, give a local folder in "
            "model.name, or use model.source=config (e.g. --preset tiny)"
        ) from None


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


def load_base_model(base: Artifact, tok, mc: ModelConfig | None = None):
    """The base model for a method's training: float32, embeddings sized to `tok`, `mc`'s attention kernel and
    gradient checkpointing."""
    from dorl import readers

    mc = mc or ModelConfig()
    with _attn_errors(mc):
        lm = readers.causal_lm(base.local_dir(), dtype=torch.float32, **_attn(mc))
    fit_embeddings(lm, tok)
    for_training(lm, mc)
    return lm


# ---------------------------------------------------------------- precision and kernels (model.dtype, ...)


def for_training(lm, mc: ModelConfig) -> None:
    """model.gradient_checkpointing: recompute each layer in the backward pass (non-reentrant: the checkpointed
    layers need no input that requires grad, and DeepSpeed's hooks see every parameter once)."""
    if mc.gradient_checkpointing:
        lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def compute_dtype(mc: ModelConfig, device: str, auto: torch.dtype | None = None) -> torch.dtype:
    """The dtype a model computes in on `device` (model.dtype); 'auto': `auto` if given (relabel: the saved
    float32), else bfloat16 on a GPU and float32 on a CPU. bfloat16 on a CPU without native bf16 (AVX512-BF16 or
    AMX) works, emulated and slow: said once."""
    if mc.dtype == "auto":
        if auto is not None:
            return auto
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    dtype = getattr(torch, mc.dtype)
    if dtype == torch.bfloat16 and str(device) == "cpu":
        _warn_cpu_bf16()
    return dtype


@functools.cache
def _warn_cpu_bf16() -> None:
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        log.warning("model.dtype=bfloat16 on a CPU without native bf16 instructions: correct but slow")


def inference_kwargs(mc: ModelConfig) -> dict:
    """`from_pretrained` arguments of a model loaded to generate or score (the dtype apart)."""
    return _attn(mc)


def _attn(mc: ModelConfig) -> dict:
    return {} if mc.attn_implementation is None else {"attn_implementation": mc.attn_implementation}


@contextlib.contextmanager
def _attn_errors(mc: ModelConfig):
    """An attention kernel transformers cannot use here (unknown, or its package missing) is a config error."""
    try:
        yield
    except (ValueError, ImportError) as e:
        if mc.attn_implementation is None or "attn" not in str(e).lower() and "attention" not in str(e).lower():
            raise
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise ConfigError(f"config key 'model.attn_implementation': {mc.attn_implementation!r}: {first}") from None


def flop_shape(lm) -> tuple[int, int, int, int]:
    """(N without the output head, the head's N, layers, width) for `monitor.model_flops`: every weight a
    token multiplies, the tied embedding counted once (as the output head); the input and position embeddings
    are lookups, not counted (an untied model's input embedding included: Llama, Qwen2, ...)."""
    head = lm.get_output_embeddings().weight
    seen, n = {id(head), id(lm.get_input_embeddings().weight)}, 0
    for name, p in lm.named_parameters():
        if id(p) in seen or "wpe" in name or "position" in name:
            continue
        seen.add(id(p))
        n += p.numel()
    return n, head.numel(), lm.config.num_hidden_layers, lm.config.hidden_size
