"""`dorl models mirror` stores a model folder as an artifact (sha256s in its manifest) and `dorl models fetch`
puts it into an empty HF cache, where `from_pretrained("<hub id>")` finds it with the Hub switched off."""

import os
import subprocess
import sys

import pytest

from dorl.store import Artifact
from tests.conftest import run_dorl


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("tiny-distilgpt2")
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=32)).save_pretrained(folder)
    return folder


LOAD = (
    "import sys, torch; from transformers import AutoModelForCausalLM; "
    "m = AutoModelForCausalLM.from_pretrained('distilgpt2'); "
    "print(float(sum(p.double().sum() for p in m.parameters())))"
)


def _checksum(folder) -> float:
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(folder)
    return float(sum(p.detach().double().sum() for p in m.parameters()))


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_mirror_then_fetch_loads_offline(backend, tiny_folder, tmp_path, request):
    out = f"s3://{request.getfixturevalue('s3')}/models" if backend == "s3" else str(tmp_path / "models")
    r = run_dorl("models", "mirror", f"distilgpt2={tiny_folder}", "--out", out)
    assert r.returncode == 0, r.stderr
    art = Artifact(f"{out}/distilgpt2")
    assert art.stage == "model" and art.info["hub_id"] == "distilgpt2"
    assert {"config.json", "model.safetensors"} <= set(art.files) and all(
        len(f["sha256"]) == 64 for f in art.files.values()
    )
    again = run_dorl("models", "mirror", f"distilgpt2={tiny_folder}", "--out", out)
    assert again.returncode == 0 and "already there" in again.stderr  # idempotent

    cache = tmp_path / "hf-cache"  # a fresh pod: nothing cached, no Hub
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    env["DORL_CACHE"] = str(tmp_path / "pod-cache")
    before = subprocess.run([sys.executable, "-c", LOAD], env={**os.environ, **env}, capture_output=True, text=True)
    assert before.returncode != 0  # not there yet, and the Hub is off
    r = run_dorl("models", "fetch", "--from", out, env=env)
    assert r.returncode == 0, r.stderr
    after = subprocess.run([sys.executable, "-c", LOAD], env={**os.environ, **env}, capture_output=True, text=True)
    assert after.returncode == 0, after.stderr[-2000:]
    assert float(after.stdout.strip()) == pytest.approx(_checksum(tiny_folder), abs=0)


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    r = run_dorl("models", "mirror", f"distilgpt2={tmp_path}", "--out", str(tmp_path / "models"))
    assert r.returncode == 2 and "no config.json" in r.stderr


def test_fetch_refuses_a_mirror_without_a_needed_model_before_copying(tiny_folder, tmp_path):
    """The pods' init container names the models the run loads (--need): a mirror without one fails the pod
    at once, exit 2, naming it, instead of the stage failing at its first model load."""
    from dorl.errors import StoreError
    from dorl.models.mirror import fetch, mirror

    out = str(tmp_path / "models")
    mirror("distilgpt2", out, str(tiny_folder))
    cache = tmp_path / "hf-cache"
    with pytest.raises(StoreError, match="has no mirror of roberta-large, which the run needs") as e:
        fetch(out, cache, need=["distilgpt2", "roberta-large"])
    assert f"dorl models mirror roberta-large --out {out}" in str(e.value)
    assert not cache.exists()  # nothing copied
    assert fetch(out, cache, need=["distilgpt2"]) == ["distilgpt2"]
