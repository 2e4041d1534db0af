"""The archive checks: every unsafe member refuses the whole zip before anything is extracted; extraction writes
only the chosen members, inside the folder; a folder's chosen files are never links."""

from __future__ import annotations

import os
import stat
import zipfile

import pytest

from dorl.errors import DataError
from dorl.models.archive import Limits, copy_folder, extract, folder_members, members


def _zip(path, entries):
    """entries: [(ZipInfo or name, bytes)]"""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in entries:
            zf.writestr(member, data)
    return path


def _mode(name: str, kind: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (kind | 0o644) << 16
    return info


GOOD = [("m/config.json", b"{}"), ("m/tokenizer.json", b"{}")]


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize(
    ("member", "why"),
    [
        ("m/../../x", "a '..' part"),
        ("../x", "a '..' part"),
        ("/x", "an absolute path"),
        ("C:/x", "an absolute path"),
        ("m\\..\\x", "a backslash"),
        (_mode("m/link", stat.S_IFLNK), "a symbolic link"),
        (_mode("m/dev", stat.S_IFCHR), "a device, FIFO or socket"),
        (_mode("m/blk", stat.S_IFBLK), "a device, FIFO or socket"),
        (_mode("m/fifo", stat.S_IFIFO), "a device, FIFO or socket"),
        ("m/config.json", "a second member of the same name"),
    ],
)
def test_an_unsafe_member_refuses_the_archive(tmp_path, member, why):
    path = _zip(tmp_path / "r.zip", GOOD + [(member, b"x")])
    with pytest.raises(DataError, match="nothing was extracted") as e:
        members(path)
    assert why in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_sizes_counts_and_ratios_have_limits(tmp_path):
    bomb = _zip(tmp_path / "bomb.zip", GOOD + [("m/zeros", b"\0" * (4 << 20))])  # ~4 kB that inflates to 4 MiB
    with pytest.raises(DataError, match=r"inflates \d+x \(limit 100x: a zip bomb\?\)"):
        members(bomb)
    assert "m/zeros" in members(bomb, Limits(ratio=10_000))
    path = _zip(tmp_path / "r.zip", GOOD + [("m/a", b"a" * 100), ("m/b", b"b" * 100)])
    with pytest.raises(DataError, match="4 members, more than the limit of 3"):
        members(path, Limits(count=3))
    with pytest.raises(DataError, match="m/a.*more than the limit"):
        members(path, Limits(member_bytes=50))
    with pytest.raises(DataError, match="members total over"):
        members(path, Limits(total_bytes=150))
    assert members(path) == ["m/config.json", "m/tokenizer.json", "m/a", "m/b"]


def test_extract_writes_only_the_chosen_members(tmp_path):
    path = _zip(tmp_path / "r.zip", GOOD + [("m/training_args.bin", b"pickle")])
    dest = tmp_path / "out"
    dest.mkdir()
    extract(path, {"m/config.json": "config.json", "m/tokenizer.json": "tok/tokenizer.json"}, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "config.json",
        "tok/tokenizer.json",
    ]
    with pytest.raises(DataError, match="outside"):
        extract(path, {"m/config.json": "../escape.json"}, dest)
    assert not (tmp_path / "escape.json").exists()


def test_a_corrupt_member_is_named(tmp_path):
    path = _zip(tmp_path / "r.zip", [("m/config.json", b"{" + b"x" * 1000 + b"}")])
    raw = bytearray(path.read_bytes())
    at = raw.find(b"m/config.json") + len("m/config.json") + 10  # inside the (deflated) data of the member
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DataError, match="member 'm/config.json' is corrupt"):
        extract(path, {"m/config.json": "config.json"}, dest)


def test_a_folder_never_hands_over_a_link(tmp_path):
    src = tmp_path / "release"
    src.mkdir()
    (src / "config.json").write_text("{}")
    secret = tmp_path / "secret"
    secret.write_text("not yours")
    os.symlink(secret, src / "tokenizer.json")
    assert folder_members(src) == ["config.json", "tokenizer.json"]
    dest = tmp_path / "out"
    dest.mkdir()
    copy_folder(src, {"config.json": "config.json"}, dest)
    with pytest.raises(DataError, match="symbolic link"):
        copy_folder(src, {"tokenizer.json": "tokenizer.json"}, dest)
    assert not (dest / "tokenizer.json").exists()
