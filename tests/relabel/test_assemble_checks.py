"""The assembly checks its shards: each folder i-of-n holds shard i of n, and the shards' rows cover every example
exactly once; a shard without chunks of a split assembles byte-identical to one process."""

import shutil

import pandas as pd
import pytest

from dorl import config
from dorl.errors import StoreError
from dorl.relabel.shards import SHARD_STAGE, shard_uri
from dorl.stages.relabel import relabel, stage_config
from dorl.store import Artifact, run_stage
from tests.conftest import run_dorl
from tests.relabel.conftest import ONE_THREAD_ENV, one_thread

# the test split's 15 examples in 2 chunks: shard 2 of 3 computes none of them
SETS = ["relabel.chunk_size=8", "relabel.splits=[test]"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_artifact, tiny_model_artifact):
    cfg = config.load(preset="tiny", sets=SETS)
    root = tmp_path_factory.mktemp("assemble")

    def go(out, **kw):
        return relabel(cfg, data_uri=data_artifact.uri, base_uri=tiny_model_artifact.uri, out_uri=str(out), **kw)

    with one_thread():
        single = go(root / "single").artifact
        shards = [go(root / "asm", shard=(i, 3)).artifact for i in range(3)]
    return cfg, root, go, single, shards


def test_a_shard_with_an_empty_split_assembles_byte_identical(run):
    cfg, root, go, single, shards = run
    assert shards[2].info["contexts"] == {"test": []} and shards[0].info["contexts"] == {"test": [[0, 8]]}
    out = root / "identical"
    shutil.copytree(root / "asm" / "shards", out / "shards")
    art = go(out, assemble=3).artifact
    assert art.files == single.files  # the same bytes (before: string columns typed otherwise)


def test_a_shard_folder_copied_over_another_is_one_line(run, data_artifact, tiny_model_artifact):
    cfg, root, go, single, shards = run
    out = root / "copied"
    shutil.copytree(root / "asm" / "shards", out / "shards")
    shutil.rmtree(out / "shards" / "1-of-3")
    shutil.copytree(out / "shards" / "0-of-3", out / "shards" / "1-of-3")  # before: half the examples twice, exit 0
    args = ["relabel", "--data", data_artifact.uri, "--base", tiny_model_artifact.uri, "--out", str(out)]
    r = run_dorl(*args, "--assemble", "3", "--preset", "tiny", *(x for s in SETS for x in ("--set", s)),
                 env=ONE_THREAD_ENV)  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "1-of-3 holds shard 0 of 3, not shard 1 of 3" in r.stderr and "--shard 1/3" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (out / "manifest.json").exists()

    # a shard of another count in the folder is refused the same way
    shutil.rmtree(out / "shards" / "1-of-3")
    with one_thread():
        other = go(root / "two", shard=(1, 2)).artifact
    shutil.copytree(other.uri, out / "shards" / "1-of-3")
    with pytest.raises(StoreError, match="1-of-3 holds shard 1 of 2, not shard 1 of 3"):
        go(out, assemble=3)


def test_rows_of_another_shard_or_missing_rows_are_refused(run, data_artifact, tiny_model_artifact):
    """A shard that says it is shard 1 of 3 but holds other examples' rows (a foreign or duplicate shard), or
    lacks some of its own."""
    cfg, root, go, single, shards = run
    own = pd.read_parquet(shards[1].path("candidates/test.parquet"))
    theirs = pd.read_parquet(shards[0].path("candidates/test.parquet"))
    inputs = {"data": Artifact(data_artifact.uri), "model": Artifact(tiny_model_artifact.uri)}

    def forged(name: str, rows: pd.DataFrame, recorded=None):
        out = root / name
        shutil.copytree(root / "asm" / "shards", out / "shards")
        shutil.rmtree(out / "shards" / "1-of-3")

        def body(ctx):
            rows.to_parquet(ctx.out.path("candidates/test.parquet"), index=False)
            ctx.info.update(shard=1, shards=3, contexts=recorded or shards[1].info["contexts"])

        made = {**stage_config(cfg), "shard": {"index": 1, "count": 3}}
        run_stage(SHARD_STAGE, shard_uri(str(out), 1, 3), made, inputs, body)
        return out

    out = forged("foreign", pd.concat([own, theirs], ignore_index=True))
    with pytest.raises(StoreError, match=r"1-of-3 holds examples 0-7 of split test, which are another shard's"):
        go(out, assemble=3)
    out = forged("short", own[own["example_index"] != 9])
    with pytest.raises(StoreError, match=r"1-of-3 lacks examples 9 of split test"):
        go(out, assemble=3)
    out = forged("twice", pd.concat([own, own[own["example_index"] == 9]], ignore_index=True))
    with pytest.raises(StoreError, match=r"example 9 of split test has 12 candidate rows, expected 6"):
        go(out, assemble=3)
    out = forged("recorded", own, recorded={"test": [[0, 8]]})
    with pytest.raises(StoreError, match=r"1-of-3 records other contexts of split test than its shard computes"):
        go(out, assemble=3)
