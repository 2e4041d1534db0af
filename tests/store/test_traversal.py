"""Names from a manifest or an S3 listing are data: none may make dorl read or write outside its folder."""

import hashlib
import json
import os

import boto3
import pytest

from dorl.errors import StoreError
from dorl.store import Artifact, ArtifactWriter
from dorl.store.artifact import FORMAT
from tests.conftest import run_dorl


def _manifest(files: dict[str, bytes]) -> bytes:
    entries = {n: {"size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in files.items()}
    return json.dumps({"format": FORMAT, "stage": "data", "config": {}, "files": entries}).encode()


@pytest.mark.parametrize("entry", ["ABS", "../escape.txt", "a/../../escape.txt", "a//b", "a\\..\\..\\x"])
def test_local_manifest_entry_outside_is_refused(tmp_path, entry):
    art = tmp_path / "art"
    art.mkdir()
    name = str(tmp_path / "outside.txt") if entry == "ABS" else entry
    (tmp_path / "outside.txt").write_bytes(b"secret")
    (art / "manifest.json").write_bytes(_manifest({name: b"secret"}))
    with pytest.raises(StoreError, match=r"art/manifest\.json: files entry .* not a path inside the artifact"):
        Artifact(str(art))


def test_s3_manifest_absolute_entry_writes_nothing_outside_the_cache(s3, tmp_path, data_artifact):
    """The reported case: `dorl data stats --tokenizer s3://…` wrote a manifest-listed absolute path."""
    victim = tmp_path / "victim" / "tokenizer.json"
    client = boto3.client("s3")
    payload = b'{"pwned": true}'
    client.put_object(Bucket=s3, Key=f"tok{victim}", Body=payload)  # where the stripped key points
    client.put_object(Bucket=s3, Key="tok/manifest.json", Body=_manifest({str(victim): payload}))
    with pytest.raises(StoreError, match=r"tok/manifest\.json: files entry '/.*tokenizer\.json'"):
        Artifact(f"s3://{s3}/tok").local_dir()
    r = run_dorl(
        "data", "stats", "--tokenizer", f"s3://{s3}/tok", data_artifact.uri, env={"DORL_CACHE": str(tmp_path / "c")}
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert "not a path inside the artifact" in r.stderr and "Traceback" not in r.stderr
    assert not victim.exists()


def test_s3_listing_key_with_dotdot_is_refused_on_pull(s3, tmp_path):
    client = boto3.client("s3")
    client.put_object(Bucket=s3, Key="run/checkpoints/a/../../../../../escape.txt", Body=b"x")
    listed = [o["Key"] for o in client.list_objects_v2(Bucket=s3, Prefix="run/")["Contents"]]
    assert any(".." in k for k in listed)  # S3 keeps such a key as it is
    writer = ArtifactWriter(f"s3://{s3}/run")
    with pytest.raises(
        StoreError, match=r"listing of s3://.*run/checkpoints: key 'a/\.\./.*escape\.txt' leads outside"
    ):
        writer.pull("checkpoints")
    assert not any(p.name == "escape.txt" for p in tmp_path.parent.rglob("escape.txt"))


def test_symlink_out_of_a_local_artifact_is_not_followed(tmp_path):
    (tmp_path / "secret.txt").write_bytes(b"secret")
    art = tmp_path / "art"
    art.mkdir()
    os.symlink(tmp_path / "secret.txt", art / "notes.txt")
    (art / "manifest.json").write_bytes(_manifest({"notes.txt": b"secret"}))
    with pytest.raises(StoreError, match="leads outside"):
        Artifact(str(art)).read_bytes("notes.txt")
    with pytest.raises(StoreError, match="leads outside"):
        Artifact(str(art)).path("notes.txt")
    r = run_dorl("artifacts", "cat", str(art / "notes.txt"))
    assert r.returncode == 2 and "leads outside" in r.stderr and "secret" not in r.stdout
