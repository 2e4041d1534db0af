"""`dorl evaluate`: responses to a fixed random sample of test contexts, scored against the human ones.

Response 1 is greedy; responses 2..N (eval.num_responses > 1) come from beam search (ILQL: value-re-ranked
samples). Each method prompts and decodes as its module says (`Method.prompt`, `Method.respond`): DT asks
for its top return, ILQL decodes with beta·(min target-Q − V). Outputs `predictions.csv` (dialogue_id,
turn_index, context, true_response, then response_k and {metric}_k for each k) and `metrics.json` (best-of-k
means for every k, bert_click).
"""

from __future__ import annotations

import json
import logging
import time

import click

from dorl import csvsafe, methods, readers
from dorl import log as dlog
from dorl.config import RunConfig, to_dict
from dorl.errors import ConfigError, DataError
from dorl.generate import DecodeConfig
from dorl.options import config_options, force_option
from dorl.store import Artifact, StageResult, run_stage

log = logging.getLogger("dorl.evaluate")


def metric_names(cfg: RunConfig) -> list[str]:
    """BERTScore, METEOR and BLEU always; BLEURT when a checkpoint is configured."""
    names = ["bertscore"]
    if cfg.metrics.bleurt_checkpoint:
        names.append("bleurt")
    return names + ["meteor", "bleu"]


def sample_test(examples, n: int, seed: int):
    """The reference's sample: pandas `sample(n=1000, random_state=1)`, or every example if fewer."""
    return examples if len(examples) <= n else examples.sample(n=n, random_state=seed)


def decode_config(cfg: RunConfig, m, model_info: dict | None = None) -> DecodeConfig:
    """eval.* and the method's own decoding settings (ILQL: beta, top_k, temperature; `model_info`: the trained
    model's manifest info, where training recorded what it chose)."""
    ec = cfg.eval
    return DecodeConfig(
        prompt_tokens=ec.prompt_tokens,
        max_new_tokens=ec.max_new_tokens,
        batch_size=ec.batch_size,
        lm_head=ec.lm_head,
        **m.decoding(model_info),
    )


def trained_method(art: Artifact) -> str:
    if not art.stage.startswith("train/"):
        raise DataError(f"{art.uri} holds a '{art.stage}' artifact, not a trained model (train/<method>)")
    return art.stage.split("/", 1)[1]


def check_inputs(method: str, model: Artifact, data: Artifact, candidates: Artifact | None = None) -> None:
    cls = methods.method_class(method)  # a known method
    want = cls.scores or method
    trained = trained_method(model)
    if trained != want and cls.scores:
        raise DataError(f"{model.uri} is a '{trained}' model but --method '{method}' needs a '{want}' one")
    if trained != want:
        raise DataError(f"{model.uri} is a '{trained}' model but --method is '{method}': prompting would not match")
    if cls.scores and candidates is None:
        raise ConfigError(f"--method {method} re-ranks another model's responses: give --candidates-from")
    if not cls.scores and candidates is not None:
        scorers = ", ".join(methods.scorers())
        raise ConfigError(f"--candidates-from is for the scorers ({scorers}), not --method {method}")
    for art in [model] + ([candidates] if candidates is not None else []):
        art_ds, data_ds = art.info.get("dataset"), data.info.get("dataset")
        if art_ds and data_ds and art_ds != data_ds:
            raise DataError(f"{art.uri} was trained on '{art_ds}' but {data.uri} holds '{data_ds}'")
    if candidates is not None and trained_method(candidates) not in cls.candidate_methods:
        raise DataError(
            f"{candidates.uri} is a '{trained_method(candidates)}' model; --method {method} takes candidates "
            f"from {', '.join(cls.candidate_methods)}"
        )


def evaluate(
    cfg: RunConfig,
    *,
    method: str,
    model_uri: str,
    data_uri: str,
    out_uri: str,
    candidates_uri: str | None = None,
    force: bool = False,
) -> StageResult:
    import pandas as pd

    if methods.method_class(method).scores and cfg.eval.num_responses < 2:
        raise ConfigError(
            f"--method {method} re-ranks eval.num_responses candidates, and with {cfg.eval.num_responses} its row "
            "would be its candidate model's greedy responses under another name; set eval.num_responses >= 2"
        )
    data = Artifact(data_uri, expect_stage="data")
    model = Artifact(model_uri)
    candidates = Artifact(candidates_uri) if candidates_uri else None
    check_inputs(method, model, data, candidates)
    m = methods.get(method, cfg)
    names = metric_names(cfg)
    config = {"method": method, "eval": to_dict(cfg.eval), "metrics": to_dict(cfg.metrics)}
    config.update(cfg.model.inference_settings())
    if m.decoding(model.info):
        config["decoding"] = m.decoding(model.info)
    inputs = {"model": model, "data": data}
    if candidates is not None:
        config["candidates"] = trained_method(candidates)
        inputs["candidates"] = candidates

    def body(ctx):
        from dorl.metrics import get_metric

        ec = cfg.eval
        test = readers.read_parquet(data.path("examples/test.parquet"))
        if test.empty:
            raise DataError(f"{data.uri}: the test split has no examples")
        sample = sample_test(test, ec.n_examples, ec.sample_seed)
        log.info("evaluate %s: %d test examples, %d response(s) each", method, len(sample), ec.num_responses)
        contexts = sample["context"].tolist()
        decode = decode_config(cfg, m, model.info)
        responses, gen_stats = m.respond_to(model, contexts, decode, ec.num_responses, candidates)

        refs = sample["response"].tolist()
        # dialogue_id/turn_index identify the example, so the report can join every method's responses on it.
        pred = pd.DataFrame({c: sample[c].tolist() for c in ("dialogue_id", "turn_index", "context")})
        pred["true_response"] = refs
        identities, seconds = {}, 0.0
        with dlog.progress() as bar:
            task = bar.add_task(f"score {method}", total=len(names) * ec.num_responses)
            for name in names:
                metric = get_metric(name, cfg.metrics)
                identities[name] = metric.identity()
                for k in range(1, ec.num_responses + 1):
                    texts = [r[k - 1] for r in responses]
                    pred[f"response_{k}"] = texts
                    started = time.perf_counter()
                    pred[f"{name}_{k}"] = metric.score(texts, refs)
                    seconds += time.perf_counter() - started
                    bar.advance(task)
        cols = ["dialogue_id", "turn_index", "context", "true_response"] + [
            c for k in range(1, ec.num_responses + 1) for c in [f"response_{k}"] + [f"{m}_{k}" for m in names]
        ]
        pred = pred[cols]
        csvsafe.write(pred, ctx.out.path("predictions.csv"))  # text cells a spreadsheet would run get a quote

        summary = {
            "method": method,
            "dataset": data.info.get("dataset"),
            **({"candidates": config["candidates"]} if candidates is not None else {}),
            "n_examples": len(pred),
            "num_responses": ec.num_responses,
            "metrics": names,
            "best_of_k": {},
            "bert_click": [],
        }
        for name in names:
            scores = pred[[f"{name}_{k}" for k in range(1, ec.num_responses + 1)]].to_numpy(dtype=float)
            summary["best_of_k"][name] = [
                float(scores[:, :k].max(axis=1).mean()) for k in range(1, ec.num_responses + 1)
            ]
            if name == "bertscore":
                summary["bert_click"] = [
                    float((scores[:, :k].max(axis=1) > ec.click_threshold).mean())
                    for k in range(1, ec.num_responses + 1)
                ]
        ctx.out.path("metrics.json").write_text(json.dumps(summary, indent=2))
        pairs = len(pred) * ec.num_responses * len(names)
        ctx.info.update(
            method=method, dataset=data.info.get("dataset"), n_examples=len(pred), metric_identity=identities
        )
        if model.info.get("released"):  # the reference's checkpoint (`dorl models import`): its own report row
            ctx.info["released"] = True
        ctx.metrics.update(generation=gen_stats, metric_pairs_per_s=round(pairs / max(seconds, 1e-9), 1))
        log.info("evaluate %s: %s", method, {k: round(v[0], 4) for k, v in summary["best_of_k"].items()})

    return run_stage("evaluate", out_uri, config, inputs, body, force=force)


# ---------------------------------------------------------------- the command


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
def evaluate_cmd(method, model_uri, candidates_uri, data_uri, out_uri, force, cfg) -> None:
    """Generate responses for a random sample of test contexts and score them (BERTScore, METEOR, BLEU, BLEURT)."""

    art = evaluate(
        cfg,
        method=method,
        model_uri=model_uri,
        data_uri=data_uri,
        out_uri=out_uri,
        candidates_uri=candidates_uri,
        force=force,
    ).artifact
    click.echo(json.dumps(art.json("metrics.json"), indent=2))
