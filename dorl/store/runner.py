"""The stage runner: every command gets the same skip / refuse / resume / commit behaviour.

    result = run_stage("relabel", out_uri, config_dict, {"data": data_art, "model": tf_art}, body)

- The output already holds a complete artifact of this stage made from the same config and the
  same input manifests: nothing runs (`result.skipped`).
- It holds one made differently: refused with a `StoreError` naming what differs, unless `force`.
- Otherwise `body(ctx)` writes files under `ctx.out.dir` and fills `ctx.info` / `ctx.metrics`;
  the runner then commits (files, then manifest). A pending marker records which config the
  unfinished output belongs to: re-running with the same config resumes (checkpoints, finished
  chunks stay); a different config first clears the unfinished leftovers.

All of it runs under leases (dorl/store/lease.py): the output for writing, every input for reading, from
before the output is looked at until after the commit. A second process on the same output waits for the
first (then skips or refuses as above) or fails with one line after DORL_LOCK_WAIT; an input whose manifest
was replaced after the stage opened it is refused (exit 75), so a manifest never names an input the stage did
not read, and no input is replaced while the stage reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dorl.errors import StoreError, TransientStoreError
from dorl.store import lease
from dorl.store.artifact import MANIFEST, PENDING, Artifact, ArtifactWriter, base_manifest, digest
from dorl.store.location import atomic_write

log = logging.getLogger("dorl.stage")


@dataclass
class StageContext:
    stage: str
    out: ArtifactWriter
    config: dict
    inputs: dict[str, Artifact]
    info: dict = field(default_factory=dict)  # stage facts for the manifest (counts, identities, …)
    metrics: dict = field(default_factory=dict)  # throughput and timings for the manifest
    exclude: tuple[str, ...] = ("checkpoints/",)  # files kept out of the manifest


@dataclass
class StageResult:
    artifact: Artifact
    skipped: bool


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _differences(old: dict, new: dict) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    return [k for k in sorted(set(a) | set(b)) if a.get(k, "<unset>") != b.get(k, "<unset>")]


def _fingerprint(stage: str, config: dict, inputs: dict[str, Artifact]) -> dict:
    return {
        "stage": stage,
        "config_digest": digest(config),
        "inputs": {k: a.digest for k, a in sorted(inputs.items())},
    }


def run_stage(
    stage: str,
    out: str,
    config: dict,
    inputs: dict[str, Artifact],
    body: Callable[[StageContext], None],
    force: bool = False,
    keep: tuple[str, ...] = (),
) -> StageResult:
    """`keep`: top-level folders of the output that replacing or clearing it leaves alone (nested artifacts)."""
    with writing(out):
        writer = ArtifactWriter(out)
    with contextlib.ExitStack() as held:
        with writing(out):
            leases = [held.enter_context(lease.hold(writer.loc, write=True, stage=stage))]
        for name in sorted(inputs):
            leases.append(held.enter_context(lease.hold(inputs[name].loc, write=False, stage=stage)))
        _check_inputs(inputs)
        return _run(stage, out, writer, config, inputs, body, force, keep, leases)


@contextlib.contextmanager
def writing(out: str):
    """The runner's own writes (the folder, the lease, the pending marker, clearing, the commit): a folder that
    cannot be written (read-only, no permission, a file in the way, a full disk) is one line naming it, exit 2."""
    try:
        yield
    except OSError as e:
        where = e.filename or out
        raise StoreError(f"cannot write the artifact {out}: {where}: {e.strerror or e}") from None


def _check_inputs(inputs: dict[str, Artifact]) -> None:
    """Each input's manifest is still the one the stage opened (and read files against): now that it is held
    for reading nobody can replace it until the commit, so the manifest records what the stage read."""
    for name, art in sorted(inputs.items()):
        try:
            now = hashlib.sha256(art.loc.read_bytes(MANIFEST)).hexdigest()
        except TransientStoreError:
            raise
        except StoreError:
            now = None
        if now != art.digest:
            raise TransientStoreError(
                f"input '{name}' {art.uri} was replaced by another process after this stage opened it "
                f"({'removed' if now is None else 'a new manifest'}): run again to read the new one"
            )


def _run(stage, out, writer, config, inputs, body, force, keep, leases) -> StageResult:
    want = _fingerprint(stage, config, inputs)

    if writer.loc.exists(MANIFEST):
        try:
            existing = Artifact(writer.loc)
        except TransientStoreError:
            raise  # S3 unreachable or throttling: exit 75 (retried), not a broken artifact
        except StoreError as e:
            if not force:
                raise StoreError(f"{e}; use --force to replace it") from None
            existing = None
        if existing is not None:
            have = {
                "stage": existing.stage,
                "config_digest": digest(existing.config),
                "inputs": {k: v.get("manifest_sha256") for k, v in sorted(existing.manifest.get("inputs", {}).items())},
            }
            if have == want:
                log.info("%s: %s is complete for this config and these inputs: skipped", stage, out)
                return StageResult(existing, skipped=True)
            if not force:
                what = []
                if have["stage"] != stage:
                    what.append(f"stage '{have['stage']}' vs '{stage}'")
                diff = _differences(existing.config, config)
                if diff:
                    what.append("config keys " + ", ".join(diff[:8]) + (" …" if len(diff) > 8 else ""))
                if have["inputs"] != want["inputs"]:
                    what.append("input artifacts")
                raise StoreError(
                    f"{out} already holds a complete '{existing.stage}' artifact that differs ({'; '.join(what)}); "
                    "use --force to replace it, or choose another output"
                )
        log.warning("%s: --force: replacing %s", stage, out)
        with writing(out):
            writer.clear(keep)
    else:
        pending = _read_pending(writer)
        with writing(out):
            if pending is not None and pending != want:
                log.warning("%s: %s holds unfinished output of a different config: clearing it", stage, out)
                writer.clear(keep)
            elif pending is not None:
                log.info("%s: resuming unfinished output in %s", stage, out)
            _check_working_copy(writer, pending, want, keep)

    blob = json.dumps(want, indent=2).encode()
    with writing(out):
        writer.loc.write_bytes(PENDING, blob)
        if not writer.loc.is_local:  # the local working copy says which config it belongs to, too
            atomic_write(writer.dir / PENDING, blob)
    ctx = StageContext(stage=stage, out=writer, config=config, inputs=inputs)
    started = time.time()
    body(ctx)
    manifest = base_manifest(stage, config, inputs, started)
    manifest["info"] = ctx.info
    manifest["metrics"] = ctx.metrics
    for held in leases:
        held.check()  # S3: still ours (a lease whose renewals failed for a TTL may have been taken over)
    with writing(out):
        writer.commit(manifest, exclude=ctx.exclude)
    log.info("%s: committed %s (%.1f s)", stage, out, manifest["wall_time_s"])
    return StageResult(Artifact(writer.loc), skipped=False)


def _check_working_copy(writer: ArtifactWriter, pending: dict | None, want: dict, keep: tuple[str, ...]) -> None:
    """An S3 output's local working copy (checkpoints, finished chunks) is only resumed from when it belongs to
    the unfinished output S3 holds for this very config: its own pending marker must equal S3's and `want`.
    Otherwise (S3's objects deleted, another config's leftovers, a copy from before markers) it is cleared, so a
    run never continues from another config's checkpoint."""
    if writer.loc.is_local or not writer.dir.is_dir():
        return
    local = writer.dir / PENDING
    try:
        mine = json.loads(local.read_bytes()) if local.exists() else None
    except ValueError:
        mine = {}
    leftovers = [p for p in writer.dir.iterdir() if p.name not in {k.strip("/") for k in keep}]
    if leftovers and not (mine == pending == want):
        log.warning(
            "%s: the local working copy %s does not belong to the unfinished output in the store (%s): clearing it",
            writer.uri, writer.dir, "none there" if pending is None else "another config" if pending != want else
            "no marker of its own",
        )  # fmt: skip
        for p in leftovers:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def _read_pending(writer: ArtifactWriter) -> dict | None:
    if not writer.loc.exists(PENDING):
        return None
    try:
        return json.loads(writer.loc.read_bytes(PENDING))
    except (StoreError, ValueError):
        return {}
