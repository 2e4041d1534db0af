"""Scored candidates are the interface between relabel and the methods: a method builds its training set from
them in the train stage, the same rows in the same order relabel wrote before (and an artifact relabel made
then still trains every method as it did); the train artifact records them; bad candidates are named."""

import zlib

import numpy as np
import pandas as pd
import pytest

from dorl import config, methods
from dorl.errors import DataError
from dorl.relabel.returns import edges, to_returns
from dorl.store import run_stage
from tests.conftest import REPO, run_dorl
from tests.fixtures import make_relabel_artifact
from tests.methods.helpers import fast_config

SPLITS = ("train", "validation")


# ---------------------------------------------------------------- the old code path, as it was at 487dcb1 (`layers`)
def old_tables(cfg, rows, sizes):
    """dorl/stages/relabel.py:finalize: each split's candidates table, in memory, before it was written."""
    r = cfg.relabel
    for split in r.splits:
        table = rows[split].sort_values(["example_index", "candidate_index"], kind="stable")
        returns = to_returns(table["reward"].to_numpy(), edges(r))
        returns[table["candidate_index"].to_numpy() == 0] = r.return_bins - 1
        yield split, table.drop(columns="example_index").assign(**{"return": returns}).reset_index(drop=True)


def old_training_sets(cfg, table, split):
    """dorl/stages/relabel.py:training_sets and shuffled: every registered method's set, shuffled."""
    sets = {}
    for name in methods.names():
        frame = methods.get(name, cfg).training_set(table, cfg.relabel.return_bins)
        if frame is not None:
            frame = frame.reset_index(drop=True)
            rng = np.random.default_rng([cfg.relabel.seed, zlib.crc32(f"{name}/{split}".encode())])
            sets[name] = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    return sets


def old_layout(ctx, cfg, rows, sizes):
    """What relabel also wrote before: methods/<method>/{split}.parquet."""
    for split, table in old_tables(cfg, rows, sizes):
        for name, frame in old_training_sets(cfg, table, split).items():
            frame.to_parquet(ctx.out.path(f"methods/{name}/{split}.parquet"), index=False)


@pytest.fixture(scope="module")
def old_relabel(tmp_path_factory, data_artifact):
    """A relabel artifact laid out as before this change (candidates and every method's set)."""
    return make_relabel_artifact(str(tmp_path_factory.mktemp("old") / "relabel"), data_artifact, also=old_layout)


# ---------------------------------------------------------------- the same rows, the same order
@pytest.mark.parametrize("bins, seed", [(2, 0), (3, 7)])
def test_each_method_builds_the_rows_relabel_wrote(tmp_path, data_artifact, bins, seed):
    old = make_relabel_artifact(str(tmp_path / "r"), data_artifact, return_bins=bins, seed=seed, also=old_layout)
    for name in methods.paper():
        built = methods.get(name, config.load()).training_sets(old)
        assert set(built) == set(SPLITS)
        for split in SPLITS:
            want = pd.read_parquet(old.path(f"methods/{name}/{split}.parquet"))
            pd.testing.assert_frame_equal(built[split], want, check_exact=True)
    assert methods.get("tf", config.load()).training_sets(old) is None  # tf trains on conversations


def test_the_candidates_table_is_the_one_the_methods_were_given(old_relabel, data_artifact):
    """The table read back from candidates/{split}.parquet is the in-memory one relabel built its sets from."""
    from tests.fixtures import relabel_config, relabel_rows

    rows, sizes = relabel_rows(data_artifact)
    for split, table in old_tables(relabel_config(), rows, sizes):
        if split in SPLITS:
            pd.testing.assert_frame_equal(pd.read_parquet(old_relabel.path(f"candidates/{split}.parquet")), table)


def test_an_old_relabel_artifact_trains_as_before_and_the_set_is_recorded(tmp_path, old_relabel, tiny_model_artifact):
    """Read, not refused: the methods/ folders are ignored, the rows built again are equal to them."""
    from dorl.stages.train import train

    model = train(fast_config(), method="tf_top", data_uri=old_relabel.uri, base_uri=tiny_model_artifact.uri,
                  out_uri=str(tmp_path / "tf_top")).artifact  # fmt: skip
    for split in SPLITS:
        name = f"training_set/{split}.parquet"
        assert name in model.files  # in the manifest, with its sha256
        recorded = pd.read_parquet(model.path(name))
        pd.testing.assert_frame_equal(recorded, pd.read_parquet(old_relabel.path(f"methods/tf_top/{split}.parquet")))
        assert model.info["training_set"][split] == len(recorded) == model.info["data"][split]["lines"]


def test_a_relabel_artifact_without_its_seed_is_refused_with_what_to_do(tmp_path, old_relabel, tiny_model_artifact):
    def body(ctx):
        for name in old_relabel.files:
            ctx.out.path(name).write_bytes(old_relabel.read_bytes(name))

    no_seed = run_stage("relabel", str(tmp_path / "relabel"), {"made": "long ago"}, {}, body).artifact
    out = tmp_path / "dt"
    r = run_dorl("train", "--method", "dt", "--data", no_seed.uri, "--base", tiny_model_artifact.uri,
                 "--out", str(out), "--preset", "tiny", cwd=REPO)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "config.relabel.seed is None" in r.stderr and "dorl relabel --force" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize(
    "column, value, want",
    [
        ("reward", float("nan"), "field 'reward': expected a finite number, got nan"),
        ("return", 2, "field 'return': expected an integer in [0, 2) (info.return_bins=2), got 2"),
        ("candidate", None, "field 'candidate': expected text, got"),
    ],
)
def test_a_bad_candidate_record_is_named(tmp_path, old_relabel, column, value, want):
    def body(ctx):
        for name in old_relabel.files:
            ctx.out.path(name).write_bytes(old_relabel.read_bytes(name))
        df = pd.read_parquet(old_relabel.path("candidates/validation.parquet"))
        df[column] = df[column].astype(object)
        df.loc[3, column] = value
        df.to_parquet(ctx.out.path("candidates/validation.parquet"), index=False)

    bad = run_stage("relabel", str(tmp_path / "bad"), old_relabel.config, {}, body).artifact
    with pytest.raises(DataError) as e:
        methods.get("ilql", config.load()).training_sets(bad)
    assert f"{bad.uri}/candidates/validation.parquet: record 3, {want}" in str(e.value)
