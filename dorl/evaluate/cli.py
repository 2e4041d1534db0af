"""`dorl evaluate --method M --model URI --data URI --out URI`."""

from __future__ import annotations

import json

import click

from dorl import methods
from dorl.options import config_options, force_option


@click.command("evaluate")
@click.option(
    "--method",
    required=True,
    type=click.Choice(methods.evaluated()),
    help="How the model was trained (sets the prompting and decoding); ilql_scorer: re-rank --candidates-from's "
    "responses by the ILQL model's V.",
)
@click.option("--model", "model_uri", required=True, help="Model artifact (train/<method>; ilql_scorer: train/ilql).")
@click.option(
    "--candidates-from",
    "candidates_uri",
    default=None,
    help="ilql_scorer: the model whose greedy + beam responses are re-ranked (train/dt, tf, tf_top or tf_all).",
)
@click.option("--data", "data_uri", required=True, help="Data artifact (its test split is evaluated).")
@click.option("--out", "out_uri", required=True, help="Output artifact URI.")
@force_option
@config_options
def evaluate(method, model_uri, candidates_uri, data_uri, out_uri, force, cfg) -> None:
    """Generate responses for a random sample of test contexts and score them (BERTScore, METEOR, BLEU, BLEURT)."""
    from dorl.evaluate.stage import evaluate as run

    art = run(
        cfg,
        method=method,
        model_uri=model_uri,
        data_uri=data_uri,
        out_uri=out_uri,
        candidates_uri=candidates_uri,
        force=force,
    ).artifact
    click.echo(json.dumps(art.json("metrics.json"), indent=2))
