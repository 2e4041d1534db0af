"""The causal-LM families a fresh model (`model.source=config`) can be built as, from dorl's size keys.

    config = family_config(mc, vocab_size=len(tok), eos_id=..., pad_id=...)   # a transformers config object
    lm = AutoModelForCausalLM.from_config(config)

dorl's keys are GPT-2's (`n_layer`, `n_head`, `n_embd`, `n_positions`) plus `n_kv_head` (grouped-query
attention; None = n_head), `n_inner` (the MLP width; None = 4 x n_embd) and `tie_embeddings` (None = the
family's own default). Every family's config class takes the generic names (hidden_size,
num_hidden_layers, num_attention_heads, max_position_embeddings: GPT-2's `attribute_map` maps them onto
n_embd, ...), so the table below names only what differs: the MLP width's key, whether the family has
grouped-query attention (`num_key_value_heads`) with an explicit `head_dim` (Qwen3 and Gemma default to 128
and 256 whatever the width; dorl's is n_embd / n_head, as GPT-2's; dorl.config.schema.NO_GQA lists the
families without). `AutoConfig.for_model` builds the
config; the modelling code is transformers' own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    inner: str  # the config key of the MLP width
    head_dim: bool = False  # has an explicit head_dim (and num_key_value_heads: grouped-query attention)
    extra: tuple = ()  # (key, value) pairs more; a value "width" is n_embd


# model.arch (dorl.config.schema.ARCHS) -> the transformers model_type of the same name. Positions: GPT-2 and OPT
# learn them; the others rotate (RoPE: no position embeddings). Tied output embeddings by default: GPT-2, Gemma, OPT.
FAMILIES: dict[str, Family] = {
    "gpt2": Family(inner="n_inner"),
    "llama": Family(inner="intermediate_size", head_dim=True),
    "qwen2": Family(inner="intermediate_size", head_dim=True),
    "qwen3": Family(inner="intermediate_size", head_dim=True),
    "mistral": Family(inner="intermediate_size", head_dim=True),
    "gemma": Family(inner="intermediate_size", head_dim=True),
    "gpt_neox": Family(inner="intermediate_size"),
    # word_embed_proj_dim defaults to 512 (OPT-350m's projection): dorl's width, no projection
    "opt": Family(inner="ffn_dim", extra=(("word_embed_proj_dim", "width"),)),
}


def available() -> list[str]:
    """The families this transformers has (Qwen3 came in 4.51)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return [name for name in FAMILIES if name in CONFIG_MAPPING_NAMES]


def family_config(mc, vocab_size: int, eos_id: int | None, pad_id: int | None):
    """The transformers config of a fresh `mc.arch` model of dorl's size keys (`mc`: a ModelConfig)."""
    from transformers import AutoConfig

    from dorl.errors import ConfigError

    fam = FAMILIES[mc.arch]
    if mc.arch not in available():
        raise ConfigError(f"config key 'model.arch': this transformers has no {mc.arch!r} models; upgrade it")
    kw = {
        "vocab_size": vocab_size,
        "hidden_size": mc.n_embd,
        "num_hidden_layers": mc.n_layer,
        "num_attention_heads": mc.n_head,
        "max_position_embeddings": mc.n_positions,
        fam.inner: mc.n_inner or 4 * mc.n_embd,
        "bos_token_id": eos_id,  # dorl's tokenizers have no BOS of their own (GPT-2's convention)
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
    }
    if fam.head_dim:  # n_kv_head on a family without it: refused by the config's check
        kw["num_key_value_heads"] = mc.n_kv_head or mc.n_head
        kw["head_dim"] = mc.n_embd // mc.n_head
    for key, value in fam.extra:
        kw[key] = mc.n_embd if value == "width" else value
    if mc.tie_embeddings is not None:
        kw["tie_word_embeddings"] = mc.tie_embeddings
    return AutoConfig.for_model(mc.arch, **kw)
