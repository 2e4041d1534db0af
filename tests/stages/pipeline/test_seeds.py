"""`dorl pipeline --seeds 0,1`: data, tf and relabel once; the method trained and evaluated once per seed, each
with its own training seed and artifact; the report aggregates the seeds."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from dorl.store import Artifact
from tests.conftest import run_dorl
from tests.stages.pipeline.test_pipeline import ENV

SMALL = [
    "--preset", "tiny", "--methods", "tf_top", "--seeds", "0,1",
    "--set", "data.simulate=40",
    "--set", "tf.epochs=2",
    "--set", "finetune.max_steps=6",
    "--set", "relabel.chunk_size=64",
    "--set", "eval.n_examples=12",
    "--set", "report.bootstrap=200",
]  # fmt: skip


@pytest.mark.slow
def test_pipeline_with_two_seeds(tmp_path: Path):
    r = run_dorl("pipeline", *SMALL, "--set", f"root={tmp_path}", "--set", "run=s", env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "s" / "abcd"
    assert "tf_top (seed 1)" in r.stderr  # the stage view names each seed

    # Once per dataset: data, tf, relabel and tf's evaluation; no unseeded method artifact.
    for stage in ("data", "tf", "relabel", "eval/tf"):
        Artifact(str(run / stage))  # complete (raises otherwise)
    assert not (run / "tf_top").exists()
    # Per seed: the model, trained with that seed (recorded in its manifest), and its evaluation.
    models = {s: Artifact(str(run / f"seed-{s}" / "tf_top")) for s in (0, 1)}
    for s, model in models.items():
        assert model.config["train"]["seed"] == s
        Artifact(str(run / f"seed-{s}" / "eval" / "tf_top"))
    weights = {s: m.path("model.safetensors").read_bytes() for s, m in models.items()}
    assert weights[0] != weights[1]  # two seeds, two models

    report = Artifact(str(tmp_path / "s" / "report"))
    assert len(report.manifest["inputs"]) == 3  # tf once, tf_top per seed
    results = pd.read_csv(report.path("results.csv"))
    row = results.set_index(["method", "metric"])
    assert row.loc[("tf", "bertscore"), "seeds"] == 1
    top = row.loc[("tf_top", "bertscore")]
    assert top["seeds"] == 2 and top["seed_low"] <= top["mean"] <= top["seed_high"]
    assert not math.isnan(top["p_holm"])  # paired against tf (the per-example mean over seeds)
    seed_means = [
        pd.read_csv(Artifact(str(run / f"seed-{s}" / "eval" / "tf_top")).path("predictions.csv"))["bertscore_1"].mean()
        for s in (0, 1)
    ]
    assert top["mean"] == pytest.approx(sum(seed_means) / 2)
    assert "±" in report.read_bytes("results.md").decode()  # the half-width over seeds in the table
    assert json.loads(report.read_bytes("results.json"))  # and the machine-readable results
