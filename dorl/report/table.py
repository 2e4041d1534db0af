"""The results table: per-example scores from predictions.csv -> one row per (dataset, method, metric)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dorl import methods
from dorl.errors import DataError
from dorl.report.bootstrap import mean_ci, paired_test

METRICS = ("bertscore", "bleurt", "meteor", "bleu")
LABELS = {"bertscore": "BERTScore", "bleurt": "BLEURT", "meteor": "METEOR", "bleu": "BLEU", "bert_click": "BERT-click"}
METHOD_ORDER = tuple(methods.evaluated())  # the registry order (dorl/methods/__init__.py)


def per_example(pred: pd.DataFrame, k: int, click_threshold: float, where: str) -> dict[str, np.ndarray]:
    """Best-of-k score of every example for each metric in the file, and bert_click."""
    out = {}
    for metric in METRICS:
        cols = [f"{metric}_{j}" for j in range(1, k + 1)]
        if f"{metric}_1" not in pred.columns:
            continue
        missing = [c for c in cols if c not in pred.columns]
        if missing:
            raise DataError(f"{where}: no column {missing[0]} (report.k={k} needs {k} responses)")
        out[metric] = pred[cols].to_numpy(dtype=float).max(axis=1)
    if "bertscore" in out:
        out["bert_click"] = (out["bertscore"] > click_threshold).astype(float)
    return out


def build(
    evals: list[dict], k: int, n_boot: int, confidence: float, seed: int, baseline: str, click_threshold: float
) -> pd.DataFrame:
    """`evals`: dicts with dataset, method, uri and the predictions DataFrame."""
    rows = []
    scores = {}
    for ev in evals:
        scores[(ev["dataset"], ev["method"])] = (per_example(ev["predictions"], k, click_threshold, ev["uri"]), ev)
    for (dataset, method), (per, ev) in scores.items():
        base = scores.get((dataset, baseline))
        for metric, values in per.items():
            mean, low, high = mean_ci(values, n_boot, confidence, seed)
            row = {
                "dataset": dataset,
                "method": method,
                "metric": metric,
                "k": k,
                "n": len(values),
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
                "delta": np.nan,
                "delta_low": np.nan,
                "delta_high": np.nan,
                "p_value": np.nan,
            }
            if base is not None and method != baseline and metric in base[0]:
                _check_same_examples(ev, base[1])
                row.update(paired_test(values, base[0][metric], n_boot, confidence, seed))
            rows.append(row)
    table = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    table["_m"] = table["method"].map(lambda m: order.get(m, len(order)))
    table["_x"] = table["metric"].map(lambda m: list(LABELS).index(m))
    return table.sort_values(["dataset", "_m", "_x"]).drop(columns=["_m", "_x"]).reset_index(drop=True)


def _check_same_examples(ev: dict, base: dict) -> None:
    a, b = ev["predictions"], base["predictions"]
    same = (
        len(a) == len(b)
        and (a["context"].values == b["context"].values).all()
        and (a["true_response"].values == b["true_response"].values).all()
    )
    if not same:
        raise DataError(
            f"{ev['uri']} and {base['uri']} were evaluated on different examples: the paired test needs the same "
            "test sample (same data artifact and eval.n_examples / eval.sample_seed)"
        )


def markdown(table: pd.DataFrame, baseline: str, confidence: float) -> str:
    """Methods as rows; (dataset, metric) as columns; mean [CI], * when the paired test says p < 0.05."""
    cols = list(dict.fromkeys(zip(table["dataset"], table["metric"])))
    methods = list(dict.fromkeys(table["method"]))
    header = "| method | " + " | ".join(f"{d} {LABELS[m]}" for d, m in cols) + " |"
    lines = [header, "|---|" + "---|" * len(cols)]
    cell = {(r.dataset, r.metric, r.method): r for r in table.itertuples()}
    for method in methods:
        out = []
        for d, m in cols:
            r = cell.get((d, m, method))
            if r is None:
                out.append("–")
                continue
            mark = ""
            if not np.isnan(r.p_value) and r.p_value < 0.05:
                mark = "*" if r.delta > 0 else "†"
            out.append(f"{r.mean:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]{mark}")
        lines.append(f"| {method} | " + " | ".join(out) + " |")
    k = int(table["k"].iloc[0])
    n = ", ".join(f"{d}: {int(g['n'].iloc[0])}" for d, g in table.groupby("dataset"))
    lines += [
        "",
        f"Best-of-{k} means over test examples ({n}), {confidence:.0%} bootstrap intervals. "
        f"* better / † worse than `{baseline}` (paired bootstrap, p < 0.05).",
    ]
    return "\n".join(lines) + "\n"
