"""report.html: self-contained, every method's response joined on the example, rendered by a real browser."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from dorl import config
from dorl.stages.report import report
from dorl.store import run_stage

N = 30
CUSTOMER = "<_soc_><_cus_start_>my order {i} never came<_cus_end_><_rep_start_>sorry, which order?<_rep_end_>"


def _eval(uri, method, bert, order):
    """An evaluation of `method` whose rows come in `order` (the report must join them on the example)."""
    pred = pd.DataFrame(
        {
            "dialogue_id": [f"d{i}" for i in order],
            "turn_index": [3] * N,
            "context": [CUSTOMER.format(i=i) + f"<_cus_start_>the {i} one & <b>bold</b><_cus_end_>" for i in order],
            "true_response": [f"human reply {i}" for i in order],
            "response_1": [f"{method} reply {i}" for i in order],
            "bertscore_1": bert[order],
            "meteor_1": np.zeros(N),
            "bleu_1": np.zeros(N),
        }
    )

    def body(ctx):
        pred.to_csv(ctx.out.path("predictions.csv"), index=False)
        ctx.info.update(method=method, dataset="abcd")

    return run_stage("evaluate", uri, {"method": method}, {}, body).artifact.uri


@pytest.fixture(scope="module")
def html_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html")
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.7, N)
    dt = base + 0.05
    dt[7] = 0.99  # example 7: where tf and dt disagree most
    uris = [
        _eval(str(tmp / "tf"), "tf", base, np.arange(N)),
        _eval(str(tmp / "dt"), "dt", dt, rng.permutation(N)),
    ]
    return (
        report(config.load(sets=["report.bootstrap=200"]), eval_uris=uris, out_uri=str(tmp / "report")).artifact,
        base,
        dt,
    )


def _data(page: str) -> dict:
    blob = re.search(r'<script type="application/json" id="dorl-data">(.*?)</script>', page, re.S).group(1)
    return json.loads(blob)


def test_examples_joined_and_self_contained(html_report):
    art, base, dt = html_report
    page = art.read_bytes("report.html").decode()
    # No network: nothing is loaded from elsewhere, the plot is inlined.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "data:image/png;base64," in page and '<table class="results">' in page
    data = _data(page)["abcd"]
    assert data["methods"] == ["tf", "dt"] and data["primary"] == "bertscore"
    rows = {r["id"]: r for r in data["rows"]}
    assert len(rows) == N
    for i in range(N):
        r = rows[f"d{i}#3"]
        assert r["human"] == f"human reply {i}"
        assert r["methods"]["dt"]["response"] == f"dt reply {i}"
        assert r["methods"]["dt"]["scores"]["bertscore"] == pytest.approx(dt[i], abs=1e-4)
        assert r["methods"]["tf"]["scores"]["bertscore"] == pytest.approx(base[i], abs=1e-4)
        assert r["spread"] == pytest.approx(abs(dt[i] - base[i]), abs=2e-4)
    assert rows["d0#3"]["context"][0] == ["customer", "my order 0 never came"]
    assert rows["d0#3"]["context"][1] == ["agent", "sorry, which order?"]
    # Dataset text stays text: the raw "<b>" only appears JSON-escaped inside the data block.
    assert "<b>bold</b>" in rows["d0#3"]["context"][2][1]
    assert page.count("<b>bold</b>") == 0 or page.index("<b>bold</b>") > page.index('id="dorl-data"')


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make install` / .ci/run install it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it and fails without it")
    return path


def _browser(tmp_path, *args):
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
    ]
    return subprocess.run([_chromium(), *flags, *args], capture_output=True, text=True, timeout=120)


def test_rendered_in_chromium(html_report, tmp_path):
    art, _, _ = html_report
    page = art.path("report.html")
    r = _browser(tmp_path, "--dump-dom", page.as_uri())
    dom = r.stdout
    assert 'data-rendered="1"' in dom, r.stderr[-2000:]
    assert dom.count('<tr class="example">') == 20  # the first page of 30 examples
    assert "30 of 30 examples · page 1 of 2" in dom
    # Sorted by where the methods disagree most: example 7 first.
    first = dom.index('<tr class="example">')
    assert dom[first : first + 40].startswith('<tr class="example"><td>d7#3</td>')
    assert "dt reply 7" in dom and "human reply 7" in dom
    assert "<b>bold</b>" not in dom and "&lt;b&gt;bold&lt;/b&gt;" in dom  # text, never markup

    shot = tmp_path / "report.png"
    r = _browser(tmp_path, f"--screenshot={shot}", "--window-size=1280,1400", "--hide-scrollbars", page.as_uri())
    assert shot.exists(), r.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (1400, 1280)
    # Not blank: dark text on a light page, and the tinted cells of the table.
    dark = (pixels.mean(axis=2) < 0.3).mean()
    assert 0.005 < dark < 0.5 and pixels.std() > 0.05
    if os.environ.get("DORL_SCREENSHOT"):
        shutil.copy(shot, os.environ["DORL_SCREENSHOT"])
