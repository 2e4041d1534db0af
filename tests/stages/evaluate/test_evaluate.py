"""`dorl evaluate`: the reference's test sample, the method's prompting, predictions.csv and metrics.json."""

import json

import numpy as np
import pandas as pd
import pytest
import sacrebleu

from dorl import config, csvsafe
from dorl.errors import ConfigError, DataError
from dorl.stages.evaluate import evaluate
from dorl.store import Artifact, run_stage
from tests.conftest import run_dorl


@pytest.fixture(scope="module")
def cfg():
    return config.load(preset="tiny", sets=["eval.n_examples=8", "eval.num_responses=3", "eval.batch_size=4"])


def test_predictions_and_metrics(cfg, tiny_model_artifact, data_artifact, tmp_path):
    art = evaluate(
        cfg, method="tf", model_uri=tiny_model_artifact.uri, data_uri=data_artifact.uri, out_uri=str(tmp_path / "eval")
    ).artifact
    pred = csvsafe.read(art.path("predictions.csv"), keep_default_na=False)
    test = pd.read_parquet(data_artifact.path("examples/test.parquet"))
    sample = test.sample(n=8, random_state=1)  # the reference's sample
    assert pred["context"].tolist() == sample["context"].tolist()
    assert pred["true_response"].tolist() == sample["response"].tolist()
    # The example's identity, so the report can join every method's responses on it.
    assert pred["dialogue_id"].astype(str).tolist() == sample["dialogue_id"].astype(str).tolist()
    assert pred["turn_index"].tolist() == sample["turn_index"].tolist()
    expected_cols = ["dialogue_id", "turn_index", "context", "true_response"]
    for k in (1, 2, 3):
        expected_cols += [f"response_{k}", f"bertscore_{k}", f"meteor_{k}", f"bleu_{k}"]
    assert list(pred.columns) == expected_cols

    # BLEU recomputed with sacrebleu directly (max order 4, no smoothing, 13a), empty prediction = 0.
    for row in pred.itertuples():
        for k in (1, 2, 3):
            hyp = getattr(row, f"response_{k}")
            want = (
                0.0
                if not hyp.strip()
                else sacrebleu.sentence_bleu(hyp, [row.true_response], smooth_method="none", tokenize="13a").score / 100
            )
            assert getattr(row, f"bleu_{k}") == pytest.approx(want, abs=1e-9)

    m = art.json("metrics.json")
    assert m["method"] == "tf" and m["dataset"] == "abcd" and m["n_examples"] == 8 and m["num_responses"] == 3
    for name in ("bertscore", "meteor", "bleu"):
        scores = pred[[f"{name}_{k}" for k in (1, 2, 3)]].to_numpy()
        assert m["best_of_k"][name] == pytest.approx([scores[:, :k].max(axis=1).mean() for k in (1, 2, 3)])
    bert = pred[[f"bertscore_{k}" for k in (1, 2, 3)]].to_numpy()
    assert m["bert_click"] == pytest.approx([(bert[:, :k].max(axis=1) > 0.6).mean() for k in (1, 2, 3)])
    assert np.all(np.diff(m["best_of_k"]["bertscore"]) >= 0)  # best-of-k never decreases
    assert art.info["metric_identity"]["bertscore"]


def test_all_examples_when_fewer(cfg, tiny_model_artifact, data_artifact, tmp_path):
    c = config.load(preset="tiny", sets=["eval.n_examples=1000"])
    art = evaluate(
        c, method="tf", model_uri=tiny_model_artifact.uri, data_uri=data_artifact.uri, out_uri=str(tmp_path / "eval")
    ).artifact
    n_test = len(pd.read_parquet(data_artifact.path("examples/test.parquet")))
    assert art.json("metrics.json")["n_examples"] == n_test


def test_tokenizer_without_special_tokens_is_refused(cfg, data_artifact, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from dorl.tokenizer import train_bpe

    def body(ctx):
        tok = train_bpe(["plain text only"] * 5, 300)
        GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_layer=1, n_embd=16, n_head=2)).save_pretrained(ctx.out.dir)
        tok.save_pretrained(ctx.out.dir)

    model = run_stage("train/tf", str(tmp_path / "plain"), {}, {}, body).artifact
    with pytest.raises(ConfigError, match="lacks dorl's special tokens"):
        evaluate(cfg, method="tf", model_uri=model.uri, data_uri=data_artifact.uri, out_uri=str(tmp_path / "eval"))
    assert not (tmp_path / "eval" / "manifest.json").exists()


def test_wrong_dataset_method_and_missing_stage(cfg, tiny_model_artifact, data_artifact, tmp_path):
    def other(ctx):
        ctx.out.path("examples/test.parquet").write_bytes(data_artifact.path("examples/test.parquet").read_bytes())
        ctx.info.update(dataset="multiwoz22")

    woz = run_stage("data", str(tmp_path / "woz"), {"d": "woz"}, {}, other).artifact
    model_info = Artifact(tiny_model_artifact.uri)
    assert model_info.stage == "train/tf"

    def trained_on_abcd(ctx):
        for name in tiny_model_artifact.files:
            ctx.out.path(name).write_bytes(tiny_model_artifact.path(name).read_bytes())
        ctx.info.update(dataset="abcd")

    abcd_model = run_stage("train/tf", str(tmp_path / "m"), {}, {}, trained_on_abcd).artifact
    with pytest.raises(DataError, match="was trained on 'abcd' but .* holds 'multiwoz22'"):
        evaluate(cfg, method="tf", model_uri=abcd_model.uri, data_uri=woz.uri, out_uri=str(tmp_path / "e1"))
    with pytest.raises(DataError, match="is a 'tf' model but --method is 'dt'"):
        evaluate(cfg, method="dt", model_uri=abcd_model.uri, data_uri=data_artifact.uri, out_uri=str(tmp_path / "e2"))
    r = run_dorl(
        "evaluate",
        "--method",
        "tf",
        "--model",
        str(tmp_path / "nothing"),
        "--data",
        data_artifact.uri,
        "--out",
        str(tmp_path / "e3"),
        "--preset",
        "tiny",
    )
    assert r.returncode == 2 and "no artifact at" in r.stderr and "Traceback" not in r.stderr


def test_cli_prints_metrics(tiny_model_artifact, data_artifact, tmp_path):
    r = run_dorl(
        "evaluate",
        "--method",
        "tf",
        "--model",
        tiny_model_artifact.uri,
        "--data",
        data_artifact.uri,
        "--out",
        str(tmp_path / "e"),
        "--preset",
        "tiny",
        "--set",
        "eval.n_examples=4",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_examples"] == 4
