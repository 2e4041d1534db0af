"""`dorl data prepare|simulate|stats`: the data stage and its tools."""

from __future__ import annotations

import json

import click

from dorl.data import DATASETS
from dorl.options import config_options, force_option


@click.group("data")
def data() -> None:
    """Prepare ABCD / MultiWOZ 2.2 / Taskmaster-3 for training, simulate dialogues, show sizes."""


@data.command("prepare")
@click.option("--dataset", type=click.Choice(DATASETS), required=True, help="Which dataset to prepare.")
@click.option(
    "--source",
    type=click.Path(file_okay=False),
    help="Local copy of the raw files in the upstream layout (see README 'Data'); default: download and verify "
    "the public files (or data.source / data.simulate from the config).",
)
@click.option("--out", help="Output artifact URI (default: <root>/<run>/<dataset>/data).")
@click.option("--skip-bad", is_flag=True, help="Skip malformed dialogues (counted and listed in the manifest).")
@force_option
@config_options
def prepare_cmd(dataset: str, source: str | None, out: str | None, skip_bad: bool, force: bool, cfg) -> None:
    """Turn a dataset's raw files into (context, response) examples and conversations per split."""
    from dorl.data.prepare import prepare
    from dorl.layout import stage_uri

    if skip_bad:
        cfg.data.skip_bad = True
    art = prepare(cfg, dataset=dataset, source=source, out_uri=out or stage_uri(cfg, dataset, "data"), force=force)
    art = art.artifact
    counts = art.info.get("counts", {})
    summary = ", ".join(f"{s} {c['dialogues']} dialogues / {c['examples']} examples" for s, c in counts.items())
    click.echo(f"{art.uri}: {summary}")


@data.command("simulate")
@click.option("--format", "fmt", type=click.Choice(DATASETS), required=True, help="Raw format to write.")
@click.option("-n", "n", type=click.IntRange(min=1), required=True, help="Number of dialogues.")
@click.option("--seed", type=int, default=42, show_default=True, help="Same seed, same bytes.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder to write (upstream layout).")
def simulate_cmd(fmt: str, n: int, seed: int, out: str) -> None:
    """Write N synthetic dialogues in a dataset's raw format, for `prepare --source OUT`."""
    from dorl.data.simulate import simulate

    click.echo(simulate(fmt, n, seed, out))


@data.command("stats")
@click.argument("uri")
@click.option("--tokenizer", help="Count tokens with 'gpt2', an HF tokenizer id / folder or a model artifact URI.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def stats_cmd(uri: str, tokenizer: str | None, as_json: bool) -> None:
    """Dialogues, examples and token-length percentiles per split of a data artifact."""
    from rich.console import Console

    from dorl.data.stats import stats, table

    result = stats(uri, tokenizer)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        Console().print(table(result))
