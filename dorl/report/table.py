"""The results table: per-example scores from predictions.csv -> one row per (dataset, method, metric)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dorl.errors import DataError
from dorl.methods import registry as methods
from dorl.report.bootstrap import holm, mean_ci, paired_interval, seed_interval
from dorl.report.significance import DESCRIPTION, MIN_RESAMPLES, auto_resamples, paired_p

METRICS = ("bertscore", "bleurt", "meteor", "bleu")
LABELS = {"bertscore": "BERTScore", "bleurt": "BLEURT", "meteor": "METEOR", "bleu": "BLEU", "bert_click": "BERT-click"}
METHOD_ORDER = tuple(methods.evaluated())  # the registry order (dorl/methods/__init__.py)
RELEASED = " (released)"  # the row of the reference's own checkpoint (`dorl models import`), e.g. `dt (released)`


def row_name(info: dict) -> str:
    """An evaluation's row in the table: its method, with " (released)" when it evaluated an imported release."""
    return info["method"] + (RELEASED if info.get("released") else "")


def row_order(name: str) -> int:
    """Rows in the registry's order, a method's released checkpoint right after dorl's own model of it."""
    method = name.removesuffix(RELEASED)
    return 2 * (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)) + (name != method)


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


def build(evals: list[dict], rc, click_threshold: float) -> tuple[pd.DataFrame, dict]:
    """`evals`: dicts with dataset, method, uri and the predictions DataFrame; several of one (dataset, method)
    are seeds, in seed order. `rc`: the report settings (ReportConfig). Returns the table (one row per dataset,
    method and metric) and the statistics that made it (`statistics`).

    Each example's score is its mean over seeds: the interval over examples and the paired tests use it; the
    interval over seeds uses each seed's mean, and with several seeds each gain also gets its interval over the
    seeds' gains. Every method is compared with `rc.baseline` (tf) and with `rc.control` (tf_human) where both
    were evaluated; Holm's correction runs across all of those comparisons together (one family)."""
    confidence, seed = rc.confidence, rc.seed
    scores = {}
    ref = {}
    for ev in evals:
        ref.setdefault(ev["dataset"], ev)
    evals = [_aligned(ev, ref[ev["dataset"]]) for ev in evals]
    for key, seeds in groups(evals).items():
        for ev in seeds[1:]:
            _check_same_examples(ev, seeds[0])
        per_seed = [per_example(ev["predictions"], rc.k, click_threshold, ev["uri"]) for ev in seeds]
        metrics = [m for m in per_seed[0] if all(m in p for p in per_seed)]
        scores[key] = ({m: np.stack([p[m] for p in per_seed]) for m in metrics}, seeds[0])
    references = {"": rc.baseline, "control_": rc.control}
    rows, tests = [], []  # tests: (row index, column prefix, method's per-example scores, reference's)
    for (dataset, method), (per, ev) in scores.items():
        for metric, by_seed in per.items():
            values = by_seed.mean(axis=0)
            mean, low, high = mean_ci(values, rc.bootstrap, confidence, seed)
            seed_low, seed_high = seed_interval(by_seed.mean(axis=1), confidence)
            row = {
                "dataset": dataset,
                "method": method,
                "metric": metric,
                "k": rc.k,
                "n": len(values),
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
                "seeds": len(by_seed),
                "seed_low": seed_low,
                "seed_high": seed_high,
            }
            for prefix, name in references.items():
                row.update({f"{prefix}{c}": np.nan for c in COMPARISON})
                other = scores.get((dataset, name)) if name else None
                # tf against the control is the control against tf, already in the family
                if other is None or method in (name, rc.baseline) or metric not in other[0]:
                    continue
                _check_same_examples(ev, other[1])
                ref_by_seed = other[0][metric]
                reference = ref_by_seed.mean(axis=0)
                delta = paired_interval(values, reference, rc.bootstrap, confidence, seed)
                row.update({f"{prefix}{k}": v for k, v in delta.items()})
                gains = seed_gains(by_seed, ref_by_seed)
                row[f"{prefix}gain_seed_low"], row[f"{prefix}gain_seed_high"] = seed_interval(gains, confidence)
                tests.append((len(rows), prefix, values, reference))
            rows.append(row)
    family = len(tests)
    resamples = rc.resamples or auto_resamples(family, 1 - confidence)
    exact = 0
    for i, prefix, values, reference in tests:
        result = paired_p(values, reference, rc.test, resamples, seed)
        rows[i][f"{prefix}p_value"] = result["p_value"]
        exact += result["exact"]
    table = pd.DataFrame(rows)
    # One family: every comparison with the baseline and with the control, Holm-adjusted together.
    joint = holm(np.concatenate([table[f"{p}p_value"].to_numpy(dtype=float) for p in references]))
    for j, prefix in enumerate(references):
        table[f"{prefix}p_holm"] = joint[j * len(table) : (j + 1) * len(table)]
    table["_m"] = table["method"].map(row_order)
    table["_x"] = table["metric"].map(lambda m: list(LABELS).index(m))
    table = table.sort_values(["dataset", "_m", "_x"]).drop(columns=["_m", "_x"]).reset_index(drop=True)
    stats = statistics(rc, family, resamples, exact, {k: len(v[0][next(iter(v[0]))]) for k, v in scores.items()})
    return table, stats


# The columns of one comparison (with the baseline: as named; with the control: prefixed "control_").
COMPARISON = ("delta", "delta_low", "delta_high", "p_value", "gain_seed_low", "gain_seed_high")


def seed_gains(method: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each seed's gain (its mean over examples minus the reference's): seed s against the reference's seed s when
    both have as many seeds (the whole pipeline ran per seed: pipeline.seed_scope=all), else against the
    reference's mean over its seeds."""
    m = method.mean(axis=1)
    r = reference.mean(axis=1)
    return m - r if len(r) == len(m) else m - r.mean()


def statistics(rc, family: int, resamples: int, exact: int, seeds: dict) -> dict:
    """What the report states about its tests: the test, the family Holm corrects over, the resamples, the seeds."""
    alpha = 1 - rc.confidence
    per_method = {f"{d}/{m}": n for (d, m), n in seeds.items()}
    warnings = []
    fewest = min(seeds.values(), default=1)
    if fewest == 1:
        warnings.append(
            "one training run per method: the intervals and tests cover the sampling of test examples, not the "
            "randomness of training (pipeline.seeds with pipeline.seed_scope=all covers the whole pipeline)"
        )
    elif fewest < 3:
        warnings.append(
            f"only {fewest} seeds for some methods: the interval over seeds has {fewest - 1} degree(s) of freedom "
            "and is wide and unstable; use at least 3 seeds"
        )
    return {
        "test": rc.test,
        "test_description": DESCRIPTION[rc.test],
        "resamples": resamples if rc.test != "t" else None,
        "resamples_rule": "report.resamples" if rc.resamples else f"auto: max({MIN_RESAMPLES}, 20 m / alpha - 1)",
        "smallest_p": 1 / (resamples + 1) if rc.test != "t" else None,
        "exact_tests": exact,
        "family": family,
        "family_description": (
            f"every comparison of a method with `{rc.baseline}`"
            + (f" and with the control `{rc.control}`" if rc.control else "")
            + " on every metric and dataset of the table, Holm-adjusted together"
        ),
        "correction": "holm",
        "alpha": round(alpha, 10),
        "bootstrap": rc.bootstrap,
        "intervals": f"{rc.confidence:.0%} percentile bootstrap over test examples ({rc.bootstrap} resamples)",
        "seeds": per_method,
        "seed_effect": "seeds as a random effect: Student-t interval (S - 1 degrees of freedom) over the seeds' "
        "means (and over the seeds' gains); the tests compare the per-example means over seeds",
        "warnings": warnings,
    }


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


def mark(r, confidence: float, prefix: str = "") -> str:
    """* better / † worse than the baseline (prefix "control_": than the control) when Holm's adjusted p-value is
    below 1 - confidence."""
    p_holm, delta = getattr(r, f"{prefix}p_holm"), getattr(r, f"{prefix}delta")
    if np.isnan(p_holm) or p_holm >= 1 - confidence:
        return ""
    return "*" if delta > 0 else "†"
