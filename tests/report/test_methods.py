"""The report takes any registered method: every one is a row of the table, a point of the plot and a column of
report.html's examples, in the registry's order (more methods than the plot has colours included)."""

import json

import numpy as np
import pandas as pd

from dorl import config, methods
from dorl.stages.report import report
from tests.report.test_report import N, _eval_artifact


def test_every_registered_method_is_a_row_in_registry_order(tmp_path):
    rng = np.random.default_rng(0)
    names = methods.evaluated()
    assert {"kto", "dpo", "awr"} <= set(names)

    def evaluation(name: str, method: str, released: bool = False) -> str:
        scores = rng.uniform(0, 1, N), rng.uniform(0, 1, N)
        return _eval_artifact(str(tmp_path / name), "abcd", method, *scores, released=released).uri

    uris = [evaluation(name, name) for name in reversed(names)]  # given in the wrong order: the report orders them
    uris.append(evaluation("dt-released", "dt", released=True))
    uris += [evaluation(x, x) for x in ("mine", "yours")]  # methods the registry does not know (yet): rows after
    out = report(config.load(sets=["report.bootstrap=50"]), eval_uris=uris, out_uri=str(tmp_path / "report")).artifact
    lines = out.read_bytes("results.md").decode().splitlines()
    first = lines.index(next(ln for ln in lines if ln.startswith("| ")))
    table_lines = lines[first : lines.index("", first) if "" in lines[first:] else None]  # the results table
    rows = [ln.split("|")[1].strip() for ln in table_lines if ln.startswith("| ")]
    want = [n for n in names for n in ([n, "dt (released)"] if n == "dt" else [n])] + ["mine", "yours"]
    assert len(want) > 10  # more than the plot's palette
    assert [r for r in rows if r in want] == want
    table = pd.read_csv(out.path("results.csv"))
    assert set(table["method"]) == set(want)
    page = out.read_bytes("report.html").decode()
    for name in ("kto", "dpo", "awr"):
        assert json.dumps(name) in page or f">{name}<" in page
    assert out.path("results.png").stat().st_size > 0
