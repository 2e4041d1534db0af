"""Leases on artifacts: one writer or any number of readers at a time, across processes and machines.

    with hold(out_loc, write=True, stage="report") as lease:   # the stage's output
        ...                                                   # (readers: write=False, one per input)
        lease.check()                                         # still ours? (before the commit)

The stage runner takes them for every stage: the output for writing, every input for reading, from before it
looks at the output until after it commits. So a second pipeline on the same run root waits for the first's stage
(then skips it, or refuses a different config as usual) instead of clearing files under it, and no artifact is
replaced while a stage that records it as an input is reading it.

- Local folders: `fcntl.flock` on `<parent>/.<name>.dorl-lock`, beside the artifact (clearing the artifact never
  touches it). The kernel releases it when the holder dies, however it dies. The last holder removes the file as
  it releases it (one killed leaves it, empty or with its name: harmless); listings and copies skip them.
- S3: objects under `<parent>/.<name>.dorl-lock/`: `writer`, created with a conditional write
  (`If-None-Match: *`), and `reader-<id>`, one per reader. A writer takes `writer`, then looks for live readers;
  a reader writes its object, then looks for a live writer; whoever sees the other backs off and retries (S3 is
  strongly consistent, so two never both go on). Each holder renews its object every TTL/3 from a thread
  (`If-Match` its ETag); one not renewed for DORL_LOCK_TTL seconds (default 60) by the server's clock, or whose
  process on this host is gone, is stale and is taken over (`If-Match` its ETag, so by one process only). A holder
  that lost its object (its renewals failed for a TTL) is refused at `check()`: exit 75. Needs an S3 that
  supports conditional writes (AWS since 2024, MinIO, moto); `DORL_LOCKS=off` turns leases off for one that
  does not.

A lease that cannot be had within DORL_LOCK_WAIT seconds (default 600) is one line naming the holder, exit 75
(retrying later may succeed). Where the lease cannot be written at all (a read-only mount, read-only S3
credentials) none is taken: nobody can replace the artifact there either, a complete one is still skipped, and a
stage that must write fails at its first write with one line.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from dorl.errors import StoreError, TransientStoreError
from dorl.store.location import LOCK_SUFFIX, Location

log = logging.getLogger("dorl.store")
TOKEN = uuid.uuid4().hex  # this process (a restarted container may reuse the host name and the pid)
_HELD: set[str] = set()  # the S3 lock objects this process holds now (others with its token are leftovers)


def _env_seconds(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum:
        raise StoreError(f"{name}={raw!r}: expected a number of seconds >= {minimum:g}")
    return value


def _holder(stage: str, write: bool) -> dict:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "token": TOKEN,
        "stage": stage,
        "mode": "write" if write else "read",
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _describe(info: dict | None, fallback: str) -> str:
    if not info:
        return fallback
    verb = "written" if info.get("mode") == "write" else "read"
    return (
        f"{verb} by pid {info.get('pid')} on {info.get('host')} (stage {info.get('stage')}, since {info.get('since')})"
    )


def _gone(info: dict | None, key: str = "") -> bool:
    """The holder ran on this host and its process is gone: another process that had our pid, or this one, whose
    release failed (the store was unreachable) and which holds `key` no more."""
    if not info or info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return False
    if info["pid"] == os.getpid():
        return info.get("token") != TOKEN or key not in _HELD
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


def _timeout(uri: str, blocker: str, waited: float) -> TransientStoreError:
    return TransientStoreError(
        f"{uri} is {blocker}; waited {waited:.0f} s (DORL_LOCK_WAIT): run again once that process is done"
    )


class _Waiter:
    """The retry loop's clock: a deadline, a short jittered sleep, and a log line now and then."""

    def __init__(self, uri: str):
        self.uri = uri
        self.wait = _env_seconds("DORL_LOCK_WAIT", 600, 0)
        self.start = time.monotonic()
        self.logged = -1e9

    def pause(self, blocker: str) -> None:
        now = time.monotonic()
        if now - self.start >= self.wait:
            raise _timeout(self.uri, blocker, now - self.start)
        if now - self.logged >= 60:
            log.info("waiting for %s: it is %s (up to %.0f s, DORL_LOCK_WAIT)", self.uri, blocker, self.wait)
            self.logged = now
        time.sleep(min(0.05 + random.random() * 0.25, max(0.0, self.wait - (now - self.start))))


# ---------------------------------------------------------------- local folders


class _LocalLease:
    def __init__(self, loc: Location, write: bool, stage: str):
        path = Path(loc.key)
        self.uri, self.write, self.stage = loc.uri, write, stage
        self.path = path.parent / f".{path.name or 'root'}{LOCK_SUFFIX}"
        self.fd: int | None = None

    def acquire(self) -> _LocalLease | None:
        import fcntl

        waiter = _Waiter(self.uri)
        mode = (fcntl.LOCK_EX if self.write else fcntl.LOCK_SH) | fcntl.LOCK_NB
        while True:
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                    return None  # a folder nobody here can write: nobody can replace the artifact either
                raise
            try:
                fcntl.flock(self.fd, mode)
            except BlockingIOError:
                blocker = self._blocker()
                self._close()
                waiter.pause(blocker)
                continue
            if self._current():
                break
            self._close()  # its holder removed the file as it released it: lock the new one
        if self.write:
            blob = json.dumps(_holder(self.stage, True)).encode()
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, blob, 0)
        return self

    def _current(self) -> bool:
        """The locked descriptor is still the file at `path` (not one removed and created anew meanwhile)."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(self.fd)
        return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)

    def _close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = None

    def _blocker(self) -> str:
        try:
            info = json.loads(os.pread(self.fd, 4096, 0) or b"null")
        except ValueError:
            info = None
        if info and not _gone(info):
            return _describe(info, "")
        return "read by another process"

    def check(self) -> None:
        pass  # a flock is never lost while the process lives

    def release(self) -> None:
        """Remove the lock file when nobody else holds it (a writer always can; a reader when it is the last), so
        no lock files stay behind; a process that opened it meanwhile sees it is gone and locks a new one."""
        import fcntl

        if self.fd is None:
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a reader's shared lock becomes exclusive, or
            if self._current():  # not: then another reader still holds it and the file stays
                os.unlink(self.path)
        except OSError:
            pass
        self._close()


# ---------------------------------------------------------------- S3

_TAKEN = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404", "NotFound"}


class _S3Lease:
    def __init__(self, loc: Location, write: bool, stage: str):
        self.uri, self.write, self.stage = loc.uri, write, stage
        self.backend = loc.backend
        parent, _, name = loc.key.rpartition("/")
        self.prefix = f"{parent + '/' if parent else ''}.{name or 'root'}{LOCK_SUFFIX}/"
        self.key = self.prefix + ("writer" if write else f"reader-{uuid.uuid4().hex}")
        self.ttl = _env_seconds("DORL_LOCK_TTL", 60, 1)
        self.info = _holder(stage, write)
        self.etag: str | None = None
        self.lost = False
        self.renewed = 0.0
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    # -- one request each; None when a condition failed (someone else holds or changed the object)
    def _call(self, what: str, key: str, fn, **kw):
        from botocore.exceptions import ClientError

        with self.backend._errors(key, what):
            try:
                return fn(Bucket=self.backend.bucket, **({"Key": key} if "Prefix" not in kw else {}), **kw)
            except ClientError as e:
                code = str(e.response.get("Error", {}).get("Code", ""))
                if code in _TAKEN:
                    return None
                if code in ("NotImplemented", "501"):
                    raise StoreError(
                        f"locking {self.uri}: this S3 server does not support conditional writes (If-None-Match); "
                        "set DORL_LOCKS=off to run without leases"
                    ) from None
                if code in ("AccessDenied", "403"):
                    raise PermissionError from None
                raise

    def _put(self, key: str, **cond) -> str | None:
        body = json.dumps(self.info).encode()
        resp = self._call("locking", key, self.backend.client.put_object, Body=body, **cond)
        return None if resp is None else resp["ETag"]

    def _head(self, key: str) -> tuple[str, dict | None, bool] | None:
        """(etag, holder, stale) of a lock object, or None when there is none."""
        resp = self._call("locking", key, self.backend.client.get_object)
        if resp is None:
            return None
        try:
            info = json.loads(resp["Body"].read())
        except ValueError:
            info = None
        return resp["ETag"], info, self._stale(resp, resp["LastModified"], info, key)

    def _stale(self, resp: dict, modified: datetime, info: dict | None, key: str) -> bool:
        date = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        now = email.utils.parsedate_to_datetime(date) if date else datetime.now(UTC)  # the server's clock
        return (now - modified).total_seconds() > self.ttl or _gone(info, self._id(key))

    def _id(self, key: str) -> str:
        return f"{self.backend.bucket}/{key}"

    def _live_readers(self) -> list[dict | None]:
        resp = self._call(
            "listing locks of", self.prefix, self.backend.client.list_objects_v2, Prefix=self.prefix + "reader-"
        )
        out = []
        for obj in (resp or {}).get("Contents", []):
            got = self._head(obj["Key"])
            if got is None:
                continue
            etag, info, stale = got
            if stale:  # a reader that died: tidy its object away (only that version of it)
                self._call("unlocking", obj["Key"], self.backend.client.delete_object, IfMatch=etag)
            else:
                out.append(info)
        return out

    def acquire(self) -> _S3Lease | None:
        waiter = _Waiter(self.uri)
        while True:
            try:
                blocker = self._try()
            except PermissionError:
                return None  # read-only credentials: nobody with them can replace the artifact
            if blocker is None:
                _HELD.add(self._id(self.key))
                self.renewed = time.monotonic()
                self.thread = threading.Thread(target=self._heartbeat, name=f"lease {self.uri}", daemon=True)
                self.thread.start()
                return self
            waiter.pause(blocker)

    def _try(self) -> str | None:
        """One attempt: None when held, else who is in the way."""
        writer = self.prefix + "writer"
        if self.write:
            self.etag = self._put(writer, IfNoneMatch="*")
            if self.etag is None:
                got = self._head(writer)
                if got is None:
                    return "being released"  # gone meanwhile: try again at once
                etag, info, stale = got
                if not stale:
                    return _describe(info, "locked by another process")
                self.etag = self._put(writer, IfMatch=etag)  # take over a stale one: one process wins
                if self.etag is None:
                    return "being taken over by another process"
                log.warning("%s: took over a stale lease (%s)", self.uri, _describe(info, "unknown holder"))
            readers = self._live_readers()
            if not readers:
                return None
            self._delete()
            return _describe(readers[0], "read by another process")
        self.etag = self._put(self.key)
        got = self._head(writer)
        if got is None or got[2]:
            return None
        self._delete()
        return _describe(got[1], "written by another process")

    def _heartbeat(self) -> None:
        while not self.stop.wait(self.ttl / 3):
            try:
                etag = self._put(self.key, IfMatch=self.etag)
            except StoreError as e:  # unreachable for now: try again; check() refuses after a TTL
                log.warning("%s: renewing the lease failed: %s", self.uri, e)
                continue
            if etag is None:
                self.lost = True  # taken over after our renewals failed for a TTL
                return
            self.etag, self.renewed = etag, time.monotonic()

    def check(self) -> None:
        if self.lost or time.monotonic() - self.renewed > self.ttl:
            raise TransientStoreError(
                f"{self.uri}: this process lost its lease (not renewed for {self.ttl:.0f} s, DORL_LOCK_TTL); "
                "another process may hold it now: run again"
            )

    def _delete(self) -> None:
        if self.etag is not None:
            self._call("unlocking", self.key, self.backend.client.delete_object, IfMatch=self.etag)
            self.etag = None

    def release(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        _HELD.discard(self._id(self.key))
        if not self.lost:
            try:
                self._delete()
            except StoreError as e:  # it expires by itself after a TTL
                log.warning("%s: releasing the lease failed (it expires in %.0f s): %s", self.uri, self.ttl, e)


# ---------------------------------------------------------------- the one entry point


class _NoLease:
    def check(self) -> None:
        pass


@contextlib.contextmanager
def hold(loc: Location, write: bool, stage: str):
    """Hold `loc` for writing (alone) or reading (with other readers) for the `with` block."""
    if os.environ.get("DORL_LOCKS", "on").lower() in ("off", "0", "false", "no"):
        yield _NoLease()
        return
    lease = (_LocalLease if loc.is_local else _S3Lease)(loc, write, stage)
    held = lease.acquire()
    try:
        yield held or _NoLease()
    finally:
        if held is not None:
            held.release()
