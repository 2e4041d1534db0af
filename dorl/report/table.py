"""The results table: per-example scores from predictions.csv -> one row per (dataset, method, metric)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dorl.errors import DataError
from dorl.methods import registry as methods
from dorl.report.bootstrap import holm, mean_ci, paired_test, seed_interval

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


def groups(evals: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """(dataset, method) -> its evaluations, one per seed, in the order given."""
    out: dict[tuple[str, str], list[dict]] = {}
    for ev in evals:
        out.setdefault((ev["dataset"], ev["method"]), []).append(ev)
    return out


def build(
    evals: list[dict], k: int, n_boot: int, confidence: float, seed: int, baseline: str, click_threshold: float
) -> pd.DataFrame:
    """`evals`: dicts with dataset, method, uri and the predictions DataFrame; several of one (dataset, method)
    are seeds. Each example's score is its mean over seeds: the interval over examples and the paired test use it,
    the interval over seeds uses each seed's mean. Holm's correction runs across every comparison in the table."""
    rows = []
    scores = {}
    ref = {}
    for ev in evals:
        ref.setdefault(ev["dataset"], ev)
    evals = [_aligned(ev, ref[ev["dataset"]]) for ev in evals]
    for key, seeds in groups(evals).items():
        for ev in seeds[1:]:
            _check_same_examples(ev, seeds[0])
        per_seed = [per_example(ev["predictions"], k, click_threshold, ev["uri"]) for ev in seeds]
        metrics = [m for m in per_seed[0] if all(m in p for p in per_seed)]
        scores[key] = ({m: np.stack([p[m] for p in per_seed]) for m in metrics}, seeds[0])
    for (dataset, method), (per, ev) in scores.items():
        base = scores.get((dataset, baseline))
        for metric, by_seed in per.items():
            values = by_seed.mean(axis=0)
            mean, low, high = mean_ci(values, n_boot, confidence, seed)
            seed_low, seed_high = seed_interval(by_seed.mean(axis=1), confidence)
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
                "seeds": len(by_seed),
                "seed_low": seed_low,
                "seed_high": seed_high,
            }
            if base is not None and method != baseline and metric in base[0]:
                _check_same_examples(ev, base[1])
                row.update(paired_test(values, base[0][metric].mean(axis=0), n_boot, confidence, seed))
            rows.append(row)
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(table["p_value"])
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    table["_m"] = table["method"].map(lambda m: order.get(m, len(order)))
    table["_x"] = table["metric"].map(lambda m: list(LABELS).index(m))
    return table.sort_values(["dataset", "_m", "_x"]).drop(columns=["_m", "_x"]).reset_index(drop=True)


def _keys(pred: pd.DataFrame) -> list[str]:
    """The columns naming an example: dialogue_id/turn_index when the evaluation wrote them."""
    ids = ["dialogue_id", "turn_index"]
    return ids + ["context", "true_response"] if all(c in pred.columns for c in ids) else ["context", "true_response"]


def _aligned(ev: dict, ref: dict) -> dict:
    """`ev` with its predictions in the order of `ref`'s examples, when both name them (dialogue_id, turn_index)."""
    a, b = ev["predictions"], ref["predictions"]
    ids = ["dialogue_id", "turn_index"]
    if ev is ref or not all(c in a.columns and c in b.columns for c in ids):
        return ev
    key_a = pd.MultiIndex.from_arrays([a[c].astype(str) for c in ids])
    key_b = pd.MultiIndex.from_arrays([b[c].astype(str) for c in ids])
    if key_a.has_duplicates or len(a) != len(b) or not key_a.isin(key_b).all():
        return ev  # not the same sample: _check_same_examples says so
    return {**ev, "predictions": a.set_index(key_a).loc[key_b].reset_index(drop=True)}


def _check_same_examples(ev: dict, base: dict) -> None:
    a, b = ev["predictions"], base["predictions"]
    cols = [c for c in _keys(a) if c in _keys(b)]
    same = len(a) == len(b) and all((a[c].astype(str).values == b[c].astype(str).values).all() for c in cols)
    if not same:
        raise DataError(
            f"{ev['uri']} and {base['uri']} were evaluated on different examples: the paired test needs the same "
            "test sample (same data artifact and eval.n_examples / eval.sample_seed)"
        )


def mark(r, confidence: float) -> str:
    """* better / † worse than the baseline when Holm's adjusted p-value is below 1 - confidence."""
    if np.isnan(r.p_holm) or r.p_holm >= 1 - confidence:
        return ""
    return "*" if r.delta > 0 else "†"


def markdown(table: pd.DataFrame, baseline: str, confidence: float) -> str:
    """Methods as rows; (dataset, metric) as columns; mean [CI over examples] ±(half-width over seeds, when several),
    * / † when the paired test's Holm-adjusted p-value is below 1 - confidence."""
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
            seeds = f" ±{(r.seed_high - r.seed_low) / 2:.3f}" if r.seeds > 1 else ""
            out.append(f"{r.mean:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]{seeds}{mark(r, confidence)}")
        lines.append(f"| {method} | " + " | ".join(out) + " |")
    k = int(table["k"].iloc[0])
    n = ", ".join(f"{d}: {int(g['n'].iloc[0])}" for d, g in table.groupby("dataset"))
    alpha = f"{1 - confidence:.3g}"
    note = (
        f"Best-of-{k} means over test examples ({n}), {confidence:.0%} bootstrap intervals. "
        f"* better / † worse than `{baseline}` (paired bootstrap, Holm-adjusted p < {alpha} across "
        f"{int(table['p_value'].notna().sum())} comparisons)."
    )
    if (table["seeds"] > 1).any():
        seeds = ", ".join(f"{m}: {int(g['seeds'].max())}" for m, g in table.groupby("method", sort=False))
        note += (
            f" Several seeds ({seeds}): each example's score is its mean over seeds; ± is the half-width of the "
            f"{confidence:.0%} Student-t interval of the mean over seeds."
        )
    lines += ["", note]
    return "\n".join(lines) + "\n"
