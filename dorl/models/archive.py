"""Unpacking an archive nobody here made, without trusting it: a zip, or a folder laid out as one.

    names = members(zip_path)                 # every member checked from the central directory, nothing extracted
    extract(zip_path, {member: rel}, dest)    # then only the chosen members, each under `dest`
    names = folder_members(folder)            # a folder: its files (links not followed)
    copy_folder(folder, {name: rel}, dest)    # the chosen files, none of them a link

`members` refuses the whole archive, before a byte is extracted, when any member (used or not) is
unsafe: an absolute path, a drive letter or a backslash, a `..` part, a duplicate name, a symbolic link
or a device, FIFO or socket (the Unix mode in the member's external attributes), an encrypted member, an
unknown compression, a member over `Limits.member_bytes`, more than `Limits.total_bytes` in all, more than
`Limits.count` members, or one that inflates more than `Limits.ratio` times (a zip bomb). `extract`
writes regular files only, never more bytes than a member declares, and checks each one's CRC-32
(zipfile does, on reading to the end). Every refusal is one `DataError` line naming the archive and member.
Written by hand because `zipfile.extractall` only strips `..` (it follows no policy on links, sizes or ratios)
and `shutil.unpack_archive` does less.
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dorl.errors import DataError

GiB = 1 << 30
CHUNK = 1 << 20
COMPRESSIONS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class Limits:
    # A released distilgpt2 folder: ~330 MB of weights, ~660 MB of optimizer state per checkpoint-N/ folder,
    # a few dozen files; gpt2-medium is ~4x that. The limits leave room for both and stop a bomb.
    count: int = 10_000
    member_bytes: int = 16 * GiB
    total_bytes: int = 64 * GiB
    ratio: float = 100.0  # uncompressed / compressed, for members over `ratio_from` bytes (weights: ~1.1)
    ratio_from: int = 1 << 20


def members(path: Path, limits: Limits = Limits()) -> list[str]:
    """The member names of the zip `path` (folders end with '/'), once every member has passed the checks."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path}: not a readable zip archive ({e})") from None
    if len(infos) > limits.count:
        raise DataError(f"{path}: {len(infos)} members, more than the limit of {limits.count}; nothing was extracted")
    seen: set[str] = set()
    total = 0
    for info in infos:
        why = _unsafe(info, limits)
        if why is None and info.filename.rstrip("/") in seen:
            why = "a second member of the same name"
        if why is not None:
            raise DataError(f"{path}: member {info.filename!r}: {why}; nothing was extracted")
        seen.add(info.filename.rstrip("/"))
        total += info.file_size
        if total > limits.total_bytes:
            raise DataError(
                f"{path}: members total over {limits.total_bytes / GiB:g} GiB uncompressed; nothing was extracted"
            )
    return [i.filename for i in infos]


def _unsafe(info: zipfile.ZipInfo, limits: Limits) -> str | None:
    name = info.filename
    if not name or "\0" in name:
        return "an empty name or a NUL character"
    if name.startswith("/") or DRIVE.match(name):
        return "an absolute path"
    if "\\" in name:
        return "a backslash in the name (a Windows path)"
    if ".." in PurePosixPath(name).parts:
        return "a '..' part (it would land outside the folder)"
    kind = stat.S_IFMT(info.external_attr >> 16)  # the Unix mode, where the archiver recorded one
    if stat.S_ISLNK(kind):
        return "a symbolic link"
    if kind and not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):
        return "a device, FIFO or socket, not a regular file"
    if info.flag_bits & 0x1:
        return "encrypted"
    if info.compress_type not in COMPRESSIONS:
        return f"compression method {info.compress_type}, which dorl does not read"
    if info.file_size > limits.member_bytes:
        return f"{info.file_size} bytes uncompressed, more than the limit of {limits.member_bytes / GiB:g} GiB"
    if info.file_size > limits.ratio_from and info.file_size > limits.ratio * max(info.compress_size, 1):
        return f"inflates {info.file_size / max(info.compress_size, 1):.0f}x (limit {limits.ratio:g}x: a zip bomb?)"
    return None


def extract(path: Path, chosen: dict[str, str], dest: Path) -> None:
    """Members `chosen` (member name -> relative path under `dest`) of the checked zip `path`."""
    with zipfile.ZipFile(path) as zf:
        for name, rel in chosen.items():
            info = zf.getinfo(name)
            target = _target(dest, rel)
            written = 0
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    while block := src.read(CHUNK):
                        written += len(block)
                        if written > info.file_size:  # zipfile stops at the declared size; never trust it alone
                            raise DataError(f"{path}: member {name!r} is longer than it declares")
                        out.write(block)
            except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError) as e:
                raise DataError(f"{path}: member {name!r} is corrupt ({e})") from None


def folder_members(folder: Path) -> list[str]:
    """Every file under `folder` as a relative POSIX name (links listed, not followed)."""
    out = []
    for parent, dirs, files in os.walk(folder):
        base = Path(parent).relative_to(folder)
        out += [(base / f).as_posix() for f in files] + [(base / d).as_posix() + "/" for d in dirs]
    return sorted(out)


def copy_folder(folder: Path, chosen: dict[str, str], dest: Path) -> None:
    """Files `chosen` (path under `folder` -> relative path under `dest`): regular files inside `folder`, no part
    of their path a link."""
    root = folder.resolve()
    for name, rel in chosen.items():
        src = folder / name
        part = folder
        for piece in PurePosixPath(name).parts:
            part = part / piece
            if part.is_symlink():
                raise DataError(f"{folder}: {name} is (or lies under) a symbolic link; nothing was copied")
        if not src.is_file() or not src.resolve().is_relative_to(root):
            raise DataError(f"{folder}: {name} is not a regular file inside the folder; nothing was copied")
        shutil.copyfile(src, _target(dest, rel))


def _target(dest: Path, rel: str) -> Path:
    target = (dest / rel).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise DataError(f"{rel}: would be written outside {dest}")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target
