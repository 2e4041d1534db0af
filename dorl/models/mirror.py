"""Mirror Hugging Face model folders into the artifact store, and fetch them back into an HF cache.

    <out>/<name with '/' as '--'>/   one artifact per model (stage 'model'): every file of the model folder,
                                     sha256s in its manifest.json; info: the Hub id and the source revision

`fetch` lays the files out as huggingface_hub's cache does (models--<org>--<name>/snapshots/<rev>/ and
refs/main), so with HF_HUB_OFFLINE=1 every `from_pretrained(<hub id>)` in dorl finds them without code
changes and without the Hub. The revision is the sha1 of the artifact's manifest: a new mirror is a new snapshot.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from dorl import log
from dorl.errors import StoreError
from dorl.store import Artifact, Location, run_stage

logger = log.get("dorl.models")
STAGE = "model"
SKIP = (".git", ".cache", ".gitattributes")


def check_hub_id(hub_id, where: str) -> str:
    """A Hub model id as the Hub allows it (huggingface_hub's own check: `name` or `org/name`, letters, digits,
    '-', '_', '.', no '--' or '..', at most 96 characters). It names a folder of the mirror and of the HF cache, so
    '.', '' or '../x' would write at the mirror's root or outside the cache."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        if not isinstance(hub_id, str):
            raise HFValidationError(f"expected a string, got {type(hub_id).__name__}")
        validate_repo_id(hub_id)
    except HFValidationError as e:
        first = " ".join(str(e).split())[:160]
        raise StoreError(f"{where}: {str(hub_id)[:100]!r} is not a Hub id (org/name): {first}") from None
    return hub_id


def artifact_name(hub_id: str) -> str:
    return hub_id.replace("/", "--")


def _source(hub_id: str, folder: str | None) -> tuple[Path, str]:
    """The local folder of a model and its revision: a folder given, or the Hub (or its local cache when
    HF_HUB_OFFLINE is set)."""
    if folder is not None:
        path = Path(folder)
        if not (path / "config.json").is_file():
            raise StoreError(f"models mirror {hub_id}={folder}: no config.json in that folder (not a model folder)")
        return path, "local"
    import huggingface_hub
    from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = huggingface_hub.snapshot_download(hub_id)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        raise StoreError(
            f"models mirror {hub_id}: not on the Hub or in the local HF cache ({type(e).__name__}); "
            f"give a local copy as {hub_id}=FOLDER"
        ) from None
    return Path(path), Path(path).name


def mirror(hub_id: str, out: str, folder: str | None = None, force: bool = False) -> Artifact:
    check_hub_id(hub_id, "models mirror: Hub id")
    src, revision = _source(hub_id, folder)
    files = sorted(p for p in src.rglob("*") if p.is_file() and not any(part in SKIP for part in p.parts))
    uri = f"{out.rstrip('/')}/{artifact_name(hub_id)}"

    def body(ctx):
        for p in files:
            rel = p.relative_to(src).as_posix()
            shutil.copyfile(p, ctx.out.path(rel))
        ctx.info.update({"hub_id": hub_id, "source_revision": revision, "files": len(files)})
        ctx.metrics["bytes"] = sum(p.stat().st_size for p in files)

    cfg = {"hub_id": hub_id, "sha256": {p.relative_to(src).as_posix(): _sha256(p) for p in files}}
    result = run_stage(STAGE, uri, cfg, {}, body, force=force)
    logger.info("%s -> %s (%d files%s)", hub_id, uri, len(files), ", already there" if result.skipped else "")
    return result.artifact


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(uri: str, cache: Path, need: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Every mirrored model under `uri` into the HF hub cache `cache`; returns their Hub ids. A Hub id in `need`
    that the mirror lacks is refused before anything is copied."""
    loc = Location(uri)
    names = [e.name for e in loc.listdir() if e.is_dir]
    if not names:
        raise StoreError(f"models fetch: no mirrored model under {uri} (run `dorl models mirror ... --out {uri}`)")
    missing = [hub_id for hub_id in need if artifact_name(hub_id) not in names]
    if missing:
        raise StoreError(
            f"models fetch: {uri} has no mirror of {', '.join(missing)}, which the run needs; add it where the Hub "
            f"is reachable: dorl models mirror {' '.join(missing)} --out {uri}"
        )
    out = []
    for name in sorted(names):
        art = Artifact(f"{uri.rstrip('/')}/{name}", expect_stage=STAGE)
        hub_id = check_hub_id(art.info.get("hub_id"), f"{art.uri}/manifest.json: info.hub_id")
        rev = hashlib.sha1(art.loc.read_bytes("manifest.json")).hexdigest()
        repo = cache / f"models--{artifact_name(hub_id)}"
        snap = repo / "snapshots" / rev
        if not (snap / ".complete").exists():
            tmp = repo / "snapshots" / f".{rev}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            for rel in art.files:
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(art.path(rel), dest)  # verified against the manifest's sha256
            (tmp / ".complete").write_text("")
            shutil.rmtree(snap, ignore_errors=True)
            tmp.rename(snap)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(rev)
        logger.info("%s: %s -> %s", hub_id, art.uri, snap)
        out.append(hub_id)
    return out
