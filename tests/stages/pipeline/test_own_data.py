"""`dorl pipeline` on your own data: the example's invented conversations (docs/examples/support-chats.jsonl) run
end to end to a report, twice in one run config: once relabelled with the base model's beams, once with the
example's KTO-format scored file alone (no beams), every paper method trained on it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from dorl.store import Artifact
from tests.conftest import REPO, run_dorl
from tests.stages.pipeline.test_pipeline import ENV

EXAMPLES = REPO / "docs" / "examples"
METHODS = ["tf_top", "dt", "ilql"]


@pytest.mark.slow
def test_your_conversations_and_your_scores_run_to_a_report(tmp_path: Path):
    run = {
        "preset": "tiny",
        "root": str(tmp_path),
        "run": "own",
        "data": {
            "sources": {
                "support": {"path": str(EXAMPLES / "support-chats.jsonl")},  # relabelled with beams
                "kto": {  # the same conversations, relabelled from the KTO file alone
                    "path": str(EXAMPLES / "support-chats.jsonl"),
                    "scored": str(EXAMPLES / "support-scored.jsonl"),
                    "candidates": "scored",
                    "reward_name": "helpful",
                },
            }
        },
        "pipeline": {"methods": METHODS},  # datasets: --datasets below
        "tf": {"epochs": 2},
        "finetune": {"max_steps": 4},
        "ilql": {"train": {"max_steps": 4}},
        "relabel": {"chunk_size": 64},
        "report": {"bootstrap": 100},
    }
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(run))
    r = run_dorl("pipeline", "--config", str(config), "--datasets", "support,kto", env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    results = pd.read_csv(Artifact(str(tmp_path / "own" / "report")).path("results.csv"))
    assert set(results["dataset"]) == {"support", "kto"}
    assert set(results["method"]) == {"tf", *METHODS}

    beams = Artifact(str(tmp_path / "own" / "support" / "relabel"))
    assert beams.info["candidates"] == {"human": True, "beams": 5, "imported_from": None}
    mine = Artifact(str(tmp_path / "own" / "kto" / "relabel"))
    assert set(mine.manifest["inputs"]) == {"data"}  # no base model: no beams
    assert mine.info["candidates"] == {"human": False, "beams": 0, "imported_from": 1}
    assert mine.info["reward"]["name"] == "helpful" and mine.info["reward"]["column"] == "label"
    train = pd.read_parquet(mine.path("candidates/train.parquet"))
    assert train["candidate_index"].min() == 1 and set(train["return"]) == {0, 1}
    for m in METHODS:  # each trained on the scored rows: its training set counts them
        model = Artifact(str(tmp_path / "own" / "kto" / m))
        assert model.manifest["inputs"]["data"]["uri"] == mine.uri
        rows = pd.read_parquet(model.path("training_set/train.parquet"))
        assert len(rows) == (train["return"] == 1).sum() if m == "tf_top" else len(rows) == len(train)
