"""Reading what an artifact holds: a bad file is one clear error naming it, never a traceback.

An artifact's files can be whole (their sha256 matches the manifest) and still be unreadable: made by
a user or another tool, a broken `config.json`, missing weights, a truncated safetensors header, a
tokenizer without its added tokens, a corrupt parquet file. The libraries raise whatever they raise
(OSError, ValueError, SafetensorError, ArrowInvalid, a tokenizers `Exception`); every reader here turns
that into a `DataError` (exit 2) that names the file or folder and what was being read.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from dorl.errors import DataError, UserError


@contextlib.contextmanager
def reading(path, what: str):
    """Any failure inside becomes `DataError("<path>: cannot read <what> (<the library's message>)")`."""
    try:
        yield
    except (UserError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:  # the libraries' own exception types vary; the file is the user's to fix
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise DataError(f"{path}: cannot read {what} ({type(e).__name__}: {first})") from None


def read_parquet(path, **kw):
    import pandas as pd

    with reading(path, "this parquet file"):
        return pd.read_parquet(path, **kw)


def read_csv(path, **kw):
    import pandas as pd

    with reading(path, "this CSV file"):
        return pd.read_csv(path, **kw)


def tokenizer(folder, **kw):
    """`AutoTokenizer.from_pretrained(folder)`, with a bad tokenizer named."""
    from transformers import AutoTokenizer

    _is_folder(folder)
    with reading(folder, "the tokenizer (tokenizer.json, tokenizer_config.json)"):
        return AutoTokenizer.from_pretrained(folder, **kw)


def causal_lm(folder, **kw):
    """`AutoModelForCausalLM.from_pretrained(folder)`, with a bad config or weights file named. A LoRA adapter
    folder (adapter_config.json, no config.json: `dorl.engine.lora`) loads as its base with the adapter merged."""
    from transformers import AutoModelForCausalLM

    _is_folder(folder)
    if is_adapter(folder):
        return _adapted_lm(Path(folder), **kw)
    with reading(folder, "the model (config.json, model.safetensors)"):
        return AutoModelForCausalLM.from_pretrained(folder, **kw)


ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(folder) -> bool:
    """A folder holding a peft adapter alone (a merged LoRA folder has config.json and is a plain model)."""
    return (Path(folder) / ADAPTER_CONFIG).is_file() and not (Path(folder) / "config.json").is_file()


def adapter_base(folder) -> str:
    """The base an adapter folder sits on: its adapter_config.json's base_model_name_or_path."""
    import json

    with reading(Path(folder) / ADAPTER_CONFIG, "the LoRA adapter's config"):
        base = json.loads((Path(folder) / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise DataError(f"{Path(folder) / ADAPTER_CONFIG}: no base_model_name_or_path: the adapter's base is unknown")
    return str(base)


def _adapted_lm(folder: Path, **kw):
    """The base (a model or adapter folder, or an HF id), its embeddings sized to the folder's tokenizer (the
    tokens training added), the adapter loaded by peft and merged in: a plain model."""
    from peft import PeftModel

    base = adapter_base(folder)
    if Path(base).is_absolute() and not Path(base).exists():  # a folder of the machine that trained it
        raise DataError(
            f"{folder / ADAPTER_CONFIG}: its base {base} is not on this machine; put the base model there, or "
            "train with model.lora_merge=true (merged weights in the folder)"
        )
    lm = causal_lm(base, **kw)
    vocab = len(tokenizer(folder))
    if lm.get_input_embeddings().weight.shape[0] != vocab:
        lm.resize_token_embeddings(vocab, mean_resizing=False)  # the adapter file holds the resized embeddings
    with reading(folder, "the LoRA adapter (adapter_config.json, adapter_model.safetensors)"):
        lm = PeftModel.from_pretrained(lm, str(folder)).merge_and_unload()
    lm.name_or_path = str(folder)  # an adapter trained on this model names this folder as its base
    return lm


def _is_folder(folder) -> None:
    p = Path(folder)
    if p.exists() and not p.is_dir():
        raise DataError(f"{folder}: a file, where a model folder (config.json, weights, tokenizer) is expected")
