"""Releases in the reference's layout, built here (no release can be fetched offline): a tiny GPT-2 with the 15
special tokens, saved as the reference's `transformers.Trainer` (4.2x, 2023) saved it, zipped as the README's
archives are named.

    <name>/config.json, pytorch_model.bin (torch.save of the state dict, GPT-2's causal-mask buffers included) or
           model.safetensors, vocab.json, merges.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json,
           added_tokens.json, trainer_state.json, training_args.bin (a pickle), checkpoint-10/optimizer.pt
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import pytest

from dorl.text import SPECIAL_TOKENS

EOT = "<|endoftext|>"


def name(method: str, dataset: str = "abcd") -> str:
    return f"{dataset}-distilgpt2-{method}-lr5e-4-bs4-epoch10-ws0-gas1-4gpu"


class Payload:
    """Unpickling this runs code: it writes `marker`. A release must never get there."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.fixture(scope="session")
def base_bpe():
    """(vocab, merges) of a small byte-level BPE trained on the fixture dialogues (once per session)."""
    from dorl.text import render_conversation
    from dorl.tokenizer import train_bpe
    from tests.fixtures import dialogues

    tok = train_bpe([render_conversation(t) for _, t in dialogues(40)], 300)
    model = json.loads(tok.backend_tokenizer.to_str())["model"]
    return model["vocab"], [tuple(m) for m in model["merges"]]


def make_release(
    folder: Path,
    bpe,
    *,
    order=SPECIAL_TOKENS,
    resize: bool = True,
    weights: str = "bin",
    seed: int = 0,
    training_args_marker: Path | None = None,
) -> dict:
    """A Trainer output folder in `folder`; returns the model's state dict (what an import must reproduce).
    `order`: the special tokens' order; `resize=False`: embeddings left at the base vocabulary."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    folder.mkdir(parents=True)
    vocab, merges = bpe
    tok = GPT2TokenizerFast(vocab=vocab, merges=merges, unk_token=EOT, bos_token=EOT, eos_token=EOT)
    tok.add_special_tokens({"additional_special_tokens": list(order)})  # as run_clm_conv.py
    eot = tok.convert_tokens_to_ids(EOT)
    torch.manual_seed(seed)
    rows = len(tok) if resize else len(vocab)
    cfg = GPT2Config(
        vocab_size=rows, n_positions=256, n_embd=32, n_layer=2, n_head=2, bos_token_id=eot, eos_token_id=eot
    )
    lm = GPT2LMHeadModel(cfg)
    _save_tokenizer_4x(tok, folder, vocab, merges, order)
    lm.config.save_pretrained(folder)
    state = {k: v.clone() for k, v in lm.state_dict().items()}
    if weights == "bin":  # Trainer.save_model: torch.save(state_dict), with the buffers transformers < 4.31 kept
        legacy = dict(state)
        for i in range(cfg.n_layer):
            legacy[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(256, 256, dtype=torch.uint8)).view(
                1, 1, 256, 256
            )
            legacy[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
        torch.save(legacy, folder / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items() if k != "lm_head.weight"}, folder / "model.safetensors")
    marker = training_args_marker or folder.parent / f".{folder.name}-training-args-ran"
    (folder / "training_args.bin").write_bytes(pickle.dumps(Payload(marker)))  # a pickle: never to be loaded
    (folder / "trainer_state.json").write_text(
        json.dumps(
            {
                "global_step": 20,
                "epoch": 10.0,
                "best_metric": 2.5,
                "best_model_checkpoint": f"save/distilgpt2/{folder.name}/checkpoint-20",
                "log_history": [{"loss": 3.0, "step": 10}, {"eval_loss": 2.5, "epoch": 10.0, "step": 20}],
            }
        )
    )
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"\0" * 64)
    return state


def _save_tokenizer_4x(tok, folder: Path, vocab: dict, merges: list, order) -> None:
    """The files GPT2TokenizerFast.save_pretrained wrote in transformers 4.2x."""
    tok.save_pretrained(folder)  # tokenizer.json (its added tokens marked special) + a v5 tokenizer_config.json
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    (folder / "added_tokens.json").write_text(json.dumps({t: tok.convert_tokens_to_ids(t) for t in order}))
    specials = {"additional_special_tokens": list(order), "bos_token": EOT, "eos_token": EOT, "unk_token": EOT}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "add_prefix_space": False,
                "bos_token": EOT,
                "eos_token": EOT,
                "unk_token": EOT,
                "model_max_length": 1024,
                "tokenizer_class": "GPT2Tokenizer",
            }
        )
    )


def zip_folder(folder: Path, dest: Path, extra: dict | None = None) -> Path:
    """`folder` zipped as `zip -r NAME.zip NAME/` would (one top-level folder); `extra`: {member: ZipInfo or bytes}."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, (Path(folder.name) / p.relative_to(folder)).as_posix())
        for member, data in (extra or {}).items():
            zf.writestr(member, data)
    return dest


@pytest.fixture(scope="session")
def releases(tmp_path_factory, base_bpe):
    """{method: zip} for tf (pytorch_model.bin) and dt (pytorch_model.bin), and tf_top (model.safetensors)."""
    root = tmp_path_factory.mktemp("releases")
    out = {}
    for method, weights in (("tf", "bin"), ("dt", "bin"), ("tf_top", "safetensors")):
        folder = root / name(method)
        state = make_release(folder, base_bpe, weights=weights, seed=len(out))
        out[method] = {"zip": zip_folder(folder, root / f"{name(method)}.zip"), "folder": folder, "state": state}
    return out
