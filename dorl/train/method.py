"""What a training method supplies to the engine, and the registry of methods.

The engine (`dorl.train.engine`) owns the loop: DeepSpeed, batching, accumulation, checkpoints,
logs. A method owns what differs: its data (`datasets`, `collate`), its model (`tokenizer`,
`model`, `wrap` — ILQL wraps the LM with Q/V heads), its loss (the wrapper's forward returns
`(loss, stats)`), hooks (`on_step_end`: ILQL's Polyak update) and how it is saved (`save`).

A new method is one class and one line in `REGISTRY` ("name": "module:Class"); its module is
imported only when it is used.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict
from pathlib import Path

from dorl.config import RunConfig, TrainConfig
from dorl.errors import ConfigError
from dorl.store import Artifact
from dorl.text import PAD_

REGISTRY: dict[str, str] = {
    "tf": "dorl.train.lm:LanguageModel",
    "tf_top": "dorl.train.lines:Lines",
    "tf_all": "dorl.train.lines:Lines",
    "dt": "dorl.train.lines:Lines",
    "ilql": "dorl.ilql.method:ILQL",
}


class Method:
    """Base class: the defaults suit a causal LM trained with a token-mean cross-entropy."""

    data_stage = "relabel"  # the stage that must have made the --data artifact
    needs_base = True  # starts from a `train/tf` artifact (--base)
    loss_label = "cross-entropy (nats/token)"  # what the loss is (the y axis of loss.png)

    def __init__(self, cfg: RunConfig, name: str):
        self.cfg = cfg
        self.name = name
        # Padding fills the right end of short lines and is never attended to; `<_pad_>` rather than
        # the PAD id (= EOS) keeps transformers from warning about padding without an attention mask.
        self.pad_id = 0

    # ---------------------------------------------------------------- configuration (no torch)
    def train_config(self) -> TrainConfig:
        return self.cfg.methods

    def config(self) -> dict:
        """The configuration recorded in the manifest: what makes two outputs the same."""
        return {"method": self.name, "train": asdict(self.train_config())}

    def check_inputs(self, data: Artifact, base: Artifact | None) -> None:
        """Cheap checks before anything is written (the files a method needs are in the manifests)."""

    # ---------------------------------------------------------------- model and data (every rank)
    def tokenizer(self, data: Artifact, base: Artifact | None):
        """The tokenizer (built once, on rank 0; kept with the checkpoints so a resumed run reuses it)."""
        from dorl.train.model import load_base_tokenizer

        return load_base_tokenizer(base)

    def bind(self, tok) -> None:
        """Called with the run's tokenizer (the one the checkpoints were made with) before `model`."""
        self.pad_id = tok.convert_tokens_to_ids(PAD_)

    def model(self, tok, base: Artifact | None):
        """The language model, its embeddings sized to `tok`."""
        from dorl.train.model import load_base_model

        return load_base_model(base, tok)

    def datasets(self, data: Artifact, tok):
        """(train, validation) as `dorl.train.data.Examples`."""
        raise NotImplementedError

    def group_by_length(self) -> bool:
        return self.train_config().group_by_length

    def collate(self, examples: list[dict]) -> dict:
        """Tensors for one micro-batch (right-padded: see `dorl.train.model.CausalLMLoss`)."""
        from dorl.train.model import collate_causal

        return collate_causal(examples, self.pad_id)

    def wrap(self, lm):
        """The module DeepSpeed trains: forward(**batch) -> (mean loss over the batch's targets, stats)."""
        from dorl.train.model import CausalLMLoss

        return CausalLMLoss(lm)

    def target_count(self, batch: dict) -> int:
        """How many targets the batch's loss averages over: the step's loss is their global mean."""
        return int((batch["labels"][:, 1:] != -100).sum())

    # ---------------------------------------------------------------- hooks
    def on_engine(self, engine) -> None:
        """Once DeepSpeed has wrapped the module (ILQL keeps the engine to read its fp32 master weights)."""

    def on_step_end(self, module, step: int) -> None:
        """After each optimizer step (ILQL: Polyak update of the target heads)."""

    def save(self, module, state_dict: dict, out_dir: Path) -> None:
        """Write the trained model as a plain HF folder (safetensors)."""
        prefix = "lm."
        lm_state = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        module.lm.save_pretrained(out_dir, state_dict=lm_state)
        # save_pretrained writes the dtype of the live (bf16 under DeepSpeed) weights; the file holds the
        # fp32 master weights, and from_pretrained's default ("auto") must load them as such
        module.lm.config.dtype = "float32"
        module.lm.config.save_pretrained(out_dir)

    def info(self) -> dict:
        """Facts for the manifest (dataset sizes, tokens added, …)."""
        return {}


def context_length(config: dict) -> int | None:
    """Positions a model config allows (n_positions / max_position_embeddings), if it says."""
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(config.get(key), int):
            return config[key]
    return None


def method_names() -> list[str]:
    return list(REGISTRY)


def get(name: str, cfg: RunConfig) -> Method:
    if name not in REGISTRY:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(REGISTRY)}")
    module, attr = REGISTRY[name].split(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            raise ConfigError(f"method {name!r} is not available in this version of dorl yet") from None
        raise
    return cls(cfg, name)
