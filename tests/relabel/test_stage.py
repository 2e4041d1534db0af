"""Relabel end to end with the tiny model on the fixture data: the candidates table (and the methods' training
sets built from it) exactly as specified, rewards, returns, manifest facts, bad input."""

import pandas as pd
import pytest

from dorl.errors import DataError
from dorl.metrics import get_metric
from dorl.stages.relabel import relabel
from dorl.store import run_stage

SPLITS = ("train", "validation", "test")


def test_candidates_table(relabelled, data_artifact, relabel_cfg):
    for split in SPLITS:
        examples = pd.read_parquet(data_artifact.path(f"examples/{split}.parquet"))
        cand = pd.read_parquet(relabelled.path(f"candidates/{split}.parquet"))
        assert list(cand.columns) == [
            "dialogue_id", "turn_index", "context", "response", "candidate_index", "candidate", "reward", "return",
        ]  # fmt: skip
        assert str(cand["turn_index"].dtype) == "int32" and str(cand["reward"].dtype) == "float64"
        assert len(cand) == 6 * len(examples)
        # six rows per example, in the examples' order, candidate 0 = the human response with reward 1, top return
        assert cand["context"].tolist()[::6] == examples["context"].tolist()
        assert cand["candidate_index"].tolist() == list(range(6)) * len(examples)
        human = cand[cand["candidate_index"] == 0]
        assert (human["candidate"] == human["response"]).all() and (human["reward"] == 1.0).all()
        assert (human["return"] == 1).all()
        model = cand[cand["candidate_index"] > 0]
        assert (model["return"] == (model["reward"] > 0.6).astype(int)).all()

    # the rewards are BERTScore F1 of (candidate, human response) with the configured (MiniLM) encoder
    cand = pd.read_parquet(relabelled.path("candidates/test.parquet"))
    model = cand[cand["candidate_index"] > 0]
    metric = get_metric("bertscore", relabel_cfg.metrics)
    want = metric.score(model["candidate"].tolist(), model["response"].tolist())
    assert model["reward"].tolist() == pytest.approx(want, abs=1e-5)


def test_relabel_writes_scored_candidates_only_and_the_methods_build_their_sets_as_specified(relabelled):
    """No method's set in the relabel artifact (adding a method cannot make it stale); each method's rows, built
    from its candidates in the train stage, are the specified ones, shuffled."""
    from dorl import config, methods

    assert sorted(relabelled.files) == [f"candidates/{split}.parquet" for split in ("test", "train", "validation")]
    built = {m: methods.get(m, config.load()).training_sets(relabelled) for m in ("tf_top", "tf_all", "dt", "ilql")}
    for split in ("train", "validation"):
        cand = pd.read_parquet(relabelled.path(f"candidates/{split}.parquet"))
        rows = list(zip(cand["context"], cand["candidate"], cand["reward"], cand["return"], strict=True))
        sets = {m: built[m][split] for m in built}

        def line(c, r):
            return c + "<_rep_start_>" + r + "<_rep_end_>"

        def dt(c, r, ret):
            token = "<_reward_one_>" if ret == 1 else "<_reward_zero_>"
            return (
                c.replace("<_rep_start_>", "<_reward_one_><_rep_start_>") + token + "<_rep_start_>" + r + "<_rep_end_>"
            )

        assert sorted(sets["tf_all"]["text"]) == sorted(line(c, r) for c, r, _, _ in rows)
        assert sorted(sets["tf_top"]["text"]) == sorted(line(c, r) for c, r, _, ret in rows if ret == 1)
        assert sorted(sets["dt"]["text"]) == sorted(dt(c, r, ret) for c, r, _, ret in rows)
        ilql = sorted(zip(sets["ilql"]["prompt"], sets["ilql"]["response"], sets["ilql"]["reward"], strict=True))
        assert ilql == sorted((c + "<_rep_start_>", r + "<_rep_end_>", w) for c, r, w, _ in rows)
        assert list(sets["tf_top"].columns) == ["text", "context", "response", "return"]
        assert list(sets["ilql"].columns) == ["prompt", "response", "reward", "return", "candidate_index"]
        # shuffled: not in the candidates' order
        assert sets["tf_all"]["text"].tolist() != [line(c, r) for c, r, _, _ in rows]


def test_manifest_facts(relabelled):
    info, metrics = relabelled.info, relabelled.manifest["metrics"]
    assert info["reward"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "_L6_no-idf_version=" in info["reward"]["hash"]
    assert info["return_bins"] == 2 and info["return_edges"] == [0.6]
    assert info["counts"]["train"]["contexts"] == 63 and info["counts"]["test"]["candidates"] == 90
    assert metrics["contexts"] == 90 and metrics["candidates"] == 450 and metrics["chunks_computed"] == 23
    assert metrics["contexts_per_s"] > 0 and metrics["candidates_per_s"] > 0 and metrics["scoring_pairs_per_s"] > 0
    assert not any(f.startswith(("checkpoints/", "shards/")) for f in relabelled.files)


def test_committed_folder_holds_only_its_files(relabelled):
    """The chunk checkpoints are gone once committed: every parquet file in the folder is one of the artifact's,
    so `datasets` reading the folder gets the real files only."""
    from pathlib import Path

    from datasets import load_dataset

    root = Path(relabelled.uri)
    assert not (root / "checkpoints").exists()
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*.parquet")}
    assert on_disk == {f for f in relabelled.files if f.endswith(".parquet")}
    ds = load_dataset("parquet", data_dir=str(root / "candidates"))
    assert ds["test"].num_rows == len(pd.read_parquet(relabelled.path("candidates/test.parquet")))


def test_bad_example_names_file_record_and_field(tmp_path, tiny_model_artifact, relabel_cfg):
    def body(ctx):
        frame = pd.DataFrame(
            {
                "dialogue_id": ["a", "b"],
                "turn_index": [0, 2],
                "context": ["<_soc_>", "<_soc_>"],
                "response": ["hi", None],
            }
        )
        for split in SPLITS:
            frame.astype({"turn_index": "int32"}).to_parquet(ctx.out.path(f"examples/{split}.parquet"), index=False)

    data = run_stage("data", str(tmp_path / "data"), {"bad": 1}, {}, body).artifact
    with pytest.raises(DataError, match=r"examples/train.parquet: record 1 \(dialogue 'b'\): field response"):
        relabel(relabel_cfg, data_uri=data.uri, base_uri=tiny_model_artifact.uri, out_uri=str(tmp_path / "out"))
