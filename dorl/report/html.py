"""`report.html`: the results table, the plot and, per dataset, every test context side by side.

One self-contained file (no network: the plot is inlined), rendered by Jinja2 from page.html.j2 with autoescaping,
so every name, note and number is text. Each method's evaluation is joined on the example (dialogue_id,
turn_index; older evaluations on context and human response); with several seeds the first one's responses are
shown. The examples are JSON in a `<script type="application/json">` block with every '<', '>', '&' and "'"
escaped, so no dialogue text can close the block or open a comment in it; page.js renders them with textContent
(dataset text is never parsed as HTML), paged, filterable and sortable, by default by where the methods disagree
most (the spread of their scores). The page's Content-Security-Policy allows only page.js and page.css, by their
sha256: no inline handler or injected script could run even if markup got in.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

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
_HERE = Path(__file__).parent


def turns(context: str) -> list[list[str]]:
    """[[speaker, text], ...] of a rendered context ('customer' / 'agent')."""
    return [
        ["customer", m.group(1)] if m.group(1) is not None else ["agent", m.group(2)] for m in _TURN.finditer(context)
    ]


def _score(value) -> float | None:
    """A score for the page's JSON: None where it is not a finite number (JSON has no NaN)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return round(v, 4) if math.isfinite(v) else None


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
                    "scores": {x: _score(r[f"{x}_{j + 1}"]) for x in metrics},
                }
            if primary:
                vals = [row["methods"][m]["scores"][primary] for m in methods]
                row["spread"] = None if None in vals else round(max(vals) - min(vals), 4)
            rows.append(row)
        out[dataset] = {"methods": methods, "metrics": metrics, "primary": primary, "rows": rows}
    return out


def _cells(table: pd.DataFrame, confidence: float) -> tuple[list, list]:
    """The results table as plain values for the template: [(dataset, metric label)], [(method, [cell|None])]."""
    cols = list(dict.fromkeys(zip(table["dataset"], table["metric"])))
    cell = {(r.dataset, r.metric, r.method): r for r in table.itertuples()}
    rows = []
    for method in dict.fromkeys(table["method"]):
        cells = []
        for d, m in cols:
            r = cell.get((d, m, method))
            if r is None:
                cells.append(None)
                continue
            seeds = f" ±{(r.seed_high - r.seed_low) / 2:.3f}" if r.seeds > 1 else ""
            sig = mark(r, confidence)
            cells.append(
                {
                    "cls": {"*": "better", "†": "worse"}.get(sig, ""),
                    "title": "" if np.isnan(r.p_holm) else f"Holm-adjusted p = {r.p_holm:.3g}",
                    "mean": f"{r.mean:.3f}",
                    "sig": sig,
                    "interval": f"[{r.ci_low:.3f}, {r.ci_high:.3f}]{seeds}",
                }
            )
        rows.append((method, cells))
    return [(d, LABELS[m]) for d, m in cols], rows


def _inline(name: str, end_tag: str) -> tuple[Markup, str]:
    """One of the page's own files, to inline, and its CSP hash ('sha256-<base64>' of exactly these bytes)."""
    text = (_HERE / name).read_text(encoding="utf-8")
    if end_tag in text.lower():  # pragma: no cover - a bug in the page's own file
        raise ValueError(f"{name} must not contain {end_tag}")
    return Markup(text), "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE),
        autoescape=True,  # every value is text: '<', '&' and quotes become entities
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    # `tojson` escapes <, >, & and ' as \u003c... (htmlsafe_json_dumps); keep the data's own order and its text.
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "ensure_ascii": False, "allow_nan": False}
    return env


def write(table: pd.DataFrame, note: str, evals: list[dict], plot_png: Path, path: Path, k: int, confidence: float):
    data = examples(evals, k)
    columns, rows = _cells(table, confidence)
    css, style_hash = _inline("page.css", "</style")
    js, script_hash = _inline("page.js", "</script")
    page = (
        _environment()
        .get_template("page.html.j2")
        .render(
            columns=columns,
            rows=rows,
            note=note,
            png=base64.b64encode(plot_png.read_bytes()).decode(),
            sections=[(d, len(v["rows"])) for d, v in data.items()],
            data=data,
            css=css,
            style_hash=style_hash,
            js=js,
            script_hash=script_hash,
        )
    )
    path.write_text(page, encoding="utf-8")
