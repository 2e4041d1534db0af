"""Where artifacts live: a `Location` is a URI (a local folder or `s3://bucket/prefix`) with file operations.

The two backends offer the same operations on keys relative to the location; S3 goes through boto3
with the standard credential chain, `AWS_ENDPOINT_URL` for S3-compatible servers, retries with
exponential backoff (botocore's standard mode) and multipart transfers for large files.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dorl.errors import StoreError, TransientStoreError

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
# Leases beside each artifact (dorl/store/lease.py): `.<name>.dorl-lock`, never listed, copied or pulled.
LOCK_SUFFIX = ".dorl-lock"


def _is_lock(rel: str) -> bool:
    return any(part.endswith(LOCK_SUFFIX) for part in rel.split("/"))


def check_key(key: str, uri: str = "") -> str:
    """Normalise a relative key ('a/b/c'); refuse '..', absolute keys and empty segments."""
    key = key.replace("\\", "/").strip("/")
    if not key:
        return ""
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"invalid key {key!r}{' under ' + uri if uri else ''}: no '..', '.' or empty path segments")
    return key


def inside(root: str | os.PathLike, name: str, resolve: bool = False, what: str = "path") -> Path:
    """`root/name`, refused unless it stays inside `root` (a name from a manifest or a listing is data: an
    absolute path or '..' in it must not make dorl read or write elsewhere). `resolve`: follow symlinks too."""
    bad = not isinstance(name, str) or not name or name.startswith(("/", "\\")) or "\x00" in name
    if not bad:
        parts = name.replace("\\", "/").split("/")
        bad = any(p in ("", ".", "..") for p in parts)
    if not bad:
        path = Path(root) / name
        if not resolve:
            return path
        base = Path(root).resolve()
        if path.resolve() == base or base in path.resolve().parents:
            return path
    raise StoreError(f"{what} {name!r} leads outside {root}: refused")


@dataclass(frozen=True)
class Entry:
    """One item of a listing: a file (with its size) or a folder."""

    name: str
    is_dir: bool
    size: int = 0


class Location:
    """A folder-like place in the store. `Location(uri) / "sub"` is a child location."""

    def __init__(self, uri: str | os.PathLike):
        uri = os.fspath(uri)
        m = _SCHEME.match(uri)
        scheme = m.group(1).lower() if m else "file"
        if scheme == "s3":
            rest = uri[len(m.group(0)) :]
            bucket, _, prefix = rest.partition("/")
            if not bucket:
                raise StoreError(f"{uri}: an S3 URI needs a bucket: s3://bucket/prefix")
            self.backend: _Backend = _S3Backend(bucket)
            self.key = check_key(prefix, uri)
        elif scheme == "file":
            path = uri[len(m.group(0)) :] if m else uri
            if not path:
                raise StoreError("empty artifact path")
            if not m and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+:", path):  # 's3:/bucket/x', 's3:bucket': a typo
                raise StoreError(
                    f"malformed URI {uri!r}: a scheme needs '://' (s3://bucket/prefix); for a local folder whose "
                    "name has a ':', write ./" + path
                )
            for part in PurePosixPath(path.replace("\\", "/")).parts:
                if part == "..":
                    raise StoreError(f"invalid path {uri!r}: '..' is not allowed in artifact URIs")
            self.backend = _LocalBackend()
            try:
                self.key = str(Path(path).expanduser().absolute())
            except RuntimeError:  # '~someone/x' for a user this machine does not know
                raise StoreError(f"{uri!r}: cannot expand '~' (no such user's home folder)") from None
        else:
            raise StoreError(f"unknown URI scheme '{scheme}://' in {uri!r}; use a local path or s3://bucket/prefix")

    # -- naming
    @property
    def uri(self) -> str:
        return self.backend.uri(self.key)

    @property
    def is_local(self) -> bool:
        return isinstance(self.backend, _LocalBackend)

    @property
    def name(self) -> str:
        return self.key.rstrip("/").rsplit("/", 1)[-1]

    def __truediv__(self, rel: str) -> Location:
        rel = check_key(rel, self.uri)
        child = object.__new__(Location)
        child.backend = self.backend
        child.key = self.backend.join(self.key, rel) if rel else self.key
        return child

    def parent(self) -> Location:
        parent = object.__new__(Location)
        parent.backend = self.backend
        parent.key = self.backend.parent(self.key)
        return parent

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def __str__(self) -> str:
        return self.uri

    # -- operations on keys relative to this location
    def _k(self, rel: str) -> str:
        rel = check_key(rel, self.uri)
        return self.backend.join(self.key, rel) if rel else self.key

    def exists(self, rel: str = "") -> bool:
        return self.backend.exists(self._k(rel))

    def read_bytes(self, rel: str) -> bytes:
        return self.backend.read_bytes(self._k(rel))

    def write_bytes(self, rel: str, data: bytes) -> None:
        self.backend.write_bytes(self._k(rel), data)

    def upload(self, local: Path, rel: str) -> None:
        self.backend.upload(Path(local), self._k(rel))

    def download(self, rel: str, local: Path) -> None:
        self.backend.download(self._k(rel), Path(local))

    def delete(self, rel: str) -> None:
        self.backend.delete(self._k(rel))

    def delete_tree(self, rel: str = "") -> None:
        self.backend.delete_tree(self._k(rel))

    def walk(self, rel: str = "") -> Iterator[Entry]:
        """Every file below, recursively, with names relative to this location (or `rel`)."""
        yield from self.backend.walk(self._k(rel))

    def listdir(self, rel: str = "") -> list[Entry]:
        """Immediate children: folders and files."""
        return sorted(self.backend.listdir(self._k(rel)), key=lambda e: (not e.is_dir, e.name))

    def copy_tree_to(self, dest: Location) -> int:
        """Copy every file below this location to `dest` (local or S3, either direction). Returns count."""
        count = 0
        with tempfile.TemporaryDirectory(prefix="dorl-copy-") as tmp:
            for entry in self.walk():
                inside(tmp, entry.name, what=f"the listing of {self.uri}: key")
                if self.is_local:
                    dest.upload(Path(self.key) / entry.name, entry.name)
                else:
                    local = Path(tmp) / "f"
                    self.download(entry.name, local)
                    dest.upload(local, entry.name)
                count += 1
        return count


# ---------------------------------------------------------------- local folders


class _Backend:
    def uri(self, key: str) -> str: ...
    def join(self, key: str, rel: str) -> str: ...
    def parent(self, key: str) -> str: ...
    def exists(self, key: str) -> bool: ...
    def read_bytes(self, key: str) -> bytes: ...
    def write_bytes(self, key: str, data: bytes) -> None: ...
    def upload(self, local: Path, key: str) -> None: ...
    def download(self, key: str, local: Path) -> None: ...
    def delete(self, key: str) -> None: ...
    def delete_tree(self, key: str) -> None: ...
    def walk(self, key: str) -> Iterator[Entry]: ...
    def listdir(self, key: str) -> list[Entry]: ...


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class _LocalBackend(_Backend):
    def uri(self, key):
        return key

    def join(self, key, rel):
        return str(Path(key) / rel)

    def parent(self, key):
        return str(Path(key).parent)

    def exists(self, key):
        return Path(key).exists()

    def read_bytes(self, key):
        try:
            return Path(key).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"no such file: {key}") from None
        except IsADirectoryError:
            raise StoreError(f"{key} is a folder, not a file") from None

    def write_bytes(self, key, data):
        atomic_write(Path(key), data)

    def upload(self, local, key):
        dest = Path(key)
        if dest.resolve() == local.resolve():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.copyfile(local, tmp)
        os.replace(tmp, dest)

    def download(self, key, local):
        if not Path(key).is_file():
            raise StoreError(f"no such file: {key}")
        self.upload(Path(key), str(local))

    def delete(self, key):
        with contextlib.suppress(FileNotFoundError):
            Path(key).unlink()

    def delete_tree(self, key):
        p = Path(key)
        if p.is_dir():
            shutil.rmtree(p)
        else:
            self.delete(key)

    def walk(self, key):
        root = Path(key)
        if not root.is_dir():
            return
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and not p.name.endswith(".tmp") and not _is_lock(rel):
                yield Entry(rel, False, p.stat().st_size)

    def listdir(self, key):
        root = Path(key)
        if not root.exists():
            raise StoreError(f"no such folder: {key}")
        if not root.is_dir():
            raise StoreError(f"{key} is a file, not a folder")
        out = []
        for p in root.iterdir():
            if p.name.endswith(LOCK_SUFFIX):
                continue
            try:
                out.append(Entry(p.name, p.is_dir(), 0 if p.is_dir() else p.stat().st_size))
            except OSError:  # a broken link, a file gone meanwhile (/proc, /dev/fd): not an artifact
                continue
        return out


# ---------------------------------------------------------------- S3


def _s3_client():
    import boto3
    from botocore.config import Config

    cfg = Config(
        retries={"mode": "standard", "max_attempts": _env_number("DORL_S3_MAX_ATTEMPTS", "8", int)},  # backoff
        connect_timeout=_env_number("DORL_S3_CONNECT_TIMEOUT", "10", float),
        read_timeout=_env_number("DORL_S3_READ_TIMEOUT", "60", float),
    )
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint is not None and not re.match(r"^https?://[^/\s]+", endpoint):
        raise StoreError(f"AWS_ENDPOINT_URL={endpoint!r} is not a URL (expected http(s)://host[:port])")
    # boto3 reads AWS_ENDPOINT_URL and the credential chain (env, profile, IRSA, instance role) itself.
    return boto3.session.Session().client("s3", config=cfg)


def _env_number(name: str, default: str, kind: type):
    raw = os.environ.get(name, default)
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not value > 0:
        raise StoreError(f"{name}={raw!r}: expected a positive {'integer' if kind is int else 'number'}")
    return value


def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    threshold = _env_number("DORL_S3_MULTIPART_THRESHOLD", str(64 * 2**20), int)
    return TransferConfig(
        multipart_threshold=threshold,
        multipart_chunksize=max(threshold, 5 * 2**20),
        max_concurrency=8,
        use_threads=True,
    )


# Throttling and server-side faults: retrying later can succeed (exit 75, not 2).
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "RequestLimitExceeded",
    "TooManyRequests",
    "429",
}


def _transient(e: Exception) -> bool:
    """A connection error, timeout or throttling (also when wrapped in boto3's S3UploadFailedError)."""
    from botocore.exceptions import ConnectionError, ConnectTimeoutError, HTTPClientError, ReadTimeoutError

    if isinstance(e, (ConnectionError, ConnectTimeoutError, ReadTimeoutError, HTTPClientError)):
        return True
    text = str(e)
    return any(c in text for c in _TRANSIENT_CODES) or "Could not connect" in text or "timed out" in text


class _S3Backend(_Backend):
    _clients: dict[int, object] = {}

    def __init__(self, bucket: str):
        self.bucket = bucket

    @property
    def client(self):
        # One client per process (clients are not fork-safe).
        pid = os.getpid()
        if pid not in self._clients:
            self._clients[pid] = _s3_client()
        return self._clients[pid]

    def uri(self, key):
        return f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"

    def join(self, key, rel):
        return f"{key}/{rel}" if key else rel

    def parent(self, key):
        return key.rsplit("/", 1)[0] if "/" in key else ""

    @contextlib.contextmanager
    def _errors(self, key: str, what: str):
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = self.uri(key)
        try:
            yield
        except NoCredentialsError:
            raise StoreError(
                f"{what} {where}: no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "a profile, or a role)"
            ) from None
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                raise StoreError(f"{what} {where}: bucket '{self.bucket}' does not exist") from None
            if code in ("NoSuchKey", "404", "NotFound"):
                raise StoreError(f"{what} {where}: no such object") from None
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StoreError(f"{what} {where}: access denied ({code})") from None
            if code in _TRANSIENT_CODES or str(code).startswith("5"):
                raise TransientStoreError(f"{what} {where}: S3 error {code} (transient): {e}") from None
            raise StoreError(f"{what} {where}: S3 error {code}: {e}") from None
        except (BotoCoreError, S3UploadFailedError) as e:
            if _transient(e):  # still failing after botocore's retries: exit 75, retried by the cluster
                raise TransientStoreError(f"{what} {where} (transient): {e}") from None
            raise StoreError(f"{what} {where}: {e}") from None

    def exists(self, key):
        with self._errors(key, "checking"):
            if self._head(key):
                return True
            resp = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1)
            return resp.get("KeyCount", 0) > 0

    def _head(self, key) -> bool:
        from botocore.exceptions import ClientError

        if not key:
            return False
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def read_bytes(self, key):
        with self._errors(key, "reading"):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def write_bytes(self, key, data):
        with self._errors(key, "writing"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def upload(self, local, key):
        with self._errors(key, "uploading to"):
            self.client.upload_file(str(local), self.bucket, key, Config=_transfer_config())

    def download(self, key, local):
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{os.getpid()}.tmp")
        with self._errors(key, "downloading"):
            self.client.download_file(self.bucket, key, str(tmp), Config=_transfer_config())
        os.replace(tmp, local)

    def delete(self, key):
        with self._errors(key, "deleting"):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete_tree(self, key):
        with self._errors(key, "deleting"):
            keys = [{"Key": self.join(key, e.name)} for e in self.walk(key)]
            for i in range(0, len(keys), 1000):
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys[i : i + 1000]})
            if self._head(key):
                self.client.delete_object(Bucket=self.bucket, Key=key)

    def walk(self, key):
        prefix = key.rstrip("/") + "/" if key else ""
        with self._errors(key, "listing"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    if not _is_lock(obj["Key"][len(prefix) :]):
                        yield Entry(obj["Key"][len(prefix) :], False, obj["Size"])

    def listdir(self, key):
        prefix = key.rstrip("/") + "/" if key else ""
        out = []
        with self._errors(key, "listing"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                out += [
                    Entry(p["Prefix"][len(prefix) :].rstrip("/"), True)
                    for p in page.get("CommonPrefixes", [])
                    if not p["Prefix"].rstrip("/").endswith(LOCK_SUFFIX)
                ]
                out += [Entry(o["Key"][len(prefix) :], False, o["Size"]) for o in page.get("Contents", [])]
        return out
