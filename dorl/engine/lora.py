"""LoRA for every method, with peft: `model.lora_r > 0` trains low-rank adapters instead of every weight.

The train stage makes two calls, whatever the method:

- `adapt(lm, mc, tok, seed, tokens)` where it builds the model to train: `peft.get_peft_model` injects the
  adapters into `lm` in place and freezes the rest, and `lm` itself (its class kept) is what the method wraps, so
  ILQL's heads, DT's tokens and the engine see the model they always do. Trained: the adapters
  (`model.lora_target_modules`); the embedding rows of the tokens nothing trained before the run
  (`Method.untrained_tokens`: every added token for the base tf, new to a pretrained model; DT's return tokens;
  none for the other methods, whose base trained them, which spares peft's per-step copy of the whole embedding),
  through peft's `trainable_token_indices`, the tied output embedding with them; and whatever the method builds
  around the LM afterwards (ILQL's V and Q heads: outside peft, trained fully). DeepSpeed's optimizer gets only the
  trainable parameters (`trainer.param_groups`); its checkpoints hold the whole module, so resuming is exact.
  `lm.save_pretrained(folder, state_dict=)` writes peft's adapter files (adapter_config.json,
  adapter_model.safetensors), as transformers does for a model with adapters: each method's own save is unchanged.
- `finish(folder, merge, base_model)` once the output folder is written: the folder holds the adapter on its base (the
  base's config.json a method's save writes is dropped, or transformers would take the folder for a whole model);
  with `model.lora_merge`, or when the base is a fresh model saved nowhere (model.source=config), the folder
  becomes a plain model with merged weights and the adapter moves to `adapter/`.

`dorl.readers.causal_lm` loads an adapter folder as its base with the adapter merged (generate, chat, evaluate,
relabel and a method's --base alike); plain peft loads it with `PeftModel.from_pretrained(base, folder)`.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict
from pathlib import Path

from dorl.errors import ConfigError

log = logging.getLogger("dorl.train")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
MERGED = "adapter"  # the adapter's subfolder of a merged folder
_PEFT = "_dorl_peft"  # the PeftModel around an adapted model (kept out of nn.Module's registry)


def enabled(mc) -> bool:
    return mc.lora_r > 0


def recorded(mc) -> dict:
    """The manifest config's `lora` entry (none for full fine-tuning): an adapter run is another output."""
    if not enabled(mc):
        return {}
    keys = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_merge")
    return {"lora": {k.removeprefix("lora_"): asdict(mc)[k] for k in keys}}


def target_modules(mc, lm):
    """model.lora_target_modules, or peft's default for the architecture, or every linear layer where peft has
    none (peft would refuse the model)."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    if mc.lora_target_modules is not None:
        return mc.lora_target_modules
    return None if lm.config.model_type in DEFAULTS else "all-linear"


def adapt(lm, mc, tok, seed: int = 0, tokens=None):
    """`lm` (embeddings sized to `tok`) with LoRA adapters injected, only they and the rows of `tokens` (default:
    every token the tokenizer added) trainable; `lm` unchanged when model.lora_r = 0. The adapters' random init comes
    from `seed` alone (apart from the global stream, as ILQL's heads): a run and its re-run, or its resumption, start
    from the same adapters."""
    if not enabled(mc):
        return lm
    import torch
    from peft import LoraConfig, get_peft_model

    tokens = list(tok.added_tokens_encoder) if tokens is None else tokens
    tokens = sorted({tok.convert_tokens_to_ids(t) for t in tokens})
    config = LoraConfig(
        r=mc.lora_r,
        lora_alpha=mc.lora_alpha,
        lora_dropout=mc.lora_dropout,
        target_modules=target_modules(mc, lm),
        trainable_token_indices=tokens or None,
        task_type="CAUSAL_LM",
    )
    base = lm.name_or_path
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            peft = get_peft_model(lm, config)
        except ValueError as e:  # peft's word for target modules the model lacks: only the model can tell
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise ConfigError(f"config key 'model.lora_target_modules' = {mc.lora_target_modules!r}: {first}") from None
    if base and Path(base).is_dir():  # a model folder (a base artifact): named absolutely, as the adapter's base
        peft.peft_config["default"].base_model_name_or_path = str(Path(base).resolve())
    object.__setattr__(lm, _PEFT, peft)
    object.__setattr__(lm, "save_pretrained", lambda folder, state_dict=None, **kw: _save(peft, folder, state_dict))
    trainable = sum(p.numel() for p in lm.parameters() if p.requires_grad)
    total = sum(p.numel() for p in lm.parameters())
    targets = peft.peft_config["default"].target_modules
    log.info(
        "LoRA r=%d alpha=%g on %s, %d token rows: %s of %s parameters trainable (%.2f%%)",
        mc.lora_r, mc.lora_alpha, targets if isinstance(targets, str) else sorted(targets), len(tokens),
        f"{trainable:,}", f"{total:,}", 100 * trainable / total,
    )  # fmt: skip
    return lm


def is_adapted(lm) -> bool:
    return hasattr(lm, _PEFT)


def _save(peft, folder, state_dict) -> None:
    """peft's adapter files from `state_dict` (the adapted model's names; the trainer's fp32 weights)."""
    state = None if state_dict is None else {f"base_model.model.{k}": v for k, v in state_dict.items()}
    peft.save_pretrained(str(folder), state_dict=state)


def finish(folder: Path, merge: bool, base_model) -> str:
    """Make the written output folder an adapter folder, or a merged one ("adapter" / "merged"). `base_model()`:
    the model `adapt` was given, built again (the method's `model`: a base artifact read again, or a fresh model
    rebuilt from its seed; its frozen weights never changed), into which the folder's adapter is merged."""
    import json

    folder = Path(folder)
    (folder / "config.json").unlink(missing_ok=True)  # the base's, written by the method's save
    (folder / "README.md").unlink(missing_ok=True)  # peft's stub card; model_folder.finish writes dorl's
    base = json.loads((folder / ADAPTER_FILES[0]).read_text()).get("base_model_name_or_path")
    if base and not merge:
        return "adapter"
    if not base:
        log.info("LoRA: the base is a fresh model saved nowhere (model.source=config): saving merged weights")
    from peft import PeftModel

    # not the live model: ZeRO-3 partitions it, bf16 rounds it, and the folder may hold the best step's adapter
    merged = PeftModel.from_pretrained(base_model().float().cpu(), str(folder)).merge_and_unload()
    (folder / MERGED).mkdir(exist_ok=True)
    for name in ADAPTER_FILES:
        shutil.move(folder / name, folder / MERGED / name)
    merged.config.dtype = "float32"  # the file holds fp32 weights (see Method.save)
    merged.save_pretrained(folder)
    return "merged"
