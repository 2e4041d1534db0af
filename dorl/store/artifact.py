"""Artifacts: folders in the store whose `manifest.json`, written last, marks them complete.

`Artifact(uri)` reads a complete artifact and verifies every file against the sha256 in its
manifest. `ArtifactWriter(uri)` gives a stage a local folder to write into and commits it: files
first, the manifest last, so a killed writer never leaves something that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from dorl import __version__
from dorl.errors import IntegrityError, StoreError
from dorl.store.location import LOCK_SUFFIX, Location, atomic_write, inside

MANIFEST = "manifest.json"
PENDING = ".dorl-pending.json"
FORMAT = "dorl.manifest/1"

# Libraries whose versions every manifest records.
TRACKED = (
    "torch",
    "transformers",
    "tokenizers",
    "datasets",
    "deepspeed",
    "bert-score",
    "sacrebleu",
    "nltk",
    "pandas",
    "pyarrow",
    "numpy",
)


def digest(data) -> str:
    """A stable sha256 of JSON-able data (sorted keys): used to compare configs."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def sha256_file(path: Path, chunk: int = 2**20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    out = {"dorl": __version__, "python": platform.python_version()}
    for name in TRACKED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def cache_root() -> Path:
    return Path(os.environ.get("DORL_CACHE", Path.home() / ".cache" / "dorl"))


def _cache_dir(loc: Location, kind: str) -> Path:
    """A local folder mirroring an S3 location (for downloads or as a stage's working folder)."""
    bucket = loc.backend.bucket  # type: ignore[attr-defined]
    return cache_root() / kind / bucket / loc.key


def _check_entry(manifest: str, name, entry) -> None:
    """A manifest's file entry: a relative path that stays inside the artifact, a size and a sha256."""
    try:
        inside("/", name)  # a plain relative key: no '..', no leading '/', no empty segments
        ok = "\\" not in name
    except StoreError:
        ok = False
    if not ok:
        raise StoreError(f"{manifest}: files entry {name!r} is not a path inside the artifact folder")
    if not (isinstance(entry, dict) and isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str)):
        raise StoreError(f"{manifest}: files entry {name!r} needs an integer size and a sha256")


def _check_shape(manifest: str, data: dict) -> None:
    """The sections every reader uses have the types they are read as (a manifest is data from the store)."""
    if not isinstance(data.get("stage", ""), str):
        raise StoreError(f"{manifest}: 'stage' must be a string")
    for key in ("config", "info", "metrics", "inputs"):
        if not isinstance(data.get(key, {}), dict):
            raise StoreError(f"{manifest}: '{key}' must be an object")
    for name, entry in data.get("inputs", {}).items():
        if not (isinstance(entry, dict) and all(isinstance(entry.get(k, ""), str) for k in ("uri", "manifest_sha256"))):
            raise StoreError(
                f"{manifest}: inputs entry {name[:80]!r} must be an object with a uri and a manifest_sha256"
            )


def _check_tree(manifest: str, files: dict) -> None:
    """The entries fit in one folder: no name is a file and also the folder of another ('x' and 'x/y': S3 keys can
    be both, a file system cannot hold them, so no pull or local copy could)."""
    for name in files:
        parts = name.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in files:
                raise StoreError(f"{manifest}: files entry {folder!r} is a file and also the folder of {name!r}")


class Artifact:
    """A complete artifact: its manifest and verified access to its files."""

    def __init__(self, uri: str | Location, expect_stage: str | None = None):
        self.loc = uri if isinstance(uri, Location) else Location(uri)
        if self.loc.is_local and Path(self.loc.key).is_file():
            raise StoreError(f"{self.loc.uri} is a file, not an artifact folder (a folder holding {MANIFEST})")
        try:
            raw = self.loc.read_bytes(MANIFEST)
        except StoreError:
            if self.loc.exists():
                raise StoreError(
                    f"{self.loc.uri} is not a complete artifact: it has no {MANIFEST} (its stage did not finish; "
                    "run that stage again)"
                ) from None
            raise StoreError(f"no artifact at {self.loc.uri}") from None
        try:
            self.manifest = json.loads(raw)
            if not isinstance(self.manifest, dict):
                raise ValueError(f"not a {FORMAT} manifest (a JSON {type(self.manifest).__name__}, not an object)")
            if self.manifest.get("format") != FORMAT or not isinstance(self.manifest.get("files"), dict):
                raise ValueError(f"not a {FORMAT} manifest")
        except ValueError as e:
            raise StoreError(f"{self.loc.uri}/{MANIFEST} is unreadable: {e}") from None
        except RecursionError:
            raise StoreError(f"{self.loc.uri}/{MANIFEST} is unreadable: JSON nested too deeply") from None
        _check_shape(f"{self.loc.uri}/{MANIFEST}", self.manifest)
        for name, entry in self.manifest["files"].items():
            _check_entry(f"{self.loc.uri}/{MANIFEST}", name, entry)
        _check_tree(f"{self.loc.uri}/{MANIFEST}", self.manifest["files"])
        self.digest = hashlib.sha256(raw).hexdigest()
        if expect_stage and self.stage != expect_stage:
            raise StoreError(f"{self.loc.uri} holds a '{self.stage}' artifact, expected '{expect_stage}'")
        self._verified: set[str] = set()

    @property
    def uri(self) -> str:
        return self.loc.uri

    @property
    def stage(self) -> str:
        return self.manifest.get("stage", "")

    @property
    def config(self) -> dict:
        return self.manifest.get("config", {})

    @property
    def info(self) -> dict:
        return self.manifest.get("info", {})

    @property
    def files(self) -> dict[str, dict]:
        return self.manifest["files"]

    def _entry(self, name: str) -> dict:
        if name not in self.files:
            raise StoreError(f"{self.uri} has no file {name!r} (files: {', '.join(sorted(self.files)) or 'none'})")
        return self.files[name]

    def read_bytes(self, name: str) -> bytes:
        entry = self._entry(name)
        if self.loc.is_local:  # a symlink in the folder must not lead the read outside it
            inside(self.loc.key, name, resolve=True, what=f"{self.uri}/{MANIFEST} entry")
        data = self.loc.read_bytes(name)
        if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise IntegrityError(f"{self.uri}/{name}: content does not match the sha256 in its manifest")
        return data

    def path(self, name: str) -> Path:
        """A verified local path of one file (downloaded into the cache for S3)."""
        entry = self._entry(name)
        if self.loc.is_local:
            local = inside(self.loc.key, name, resolve=True, what=f"{self.uri}/{MANIFEST} entry")
            if not local.is_file():
                raise IntegrityError(f"{self.uri}/{name} is listed in the manifest but missing")
        else:
            local = inside(_cache_dir(self.loc, "artifacts"), name, what=f"{self.uri}/{MANIFEST} entry")
            cached = local.is_file() and local.stat().st_size == entry["size"]
            if cached and sha256_file(local) == entry["sha256"]:
                return local  # a verified copy from an earlier download
            self.loc.download(name, local)
            self._verified.discard(name)
        if name not in self._verified:
            if local.stat().st_size != entry["size"] or sha256_file(local) != entry["sha256"]:
                raise IntegrityError(f"{self.uri}/{name}: content does not match the sha256 in its manifest")
            self._verified.add(name)
        return local

    def local_dir(self) -> Path:
        """A local folder holding every file of the artifact, verified (e.g. for from_pretrained)."""
        for name in self.files:
            self.path(name)
        return Path(self.loc.key) if self.loc.is_local else _cache_dir(self.loc, "artifacts")

    def json(self, name: str):
        return json.loads(self.read_bytes(name))


class ArtifactWriter:
    """A stage's output: write files under `.dir`, then `commit()`.

    Locally `.dir` is the artifact folder itself; for S3 it is a cache folder that `commit()`
    (and `sync()` for checkpoints) uploads.
    """

    def __init__(self, uri: str | Location):
        self.loc = uri if isinstance(uri, Location) else Location(uri)
        self.dir = Path(self.loc.key) if self.loc.is_local else _cache_dir(self.loc, "work")
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def uri(self) -> str:
        return self.loc.uri

    def path(self, name: str) -> Path:
        """Local path for a file of this artifact (parent folders created)."""
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def sync(self, prefix: str) -> None:
        """Upload the files under `prefix` (e.g. a finished checkpoint) so another pod can resume."""
        if self.loc.is_local:
            return
        root = self.dir / prefix
        for p in sorted(root.rglob("*")) if root.is_dir() else []:
            if p.is_file():
                self.loc.upload(p, p.relative_to(self.dir).as_posix())

    def pull(self, prefix: str) -> None:
        """Download the store's files under `prefix` into `.dir` (resume on a fresh machine)."""
        if self.loc.is_local:
            return
        for entry in self.loc.walk(prefix):
            local = inside(self.dir / prefix, entry.name, what=f"the listing of {self.loc.uri}/{prefix}: key")
            if not (local.is_file() and local.stat().st_size == entry.size):
                self.loc.download(f"{prefix}/{entry.name}", local)

    def remove(self, prefix: str) -> None:
        """Delete files under `prefix` locally and in the store."""
        import shutil

        target = self.dir / prefix
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        if not self.loc.is_local:
            self.loc.delete_tree(prefix)

    def clear(self, keep: tuple[str, ...] = ()) -> None:
        """Remove the whole artifact: the manifest first, so it stops counting as complete at once.

        `keep`: top-level folders left in place (e.g. "shards/": artifacts of their own nested inside)."""
        import shutil

        self.loc.delete(MANIFEST)
        names = {k.strip("/") for k in keep}
        if not names:
            self.loc.delete_tree()
            if not self.loc.is_local:
                shutil.rmtree(self.dir, ignore_errors=True)
        else:
            for entry in self.loc.listdir() if self.loc.exists() else []:
                if entry.name in names:
                    continue
                if entry.is_dir:
                    self.loc.delete_tree(entry.name)
                else:
                    self.loc.delete(entry.name)
            if not self.loc.is_local and self.dir.is_dir():
                for p in self.dir.iterdir():
                    if p.name in names:
                        continue
                    if p.is_dir():
                        shutil.rmtree(p)
                    else:
                        p.unlink()
        self.dir.mkdir(parents=True, exist_ok=True)

    def files(self, exclude: tuple[str, ...]) -> list[str]:
        names = []
        for p in sorted(self.dir.rglob("*")):
            rel = p.relative_to(self.dir).as_posix()
            if not p.is_file() or rel in (MANIFEST, PENDING) or p.name.endswith((".tmp", LOCK_SUFFIX)):
                continue
            if any(rel == e.rstrip("/") or rel.startswith(e.rstrip("/") + "/") for e in exclude):
                continue
            names.append(rel)
        return names

    def commit(self, manifest: dict, exclude: tuple[str, ...] = ("checkpoints/",)) -> dict:
        """Hash and upload every file (but `exclude`), then write the manifest: the commit point."""
        files = {}
        for name in self.files(exclude):
            p = self.dir / name
            files[name] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
            if not self.loc.is_local:
                self.loc.upload(p, name)
        manifest = {"format": FORMAT, **manifest, "files": files}
        blob = json.dumps(manifest, indent=2, sort_keys=False, default=str).encode()
        if self.loc.is_local:
            atomic_write(self.dir / MANIFEST, blob)
        else:
            self.loc.write_bytes(MANIFEST, blob)
        self.loc.delete(PENDING)
        if not self.loc.is_local:
            (self.dir / PENDING).unlink(missing_ok=True)
        return manifest


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def base_manifest(stage: str, config: dict, inputs: dict[str, Artifact], started: float) -> dict:
    return {
        "stage": stage,
        "created": now_iso(),
        "config": config,
        "inputs": {k: {"uri": a.uri, "manifest_sha256": a.digest, "stage": a.stage} for k, a in inputs.items()},
        "versions": library_versions(),
        "host": {"platform": platform.platform(), "python": sys.version.split()[0]},
        "wall_time_s": round(time.time() - started, 3),
    }
