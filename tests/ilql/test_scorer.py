"""`dorl evaluate --method ilql_scorer`: a trained model's greedy + beam responses re-ranked by an ILQL
model's V at each response's last state (the reference's `ilql_scorer`), end to end through the CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dorl.errors import ConfigError, DataError
from dorl.ilql import io as ilql_io
from dorl.ilql.ranking import score_texts
from dorl.methods.base import load_tokenizer
from dorl.stages.evaluate import evaluate
from dorl.text import prompt
from tests.conftest import REPO, run_dorl
from tests.ilql.conftest import ilql_config

SETS = ["eval.n_examples=4", "eval.num_responses=3", "eval.batch_size=4", "eval.max_new_tokens=6"]


def test_dorl_evaluate_ilql_scorer_orders_the_candidates_by_v(trained, tiny_model_artifact, data_artifact, tmp_path):
    out = tmp_path / "eval-scorer"
    args = ["evaluate", "--method", "ilql_scorer", "--model", trained.uri, "--candidates-from",
            tiny_model_artifact.uri, "--data", data_artifact.uri, "--out", str(out)]  # fmt: skip
    r = run_dorl(*args, "--preset", "tiny", *[a for s in SETS for a in ("--set", s)], cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads(r.stdout)
    assert metrics["method"] == "ilql_scorer" and metrics["candidates"] == "tf" and metrics["num_responses"] == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["inputs"]) == {"model", "data", "candidates"}
    pred = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    cols = [f"response_{k}" for k in (1, 2, 3)]

    # the same candidates as tf's own evaluation (greedy + beam), reordered
    cfg = ilql_config(*SETS)
    tf = evaluate(cfg, method="tf", model_uri=tiny_model_artifact.uri, data_uri=data_artifact.uri,
                  out_uri=str(tmp_path / "eval-tf")).artifact  # fmt: skip
    tf_pred = pd.read_csv(tf.path("predictions.csv"), keep_default_na=False)
    for a, b in zip(pred[cols].to_numpy().tolist(), tf_pred[cols].to_numpy().tolist(), strict=True):
        assert sorted(a) == sorted(b)
    # ... from the highest V at the last state down
    model = ilql_io.load(trained.local_dir())
    tok = load_tokenizer(trained.local_dir())
    for context, row in zip(pred["context"], pred[cols].to_numpy().tolist(), strict=True):
        values = score_texts(model, tok, [prompt(context)] * 3, row, prompt_tokens=96)
        # near-ties may swap between batchings (fp32 rounding of the padded forward): 1e-6 tolerance
        assert all(a >= b - 1e-6 for a, b in zip(values, values[1:])), values
    # best-of-1 is the top-valued candidate's score
    assert metrics["best_of_k"]["bleu"][0] == pytest.approx(pred["bleu_1"].mean())


def test_ilql_scorer_inputs(trained, tiny_model_artifact, data_artifact, tmp_path):
    cfg = ilql_config(*SETS)
    kw = {"data_uri": data_artifact.uri, "out_uri": str(tmp_path / "e")}
    with pytest.raises(ConfigError, match="--candidates-from"):
        evaluate(cfg, method="ilql_scorer", model_uri=trained.uri, **kw)
    with pytest.raises(DataError, match="needs a 'ilql'"):
        evaluate(cfg, method="ilql_scorer", model_uri=tiny_model_artifact.uri,
                 candidates_uri=tiny_model_artifact.uri, **kw)  # fmt: skip
    with pytest.raises(DataError, match="takes candidates from"):
        evaluate(cfg, method="ilql_scorer", model_uri=trained.uri, candidates_uri=trained.uri, **kw)
    with pytest.raises(ConfigError, match="for the scorers"):
        evaluate(cfg, method="tf", model_uri=tiny_model_artifact.uri, candidates_uri=trained.uri, **kw)
    assert not (tmp_path / "e").exists()
