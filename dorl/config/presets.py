"""Named configurations: overrides applied on top of the defaults (which are the reference values)."""

from __future__ import annotations

from dorl.config.loader import merge
from dorl.config.schema import paper_methods

# The reference hyperparameters at distilgpt2 scale: exactly the defaults, and the paper's methods alone (the
# default pipeline.methods adds the controls, tf_human).
PAPER: dict = {"pipeline": {"methods": paper_methods()}}

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

PRESETS: dict[str, dict] = {"paper": PAPER, "tiny": TINY, "demo": DEMO}
