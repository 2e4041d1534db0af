"""`dorl models mirror|fetch`: Hub models through the artifact store, for clusters without the Hub."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.group("models")
def models() -> None:
    """Hub models as store artifacts: mirror once, fetch in every pod (no Hub access on the cluster)."""


@models.command("mirror")
@click.argument("names", nargs=-1, required=True)
@click.option("--out", required=True, help="Store folder of the mirror (s3://bucket/models or a local folder).")
@click.option("--force", is_flag=True, help="Replace a mirrored model that differs.")
def mirror_cmd(names: tuple[str, ...], out: str, force: bool) -> None:
    """Store each model NAME (a Hub id, from the Hub or the local HF cache) or NAME=FOLDER (a local
    save_pretrained folder, stored under the Hub id NAME) as an artifact under OUT."""
    from dorl.log import console
    from dorl.models.mirror import mirror

    for item in names:
        hub_id, _, folder = item.partition("=")
        art = mirror(hub_id, out, folder or None, force=force)
        console.print(f"{hub_id}: {art.uri} ({len(art.files)} files)")


@models.command("fetch")
@click.option("--from", "uri", required=True, help="The mirror (`dorl models mirror --out`).")
@click.option(
    "--cache",
    type=click.Path(file_okay=False),
    default=None,
    help="HF hub cache to fill (default: HF_HUB_CACHE, else HF_HOME/hub).",
)
def fetch_cmd(uri: str, cache: str | None) -> None:
    """Copy every mirrored model into the HF cache, so from_pretrained(<hub id>) works with HF_HUB_OFFLINE=1."""
    from dorl.log import console
    from dorl.models.mirror import fetch

    if cache is None:
        cache = os.environ.get("HF_HUB_CACHE") or str(Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    ids = fetch(uri, Path(cache).expanduser())
    console.print(f"{len(ids)} models in {cache}: {', '.join(ids)}")
