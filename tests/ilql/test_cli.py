"""The ILQL commands end to end: `dorl evaluate --method ilql` on a model `dorl train --method ilql`
made, and inputs a user can get wrong (one line on stderr, exit 2, nothing committed)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from dorl import csvsafe
from dorl.errors import ConfigError
from dorl.stages.evaluate import evaluate
from dorl.stages.train import train
from dorl.store import run_stage
from dorl.text import REP_END, prompt
from tests.conftest import REPO, run_dorl
from tests.ilql.conftest import ilql_config


def test_dorl_evaluate_decodes_with_the_heads(trained, data_artifact, tmp_path):
    out = tmp_path / "eval"
    sets = ["eval.n_examples=4", "eval.num_responses=2", "eval.batch_size=4", "ilql.beta=1.0"]
    args = ["evaluate", "--method", "ilql", "--model", trained.uri, "--data", data_artifact.uri, "--out", str(out)]
    r = run_dorl(*args, "--preset", "tiny", *[a for s in sets for a in ("--set", s)], cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads(r.stdout)
    assert metrics["method"] == "ilql" and metrics["n_examples"] == 4 and metrics["num_responses"] == 2
    pred = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert len(pred) == 4 and {"response_1", "response_2", "bertscore_2"} <= set(pred.columns)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["decoding"] == {"beta": 1.0, "top_k": 20, "temperature": 1.0}


def test_beta_zero_evaluation_is_hf_greedy_decoding_of_the_saved_policy(trained, data_artifact, tmp_path):
    """beta = 0 is the reference's evaluation of its ILQL model: greedy decoding of the policy, here
    computed by HF `generate` on the plain HF folder (the default, ilql.beta=auto, decodes with the beta training
    chose on validation: tests/ilql/test_defaults_do_rl.py)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = ilql_config("eval.n_examples=6", "eval.batch_size=6", "eval.max_new_tokens=12", "ilql.beta=0")
    art = evaluate(
        cfg, method="ilql", model_uri=trained.uri, data_uri=data_artifact.uri, out_uri=str(tmp_path / "eval")
    ).artifact
    pred = csvsafe.read(art.path("predictions.csv"), keep_default_na=False)

    folder = trained.local_dir()
    lm = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    stops = [tok.convert_tokens_to_ids(REP_END), tok.eos_token_id]
    want = []
    for context in pred["context"]:
        ids = tok(prompt(context), add_special_tokens=False, return_tensors="pt")["input_ids"][:, -96:]
        with torch.no_grad():
            new = lm.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=stops, pad_token_id=0)
        new = new[0, ids.shape[1] :].tolist()
        cut = next((i for i, t in enumerate(new) if t in stops), len(new))
        want.append(tok.decode(new[:cut], skip_special_tokens=True).strip())
    assert any(want) and pred["response_1"].tolist() == want


def _relabel_without(uri: str, relabel, name: str):
    """A copy of a relabel artifact without the file `name`."""

    def body(ctx):
        for file in relabel.files:
            if file != name:
                ctx.out.path(file).write_bytes(relabel.read_bytes(file))

    return run_stage("relabel", uri, relabel.config, {}, body).artifact


def test_bad_inputs_exit_2_and_commit_nothing(tmp_path, ilql_relabel, tiny_model_artifact):
    no_train = _relabel_without(str(tmp_path / "relabel"), ilql_relabel, "candidates/train.parquet")
    out = tmp_path / "ilql"
    base = ["train", "--method", "ilql", "--base", tiny_model_artifact.uri, "--out", str(out), "--preset", "tiny"]
    r = run_dorl(*base, "--data", no_train.uri, cwd=REPO)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{no_train.uri} has no candidates/train.parquet" in r.stderr
    assert not out.exists()

    with pytest.raises(ConfigError, match=r"'ilql.tau': 1.5 is out of range; allowed: \(0, 1\)"):
        train(
            ilql_config("ilql.tau=1.5"),
            method="ilql",
            data_uri=ilql_relabel.uri,
            base_uri=tiny_model_artifact.uri,
            out_uri=str(out),
        )
    with pytest.raises(ConfigError, match="starts from the base model: give --base"):
        train(ilql_config(), method="ilql", data_uri=ilql_relabel.uri, out_uri=str(out))
    with pytest.raises(ConfigError, match="ilql.train.max_length=1024 exceeds the 512 positions"):
        train(
            ilql_config("ilql.train.max_length=1024"),
            method="ilql",
            data_uri=ilql_relabel.uri,
            base_uri=tiny_model_artifact.uri,
            out_uri=str(out),
        )
    assert not out.exists()


def test_suggestions_load_the_model_once_and_carry_their_values(trained, monkeypatch):
    """`dorl chat`/`dorl generate` on an ILQL model: one load (decoding and values share it), the values
    are `Method.values`' (min target-Q of each shown response's last action), the description says beta."""
    from dorl import readers
    from dorl.ilql.decode import response_values
    from dorl.suggest import Suggester

    calls, real = [], readers.causal_lm
    monkeypatch.setattr(readers, "causal_lm", lambda *a, **k: calls.append(a) or real(*a, **k))
    s = Suggester(ilql_config("eval.max_new_tokens=6", "ilql.beta=1.0"), trained.uri, k=3)
    assert "greedy with beta=1.0, 2 more sampled" in s.describe()
    context = "<_soc_><_cus_start_>my jeans arrived broken<_cus_end_>"
    first, second = s.suggest([context])[0], s.suggest([context])[0]
    assert len(calls) == 1  # it was loaded for every turn, and once more for the values
    assert [x.text for x in first] == [x.text for x in second]  # seeded: the same suggestions
    model, tok = s.loaded()
    p = tok(prompt(context), add_special_tokens=False)["input_ids"]
    want = response_values(
        model, [p], [tok(first[1].text + REP_END, add_special_tokens=False)["input_ids"]], tok.pad_token_id
    )
    assert first[1].value == pytest.approx(want[0], abs=1e-4)
