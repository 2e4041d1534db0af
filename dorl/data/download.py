"""Fetch the public raw files into a local cache, verified before anything uses them.

A file is downloaded to a temporary name next to its final place, its git blob id (and sha256 / size
where known) is checked, and only then is it renamed into place: a mismatch, a missing file or a
broken connection leaves nothing behind. A cached file is re-verified before each use.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dorl import log as dlog
from dorl.data.sources import RawFile, Source
from dorl.errors import DataError
from dorl.store.artifact import cache_root

log = logging.getLogger("dorl.data")
CHUNK = 1 << 20


@dataclass(frozen=True)
class Digest:
    size: int
    sha256: str
    blob: str  # git blob id: sha1(b"blob <size>\0" + content)


def digest_file(path: Path) -> Digest:
    """Size, sha256 and git blob id of a file, in one pass over its bytes."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            sha256.update(block)
            sha1.update(block)
    return Digest(size, sha256.hexdigest(), sha1.hexdigest())


def mismatch(expected: RawFile, got: Digest) -> str | None:
    """Why `got` is not the expected upstream file (None if it is)."""
    if expected.size is not None and got.size != expected.size:
        return f"size {got.size} bytes, expected {expected.size}"
    if got.blob != expected.blob:
        return f"git blob id {got.blob}, expected {expected.blob}"
    if expected.sha256 is not None and got.sha256 != expected.sha256:
        return f"sha256 {got.sha256}, expected {expected.sha256}"
    return None


def default_cache_dir() -> Path:
    return cache_root() / "raw"


def fetch(
    source: Source,
    base_url: str | None = None,
    cache_dir: str | Path | None = None,
    timeout: float = 60.0,
    retries: int = 3,
) -> dict[str, Path]:
    """Every file of `source`, verified, as {rel: local path}. Cached files are re-verified, not re-fetched."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = root / source.dataset / source.commit[:12]
    out: dict[str, Path] = {}
    for f in source.files:
        dest = folder / f.rel
        if dest.is_file():
            why = mismatch(f, digest_file(dest))
            if why is None:
                out[f.rel] = dest
                continue
            log.warning("cached %s does not match (%s): downloading it again", dest, why)
            dest.unlink()
        out[f.rel] = _download(source, f, dest, base_url, timeout, retries)
    return out


def _download(source: Source, f: RawFile, dest: Path, base_url: str | None, timeout: float, retries: int) -> Path:
    url = source.url(f, base_url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    try:
        for attempt in range(1, retries + 1):
            try:
                _stream(url, tmp, f, timeout)
                break
            except urllib.error.HTTPError as e:
                if attempt == retries or (e.code < 500 and e.code != 429):  # 4xx other than 429: final
                    raise DataError(
                        f"cannot download {source.dataset} file {f.rel} from {url}: HTTP {e.code}"
                    ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                if attempt == retries:
                    reason = getattr(e, "reason", e)
                    raise DataError(
                        f"cannot download {source.dataset} file {f.rel} from {url}: {reason} "
                        "(offline? use --source DIR with a local copy, or data.base_url for a mirror)"
                    ) from None
            wait = 2.0**attempt
            log.warning("download of %s failed (attempt %d/%d); retrying in %.0f s", url, attempt, retries, wait)
            time.sleep(wait)
        why = mismatch(f, digest_file(tmp))
        if why is not None:
            raise DataError(
                f"{source.dataset} file {f.rel} downloaded from {url} does not match {source.repo}@"
                f"{source.commit[:12]}: {why}; nothing was written"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("downloaded %s (%d bytes, verified)", f.rel, dest.stat().st_size)
    return dest


def _stream(url: str, tmp: Path, f: RawFile, timeout: float) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "dorl-data"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(tmp, "wb") as out:
        total = int(resp.headers.get("Content-Length") or f.size or 0) or None
        with dlog.progress(transient=True) as bar:
            task = bar.add_task(f"download {f.rel}", total=total)
            while block := resp.read(CHUNK):
                out.write(block)
                bar.advance(task, len(block))
