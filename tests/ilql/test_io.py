"""Save -> load: a plain HF folder any tool can load, plus heads and meta that decode identically."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from dorl.errors import DataError
from dorl.ilql import io
from dorl.ilql.decode import decode
from dorl.ilql.model import ILQLMeta, ILQLModel
from tests.ilql.conftest import randomise_heads


@pytest.mark.parametrize("kind, two_qs", [("efficient", True), ("reference", False)])
def test_round_trip(lm, tok, tmp_path, kind, two_qs):
    meta = ILQLMeta(heads=kind, two_qs=two_qs, return_mean=0.25, return_std=0.5, extra={"tau": 0.7})
    model = randomise_heads(ILQLModel(lm, meta))
    io.save(model, tmp_path, tok)
    files = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", io.HEADS_FILE, io.CONFIG_FILE} <= files
    assert json.loads((tmp_path / io.CONFIG_FILE).read_text())["return_std"] == 0.5

    plain = AutoModelForCausalLM.from_pretrained(tmp_path)  # the policy alone, for any HF tool
    ids = torch.tensor([[3, 50, 60, 70]])
    assert torch.equal(plain(ids).logits, lm(ids).logits)

    back = io.load(tmp_path)
    assert back.meta == meta and back.heads.kind == kind and len(back.heads.q_heads) == (2 if two_qs else 1)
    saved, loaded = model.heads.state_dict(), back.heads.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    reloaded_tok = AutoTokenizer.from_pretrained(tmp_path)
    reloaded_tok.padding_side = "left"
    prompts = ["<_soc_><_cus_start_>Where is my jacket?<_cus_end_><_rep_start_>"]
    kw = dict(beta=2.0, greedy=False, seed=1, num_samples=3, max_new_tokens=8)
    assert decode(back, reloaded_tok, prompts, **kw).ids == decode(model, tok, prompts, **kw).ids


def test_load_refuses_a_plain_model_folder_and_mismatched_heads(lm, tok, tmp_path):
    lm.save_pretrained(tmp_path / "plain")
    with pytest.raises(DataError, match="not an ILQL model folder"):
        io.load(tmp_path / "plain")
    io.save(ILQLModel(lm, ILQLMeta(heads="efficient")), tmp_path / "m", tok)
    cfg = json.loads((tmp_path / "m" / io.CONFIG_FILE).read_text())
    (tmp_path / "m" / io.CONFIG_FILE).write_text(json.dumps(cfg | {"heads": "reference"}))
    with pytest.raises(DataError, match="do not match reference heads"):
        io.load(tmp_path / "m")
