"""An ILQL model on disk: a plain HF causal-LM folder (usable by any HF tool) plus the heads.

config.json, model.safetensors, tokenizer files   the policy (`save_pretrained`)
ilql_heads.safetensors                            V, Q and target-Q heads (efficient: and the target copy of E)
ilql_config.json                                  head kind, two_qs, return mean/std, hyperparameters,
                                                  decoding (beta, top_k, temperature, seed)
modeling_dorl_ilql.py + config.json's auto_map    the same model in plain transformers with
                                                  `trust_remote_code=True`: `generate` applies the heads
                                                  as dorl decodes (`dorl.ilql.modeling_dorl_ilql`)
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path

from dorl import readers
from dorl.errors import DataError
from dorl.ilql.model import ILQLMeta, ILQLModel

log = logging.getLogger("dorl.ilql")
HEADS_FILE = "ilql_heads.safetensors"
CONFIG_FILE = "ilql_config.json"
FORMAT = "dorl-ilql/1"
CODE_FILE = "modeling_dorl_ilql.py"  # shipped in the folder (HF's convention for a custom model's code)
AUTO_MAP = {"AutoModelForCausalLM": "modeling_dorl_ilql.DorlILQLForCausalLM"}


def save(
    model: ILQLModel, folder: str | Path, tokenizer=None, state_dict: dict | None = None, decoding: dict | None = None
) -> None:
    """Write `model` into `folder`. `state_dict` (keys as `model.state_dict()`'s: `lm.*`, `heads.*`)
    replaces the live weights: the trainer passes its full fp32 weights (DeepSpeed's bf16 or ZeRO
    modules hold other ones). `decoding`: beta, top_k, temperature the folder decodes with in plain
    transformers (default: `DecodeConfig`'s, as `dorl generate` without settings)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if state_dict is None:
        model.lm.save_pretrained(folder)
        heads = model.heads.state_dict()
    else:
        lm_state, heads = _split(state_dict, "lm."), _split(state_dict, "heads.")
        if heads.keys() != model.heads.state_dict().keys():
            raise ValueError(f"state_dict does not hold the {model.meta.heads} heads' tensors")
        model.lm.save_pretrained(folder, state_dict=lm_state)
        # config.json names the dtype of the weights written (from_pretrained's "auto" loads that), not the live one
        model.lm.config.dtype = str(next(iter(lm_state.values())).dtype).removeprefix("torch.")
        model.lm.config.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    heads = {k: v.detach().contiguous().cpu() for k, v in heads.items()}
    save_file(heads, str(folder / HEADS_FILE), metadata={"format": FORMAT})
    info = {"format": FORMAT, **model.meta.to_dict(), "hidden_size": model.heads.d, "vocab_size": model.heads.vocab}
    info["decoding"] = decoding_settings(decoding)
    (folder / CONFIG_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    ship_code(folder)


def decoding_settings(decoding: dict | None) -> dict:
    """What the shipped code decodes with by default: beta, top_k, temperature (and the sampling seed)."""
    from dorl.generate import DecodeConfig

    defaults = asdict(DecodeConfig())
    return {k: (decoding or {}).get(k, defaults[k]) for k in ("beta", "top_k", "temperature", "seed")}


def ship_code(folder: Path) -> None:
    """Copy `modeling_dorl_ilql.py` into the folder and name it in config.json's `auto_map`, so that
    `AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` decodes with the heads (without
    `trust_remote_code`, transformers ignores the map and loads the policy's own class)."""
    shutil.copyfile(Path(__file__).with_name(CODE_FILE), folder / CODE_FILE)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {**config.get("auto_map", {}), **AUTO_MAP}
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _split(state_dict: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def is_ilql(folder: str | Path) -> bool:
    return (Path(folder) / CONFIG_FILE).is_file() and (Path(folder) / HEADS_FILE).is_file()


def load(folder: str | Path, device=None, dtype=None, **kw) -> ILQLModel:
    """The `ILQLModel` saved in `folder`, in eval mode (tokenizer: `AutoTokenizer.from_pretrained(folder)`);
    `kw`: more `from_pretrained` arguments (attn_implementation)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not is_ilql(folder):
        raise DataError(f"{folder}: not an ILQL model folder (needs {CONFIG_FILE} and {HEADS_FILE})")
    with readers.reading(folder / CONFIG_FILE, "ILQL's head configuration"):
        info = json.loads((folder / CONFIG_FILE).read_text())
    if info.get("format") != FORMAT:
        raise DataError(f"{folder / CONFIG_FILE}: field 'format' is {info.get('format')!r}, expected {FORMAT!r}")
    fields = ILQLMeta.__dataclass_fields__
    meta = ILQLMeta(**{k: v for k, v in info.items() if k in fields})
    lm = readers.causal_lm(folder, dtype=dtype, **kw)
    model = ILQLModel(lm, meta)
    got = (model.heads.d, model.heads.vocab)
    if got != (info.get("hidden_size"), info.get("vocab_size")):
        raise DataError(
            f"{folder / CONFIG_FILE}: heads of size {info.get('hidden_size')}x{info.get('vocab_size')} "
            f"do not fit the model's {got[0]}x{got[1]}"
        )
    missing, unexpected = model.heads.load_state_dict(load_file(str(folder / HEADS_FILE)), strict=False)
    if "target_emb" in missing:  # saved before efficient heads kept a target copy of E: they scored against E
        log.warning("%s: no target_emb (an older model): its target heads score against the LM's embedding", folder)
        missing = [k for k in missing if k != "target_emb"]
    if missing or unexpected:
        raise DataError(
            f"{folder / HEADS_FILE}: tensors do not match {meta.heads} heads "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    if dtype is not None:
        model.heads.to(dtype)
    return model.to(device or "cpu").eval()
