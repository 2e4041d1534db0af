"""The method interface: what a method supplies to the train stage, the training engine and evaluation.

The engine (`dorl.engine.trainer`) owns the loop: DeepSpeed, batching, accumulation, checkpoints,
logs. A method owns what differs:

- settings:     its config section (declared beside it, named in its registry entry: `settings()`), its
                TrainConfig (`train_config`, at `config_section`) and what its manifest records (`config`);
- training set: `training_set(candidates, return_bins)`: its rows from one split of relabel's scored
                candidates; the train stage builds them (`training_sets`, dorl/methods/training_set.py) and
                records them in the method's artifact;
- training:     data (`datasets`, `collate`), model (`tokenizer`, `model`, `wrap`: ILQL wraps the LM with
                Q/V heads, whose forward returns `(loss, stats)`; the text methods' loss seam is
                `dorl.engine.causal_lm`), per-example columns computed once from the starting model
                (`reference`: DPO's and KTO's reference log-probs), hooks (`on_engine`, `before_step`: a
                statistic of the whole step, `on_step_end`: ILQL's Polyak update), saving (`save`) and the
                manifest's facts (`info`);
- evaluation:   `prompt(context, model_info, fmt)` (DT asks for its top return token; `fmt`: the model's
                `dorl.prompts.PromptFormat`, `prompt_format(model_dir)`) and
                `respond(model_dir, prompts, decode, num_responses)` (text methods: greedy then beam
                search; ILQL: advantage-guided decoding), with the settings `decoding()` returns.

The registry is `dorl.methods.REGISTRY`.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from dorl.config import TrainConfig
from dorl.generate import DecodeConfig
from dorl.methods.registry import entry
from dorl.prompts import PromptFormat
from dorl.store import Artifact
from dorl.text import PAD_

if TYPE_CHECKING:  # the config's RunConfig is assembled from the methods' sections: not at import
    from dorl.config import RunConfig


class Method:
    """Base class: the defaults suit a causal LM trained with a token-mean cross-entropy."""

    data_stage = "relabel"  # the stage that must have made the --data artifact
    # An evaluation-only method (a scorer in the registry) names the trained method whose model `--model` must be
    # and those whose models `--candidates-from` may be; a trained method has neither.
    scores: str | None = None
    candidate_methods: tuple[str, ...] = ()
    needs_base = True  # starts from a `train/tf` artifact (--base)
    loss_label = "cross-entropy (nats/token)"  # what the loss is (the y axis of loss.png)

    config_section = "finetune"  # where its TrainConfig lives in the run config (`train_config`)

    def __init__(self, cfg: RunConfig, name: str):
        self.cfg = cfg
        self.name = name
        # Padding fills the right end of short lines and is never attended to; `<_pad_>` rather than
        # the PAD id (= EOS) keeps transformers from warning about padding without an attention mask.
        self.pad_id = 0
        self.fmt = PromptFormat()  # how its lines are prompted: the run's tokenizer's format (`bind`)

    # ---------------------------------------------------------------- configuration (no torch)
    def settings(self):
        """Its config section (the registry entry's `section`), or None: it declares none."""
        section = entry(self.name).section
        return getattr(self.cfg, section) if section else None

    def train_config(self) -> TrainConfig:
        return self.cfg.finetune

    def config(self) -> dict:
        """The configuration recorded in the manifest: what makes two outputs the same (its TrainConfig, and its
        own section under its name when that is another one)."""
        out = {"method": self.name, "train": asdict(self.train_config())}
        section = entry(self.name).section
        if section and self.settings() is not self.train_config():
            out[section] = asdict(self.settings())
        return out

    # ---------------------------------------------------------------- the training set (no torch)
    def training_set(self, candidates, return_bins: int):
        """Its training rows from one split's scored candidates (a DataFrame of
        `dorl.relabel.candidates.CANDIDATE_COLUMNS`: the human response is candidate 0, always in the top return
        bin `return_bins - 1`), or None: the method does not train on relabelled data."""
        return None

    def training_sets(self, data: Artifact) -> dict | None:
        """{"train": rows, "validation": rows} from the relabel artifact `data`, shuffled (the same on every rank),
        or None: the method does not train on relabelled data."""
        if self.data_stage != "relabel":
            return None
        from dorl.methods.training_set import training_sets

        return training_sets(self, data)

    def check_inputs(self, data: Artifact, base: Artifact | None) -> None:
        """Cheap checks before anything is written (the files a method needs are in the manifests)."""

    # ---------------------------------------------------------------- model and data (every rank)
    def tokenizer(self, data: Artifact, base: Artifact | None):
        """The tokenizer (built once, on rank 0; kept with the checkpoints so a resumed run reuses it)."""
        from dorl.engine.models import load_base_tokenizer

        return load_base_tokenizer(base)

    def bind(self, tok) -> None:
        """Called with the run's tokenizer (the one the checkpoints were made with) before `model`."""
        self.pad_id = tok.convert_tokens_to_ids(PAD_)
        self.fmt = PromptFormat.of(tok)

    def model(self, tok, base: Artifact | None):
        """The language model, its embeddings sized to `tok`."""
        from dorl.engine.models import load_base_model

        return load_base_model(base, tok, self.cfg.model)

    def datasets(self, data: Artifact, tok, rows: dict | None):
        """(train, validation) as `dorl.engine.data.Examples`, from `rows` (`training_sets`) or, for a method
        that trains on another artifact (tf: the data artifact), from `data`."""
        raise NotImplementedError

    def group_by_length(self) -> bool:
        return self.train_config().group_by_length

    def collate(self, examples: list[dict]) -> dict:
        """Tensors for one micro-batch (right-padded: see `dorl.engine.causal_lm.CausalLMLoss`)."""
        from dorl.engine.causal_lm import collate_causal

        return collate_causal(examples, self.pad_id)

    def untrained_tokens(self, tok) -> list[str]:
        """Tokens whose embeddings nothing has trained before this run: under LoRA (`dorl.engine.lora`) their rows
        train beside the adapters. The base model: every token the tokenizer added (new to a pretrained model); a
        method: none (its base trained them) unless it says so (DT: its return tokens)."""
        return [] if self.needs_base else list(tok.added_tokens_encoder)

    def wrap(self, lm):
        """The module DeepSpeed trains: forward(**batch) -> (mean loss over the batch's targets, stats)."""
        from dorl.engine.causal_lm import CausalLMLoss

        return CausalLMLoss(lm)

    def target_count(self, batch: dict) -> int:
        """How many targets the batch's loss averages over (tokens; DPO: pairs): the step's loss is their global
        mean."""
        return int((batch["labels"][:, 1:] != -100).sum())

    def head_positions(self, batch: dict) -> int:
        """Where the output head runs with a gradient (the MFU's FLOPs); the targets unless they are not tokens."""
        return self.target_count(batch)

    def sequence_lengths(self, examples: list[dict]) -> list[int]:
        """The lengths of the sequences the examples train on (real tokens, tokens/s, the MFU's attention FLOPs)."""
        return [len(e["input_ids"]) for e in examples]

    # ---------------------------------------------------------------- hooks
    def on_engine(self, engine) -> None:
        """Once DeepSpeed has wrapped the module (ILQL keeps the engine to read its fp32 master weights)."""

    def reference(self, module, sets: dict, dist) -> dict | None:
        """Per-example columns computed once, before the first step, from the module as it starts (the
        reference model's log-probs of DPO and KTO): {split: {column: array}}, or None. The train stage keeps
        them with the checkpoints (a resumed run reads them back), adds them to the examples as fields and
        records them in the training set."""
        return None

    def before_step(self, module, batches: list[dict], dist) -> None:
        """Before the micro-batches of a training step run (all of this process's, on the device): a statistic
        of the whole step, over every process, that its losses use (KTO's KL estimate, AWR's mean weight)."""

    def on_step_end(self, module, step: int) -> None:
        """After each optimizer step (ILQL: Polyak update of the target heads)."""

    def on_validation_batch(self, module, idx) -> None:
        """After the validation forward of the examples `idx` (ILQL keeps their values for its ranking)."""

    def validation_metrics(self, dist) -> dict:
        """The method's own validation numbers, logged with the validation loss (all ranks call it)."""
        return {}

    def selection(self) -> tuple[str, bool]:
        """What keep-best selects on: ("val_loss", lower is better) or a key of `validation_metrics` (and
        whether higher is better)."""
        return "val_loss", False

    def finish(self, out_dir: Path) -> None:
        """After training, on rank 0, with the output weights in `out_dir` (ILQL chooses its decoding beta on
        validation); what it finds goes in `info()`."""

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

    # ---------------------------------------------------------------- evaluation (and generation)
    def prompt(self, context: str, model_info: dict, fmt: PromptFormat | None = None) -> str:
        """What the model continues to answer `context` (`model_info`: its train manifest's info; `fmt`: its
        prompt format, dorl's when None)."""
        return (fmt or PromptFormat()).prompt(context)

    def decoding(self, model_info: dict | None = None) -> dict:
        """The method's own decoding settings (recorded in the evaluation's config), as DecodeConfig fields;
        `model_info` (the trained model's manifest info) resolves what training chose (ILQL's beta=auto)."""
        return {}

    def respond_to(
        self, model: Artifact, contexts: list[str], decode: DecodeConfig, num_responses: int, candidates=None
    ):
        """What `dorl evaluate` calls: its prompts (`prompt`) answered by `respond` (`candidates`: the
        `--candidates-from` artifact of a scorer)."""
        fmt = prompt_format(model.local_dir())
        prompts = [self.prompt(c, model.info, fmt) for c in contexts]
        return self.respond(model.local_dir(), prompts, decode, num_responses)

    def respond(self, model_dir: Path, prompts: list[str], decode: DecodeConfig, num_responses: int, loaded=None):
        """responses[i] = [response 1 (greedy), responses 2..N (beam search)] for prompt i; generation stats.
        `loaded`: what `load_model(model_dir)` gave, for a caller that answers many times (`dorl chat`)."""
        from dorl.generate import generate

        model, tok = loaded if loaded is not None else self.load_model(model_dir)
        greedy = generate(model, tok, prompts, decode.but(num_beams=1, num_return=1), desc="greedy")
        out = [list(t) for t in greedy.texts]
        stats = {"greedy": greedy.stats}
        if num_responses > 1:
            n = num_responses - 1
            beams = generate(model, tok, prompts, decode.but(num_beams=n, num_return=n), desc="beam search")
            out = [o + list(b) for o, b in zip(out, beams.texts, strict=True)]
            stats["beam"] = beams.stats
        return out, stats

    # ---------------------------------------------------------------- generation hooks (dorl generate, dorl chat,
    # the model card): where a method that decodes in its own way says so; the defaults suit the text methods.
    def load_model(self, model_dir: Path):
        """What `respond` decodes with (default: the causal LM and its tokenizer), loaded once by a caller that
        answers many times (`dorl.suggest.Suggester`)."""
        return load_for_generation(model_dir, self.cfg.model)

    def describe_decoding(self, decode: DecodeConfig, k: int) -> str:
        """How `respond` decodes k responses, in a few words (`dorl generate` and `dorl chat` print it)."""
        return f"response 1 greedy, {k - 1} more by beam search" if k > 1 else "greedy"

    def values(self, loaded, prompts: list[str], responses: list[list[str]], decode: DecodeConfig):
        """The model's value of each response (shown beside it: `values[i][j]` for `responses[i][j]`), or None:
        the method has no values. `loaded`: what `load_model` gave."""
        return None

    @classmethod
    def card_notes(cls) -> list[str]:
        """Markdown lines the model card of the method's folder adds (ILQL: how to use its heads)."""
        return []


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(model_dir: Path):
    """A trained model's tokenizer, checked for dorl's special tokens, padding on the left."""
    from dorl import readers
    from dorl.tokenizer import check_special_tokens

    tok = readers.tokenizer(model_dir)
    check_special_tokens(tok, f"the tokenizer of {model_dir}")
    tok.padding_side = "left"
    return tok


def prompt_format(model_dir: Path) -> PromptFormat:
    """The prompt format of a trained model folder (its tokenizer's)."""
    return PromptFormat.of(load_tokenizer(model_dir))


def load_for_generation(model_dir: Path, mc=None):
    """(model on the device in model.dtype (`mc`; default: bf16 on GPU); tokenizer) of a plain HF model folder."""
    from dorl import readers
    from dorl.config import ModelConfig
    from dorl.engine.models import compute_dtype, inference_kwargs

    mc = mc or ModelConfig()
    tok = load_tokenizer(model_dir)
    dtype = compute_dtype(mc, device())
    return readers.causal_lm(model_dir, dtype=dtype, **inference_kwargs(mc)).to(device()), tok
