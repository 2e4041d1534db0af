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
    """`AutoModelForCausalLM.from_pretrained(folder)`, with a bad config or weights file named."""
    from transformers import AutoModelForCausalLM

    _is_folder(folder)
    with reading(folder, "the model (config.json, model.safetensors)"):
        return AutoModelForCausalLM.from_pretrained(folder, **kw)


def _is_folder(folder) -> None:
    p = Path(folder)
    if p.exists() and not p.is_dir():
        raise DataError(f"{folder}: a file, where a model folder (config.json, weights, tokenizer) is expected")
