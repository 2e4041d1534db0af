"""An ILQL model folder outside dorl: `AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` runs the
shipped `modeling_dorl_ilql.py` (in a process that cannot import dorl) and its `generate` gives dorl's tokens, greedy
and seeded sampling, with the folder's beta / top-k / temperature or generate's own; without `trust_remote_code` the
folder is the plain behaviour policy."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dorl import model_folder
from dorl.generate import DecodeConfig, stop_token_ids
from dorl.ilql import io
from dorl.ilql.decode import decode
from dorl.ilql.model import ILQLMeta, ILQLModel
from dorl.methods.ilql import ILQL
from dorl.text import REP_END, prompt
from tests.ilql.conftest import randomise_heads

PROMPTS = [
    prompt("<_soc_><_cus_start_>I need to return my boots.<_cus_end_>"),
    prompt("<_soc_>"),
    prompt("<_soc_><_rep_start_>Hi, how can I help?<_rep_end_><_cus_start_>My hat arrived broken.<_cus_end_>"),
    prompt("<_soc_><_cus_start_>Where is my refund?<_cus_end_>"),
]
FOLDER_DECODING = {"beta": 1.0, "top_k": 5, "temperature": 0.7}
MAX_NEW, SAMPLES = 10, 3

# Run where dorl cannot be imported: no PYTHONPATH, a cwd outside the repository, `dorl` blocked in sys.modules
# (an editable install would otherwise still find it).
OUTSIDE = """
import json, sys
sys.modules["dorl"] = None
from transformers import AutoModelForCausalLM, AutoTokenizer

folders, prompts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
max_new, samples = int(sys.argv[3]), int(sys.argv[4])
results = {}
for folder in folders:
    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
    plain = AutoModelForCausalLM.from_pretrained(folder)

    def new(model, **kw):
        return model.generate(**enc, max_new_tokens=max_new, **kw)[:, enc["input_ids"].shape[1]:].tolist()

    results[folder] = {
        "class": f"{type(model).__module__}.{type(model).__name__}",
        "plain_class": f"{type(plain).__module__}.{type(plain).__name__}",
        "greedy": new(model),
        "greedy_beta": new(model, beta=0.3),
        "sampled": new(model, do_sample=True, num_return_sequences=samples),
        "sampled_seed_3": new(model, do_sample=True, num_return_sequences=samples, seed=3, top_k=0, temperature=1.3),
        "plain_greedy": new(plain),
    }
print(json.dumps(results))
"""


def outside_dorl(folders: list[Path], tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "hf-modules")  # where transformers copies the folder's code
    args = [sys.executable, "-c", OUTSIDE, json.dumps([str(f) for f in folders]), json.dumps(PROMPTS), str(MAX_NEW),
            str(SAMPLES)]  # fmt: skip
    r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def cut(rows: list[list[int]], stops: list[int]) -> list[list[int]]:
    """generate's rows (pad after a stop) as dorl's sequences: up to and including the first stop token."""
    return [r[: next((i + 1 for i, t in enumerate(r) if t in stops), len(r))] for r in rows]


def ilql_folder(path: Path, kind: str, lm, tok) -> Path:
    """A finished ILQL folder (as the train stage leaves it) whose LM stops at various steps and whose heads
    change the choices."""
    v = torch.randn(lm.config.n_embd, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # nudged towards <_rep_end_>: rows of a batch stop at different steps
        lm.transformer.ln_f.bias.add_(v / v.norm())
        lm.lm_head.weight[tok.convert_tokens_to_ids(REP_END)] += 1.5 * v / v.norm()
    model = randomise_heads(ILQLModel(lm, ILQLMeta(heads=kind)), scale=0.2)
    io.save(model, path, tok, decoding=FOLDER_DECODING)
    model_folder.finish(path, method="ilql", max_new_tokens=MAX_NEW, notes=ILQL.card_notes())
    return path


@pytest.fixture
def folder(lm, tok, tmp_path):
    return ilql_folder(tmp_path / "ilql", "efficient", lm, tok)


def test_trust_remote_code_decodes_as_dorl(tiny_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    kinds = {kind: ilql_folder(tmp_path / kind, kind, AutoModelForCausalLM.from_pretrained(tiny_dir), tok)
             for kind in ("efficient", "reference")}  # fmt: skip
    results = outside_dorl(list(kinds.values()), tmp_path)
    for folder in kinds.values():
        same_tokens(folder, results[str(folder)])


def same_tokens(folder: Path, got: dict) -> None:
    assert got["class"].startswith("transformers_modules.")  # the folder's code, named as the policy's class
    assert got["class"].endswith(".modeling_dorl_ilql.GPT2LMHeadModel")
    assert got["plain_class"] == "transformers.models.gpt2.modeling_gpt2.GPT2LMHeadModel"
    model, tok = io.load(folder), model_folder_tokenizer(folder)
    stops = stop_token_ids(tok)
    dc = DecodeConfig(max_new_tokens=MAX_NEW, batch_size=64, **FOLDER_DECODING)

    def dorl(**changes):
        settings = dc.but(**changes)
        return decode(model, tok, PROMPTS, settings, num_samples=SAMPLES if settings.sample else 1).ids

    assert cut(got["greedy"], stops) == dorl()
    assert cut(got["greedy_beta"], stops) == dorl(beta=0.3)
    sampled = dorl(sample=True)
    assert cut(got["sampled"], stops) == sampled
    assert len({len(s) for s in sampled}) > 2  # rows stopped at various steps: finished rows left the batch
    assert cut(got["sampled_seed_3"], stops) == dorl(sample=True, seed=3, top_k=0, temperature=1.3) != sampled
    # without trust_remote_code: the behaviour policy, which the heads would have changed
    assert cut(got["plain_greedy"], stops) == dorl(beta=0.0) != dorl()


def model_folder_tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def test_the_folder_names_its_code_and_says_how_it_loads(folder):
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {"AutoModelForCausalLM": "modeling_dorl_ilql.DorlILQLForCausalLM"}
    assert json.loads((folder / io.CONFIG_FILE).read_text())["decoding"] == {**FOLDER_DECODING, "seed": 0}
    card = (folder / "README.md").read_text()
    assert "trust_remote_code=True" in card and "behaviour policy" in card and "modeling_dorl_ilql.py" in card
    # dorl itself never runs the folder's code (data is never code): it loads transformers' own class
    (folder / io.CODE_FILE).write_text("raise SystemExit('the shipped code ran')\n")
    assert type(io.load(folder).lm).__module__ == "transformers.models.gpt2.modeling_gpt2"


def test_the_shipped_code_imports_no_dorl():
    """transformers copies only this one file: it may import torch, transformers, safetensors and the stdlib."""
    source = (Path(io.__file__).with_name(io.CODE_FILE)).read_text()
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import: transformers would not copy its target"
            roots.add(node.module.split(".")[0])
    assert roots <= {"__future__", "copy", "json", "torch", "transformers", "safetensors"}, roots


def test_generate_refuses_what_ilql_decoding_is_not(folder):
    from dorl.ilql.modeling_dorl_ilql import DorlILQLForCausalLM

    model = DorlILQLForCausalLM.from_pretrained(folder)
    ids = torch.tensor([[3, 50, 60]])
    for bad, match in [
        ({"num_beams": 3}, "not beam search"),
        ({"num_return_sequences": 2}, "num_return_sequences"),
        ({"top_p": 0.9}, r"does not take \['top_p'\]"),
        ({"temperature": 0.0}, "temperature > 0"),
    ]:
        with pytest.raises(ValueError, match=match):
            model.generate(ids, **bad)


def test_a_llama_folder_decodes_as_dorl_too(tok, tmp_path):
    """Another family (RoPE, grouped-query attention, untied output embedding), in process: the same code."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from dorl.ilql.modeling_dorl_ilql import DorlILQLForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=False, pad_token_id=tok.pad_token_id)  # fmt: skip
    heads = randomise_heads(ILQLModel(LlamaForCausalLM(cfg).eval()), scale=0.2)
    io.save(heads, tmp_path, tok, decoding=FOLDER_DECODING)
    remote, model = DorlILQLForCausalLM.from_pretrained(tmp_path), io.load(tmp_path)
    assert isinstance(remote, LlamaForCausalLM)
    enc = tok(PROMPTS, add_special_tokens=False, padding=True, return_tensors="pt")
    stops = stop_token_ids(tok)
    dc = DecodeConfig(max_new_tokens=MAX_NEW, batch_size=64, **FOLDER_DECODING)
    for kw, settings in [({}, dc), ({"do_sample": True, "num_return_sequences": SAMPLES}, dc.but(sample=True))]:
        out = remote.generate(**enc, max_new_tokens=MAX_NEW, eos_token_id=stops, pad_token_id=tok.pad_token_id, **kw)
        want = decode(model, tok, PROMPTS, settings, num_samples=SAMPLES if settings.sample else 1).ids
        assert cut(out[:, enc["input_ids"].shape[1] :].tolist(), stops) == want
