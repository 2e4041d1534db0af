"""`dorl pipeline`: the whole experiment, in order, locally, every stage through the artifact store.

The stages are the nodes of the run's stage graph (`dorl.stages.graph`: data, tf, relabel, each
method, their evaluations, the report). Each goes through the stage runner, so a completed stage is
skipped (its `StageResult` says so), a killed one resumes when the pipeline is run again, and a stage
whose configuration changed is refused unless --force.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import click
from rich.table import Table

from dorl import layout
from dorl import methods as methods_
from dorl.config import RunConfig
from dorl.errors import ConfigError
from dorl.log import live_view
from dorl.options import config_options, force_option
from dorl.stages.graph import Node, nodes
from dorl.store import Artifact

log = logging.getLogger("dorl.pipeline")


@dataclass
class Step:
    node: Node
    status: str = "pending"
    seconds: float = 0.0
    note: str = ""
    artifact: Artifact | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.node.title

    @property
    def out(self) -> str:
        return self.node.out


def plan(cfg: RunConfig) -> list[Step]:
    """The run's stages, in the stage graph's order."""
    return [Step(n) for n in nodes(cfg)]


def _view(steps: list[Step]) -> Table:
    icons = {
        "pending": "[dim]·[/]",
        "running": "[yellow]▶[/]",
        "done": "[green]✔[/]",
        "skipped": "[cyan]↷[/]",
        "failed": "[red]✘[/]",
    }
    table = Table(title="dorl pipeline", title_justify="left", expand=False)
    table.add_column("")
    table.add_column("stage")
    table.add_column("time", justify="right")
    table.add_column("")
    for s in steps:
        table.add_row(icons[s.status], s.name, f"{s.seconds:.1f} s" if s.seconds else "", s.note)
    return table


def run(cfg: RunConfig, force: bool = False) -> Artifact:
    """Run every stage in order; returns the report artifact."""
    steps = plan(cfg)
    log.info("run %s → %s (%d stages)", cfg.run, layout.run_uri(cfg), len(steps))
    with live_view(_view(steps)) as live:
        for step in steps:
            step.status = "running"
            live.update(_view(steps))
            started = time.perf_counter()
            try:
                result = step.node.run(cfg, force)
            except BaseException:
                step.status = "failed"
                live.update(_view(steps))
                raise
            step.seconds, step.artifact = time.perf_counter() - started, result.artifact
            step.status, step.note = ("skipped", "complete already") if result.skipped else ("done", "")
            live.update(_view(steps))
    return steps[-1].artifact


# ---------------------------------------------------------------- the command


@click.command("pipeline")
@click.option("--datasets", help="Comma-separated datasets (overrides pipeline.datasets).")
@click.option(
    "--methods",
    help=f"Comma-separated methods among {','.join(methods_.relabelled())} (overrides pipeline.methods).",
)
@click.option("--seeds", help="Comma-separated training seeds of the methods, e.g. 0,1,2 (overrides pipeline.seeds).")
@force_option
@config_options
def pipeline_cmd(datasets, methods, seeds, force, cfg) -> None:
    """Run data → tf → relabel → methods → evaluate → report, skipping completed stages; print the table.

    With seeds (--seeds 0,1,2 or pipeline.seeds), each method is trained and evaluated once per seed and
    the report gives the mean over seeds with intervals over examples and over seeds."""
    from dorl import config as cfglib
    from dorl import layout

    for option, value in (("--datasets", datasets), ("--methods", methods), ("--seeds", seeds)):
        if value is not None and not value.replace(",", "").strip():  # the same for all three: never "all" or "none"
            key = f"pipeline.{option[2:]}"
            raise ConfigError(f"{option} {value!r}: an empty list; leave {option} out to use {key}, or name some")
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
