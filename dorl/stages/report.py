"""`dorl report`: one table in the paper's shape from evaluation artifacts, with intervals, tests and a plot, and
`report.html` with every method's responses side by side."""

from __future__ import annotations

import json
import logging
import re
import time

import click

from dorl import csvsafe, readers
from dorl.config import RunConfig, to_dict
from dorl.errors import DataError, UserError
from dorl.options import config_options, force_option
from dorl.store import Artifact, StageResult, run_stage

log = logging.getLogger("dorl.report")
# A method or dataset name: what the registry and the data stage use. A manifest is data: anything else in it
# (markup, a template placeholder, a path) is refused before it reaches a file name, a table or the page.
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _load(uri: str) -> dict:
    from dorl.report.table import row_name

    art = Artifact(uri, expect_stage="evaluate")
    for key in ("method", "dataset"):
        if key not in art.info:
            raise DataError(f"{uri}/manifest.json: info has no '{key}'")
        value = art.info[key]
        if not (isinstance(value, str) and NAME.fullmatch(value)):
            raise DataError(
                f"{uri}/manifest.json: info.{key} {str(value)[:80]!r} is not a {key} name "
                "(lowercase letters, digits and '_', starting with a letter, at most 64)"
            )
    pred = csvsafe.read(art.path("predictions.csv"), keep_default_na=False)  # the raw text back
    return {
        "uri": uri,
        "artifact": art,
        "method": row_name(art.info),  # `dt`, or `dt (released)` for the reference's own checkpoint
        "dataset": art.info["dataset"],
        "predictions": pred,
    }


def report(cfg: RunConfig, *, eval_uris: list[str], out_uri: str, force: bool = False) -> StageResult:
    from dorl.report import html
    from dorl.report.markdown import markdown, reward_metrics
    from dorl.report.plot import plot, plot_dt_token
    from dorl.report.table import RELEASED, build, groups

    if not eval_uris:
        raise DataError("report: no evaluation artifacts given (--eval URI, one per method and dataset)")
    evals = [_load(u) for u in eval_uris]
    seen = set()
    for ev in evals:
        if ev["artifact"].uri in seen:
            raise DataError(f"{ev['uri']} is given twice: several evaluations of one method are seeds, one each")
        seen.add(ev["artifact"].uri)
    rc = cfg.report
    config = {"report": to_dict(rc), "click_threshold": cfg.eval.click_threshold}

    def body(ctx):
        table, stats = build(evals, rc, cfg.eval.click_threshold)
        found = checks(cfg, evals)
        md, note = markdown(table, stats, rc, found)
        ctx.out.path("results.md").write_text(md)
        csvsafe.write(table, ctx.out.path("results.csv"))
        ctx.out.path("results.json").write_text(
            json.dumps(
                {
                    "k": rc.k,
                    "baseline": rc.baseline,
                    "control": rc.control,
                    "confidence": rc.confidence,
                    "bootstrap": rc.bootstrap,
                    "statistics": stats,
                    "checks": found,
                    "rows": json.loads(table.to_json(orient="records")),
                },
                indent=2,
            )
        )
        plot(table, ctx.out.path("results.png"), rc.confidence, reward_metrics(found))
        if found["dt_token"]:
            plot_dt_token(found["dt_token"], ctx.out.path("dt_token.png"))
        started = time.perf_counter()
        html.write(table, note, evals, ctx.out.path("results.png"), ctx.out.path("report.html"), rc.k, rc.confidence)
        log.info(
            "report.html: %.1f kB in %.2f s",
            ctx.out.path("report.html").stat().st_size / 1e3,
            time.perf_counter() - started,
        )
        for warning in stats["warnings"]:
            log.warning("report: %s", warning)
        ctx.info.update(
            datasets=sorted({e["dataset"] for e in evals}),
            methods=sorted({e["method"] for e in evals}),
            rows=len(table),
            statistics={k: stats[k] for k in ("test", "resamples", "family", "exact_tests")},
        )

    # Seeds after the first get a suffix: a single-seed report's inputs keep their names.
    inputs = {
        f"eval_{d}_{m.replace(RELEASED, '_released')}" + (f"_{i}" if i else ""): e["artifact"]
        for (d, m), seeds in groups(evals).items()
        for i, e in enumerate(seeds)
    }
    return run_stage("report", out_uri, config, inputs, body, force=force)


# ---------------------------------------------------------------- what the reader needs besides the numbers


def _input(art: Artifact, name: str) -> Artifact | None:
    """The artifact `art` read as its input `name`, when its manifest names one that is still there."""
    uri = art.manifest.get("inputs", {}).get(name, {}).get("uri")
    if not uri:
        return None
    try:
        return Artifact(uri)
    except UserError:  # moved or deleted since: the check is left out, the numbers are not affected
        return None


def checks(cfg: RunConfig, evals: list[dict]) -> dict:
    """{"reward", "overlap", "dt_token"}, each {dataset: ...}, from the artifacts the evaluations read: the metric the
    methods were trained on (the relabel artifact's configuration), how much of the test data occurs verbatim in
    training (the data artifact, and the evaluated examples), and how often DT's response changes with its return
    token (its evaluation's generation statistics)."""
    from dorl.data.stats import overlap, verbatim

    out: dict = {"reward": {}, "overlap": {}, "dt_token": {}}
    for ev in evals:
        ds, art = ev["dataset"], ev["artifact"]
        model = _input(art, "model")
        relabel = _input(model, "data") if model is not None else None
        if ds not in out["reward"] and relabel is not None and relabel.stage == "relabel":
            rc, mc = relabel.config.get("relabel", {}), relabel.config.get("metrics", {})
            metric = rc.get("reward", "bertscore")
            out["reward"][ds] = {
                "metric": metric,
                "encoder": mc.get("bertscore_model") if metric == "bertscore" else None,
                "threshold": rc.get("threshold", cfg.relabel.threshold),
                "click_threshold": cfg.eval.click_threshold,
            }
        data = _input(art, "data")
        if ds not in out["overlap"] and data is not None and data.stage == "data":
            train = readers.read_parquet(data.path("examples/train.parquet"))
            pred = ev["predictions"]
            evaluated = verbatim(train["context"], train["response"], pred["context"], pred["true_response"])
            out["overlap"][ds] = {"data": overlap(data), "evaluated": evaluated}
        token = art.manifest.get("metrics", {}).get("generation", {}).get("return_token")
        if token:
            out["dt_token"].setdefault(ds, []).append(token)
    return out


# ---------------------------------------------------------------- the command


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
def report_cmd(evals, out, force, cfg) -> None:
    """Results table (markdown, CSV, JSON) with bootstrap intervals, paired tests against TF, and a plot."""

    art = report(cfg, eval_uris=list(evals), out_uri=out, force=force).artifact
    click.echo(art.read_bytes("results.md").decode())
