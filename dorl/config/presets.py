"""Named configurations: overrides applied on top of the defaults (which are the reference values)."""

from __future__ import annotations

from dorl.config.loader import merge

# The reference hyperparameters at distilgpt2 scale: exactly the defaults.
PAPER: dict = {}

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
    "finetune": {
        "epochs": 2,
        "batch_size": 16,
        "micro_batch_size": 16,
        "max_length": 256,
        "lr": 5e-4,
        "checkpoint_every": 50,
    },
    "ilql": {
        "train": {
            "epochs": 2,
            "batch_size": 16,
            "micro_batch_size": 16,
            "max_length": 256,
            "lr": 5e-4,
            "checkpoint_every": 50,
        }
    },
    "relabel": {"batch_size": 32, "chunk_size": 256},
    "metrics": {"bertscore_model": "minilm", "bertscore_layers": 6},
    "eval": {"n_examples": 200},
}

# What `make demo` runs: simulated ABCD-format dialogues, the tiny model, every method.
# The base model trains 30 epochs: a weaker one proposes too few good candidates to learn from.
DEMO: dict = merge(TINY, {"run": "demo", "data": {"simulate": 300}, "tf": {"epochs": 30}})


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

PRESETS: dict[str, dict] = {"paper": PAPER, "tiny": TINY, "demo": DEMO, **CHECKPOINTS}
