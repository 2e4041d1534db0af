"""CSV injection (issue 27): text a spreadsheet would run as a formula is written with a leading quote, and dorl
reads back exactly the text it wrote."""

import csv

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dorl import config, csvsafe
from dorl.stages.evaluate import evaluate
from dorl.stages.report import report
from dorl.store import run_stage

FORMULAS = ['=HYPERLINK("http://x","y")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "'=1", "''-x"]


_DIR: dict = {}


def _cells(path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [c for row in list(csv.reader(f))[1:] for c in row]


@given(st.lists(st.text(max_size=30), min_size=1, max_size=8))
def test_round_trip_and_no_cell_starts_a_formula(tmp_path_factory, texts):
    path = _DIR.setdefault("dir", tmp_path_factory.mktemp("csv")) / "x.csv"
    df = pd.DataFrame({"text": texts, "score": [0.5 - i for i in range(len(texts))]})
    csvsafe.write(df, path)
    for cell in _cells(path)[0::2]:
        assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), cell
    back = csvsafe.read(path, dtype={"text": str}, keep_default_na=False)
    assert back["text"].tolist() == texts and back["score"].tolist() == df["score"].tolist()


def test_evaluate_and_report_write_safe_csvs(tmp_path, data_artifact, tiny_model_artifact):
    test = pd.read_parquet(data_artifact.path("examples/test.parquet")).head(len(FORMULAS))
    test["response"] = FORMULAS  # the human responses of the test examples

    def body(ctx):
        for split in ("train", "validation"):
            ctx.out.path(f"examples/{split}.parquet").write_bytes(
                data_artifact.path(f"examples/{split}.parquet").read_bytes()
            )
        test.to_parquet(ctx.out.path("examples/test.parquet"), index=False)
        ctx.info.update(dataset="abcd")

    data = run_stage("data", str(tmp_path / "data"), {"formulas": 1}, {}, body).artifact
    cfg = config.load(preset="tiny", sets=["eval.n_examples=8", "eval.batch_size=8", "report.bootstrap=20"])
    ev = evaluate(cfg, method="tf", model_uri=tiny_model_artifact.uri, data_uri=data.uri, out_uri=str(tmp_path / "ev"))
    path = ev.artifact.path("predictions.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["true_response"] for r in rows) == sorted("'" + t for t in FORMULAS)
    for r in rows:
        assert all(_safe(v) for v in r.values()), r
    assert sorted(csvsafe.read(path, keep_default_na=False)["true_response"]) == sorted(FORMULAS)

    rep = report(cfg, eval_uris=[ev.artifact.uri], out_uri=str(tmp_path / "report")).artifact
    for cell in _cells(rep.path("results.csv")):
        assert _safe(cell), cell
    import json
    import re

    page = rep.read_bytes("report.html").decode()
    blob = re.search(r'<script type="application/json" id="dorl-data">(.*?)</script>', page, re.S).group(1)
    assert sorted(r["human"] for r in json.loads(blob)["abcd"]["rows"]) == sorted(FORMULAS)  # the raw text


def _safe(cell: str) -> bool:
    """Not a formula to a spreadsheet: a number (e.g. a negative score) or text not starting with one."""
    return _number(cell) or cell[:1] not in ("=", "+", "-", "@", "\t", "\r")


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("text", FORMULAS)
def test_escape_is_reversible(text):
    assert csvsafe.unescape(csvsafe.escape(text)) == text and csvsafe.escape(text).startswith("'")
