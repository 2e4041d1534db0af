"""`dorl pipeline [--config FILE | --preset demo|paper] [--set …]`: the main job."""

from __future__ import annotations

import click

from dorl import methods as methods_
from dorl.options import config_options, force_option


@click.command("pipeline")
@click.option("--datasets", help="Comma-separated datasets (overrides pipeline.datasets).")
@click.option(
    "--methods",
    help=f"Comma-separated methods among {','.join(methods_.relabelled())} (overrides pipeline.methods).",
)
@click.option(
    "--seeds", help="Comma-separated training seeds of the methods, e.g. 0,1,2 (overrides pipeline.seeds; '' for none)."
)
@force_option
@config_options
def pipeline(datasets, methods, seeds, force, cfg) -> None:
    """Run data → tf → relabel → methods → evaluate → report, skipping completed stages; print the table.

    With seeds (--seeds 0,1,2 or pipeline.seeds), each method is trained and evaluated once per seed and
    the report gives the mean over seeds with intervals over examples and over seeds."""
    from dorl import config as cfglib
    from dorl import layout
    from dorl.pipeline import run

    if datasets or methods or seeds is not None:
        sets = []
        if datasets:
            sets.append(f"pipeline.datasets=[{datasets}]")
        if methods:
            sets.append(f"pipeline.methods=[{methods}]")
        if seeds is not None:
            sets.append(f"pipeline.seeds=[{seeds}]")
        data = cfglib.to_dict(cfg)
        cfg = cfglib.loader.build(cfglib.RunConfig, cfglib.merge(data, cfglib.loader.parse_sets(sets)))
    art = run(cfg, force=force)
    click.echo(art.read_bytes("results.md").decode())
    click.echo(f"report: {layout.report_uri(cfg)}  (results.md, results.csv, results.json, results.png)")
