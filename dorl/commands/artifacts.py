"""`dorl artifacts ls|show|cat|pull`: browse runs on disk or in S3, and copy an artifact out of the store."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from dorl.errors import StoreError
from dorl.store import lease
from dorl.store.artifact import MANIFEST, Artifact
from dorl.store.location import Location, check_key

out = Console()
log = logging.getLogger("dorl.artifacts")


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@click.group("artifacts")
def artifacts() -> None:
    """Browse the artifact store (a local folder or s3://bucket/prefix)."""


@artifacts.command("ls")
@click.argument("uri")
@click.option("-r", "--recursive", is_flag=True, help="Show every artifact below URI as a tree.")
def ls(uri: str, recursive: bool) -> None:
    """List URI: sub-folders with their stage and status, or an artifact's files."""
    loc = Location(uri)
    if recursive:
        tree = Tree(f"[bold]{loc.uri}")
        _tree(loc, tree, depth=0)
        out.print(tree)
        return
    if loc.exists(MANIFEST):
        art = Artifact(loc)
        table = Table(title=f"{loc.uri}  ({art.stage}, {art.manifest.get('created', '?')})")
        table.add_column("file")
        table.add_column("size", justify="right")
        table.add_column("sha256")
        for name, entry in sorted(art.files.items()):
            table.add_row(name, _human(entry["size"]), entry["sha256"][:12])
        out.print(table)
        return
    entries = loc.listdir()
    if not entries:
        raise StoreError(f"nothing at {loc.uri}")
    table = Table(title=loc.uri)
    table.add_column("name")
    table.add_column("kind")
    table.add_column("status / size")
    for e in entries:
        if not e.is_dir:
            table.add_row(e.name, "file", _human(e.size))
            continue
        child = loc / e.name
        status, kind = _status(child)
        table.add_row(e.name + "/", kind, status)
    out.print(table)


def _status(loc: Location) -> tuple[str, str]:
    if loc.exists(MANIFEST):
        try:
            art = Artifact(loc)
            return f"complete {art.manifest.get('created', '')}", art.stage
        except StoreError:
            return "[red]unreadable manifest", "artifact"
    if loc.exists(".dorl-pending.json"):
        return "[yellow]incomplete (unfinished stage)", "artifact"
    return "", "folder"


def _tree(loc: Location, node: Tree, depth: int) -> None:
    if depth > 6:
        return
    try:
        entries = loc.listdir()
    except OSError as e:  # a folder that cannot be read (permissions, /proc, a vanished file)
        node.add(f"[red]unreadable: {e.strerror or e}")
        return
    for e in entries:
        if not e.is_dir:
            continue
        try:
            child = loc / e.name
            status, kind = _status(child)
        except (OSError, StoreError):
            continue
        if kind == "folder":
            _tree(child, node.add(f"{e.name}/"), depth + 1)
        else:
            node.add(f"{e.name}/  [cyan]{kind}[/]  {status}")


@artifacts.command("show")
@click.argument("uri")
@click.option("--json", "as_json", is_flag=True, help="Print the raw manifest.")
def show(uri: str, as_json: bool) -> None:
    """Show an artifact's manifest: stage, config, inputs, files, versions, metrics."""
    art = Artifact(uri)
    m = art.manifest
    if as_json:
        click.echo(json.dumps(m, indent=2))
        return
    out.print(f"[bold]{art.uri}[/]")
    out.print(f"stage [cyan]{art.stage}[/]  created {m.get('created')}  wall time {m.get('wall_time_s')} s")
    out.print(f"manifest sha256 {art.digest}")
    if m.get("inputs"):
        t = Table(title="inputs")
        for col in ("name", "uri", "manifest sha256"):
            t.add_column(col)
        for k, v in m["inputs"].items():
            t.add_row(k, v["uri"], v["manifest_sha256"][:12])
        out.print(t)
    for section in ("info", "metrics"):
        if m.get(section):
            t = Table(title=section)
            t.add_column("key")
            t.add_column("value")
            for k, v in m[section].items():
                t.add_row(k, v if isinstance(v, str) else json.dumps(v)[:200])
            out.print(t)
    t = Table(title="files")
    for col in ("file", "size", "sha256"):
        t.add_column(col)
    for name, e in sorted(art.files.items()):
        t.add_row(name, _human(e["size"]), e["sha256"][:12])
    out.print(t)
    out.print("versions: " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()))
    out.print("config:")
    out.print_json(json.dumps(m.get("config", {})))


@artifacts.command("cat")
@click.argument("uri")
def cat(uri: str) -> None:
    """Print one file of a complete artifact (URI/FILE), verified against its manifest."""
    loc = Location(uri)
    parts: list[str] = []
    # Walk up from the file to the nearest folder holding a manifest.
    while True:
        if loc.exists(MANIFEST) and parts:
            break
        if loc.key in ("", "/") or loc.parent().key == loc.key or len(parts) > 32:
            raise StoreError(f"{uri} is not a file of a complete artifact (no {MANIFEST} found above it)")
        parts.insert(0, loc.name)
        loc = loc.parent()
    name = check_key("/".join(parts))
    data = Location(loc.uri).read_bytes(MANIFEST) if name == MANIFEST else Artifact(loc).read_bytes(name)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@artifacts.command("pull")
@click.argument("uri")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--eval", "eval_uri", help="An evaluation of this model: its metrics go into the copy's model card.")
def pull(uri: str, dest: str, eval_uri: str | None) -> None:
    """Copy the artifact URI (local or S3) to the new local folder DEST, every file verified against the
    manifest's sha256 (a trained model: ready for `from_pretrained(DEST)`)."""
    from dorl.model_folder import pull as run

    folder = _pull(uri, Path(dest), lambda: run(uri, Path(dest), eval_uri))
    click.echo(f"{uri} -> {folder}")


def _pull(uri: str, dest: Path, copy) -> Path:
    """Around the copy: a destination inside the source artifact is refused (it would write into a committed
    artifact); the destination is leased (two pulls into one folder take turns), so the partial folders a killed
    pull left beside it (`.<name>.partial-*`) are nobody's and are removed; a folder that cannot be written is
    one line naming it."""
    src = Location(uri)
    if src.is_local:
        root, target = Path(src.key).resolve(), dest.expanduser().resolve()
        if target == root or root in target.parents:
            raise StoreError(f"{dest} is inside the artifact {uri}: pull into a folder outside it")
    try:
        dest.expanduser().absolute().parent.mkdir(parents=True, exist_ok=True)
        with lease.hold(Location(str(dest)), write=True, stage="pull"):
            for stale in dest.expanduser().absolute().parent.glob(f".{dest.name}.partial-*"):
                log.warning("removing %s, left by a pull that did not finish", stale)
                shutil.rmtree(stale, ignore_errors=True)
            return copy()
    except OSError as e:
        raise StoreError(f"cannot pull into {dest}: {e.filename or dest}: {e.strerror or e}") from None
