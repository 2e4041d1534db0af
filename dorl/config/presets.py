"""Named configurations: overrides applied on top of the defaults (which are the reference values)."""

from __future__ import annotations

from dorl.config.loader import merge
from dorl.config.schema import paper_methods

# The reference hyperparameters at distilgpt2 scale: exactly the defaults, and the paper's methods alone (the
# default pipeline.methods adds the controls, tf_human).
PAPER: dict = {"pipeline": {"methods": paper_methods()}}

# The paper's methods (pipeline.methods' default: the registry's `paper` entries) and the baselines a team would
# otherwise run on the same scored candidates (KTO, DPO, advantage-weighted regression), side by side:
# pipeline.methods of `compare` and of the demo (tests/config/test_presets.py holds them to the registry).
BASELINES = ["kto", "dpo", "awr"]
COMPARE: dict = {"pipeline": {"methods": ["tf_human", *paper_methods(), *BASELINES]}}  # with the control

# How the tiny model fine-tunes (every method's optimisation section starts here).
_METHOD: dict = {"epochs": 2, "batch_size": 16, "micro_batch_size": 16, "max_length": 256, "lr": 5e-4,
                 "checkpoint_every": 50}  # fmt: skip

# A small GPT-2 that trains on 2 CPU cores in seconds, the offline BERTScore encoder.
TINY: dict = {
    "model": {
        "source": "config",
        "tokenizer": "bpe",
        "bpe_vocab_size": 1000,
        "n_layer": 2,
        "n_head": 2,
        "n_embd": 64,
        "n_positions": 512,
    },
    "tf": {"epochs": 10, "batch_size": 8, "micro_batch_size": 8, "max_length": 256, "lr": 2e-3, "checkpoint_every": 50},
    "finetune": _METHOD,
    "ilql": {"train": _METHOD},
    # the preference methods' reference learning rate (1e-6, for billion-parameter models) barely moves this one;
    # at 5e-5 both collapse on the demo (docs/evaluation.md)
    "kto": {"train": {**_METHOD, "lr": 1e-5}},
    "dpo": {"train": {**_METHOD, "lr": 1e-5, "warmup_steps": 0}},
    "awr": {"train": _METHOD},
    "relabel": {"batch_size": 32, "chunk_size": 256},
    "metrics": {"bertscore_model": "minilm", "bertscore_layers": 6},
    "eval": {"n_examples": 200},
}

# What `make demo` runs: simulated ABCD-format dialogues, the tiny model, the control, the paper's methods and the
# baselines.
# The base model trains 30 epochs: a weaker one proposes too few good candidates to learn from. The methods
# train one epoch (tiny's two would not fit the demo's ten minutes on two CPU cores with seven of them).
_ONE_EPOCH = {"epochs": 1}
DEMO: dict = merge(
    TINY,
    {
        "run": "demo",
        "data": {"simulate": 300},
        "tf": {"epochs": 30},
        "finetune": _ONE_EPOCH,
        "ilql": {"train": _ONE_EPOCH},
        **{m: {"train": _ONE_EPOCH} for m in BASELINES},
        # about a third of the demo's candidates are desirable (top return bin): λ_D = 2 puts λ_D·n_D / λ_U·n_U in
        # the KTO paper's [1, 4/3] (Eq. 8); at 1 KTO learns to push every completion down and stops ending them
        "kto": {"train": _ONE_EPOCH, "desirable_weight": 2.0},
        **COMPARE,
    },
)


def pretrained(name: str, lr: float | None = None) -> dict:
    """A real checkpoint (an HF id; offline, `--set model.name=FOLDER` with its files) and its own tokenizer, the
    reference's hyperparameters otherwise (`lr` for every training section where given)."""
    out: dict = {"model": {"source": "pretrained", "name": name, "tokenizer": "pretrained"}}
    if lr is not None:
        out.update({"tf": {"lr": lr}, "finetune": {"lr": lr}, "ilql": {"train": {"lr": lr}}})
    return out


# Real checkpoints (docs/models.md). gpt2-medium: the paper's second model, at its lr (1e-4). SmolLM2-135M (a
# Llama with grouped-query attention, tied embeddings) at distilgpt2's size keeps the reference's lr; Qwen2.5-0.5B
# (grouped-query attention, tied) is above gpt2-medium's 355M parameters and takes its lr.
CHECKPOINTS: dict[str, dict] = {
    "gpt2-medium": pretrained("gpt2-medium", lr=1e-4),
    "smollm2-135m": pretrained("HuggingFaceTB/SmolLM2-135M"),
    "qwen2.5-0.5b": pretrained("Qwen/Qwen2.5-0.5B", lr=1e-4),
}

PRESETS: dict[str, dict] = {"paper": PAPER, "compare": COMPARE, "tiny": TINY, "demo": DEMO, **CHECKPOINTS}
