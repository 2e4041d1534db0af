"""results.md: the table, the gains against the base model and against the control, and what a reader needs to
judge them (the tests, the training reward, how much of the test data repeats training, whether DT reads its
return token).

    text, note = markdown(table, stats, rc, checks)

In: the table and statistics of `dorl.report.table.build`, the report settings, and `checks` (gathered by the
report stage from the artifacts: `reward`, `overlap`, `dt_token`, each {dataset: ...}). Out: the markdown and the
one-line note under the main table (report.html shows it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dorl.report.table import LABELS, mark

HELD_OUT = {"meteor", "bleu", "bleurt"}


def reward_metrics(checks: dict) -> set[str]:
    """The table's metrics derived from the training reward: the reward itself and, for BERTScore, BERT-click."""
    out = set()
    for r in checks.get("reward", {}).values():
        out.add(r["metric"])
        if r["metric"] == "bertscore":
            out.add("bert_click")
    return out


def _label(metric: str, rewards: set[str]) -> str:
    return LABELS[metric] + (" (reward)" if metric in rewards else "")


def _cell(r, confidence: float) -> str:
    seeds = f" ±{(r.seed_high - r.seed_low) / 2:.3f}" if r.seeds > 1 else ""
    return f"{r.mean:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]{seeds}{mark(r, confidence)}"


def _gain(r, confidence: float, prefix: str) -> str:
    delta = getattr(r, f"{prefix}delta")
    if np.isnan(delta):
        return "–"
    low, high = getattr(r, f"{prefix}delta_low"), getattr(r, f"{prefix}delta_high")
    text = f"{delta:+.3f} [{low:+.3f}, {high:+.3f}]{mark(r, confidence, prefix)}"
    s_low, s_high = getattr(r, f"{prefix}gain_seed_low"), getattr(r, f"{prefix}gain_seed_high")
    if not np.isnan(s_low):
        text += f" seeds [{s_low:+.3f}, {s_high:+.3f}]"
    return text


def main_table(table: pd.DataFrame, confidence: float, rewards: set[str]) -> list[str]:
    cols = list(dict.fromkeys(zip(table["dataset"], table["metric"])))
    cell = {(r.dataset, r.metric, r.method): r for r in table.itertuples()}
    lines = ["| method | " + " | ".join(f"{d} {_label(m, rewards)}" for d, m in cols) + " |"]
    lines.append("|---|" + "---|" * len(cols))
    for method in dict.fromkeys(table["method"]):
        out = [_cell(cell[(d, m, method)], confidence) if (d, m, method) in cell else "–" for d, m in cols]
        lines.append(f"| {method} | " + " | ".join(out) + " |")
    return lines


def note(table: pd.DataFrame, stats: dict, rc, rewards: set[str]) -> str:
    k = int(table["k"].iloc[0])
    n = ", ".join(f"{d}: {int(g['n'].iloc[0])}" for d, g in table.groupby("dataset"))
    alpha = f"{1 - rc.confidence:.3g}"
    resamples = f"; {stats['resamples']:,} resamples" if stats["resamples"] else ""
    text = (
        f"Best-of-{k} means over test examples ({n}), {rc.confidence:.0%} bootstrap intervals. "
        f"* better / † worse than `{rc.baseline}` (paired {rc.test.replace('_', '-')} test{resamples}, "
        f"Holm-adjusted p < {alpha} across {stats['family']} comparisons)."
    )
    if rewards:
        held = sorted(LABELS[m] for m in set(table["metric"]) & HELD_OUT)
        text += (
            " (reward): derived from the metric the methods were trained on"
            + (f"; {', '.join(held)} are held out" if held else "")
            + "."
        )
    if (table["seeds"] > 1).any():
        seeds = ", ".join(f"{m}: {int(g['seeds'].max())}" for m, g in table.groupby("method", sort=False))
        text += (
            f" Several seeds ({seeds}): each example's score is its mean over seeds; ± is the half-width of the "
            f"{rc.confidence:.0%} Student-t interval of the mean over seeds."
        )
    return text


def gains_table(table: pd.DataFrame, rc, rewards: set[str]) -> list[str]:
    """Per dataset: each method's gain against the baseline and against the control, per metric."""
    refs = [("", rc.baseline)] + ([("control_", rc.control)] if rc.control else [])
    out = []
    for dataset, part in table.groupby("dataset", sort=False):
        metrics = list(dict.fromkeys(part["metric"]))
        cell = {(r.metric, r.method): r for r in part.itertuples()}
        head = [f"{_label(m, rewards)} vs {name}" for m in metrics for _, name in refs]
        out += [f"**{dataset}**", "", "| method | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
        for method in dict.fromkeys(part["method"]):
            if method == rc.baseline:
                continue
            cells = [_gain(cell[(m, method)], rc.confidence, p) if (m, method) in cell else "–" for m in metrics
                     for p, _ in refs]  # fmt: skip
            out.append(f"| {method} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def checks_section(stats: dict, rc, checks: dict) -> list[str]:
    out = ["### How to read it", ""]
    out.append(
        f"- **Tests**: {stats['test_description']}; {stats['family']} comparisons in one family "
        f"({stats['family_description']}), alpha {stats['alpha']:g}"
        + (
            f"; {stats['resamples']:,} resamples ({stats['resamples_rule']}), so no p is below "
            f"{stats['smallest_p']:.2g}; {stats['exact_tests']} of the tests were exact"
            if stats["resamples"]
            else ""
        )
        + f". Intervals: {stats['intervals']}. Seeds: {stats['seed_effect']}."
    )
    for dataset, r in checks.get("reward", {}).items():
        extra = f", click threshold {r['click_threshold']:g} (relabel.threshold {r['threshold']:g})"
        out.append(
            f"- **Reward** ({dataset}): the methods were trained on `{r['metric']}`"
            + (f" ({r['encoder']})" if r.get("encoder") else "")
            + f"{extra}. A method trained toward a metric can gain on it without gaining on held-out ones; "
            "compare the held-out columns."
        )
    for dataset, o in checks.get("overlap", {}).items():
        d, e = o.get("data"), o.get("evaluated")
        text = f"- **Train/test overlap** ({dataset}): "
        if d:
            text += (
                f"{d['responses']:.1%} of the test responses ({d['responses_in_train']:,} of {d['examples']:,}) occur "
                "verbatim among the training responses"
            )
        if e:
            text += (
                f"; of the {e['examples']} evaluated examples {e['responses_in_train']} have a response and "
                f"{e['pairs_in_train']} a whole (context, response) pair found verbatim in training"
            )
        out.append(text + ". Scores on those measure recall of the training data as much as generation.")
    for dataset, runs in checks.get("dt_token", {}).items():
        parts = [f"{r['changed']} of {r['n']} ({r['changed'] / max(r['n'], 1):.1%})" for r in runs]
        out.append(
            f"- **DT's return token** ({dataset}): greedy responses that change when the prompt asks for the lowest "
            f"return instead of the highest: {', '.join(parts)}"
            + (" (per seed)" if len(runs) > 1 else "")
            + ". Near 0: DT ignores its return token and its row is a fine-tuned LM's (dt_token.png)."
        )
    for w in stats["warnings"]:
        out.append(f"- **Warning**: {w}.")
    return out


def markdown(table: pd.DataFrame, stats: dict, rc, checks: dict | None = None) -> tuple[str, str]:
    checks = checks or {}
    rewards = reward_metrics(checks)
    line = note(table, stats, rc, rewards)
    lines = main_table(table, rc.confidence, rewards) + ["", line, ""]
    if table["p_value"].notna().any() or ("control_p_value" in table and table["control_p_value"].notna().any()):
        name = f" and against the control `{rc.control}`" if rc.control else ""
        lines += [f"### Gains against `{rc.baseline}`{name}", ""]
        lines += [
            "Mean difference over the same examples [bootstrap interval], * / † as above (the same family); "
            "`seeds [a, b]`: the interval of the gain over seeds.",
            "",
        ]
        lines += gains_table(table, rc, rewards)
    lines += checks_section(stats, rc, checks)
    return "\n".join(lines) + "\n", line
