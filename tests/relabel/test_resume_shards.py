"""Relabel run other ways gives the very same files: killed half-way and run again (finished chunks kept),
two shards and an assembly, a shard in S3; and the errors of a wrong or incomplete assembly."""

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest

from dorl.errors import StoreError
from dorl.stages.relabel import relabel
from dorl.store import Artifact
from tests.conftest import run_dorl
from tests.relabel.conftest import ONE_THREAD_ENV, SETS, one_thread


def same_files(a: Artifact, b: Artifact) -> None:
    assert set(a.files) == set(b.files) and a.files  # names, sizes and sha256 of every output file
    assert a.files == b.files


def test_killed_run_resumes_from_finished_chunks(tmp_path, data_artifact, tiny_model_artifact, relabelled):
    out = tmp_path / "relabel"
    args = ["relabel", "--data", data_artifact.uri, "--base", tiny_model_artifact.uri, "--out", str(out)]
    args += ["--preset", "tiny", *(x for s in SETS for x in ("--set", s))]
    env = {**os.environ, **ONE_THREAD_ENV}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dorl", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while len(list(out.glob("checkpoints/*/*/candidates.parquet"))) < 2 and proc.poll() is None:
        assert time.time() < deadline, "no chunk finished in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in out.glob("checkpoints/*/*/candidates.parquet")}
    assert 2 <= len(finished) < 23 and not (out / "manifest.json").exists()

    r = run_dorl(*args, env=ONE_THREAD_ENV)
    assert r.returncode == 0, r.stderr
    art = Artifact(str(out))
    assert not (out / "checkpoints").exists()  # only for resuming: removed once committed
    assert art.manifest["metrics"]["chunks_resumed"] >= len(finished)
    assert art.manifest["metrics"]["chunks_computed"] + art.manifest["metrics"]["chunks_resumed"] == 23
    same_files(art, relabelled)


@pytest.fixture
def single_thread():
    with one_thread():
        yield


def test_two_shards_and_assembly_equal_one_process(
    tmp_path, data_artifact, tiny_model_artifact, relabel_cfg, relabelled, single_thread
):
    out = str(tmp_path / "relabel")
    with pytest.raises(StoreError, match=r"2 of 2 shard\(s\) missing or unfinished \(0-of-2, 1-of-2\)"):
        relabel(relabel_cfg, data_uri=data_artifact.uri, base_uri=tiny_model_artifact.uri, out_uri=out, assemble=2)
    shards = [
        relabel(
            relabel_cfg, data_uri=data_artifact.uri, base_uri=tiny_model_artifact.uri, out_uri=out, shard=(i, 2)
        ).artifact
        for i in (0, 1)
    ]
    assert shards[0].uri.endswith("/shards/0-of-2") and shards[0].info["chunks"]["train"] == list(range(0, 16, 2))
    art = relabel(
        relabel_cfg, data_uri=data_artifact.uri, base_uri=tiny_model_artifact.uri, out_uri=out, assemble=2
    ).artifact
    same_files(art, relabelled)
    assert art.info == {**relabelled.info, "assembled_from": 2}
    # an assembly is the same artifact as a single run: running single-process now skips it
    assert (
        relabel(
            relabel_cfg, data_uri=data_artifact.uri, base_uri=tiny_model_artifact.uri, out_uri=out
        ).artifact.manifest
        == art.manifest
    )

    # --force replaces the assembled artifact but keeps the shards; shards of another config are refused
    other = dataclasses.replace(relabel_cfg, relabel=dataclasses.replace(relabel_cfg.relabel, seed=7))
    with pytest.raises(StoreError, match="0-of-2 was made with another configuration"):
        relabel(
            other, data_uri=data_artifact.uri, base_uri=tiny_model_artifact.uri, out_uri=out, assemble=2, force=True
        )
    assert Artifact(shards[1].uri).files == shards[1].files


def test_shard_in_s3_matches(s3, data_artifact, tiny_model_artifact, relabelled, single_thread):
    from dorl import config

    cfg = config.load(preset="tiny", sets=[*SETS, "relabel.splits=[test]"])
    out = f"s3://{s3}/run/relabel"
    shard = relabel(
        cfg, data_uri=data_artifact.uri, base_uri=tiny_model_artifact.uri, out_uri=out, shard=(0, 1)
    ).artifact
    from dorl.store import Location

    assert not list(Location(shard.uri).walk("checkpoints"))  # only for resuming: removed once committed
    art = relabel(cfg, data_uri=data_artifact.uri, base_uri=tiny_model_artifact.uri, out_uri=out, assemble=1).artifact
    assert art.files["candidates/test.parquet"] == relabelled.files["candidates/test.parquet"]
    assert not list(Location(out).walk("checkpoints")) and not list(Location(shard.uri).walk("checkpoints"))


def test_cli_usage_errors(tmp_path, data_artifact, tiny_model_artifact):
    base = ["relabel", "--data", data_artifact.uri, "--base", tiny_model_artifact.uri, "--out", str(tmp_path / "o")]
    r = run_dorl(*base, "--shard", "0/2", "--assemble", "2")
    assert r.returncode == 2 and "choose --shard or --assemble" in r.stderr
    r = run_dorl(*base, "--shard", "2/2")
    assert r.returncode == 2 and "0 <= I < N" in r.stderr
    r = run_dorl(*base, "--preset", "tiny", "--assemble", "3")
    assert r.returncode == 2 and "0-of-3, 1-of-3, 2-of-3" in r.stderr and "Traceback" not in r.stderr


def test_the_old_model_flag_names_its_new_name(data_artifact, tiny_model_artifact, tmp_path):
    r = run_dorl(
        "relabel", "--data", data_artifact.uri, "--model", tiny_model_artifact.uri, "--out", str(tmp_path / "o")
    )
    assert r.returncode == 2 and "--model was renamed to --base" in r.stderr
    assert not (tmp_path / "o").exists()
