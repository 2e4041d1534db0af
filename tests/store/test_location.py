"""Round trips through both backends: a local folder and a real S3 endpoint over HTTP."""

import pytest

from dorl.errors import StoreError
from dorl.store import Location


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return Location(str(tmp_path / "store"))
    bucket = request.getfixturevalue("s3")
    return Location(f"s3://{bucket}/prefix")


def test_write_read_list_exists_delete(root, tmp_path):
    root.write_bytes("a/b.txt", b"hello")
    root.write_bytes("a/c/d.bin", bytes(range(256)))
    src = tmp_path / "big.bin"
    src.write_bytes(b"x" * 3_000_000)
    root.upload(src, "big.bin")

    assert root.read_bytes("a/b.txt") == b"hello"
    assert (root / "a").read_bytes("c/d.bin") == bytes(range(256))
    assert root.exists("a") and root.exists("a/b.txt") and not root.exists("zzz")
    assert sorted((e.name, e.size) for e in root.walk()) == [("a/b.txt", 5), ("a/c/d.bin", 256), ("big.bin", 3_000_000)]
    listing = root.listdir()
    assert [(e.name, e.is_dir) for e in listing] == [("a", True), ("big.bin", False)]
    out = tmp_path / "back.bin"
    root.download("big.bin", out)
    assert out.read_bytes() == src.read_bytes()
    root.delete_tree("a")
    assert not root.exists("a/b.txt")


def test_multipart_upload(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("DORL_S3_MULTIPART_THRESHOLD", str(5 * 2**20))
    import boto3

    src = tmp_path / "large.bin"
    src.write_bytes(bytes(range(256)) * (12 * 2**20 // 256))  # 12 MiB: 3 parts of 5 MiB
    loc = Location(f"s3://{s3}/m")
    loc.upload(src, "large.bin")
    head = boto3.client("s3").head_object(Bucket=s3, Key="m/large.bin")
    assert "-" in head["ETag"]  # a multipart ETag: "<md5 of md5s>-<parts>"
    dst = tmp_path / "out.bin"
    loc.download("large.bin", dst)
    assert dst.read_bytes() == src.read_bytes()


def test_copy_tree_between_backends(s3, tmp_path):
    local = Location(str(tmp_path / "src"))
    local.write_bytes("x/1.txt", b"one")
    local.write_bytes("2.txt", b"two")
    remote = Location(f"s3://{s3}/copy")
    assert local.copy_tree_to(remote) == 2
    back = Location(str(tmp_path / "back"))
    assert remote.copy_tree_to(back) == 2
    assert back.read_bytes("x/1.txt") == b"one" and back.read_bytes("2.txt") == b"two"


@pytest.mark.parametrize(
    "uri, message",
    [
        ("gs://bucket/x", "unknown URI scheme 'gs://'"),
        ("s3://", "needs a bucket"),
        ("s3://b/a/../c", "no '..'"),
        ("runs/../../etc", "'..' is not allowed"),
    ],
)
def test_bad_uris(uri, message):
    with pytest.raises(StoreError, match=message):
        Location(uri)


def test_keys_cannot_escape(tmp_path):
    loc = Location(str(tmp_path))
    for key in ("../x", "a/../../b", "a//b"):
        with pytest.raises(StoreError, match="invalid key"):
            loc.write_bytes(key, b"no")
    with pytest.raises(StoreError, match="invalid key"):
        loc / ".."


def test_missing_bucket_is_a_clear_error(s3):
    loc = Location("s3://no-such-bucket-dorl/x")
    with pytest.raises(StoreError, match="bucket 'no-such-bucket-dorl' does not exist"):
        loc.listdir()
    with pytest.raises(StoreError, match="bucket 'no-such-bucket-dorl' does not exist"):
        loc.write_bytes("f", b"1")
