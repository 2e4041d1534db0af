"""A PNG comparing methods per metric (one panel per dataset and metric), with the bootstrap intervals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dorl.report.table import LABELS


def plot(table: pd.DataFrame, path: Path, confidence: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(table["dataset"]))
    metrics = list(dict.fromkeys(table["metric"]))
    methods = list(dict.fromkeys(table["method"]))
    palette = plt.get_cmap("tab10").colors
    colors = {m: palette[i % len(palette)] for i, m in enumerate(methods)}  # more methods than colours: they repeat
    width = max(3.2, 0.4 * len(methods))  # a panel wide enough for every method's label
    fig, axes = plt.subplots(
        len(datasets), len(metrics), figsize=(width * len(metrics), 3.0 * len(datasets)), squeeze=False
    )
    for i, dataset in enumerate(datasets):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            sub = table[(table["dataset"] == dataset) & (table["metric"] == metric)]
            xs = range(len(sub))
            err = [sub["mean"] - sub["ci_low"], sub["ci_high"] - sub["mean"]]
            # Points with whiskers, not bars: the axis does not start at zero.
            for x, (_, r), lo, hi in zip(xs, sub.iterrows(), err[0], err[1]):
                ax.errorbar([x], [r["mean"]], yerr=[[lo], [hi]], fmt="o", capsize=4, color=colors[r["method"]])
            ax.set_xticks(list(xs), sub["method"], rotation=30, ha="right", fontsize=8)
            ax.set_title(f"{dataset} · {LABELS[metric]}", fontsize=9)
            ax.set_xlim(-0.5, len(sub) - 0.5)
            ax.margins(y=0.15)
            ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"dorl results (points: mean, whiskers: {confidence:.0%} bootstrap interval)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
