"""`dorl models mirror|fetch`: Hub models through the artifact store, for clusters without the Hub;
`dorl models import|releases`: the reference's released checkpoints as dorl train artifacts."""

from __future__ import annotations

import os
from pathlib import Path

import click

from dorl.config.data import DATASETS
from dorl.models import reference
from dorl.options import config_options, force_option


@click.group("models")
def models() -> None:
    """Hub models as store artifacts: mirror once, fetch in every pod (no Hub access on the cluster); the
    reference's released checkpoints imported as dorl models."""


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
@click.option(
    "--need",
    "needed",
    multiple=True,
    metavar="HUB_ID",
    help="A model the caller needs: if the mirror lacks it, fail at once (exit 2) naming it, before copying.",
)
def fetch_cmd(uri: str, cache: str | None, needed: tuple[str, ...]) -> None:
    """Copy every mirrored model into the HF cache, so from_pretrained(<hub id>) works with HF_HUB_OFFLINE=1."""
    from dorl.log import console
    from dorl.models.mirror import fetch

    if cache is None:
        cache = os.environ.get("HF_HUB_CACHE") or str(Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    ids = fetch(uri, Path(cache).expanduser(), need=needed)
    console.print(f"{len(ids)} models in {cache}: {', '.join(ids)}")


@models.command("import")
@click.option(
    "--method",
    required=True,
    type=click.Choice(reference.METHODS),
    help="The released model's method (sets its prompting; must agree with its name).",
)
@click.option(
    "--from",
    "source",
    required=True,
    metavar="ZIP|FOLDER|URL|NAME",
    help="The release: a local zip or Trainer output folder, an http(s) URL, or a released name (fetched from "
    "models.release_base_url).",
)
@click.option("--out", "out_uri", required=True, help="Output train artifact URI (local folder or s3://bucket/prefix).")
@click.option(
    "--dataset",
    type=click.Choice(DATASETS),
    default=None,
    help="The dataset it was trained on (default: the name's; must agree with it).",
)
@click.option("--sha256", default=None, help="The archive's expected sha256 (the reference publishes none).")
@config_options
@force_option
def import_cmd(cfg, method: str, source: str, out_uri: str, dataset: str | None, sha256: str | None, force: bool):
    """Import a reference release (a Trainer output folder, zipped) as a `train/<method>` artifact, checked first:
    safe members, weights without code, the 15 special tokens in order, embeddings sized to the tokenizer.

    \b
    dorl models import --method dt --from abcd-distilgpt2-dt-lr5e-4-bs4-epoch10-ws0-gas1-4gpu.zip \\
        --out runs/released/abcd/train/dt
    dorl evaluate --method dt --model runs/released/abcd/train/dt --data runs/demo/abcd/data \\
        --out runs/released/abcd/evaluate/dt
    """
    from transformers.utils import logging as hf_logging

    from dorl import methods
    from dorl.log import console
    from dorl.models import released

    hf_logging.disable_progress_bar()  # "Loading weights", "Writing model shards": one small model, said below
    src = reference.locate(source, cfg.models.release_base_url)
    archive = src.path
    if src.kind == "url":
        archive = _download(src, sha256, cfg.data.download_timeout)
    m = methods.get(method, cfg)
    result = released.import_release(
        src,
        archive,
        out_uri,
        method=method,
        dataset=dataset,
        sha256=sha256,
        prompt=m.prompt,
        prompt_tokens=cfg.eval.prompt_tokens,
        max_new_tokens=cfg.eval.max_new_tokens,
        force=force,
    )
    info = result.artifact.info
    console.print(
        f"{src.name}: {result.artifact.uri} (train/{method}, {info['dataset']}, "
        f"{'already there' if result.skipped else 'imported'})"
    )


def _download(src, sha256: str | None, timeout: float) -> Path:
    """A URL's archive in the cache: fetched (resumed, verified against --sha256 when given) unless there."""
    from dorl.data.download import download
    from dorl.models.released import sha256_file

    path = reference.cache_path(src)
    if path.is_file() and (sha256 is None or sha256_file(path) == sha256.lower()):
        return path  # a whole earlier download (only complete files are renamed into place)

    def check(got) -> str | None:
        return None if sha256 is None or got.sha256 == sha256.lower() else f"has sha256 {got.sha256}, not {sha256}"

    download(
        src.url,
        path,
        what=f"release {src.name}",
        check=check,
        hint="offline? give a local copy: --from FILE.zip or FOLDER, or set models.release_base_url to a mirror",
        timeout=timeout,
    )
    return path


@models.command("releases")
@config_options
def releases_cmd(cfg) -> None:
    """The reference's released checkpoints (its README) and where `dorl models import --from NAME` fetches them."""
    for name in reference.RELEASES:
        click.echo(f"{name}\t{reference.release_url(name, cfg.models.release_base_url)}")
