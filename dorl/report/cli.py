"""`dorl report --eval URI … --out URI`."""

from __future__ import annotations

import click

from dorl.options import config_options, force_option


@click.command("report")
@click.option(
    "--eval",
    "evals",
    multiple=True,
    required=True,
    metavar="URI",
    help="An evaluation artifact (repeat for every method and dataset).",
)
@click.option("--out", required=True, help="Output artifact URI.")
@force_option
@config_options
def report(evals, out, force, cfg) -> None:
    """Results table (markdown, CSV, JSON) with bootstrap intervals, paired tests against TF, and a plot."""
    from dorl.report.stage import report as run

    art = run(cfg, eval_uris=list(evals), out_uri=out, force=force).artifact
    click.echo(art.read_bytes("results.md").decode())
