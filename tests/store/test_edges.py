"""Edges of the store's commands (issue 27): a manifest listing a file and a folder of one name, a pull into the
artifact it copies, the partial folders a killed pull leaves, an empty or '.' Hub id in `models mirror`, a bad
`hub_id` in a mirrored model's manifest, and `pipeline.datasets=[]`. Each is one line and exit 2, and nothing is
written where it should not be."""

import hashlib
import json

import boto3
import pytest

from dorl import config
from dorl.errors import ConfigError, StoreError
from dorl.store import Artifact, run_stage
from dorl.store.artifact import FORMAT
from tests.conftest import run_dorl


def _manifest(files: dict[str, bytes], stage="data", info=None) -> bytes:
    entries = {n: {"size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in files.items()}
    return json.dumps({"format": FORMAT, "stage": stage, "config": {}, "info": info or {}, "files": entries}).encode()


def _error_line(r):
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [x for x in r.stderr.splitlines() if x.startswith("error")]
    assert len(errors) == 1, r.stderr[-3000:]
    return errors[0]


def test_s3_manifest_with_a_file_and_a_folder_of_one_name(s3, tmp_path):
    client = boto3.client("s3")
    client.put_object(Bucket=s3, Key="art/x", Body=b"file")
    client.put_object(Bucket=s3, Key="art/x/y", Body=b"inside")
    client.put_object(Bucket=s3, Key="art/manifest.json", Body=_manifest({"x": b"file", "x/y": b"inside"}))
    with pytest.raises(StoreError, match=r"files entry 'x' is a file and also the folder of 'x/y'"):
        Artifact(f"s3://{s3}/art")
    line = _error_line(run_dorl("artifacts", "pull", f"s3://{s3}/art", str(tmp_path / "copy")))
    assert "'x' is a file and also the folder of 'x/y'" in line
    assert not (tmp_path / "copy").exists() and not list(tmp_path.glob(".copy.partial-*"))


def _art(path):
    def body(ctx):
        ctx.out.path("a.txt").write_text("a")
        ctx.out.path("sub/b.txt").write_text("b")

    return run_stage("data", str(path), {}, {}, body).artifact


def test_pull_into_the_artifact_itself_is_refused(tmp_path):
    art = _art(tmp_path / "art")
    before = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "art").rglob("*"))
    for dest in (tmp_path / "art" / "sub" / "copy", tmp_path / "art" / "new", tmp_path / "art"):
        line = _error_line(run_dorl("artifacts", "pull", art.uri, str(dest)))
        assert "inside" in line or "not an empty folder" in line, line
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "art").rglob("*")) == before
    Artifact(art.uri).local_dir()  # still complete and verified


def test_a_killed_pull_leaves_nothing_behind_for_good(tmp_path):
    art = _art(tmp_path / "art")
    dest = tmp_path / "out" / "copy"
    dest.parent.mkdir()
    left = dest.parent / ".copy.partial-k1ll3d00"  # what a pull killed half-way leaves (its mkdtemp folder)
    (left / "sub").mkdir(parents=True)
    (left / "a.txt").write_text("half")
    other = dest.parent / ".other.partial-abcd1234"  # another destination's: not ours to remove
    other.mkdir()
    r = run_dorl("artifacts", "pull", art.uri, str(dest))
    assert r.returncode == 0, r.stderr[-2000:]
    assert not left.exists() and other.exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == [".other.partial-abcd1234", "copy"]
    assert (dest / "a.txt").read_text() == "a" and (dest / "sub" / "b.txt").read_text() == "b"


@pytest.mark.parametrize("name", [".", "", "..", "a/../b", "a--b", "x/y/z"])
def test_mirror_refuses_a_bad_hub_id(tmp_path, name):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    mirror = tmp_path / "mirror"
    line = _error_line(run_dorl("models", "mirror", f"{name}={folder}", "--out", str(mirror)))
    assert "Hub id" in line
    assert not mirror.exists() or not any(mirror.iterdir())


@pytest.mark.parametrize("hub_id", ["../../escape", 5, None, "a b", "MISSING"])
def test_fetch_refuses_a_bad_hub_id_in_a_manifest(tmp_path, hub_id):
    model = tmp_path / "mirror" / "m"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    info = {} if hub_id == "MISSING" else {"hub_id": hub_id}
    (model / "manifest.json").write_bytes(_manifest({"config.json": b"{}"}, stage="model", info=info))
    cache = tmp_path / "cache" / "hub"
    line = _error_line(run_dorl("models", "fetch", "--from", str(tmp_path / "mirror"), "--cache", str(cache)))
    assert "hub_id" in line and "manifest.json" in line
    assert not (tmp_path / "escape").exists() and not (tmp_path / "cache" / "escape").exists()


def test_pipeline_without_datasets_is_a_config_error():
    with pytest.raises(ConfigError, match=r"pipeline\.datasets"):
        config.load(sets=["pipeline.datasets=[]"])
