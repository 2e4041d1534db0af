"""`dorl pipeline`: the whole experiment, in order, locally, every stage through the artifact store.

    for each dataset: data (simulated if data.simulate > 0) → tf → relabel → {tf_top, tf_all, dt, ilql}
                      → evaluate tf and each method
    then: report over every evaluation

Each stage goes through the stage runner, so a completed stage is skipped, a killed one resumes when
the pipeline is run again, and a stage whose configuration changed is refused unless --force.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.table import Table

from dorl import layout
from dorl.config import RunConfig
from dorl.errors import UserError
from dorl.log import live_view
from dorl.store import MANIFEST, Artifact, Location

log = logging.getLogger("dorl.pipeline")


@dataclass
class Step:
    name: str
    run: Callable[[], Artifact | None]
    out: str | None = None  # the artifact it writes
    status: str = "pending"
    seconds: float = 0.0
    note: str = ""
    artifact: Artifact | None = field(default=None, repr=False)


def plan(cfg: RunConfig, force: bool = False) -> list[Step]:
    from dorl.data.prepare import prepare
    from dorl.evaluate.stage import evaluate
    from dorl.relabel.stage import relabel
    from dorl.report.stage import report
    from dorl.train.stage import train

    steps: list[Step] = []
    evals: list[str] = []
    for ds in cfg.pipeline.datasets:
        uri = {s: layout.stage_uri(cfg, ds, s) for s in ("data", "tf", "relabel", *cfg.pipeline.methods)}
        steps.append(Step(f"{ds}: data", lambda ds=ds, u=uri: prepare(cfg, ds, u["data"], None, force), uri["data"]))
        steps.append(
            Step(f"{ds}: train tf", lambda u=uri: train(cfg, "tf", u["data"], u["tf"], None, force), uri["tf"])
        )
        steps.append(
            Step(
                f"{ds}: relabel",
                lambda u=uri: relabel(cfg, u["data"], u["tf"], u["relabel"], force=force),
                uri["relabel"],
            )
        )
        for m in cfg.pipeline.methods:
            steps.append(
                Step(f"{ds}: train {m}", lambda m=m, u=uri: train(cfg, m, u["relabel"], u[m], u["tf"], force), uri[m])
            )
        for m in ("tf", *cfg.pipeline.methods):
            out = layout.stage_uri(cfg, ds, f"eval/{m}")
            evals.append(out)
            steps.append(
                Step(
                    f"{ds}: evaluate {m}",
                    lambda m=m, u=uri, out=out: evaluate(cfg, m, u[m], u["data"], out, force),
                    out,
                )
            )
    steps.append(Step("report", lambda: report(cfg, evals, layout.report_uri(cfg), force), layout.report_uri(cfg)))
    return steps


def _digest(uri: str | None) -> str | None:
    """The manifest digest of a complete artifact at `uri`, else None."""
    if uri is None or not Location(uri).exists(MANIFEST):
        return None
    try:
        return Artifact(uri).digest
    except UserError:
        return None


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
    steps = plan(cfg, force)
    log.info("run %s → %s (%d stages)", cfg.run, layout.run_uri(cfg), len(steps))
    with live_view(_view(steps)) as live:
        for step in steps:
            step.status = "running"
            live.update(_view(steps))
            before, started = _digest(step.out), time.perf_counter()
            try:
                step.artifact = step.run()
            except BaseException:
                step.status = "failed"
                live.update(_view(steps))
                raise
            step.seconds = time.perf_counter() - started
            same = step.artifact is not None and before == step.artifact.digest
            step.status, step.note = ("skipped", "complete already") if same else ("done", "")
            live.update(_view(steps))
    return steps[-1].artifact
