"""PNGs of the report: the methods per metric (one panel per dataset and metric, with the bootstrap intervals;
the training reward's panels marked), and how often DT's response changes with its return token."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dorl.report.table import LABELS


def plot(table: pd.DataFrame, path: Path, confidence: float, rewards: set[str] = frozenset()) -> None:
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
            reward = " (reward)" if metric in rewards else ""
            ax.set_title(f"{dataset} · {LABELS[metric]}{reward}", fontsize=9)
            ax.set_xlim(-0.5, len(sub) - 0.5)
            ax.margins(y=0.15)
            ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"dorl results (points: mean, whiskers: {confidence:.0%} bootstrap interval)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_dt_token(dt_token: dict[str, list[dict]], path: Path) -> None:
    """One bar per dataset and seed: the share of DT's greedy responses that change when its prompt asks for the
    lowest return instead of the highest (`checks.dt_token` of the report)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, shares = [], []
    for dataset, runs in dt_token.items():
        for i, r in enumerate(runs):
            labels.append(dataset + (f" #{i + 1}" if len(runs) > 1 else ""))
            shares.append(r["changed"] / max(r["n"], 1))
    fig, ax = plt.subplots(figsize=(max(3.0, 0.6 * len(labels) + 1.5), 2.8))
    ax.bar(range(len(shares)), shares, color="tab:purple")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share changed", fontsize=8)
    ax.set_title("dt: greedy responses that change with the return token (top → lowest)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
