"""`report.html`: the results table, the plot and, per dataset, every test context side by side.

One self-contained file (no network: the plot is inlined; page.html holds the styles and the script). Each method's
evaluation is joined on the example (dialogue_id, turn_index; older evaluations on context and human response);
with several seeds the first one's responses are shown. The examples are data in a JSON block that a small
script renders with textContent (dataset text is never parsed as HTML), paged, filterable and sortable, by
default by where the methods disagree most (the spread of their scores).
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from dorl.report.table import LABELS, METRICS, groups, mark, row_order
from dorl.text import CUS_END, CUS_START, REP_END, REP_START

_TURN = re.compile(
    re.escape(CUS_START)
    + "(.*?)"
    + re.escape(CUS_END)
    + "|"
    + re.escape(REP_START)
    + "(.*?)(?:"
    + re.escape(REP_END)
    + "|$)",
    re.S,
)


def turns(context: str) -> list[list[str]]:
    """[[speaker, text], ...] of a rendered context ('customer' / 'agent')."""
    return [
        ["customer", m.group(1)] if m.group(1) is not None else ["agent", m.group(2)] for m in _TURN.finditer(context)
    ]


def _best_of_k(pred: pd.DataFrame, k: int, metric: str) -> np.ndarray:
    """Index (0-based) of the response the best-of-k score comes from, per example."""
    cols = [f"{metric}_{j}" for j in range(1, k + 1) if f"{metric}_{j}" in pred.columns]
    return pred[cols].to_numpy(dtype=float).argmax(axis=1)


def examples(evals: list[dict], k: int) -> dict[str, dict]:
    """dataset -> {methods, metrics, primary, rows}: one row per test example, every method's response and scores."""
    by_dataset: dict[str, dict[str, dict]] = {}
    for (dataset, method), seeds in groups(evals).items():
        by_dataset.setdefault(dataset, {})[method] = seeds[0]
    out = {}
    for dataset, per_method in sorted(by_dataset.items()):
        methods = sorted(per_method, key=row_order)
        first = per_method[methods[0]]["predictions"]
        metrics = [m for m in METRICS if all(f"{m}_1" in per_method[x]["predictions"].columns for x in methods)]
        primary = metrics[0] if metrics else None
        keyed = all({"dialogue_id", "turn_index"} <= set(per_method[m]["predictions"].columns) for m in methods)
        key_cols = ["dialogue_id", "turn_index"] if keyed else ["context", "true_response"]
        joined = {}
        for m in methods:
            pred = per_method[m]["predictions"]
            pick = _best_of_k(pred, k, primary) if primary else np.zeros(len(pred), dtype=int)
            keys = list(zip(*(pred[c].astype(str) for c in key_cols)))
            joined[m] = {key: (pred.iloc[i], int(pick[i])) for i, key in enumerate(keys)}
        rows = []
        for i, ex in first.iterrows():
            key = tuple(str(ex[c]) for c in key_cols)
            if not all(key in joined[m] for m in methods):
                continue  # not evaluated by every method (a different sample): nothing to compare side by side
            row = {
                "id": f"{ex['dialogue_id']}#{ex['turn_index']}" if keyed else str(i),
                "context": turns(ex["context"]),
                "human": ex["true_response"],
                "methods": {},
            }
            for m in methods:
                r, j = joined[m][key]
                row["methods"][m] = {
                    "response": r[f"response_{j + 1}"],
                    "scores": {x: round(float(r[f"{x}_{j + 1}"]), 4) for x in metrics},
                }
            if primary:
                vals = [row["methods"][m]["scores"][primary] for m in methods]
                row["spread"] = round(max(vals) - min(vals), 4)
            rows.append(row)
        out[dataset] = {"methods": methods, "metrics": metrics, "primary": primary, "rows": rows}
    return out


def _results_table(table: pd.DataFrame, confidence: float) -> str:
    cols = list(dict.fromkeys(zip(table["dataset"], table["metric"])))
    cell = {(r.dataset, r.metric, r.method): r for r in table.itertuples()}
    head = "".join(f"<th>{html.escape(d)}<br>{LABELS[m]}</th>" for d, m in cols)
    body = []
    for method in dict.fromkeys(table["method"]):
        tds = []
        for d, m in cols:
            r = cell.get((d, m, method))
            if r is None:
                tds.append("<td>–</td>")
                continue
            seeds = f" ±{(r.seed_high - r.seed_low) / 2:.3f}" if r.seeds > 1 else ""
            sig = mark(r, confidence)
            cls = {"*": ' class="better"', "†": ' class="worse"'}.get(sig, "")
            p = "" if np.isnan(r.p_holm) else f' title="Holm-adjusted p = {r.p_holm:.3g}"'
            tds.append(
                f"<td{cls}{p}><b>{r.mean:.3f}</b>{sig} <small>[{r.ci_low:.3f}, {r.ci_high:.3f}]{seeds}</small></td>"
            )
        body.append(f"<tr><th>{html.escape(method)}</th>{''.join(tds)}</tr>")
    return f'<table class="results"><tr><th>method</th>{head}</tr>{"".join(body)}</table>'


def write(table: pd.DataFrame, note: str, evals: list[dict], plot_png: Path, path: Path, k: int, confidence: float):
    data = examples(evals, k)
    # "</" inside a script block would end it: escape it in the JSON text.
    blob = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    png = base64.b64encode(plot_png.read_bytes()).decode()
    sections = "".join(
        f'<section class="dataset" data-dataset="{html.escape(d)}"><h2>{html.escape(d)}: '
        f"{len(v['rows'])} test examples</h2></section>"
        for d, v in data.items()
    )
    template = (Path(__file__).parent / "page.html").read_text(encoding="utf-8")
    page = (
        template.replace("@RESULTS@", _results_table(table, confidence))
        .replace("@NOTE@", html.escape(note))
        .replace("@PNG@", png)
        .replace("@SECTIONS@", sections)
        .replace("@DATA@", blob)
    )
    path.write_text(page, encoding="utf-8")
