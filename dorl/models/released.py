"""The reference's released checkpoints as dorl `train/<method>` artifacts: `dorl models import`.

    src = reference.locate(FROM, base_url)   # dorl.models.reference: which releases exist, what a name says
    import_release(src, archive, out_uri, method="dt", prompt=...)  -> StageResult

Everything is checked before anything is written to the output (a refusal is one `DataError` line):
1. the archive (`dorl.models.archive`: names, links, devices, sizes, ratio) and, when one is given, its sha256;
2. the layout: config.json, model.safetensors or pytorch_model.bin, the tokenizer files, at the archive's root
   or in its one top-level folder; every other member (training_args.bin, optimizer.pt, checkpoint-N/, runs/) is
   listed as ignored and never extracted, let alone loaded;
3. the weights without running code: safetensors, or `torch.load(weights_only=True)` (torch >= 2.6, CVE-2025-32434)
   to a flat dict of tensors, turned into safetensors before transformers reads them; config.json through
   transformers' own model classes only (never `trust_remote_code`); no weight may be missing or unknown;
4. the tokenizer: the reference's 15 special tokens, consecutive and in its order, each one token; the input and
   output embeddings have one row per token;
5. the name: `--method` and `--dataset` must agree with it; its hyperparameters are recorded.

The artifact is what `dorl train` writes (model.safetensors, config, tokenizer with dorl's conventions: PAD =
EOS = `<|endoftext|>`), completed by `dorl.model_folder.finish` (generation config, chat template, a model card
saying where it came from), plus the release's JSON records under `release/`. Its manifest's `info` holds
`released: true`, `source` (what was given, URL or path, the archive's sha256, each used file's sha256),
`release` (the name's hyperparameters), `trainer_state`, and for DT `return_tokens`: the reference's binary
`<_reward_zero_>`, `<_reward_one_>`. evaluate, generate, chat, report and relabel (`--base`) take it as they
take dorl's own.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dorl import log, readers
from dorl.errors import ConfigError, DataError
from dorl.models.archive import Limits, copy_folder, extract, folder_members, members
from dorl.models.reference import REFERENCE_README, Source, agree
from dorl.store import StageResult, run_stage
from dorl.text import REWARD_ONE, REWARD_ZERO, SPECIAL_TOKENS

logger = log.get("dorl.models")

RETURN_TOKENS = [REWARD_ZERO, REWARD_ONE]  # the reference's binary returns: dorl.methods.dt.return_tokens(2)
WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # safetensors first: then no pickle is read at all
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "merges.txt",
)  # fmt: skip
RECORDS = ("trainer_state.json", "all_results.json", "train_results.json", "eval_results.json")
OTHER_WEIGHTS = re.compile(r"\.(safetensors|bin|pt|pth|ckpt|h5|msgpack|gguf|pkl|pickle|npz)$|\.index\.json$")
LEGACY_BUFFERS = re.compile(r"\.attn\.(masked_)?bias$")  # GPT-2's causal mask, saved by transformers < 4.31


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def import_release(
    src: Source,
    archive: Path,
    out_uri: str,
    *,
    method: str,
    dataset: str | None = None,
    sha256: str | None = None,
    prompt: Callable[[str, dict], str] | None = None,
    prompt_tokens: int = 96,
    max_new_tokens: int = 32,
    force: bool = False,
    limits: Limits = Limits(),
) -> StageResult:
    """Check the release at `archive` (a zip, or the folder `src.path`) and write it as a `train/<method>` artifact.
    `prompt(context, info)`: the method's prompt, which the folder's chat template must render."""
    hyper, dataset = agree(src, method, dataset)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dorl-release-") as tmp:
        staging = Path(tmp)
        archive_sha = None
        if src.kind == "folder":
            names = folder_members(archive)
        else:
            archive_sha = sha256_file(archive)
            if sha256 and archive_sha != sha256.lower():
                raise DataError(f"{src.given}: sha256 {archive_sha}, expected {sha256}; nothing was extracted")
            names = members(archive, limits)
        chosen, ignored = layout(names, src.given)
        (copy_folder if src.kind == "folder" else extract)(archive, chosen, staging)
        files = {rel: sha256_file(staging / rel) for rel in sorted(chosen.values())}

        tok = load_tokenizer(staging, src.given)
        lm, weights_dtype = load_model(staging, src.given)
        check_embeddings(lm, tok, src.given)
        info = {
            "method": method,
            "dataset": dataset,  # evaluation checks it against its data
            "released": True,
            "base": hyper["model"] if hyper else None,
            "source": {
                "from": src.given,
                "kind": src.kind,
                "name": src.name,
                "url": src.url,
                "path": str(src.path.resolve()) if src.path else None,
                "archive_sha256": archive_sha,
                "archive_bytes": archive.stat().st_size if archive.is_file() else None,
                "expected_sha256": sha256,  # none is published: given with --sha256, or None
                "files": files,
                "ignored": ignored[:50],
                "ignored_count": len(ignored),
                "list": REFERENCE_README,
            },
            "release": hyper,
            "trainer_state": trainer_state(staging, src.given),
            "vocab_size": len(tok),
            "parameters": sum(p.numel() for p in lm.parameters()),
            "precision": "fp32",
            "weights_dtype": weights_dtype,
            **({"return_tokens": RETURN_TOKENS} if method == "dt" else {}),
        }
        config = {
            "import": {"method": method, "dataset": dataset, "name": src.name, "files": files},
            "eval": {"prompt_tokens": prompt_tokens, "max_new_tokens": max_new_tokens},
        }

        def body(ctx):
            write_folder(ctx.out.dir, lm, tok, staging, method, info, prompt, prompt_tokens, max_new_tokens)
            ctx.info.update(info)
            ctx.metrics["import_s"] = round(time.perf_counter() - started, 3)

        result = run_stage(f"train/{method}", out_uri, config, {}, body, force=force)
    logger.info("%s -> %s (%s)", src.name, result.artifact.uri, "already there" if result.skipped else "imported")
    return result


def layout(names: list[str], where: str) -> tuple[dict[str, str], list[str]]:
    """(member -> relative path in the staging folder, the members left alone) of a Trainer output folder at the
    archive's root or in its one top-level folder."""
    files = [n for n in names if not n.endswith("/")]
    prefix = ""
    if "config.json" not in files:
        tops = sorted({n.split("/", 1)[0] for n in files if f"{n.split('/', 1)[0]}/config.json" in files})
        if len(tops) != 1:
            raise DataError(
                f"{where}: no config.json at the root or in one top-level folder (not a Trainer output folder)"
            )
        prefix = tops[0] + "/"
    here = {n[len(prefix) :]: n for n in files if n.startswith(prefix) and "/" not in n[len(prefix) :]}
    weights = [w for w in WEIGHTS if w in here]
    if not weights:
        other = sorted(n for n in here if OTHER_WEIGHTS.search(n) and n != "training_args.bin")
        raise DataError(
            f"{where}: no model.safetensors or pytorch_model.bin in {prefix or 'the root'}"
            + (f" (it has {', '.join(other[:4])}: dorl reads only those two files)" if other else "")
        )
    tokenizer = [f for f in TOKENIZER_FILES if f in here]
    if "tokenizer.json" not in tokenizer and not {"vocab.json", "merges.txt"} <= set(tokenizer):
        where_in = prefix or "the root"
        raise DataError(f"{where}: no tokenizer (tokenizer.json, or vocab.json and merges.txt) in {where_in}")
    chosen = {here[f]: f for f in ["config.json", weights[0], *tokenizer]}
    chosen.update({here[f]: f"release/{f}" for f in RECORDS if f in here})
    return chosen, sorted(set(files) - set(chosen))


def load_tokenizer(staging: Path, where: str):
    """The release's tokenizer, checked for the reference's 15 tokens in order, with dorl's conventions."""
    from transformers import AutoTokenizer

    from dorl.tokenizer import add_special_tokens

    with readers.reading(where, "the tokenizer (tokenizer.json, tokenizer_config.json)"):
        tok = AutoTokenizer.from_pretrained(staging)
    check_tokens(tok, where)
    n = len(tok)
    add_special_tokens(tok)  # the tokens are there: only EOS / PAD / BOS = <|endoftext|>, as dorl's tokenizers
    if len(tok) != n:
        raise DataError(f"{where}: the tokenizer has no <|endoftext|> token (GPT-2's EOS, which dorl pads with)")
    tok.padding_side = "left"
    return tok


def check_tokens(tok, where: str) -> None:
    vocab = tok.get_vocab()
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise DataError(f"{where}: the tokenizer lacks {missing[0]} (one of the reference's 15 special tokens)")
    first = vocab[SPECIAL_TOKENS[0]]
    for i, t in enumerate(SPECIAL_TOKENS):
        if vocab[t] != first + i:
            raise DataError(
                f"{where}: the tokenizer's {t} has id {vocab[t]}, expected {first + i}: the 15 special tokens follow "
                f"each other in the reference's order ({' '.join(SPECIAL_TOKENS)})"
            )
        if tok(t, add_special_tokens=False)["input_ids"] != [first + i] or t not in tok.all_special_tokens:
            raise DataError(f"{where}: the tokenizer does not keep {t} as one special token")


def load_model(staging: Path, where: str):
    """(the causal LM in fp32, the dtype its weights were stored in), from config.json and safetensors (a
    pytorch_model.bin is first read as plain tensors and rewritten as safetensors)."""
    import torch
    from safetensors.torch import save_file
    from transformers.utils import logging as hf_logging

    bin_file = staging / "pytorch_model.bin"
    if bin_file.exists():
        state = load_tensors(bin_file, where)
        save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, staging / "model.safetensors")
        del state
        bin_file.unlink()
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report; what matters is refused below in one line
    try:
        with readers.reading(where, "the model (config.json, weights)"):
            lm, loading = readers.causal_lm(staging, dtype=torch.float32, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(level)
    unexpected = sorted(k for k in loading["unexpected_keys"] if not LEGACY_BUFFERS.search(k))
    if loading["missing_keys"] or unexpected:
        what = f"lack {sorted(loading['missing_keys'])[0]}" if loading["missing_keys"] else f"hold {unexpected[0]}"
        raise DataError(f"{where}: the weights {what}, which config.json's model does not match")
    from safetensors import safe_open

    with safe_open(staging / "model.safetensors", framework="pt") as f:
        dtypes = sorted({str(f.get_slice(k).get_dtype()) for k in f.keys()})
    return lm, ",".join(dtypes)


def load_tensors(path: Path, where: str) -> dict:
    """pytorch_model.bin as plain tensors: torch's weights-only unpickler, which refuses any other object (and so
    never runs the code a pickle can carry). transformers' `load_state_dict` makes the same call; it is made here
    so that the guarantee is stated, and tested, in dorl."""
    import zipfile

    import torch

    if tuple(int(x) for x in re.findall(r"\d+", torch.__version__)[:2]) < (2, 6):
        raise ConfigError(f"{where}: reading pytorch_model.bin safely needs torch >= 2.6 (CVE-2025-32434)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:  # UnpicklingError (an object other than tensors), RuntimeError (not a torch file)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise DataError(
            f"{where}: pytorch_model.bin refused: not plain tensors ({type(e).__name__}: {first}); none of it was run"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise DataError(f"{where}: pytorch_model.bin holds {type(state).__name__}, not a dict of named tensors")
    return state


def check_embeddings(lm, tok, where: str) -> None:
    rows = {"input": lm.get_input_embeddings().weight.shape[0]}
    if lm.get_output_embeddings() is not None:
        rows["output"] = lm.get_output_embeddings().weight.shape[0]
    for which, n in rows.items():
        if n != len(tok):
            raise DataError(
                f"{where}: the {which} embeddings have {n} rows but the tokenizer has {len(tok)} tokens (the reference "
                "resizes them to the tokenizer)"
            )
    lm.config.eos_token_id = tok.eos_token_id
    lm.config.pad_token_id = tok.pad_token_id


def trainer_state(staging: Path, where: str) -> dict | None:
    """What the release's trainer_state.json says about its training (None when it has none)."""
    path = staging / "release" / "trainer_state.json"
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{where}: trainer_state.json is not JSON ({e})") from None
    if not isinstance(state, dict):
        raise DataError(f"{where}: trainer_state.json holds {type(state).__name__}, not an object")
    history = state.get("log_history") if isinstance(state.get("log_history"), list) else []
    evals = [h for h in history if isinstance(h, dict) and "eval_loss" in h]
    keys = ("global_step", "epoch", "max_steps", "num_train_epochs", "best_metric", "best_model_checkpoint")
    return {**{k: state.get(k) for k in keys}, "last_eval": evals[-1] if evals else None}


def write_folder(out: Path, lm, tok, staging, method, info, prompt, prompt_tokens, max_new_tokens) -> None:
    """The artifact's files: a plain HF folder, as dorl's train stage writes it."""
    from dorl import model_folder

    lm.save_pretrained(out)
    lm.config.dtype = "float32"  # what the file holds (from_pretrained's default "auto" reads this)
    lm.config.save_pretrained(out)
    tok.save_pretrained(out)
    for rel in sorted(p.relative_to(staging).as_posix() for p in (staging / "release").glob("*")):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(staging / rel, out / rel)
    model_folder.finish(
        out,
        method=method,
        reply_token=RETURN_TOKENS[-1] if method == "dt" else None,
        max_new_tokens=max_new_tokens,
        prompt_tokens=prompt_tokens,
        facts=info,
        prompt=(lambda context: prompt(context, info)) if prompt else None,
    )
