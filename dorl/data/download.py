"""Fetch the public raw files into a local cache, verified before anything uses them.

A file is downloaded to a temporary name next to its final place, its git blob id (and sha256 / size
where known) is checked, and only then is it renamed into place: a mismatch, a missing file or a
broken connection leaves nothing behind. A cached file is re-verified before each use.

`download(url, dest, ...)` is that path for any URL (`dorl models import` fetches the reference's released
checkpoints through it): up to `retries` attempts with exponential back-off, a dropped connection resumed
where it stopped (an HTTP Range request for the rest; a server that ignores it sends the whole file again),
then the caller's check of size / sha256 / blob id, then the rename.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
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
    def check(got: Digest) -> str | None:
        why = mismatch(f, got)
        return why and f"does not match {source.repo}@{source.commit[:12]}: {why}"

    download(
        source.url(f, base_url),
        dest,
        what=f"{source.dataset} file {f.rel}",
        check=check,
        hint="offline? use --source DIR with a local copy, or data.base_url for a mirror",
        timeout=timeout,
        retries=retries,
    )
    return dest


def download(
    url: str,
    dest: Path,
    *,
    what: str,
    check: Callable[[Digest], str | None] = lambda d: None,
    hint: str = "",
    timeout: float = 60.0,
    retries: int = 3,
) -> Digest:
    """`url` into `dest`, atomically: streamed to a temporary file beside it (resumed after a dropped
    connection), `check(digest)` (None = good, else why not), renamed into place. Nothing is left on failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        for attempt in range(1, retries + 1):
            try:
                _stream(url, tmp, what, timeout)
                break
            except urllib.error.HTTPError as e:
                if attempt == retries or (e.code < 500 and e.code != 429):  # 4xx other than 429: final
                    raise DataError(f"cannot download {what} from {url}: HTTP {e.code}") from None
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError, OSError) as e:
                if attempt == retries:
                    reason = getattr(e, "reason", e)
                    raise DataError(
                        f"cannot download {what} from {url}: {reason}" + (f" ({hint})" if hint else "")
                    ) from None
            wait = 2.0**attempt
            have = tmp.stat().st_size if tmp.exists() else 0
            log.warning(
                "download of %s failed (attempt %d/%d, %d bytes so far); retrying in %.0f s",
                url, attempt, retries, have, wait,
            )  # fmt: skip
            time.sleep(wait)
        got = digest_file(tmp)
        why = check(got)
        if why is not None:
            raise DataError(f"{what} downloaded from {url} {why}; nothing was written")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("downloaded %s (%d bytes, verified)", what, got.size)
    return got


def _stream(url: str, tmp: Path, what: str, timeout: float) -> None:
    """Append the rest of `url` to `tmp` (a Range request when `tmp` already holds a start)."""
    have = tmp.stat().st_size if tmp.exists() else 0
    headers = {"User-Agent": "dorl-data"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        resumed = have and resp.status == 206 and resp.headers.get("Content-Range", "").startswith(f"bytes {have}-")
        if have and not resumed:
            log.info("%s: the server sent the whole file again (no range support)", url)
        length = int(resp.headers.get("Content-Length") or 0)
        with open(tmp, "ab" if resumed else "wb") as out, dlog.progress(transient=True) as bar:
            task = bar.add_task(f"download {what}", total=(length + (have if resumed else 0)) or None)
            bar.advance(task, have if resumed else 0)
            while block := resp.read(CHUNK):
                out.write(block)
                bar.advance(task, len(block))
            if length and out.tell() < length + (have if resumed else 0):
                raise ConnectionError(f"the connection closed after {out.tell()} bytes")  # retried, resumed
