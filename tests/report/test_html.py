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


# ---------------------------------------------------------------- data is never code (issue 27)

# Dialogue text that would run script or swallow the page if the page were built by pasting text into HTML:
# a comment opener before "<script>" inside the data block, a closing tag, an inline event handler, a template
# placeholder of the old page, a Jinja expression and a CSP breaker.
ATTACKS = [
    "<!--<script>",
    "</script><img src=x onerror=\"document.body.setAttribute('data-pw'+'ned','1')\">",
    "<svg onload=\"document.body.setAttribute('data-pw'+'ned','2')\">",
    "@DATA@ @RESULTS@ {{ 7*7 }} {% raw %}",
    "\"'><script>document.body.setAttribute('data-pw'+'ned','3')</script>",
    "\u2028\u2029 & &amp; ]]> <![CDATA[",
]


def _attack_eval(uri, method, bert, order, dataset="abcd"):
    pred = pd.DataFrame(
        {
            "dialogue_id": [f"d{i}" for i in order],
            "turn_index": [3] * N,
            "context": [f"<_soc_><_cus_start_>{ATTACKS[i % len(ATTACKS)]}<_cus_end_>" for i in order],
            "true_response": [ATTACKS[(i + 1) % len(ATTACKS)] for i in order],
            "response_1": [ATTACKS[(i + 2) % len(ATTACKS)] + f" {method} {i}" for i in order],
            "bertscore_1": bert[order],
            "meteor_1": np.zeros(N),
            "bleu_1": np.zeros(N),
        }
    )

    def body(ctx):
        pred.to_csv(ctx.out.path("predictions.csv"), index=False)
        ctx.info.update(method=method, dataset=dataset)

    return run_stage("evaluate", uri, {"method": method}, {}, body).artifact.uri


@pytest.fixture(scope="module")
def attack_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attack")
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.7, N)
    dt = base + 0.05
    dt[7] = 0.99
    uris = [
        _attack_eval(str(tmp / "tf"), "tf", base, np.arange(N)),
        _attack_eval(str(tmp / "dt"), "dt", dt, rng.permutation(N)),
    ]
    cfg = config.load(sets=["report.bootstrap=200"])
    return report(cfg, eval_uris=uris, out_uri=str(tmp / "report")).artifact


def test_page_has_no_inline_handlers_and_a_strict_csp(html_report, attack_report):
    for art in (html_report[0], attack_report):
        page = art.read_bytes("report.html").decode()
        csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
        assert "script-src 'sha256-" in csp and "default-src 'none'" in csp
        # Exactly two script elements: the data (never run) and the page's own code (allowed by its hash).
        assert page.count("<script") == 2 and page.count("</script>") == 2
        assert not re.search(r"<[^>]*\son\w+\s*=", page, re.I), "an inline event handler in the page"
        # In the data block no '<' at all: nothing inside it can end it or open a comment.
        blob = re.search(r'<script type="application/json" id="dorl-data">(.*?)</script>', page, re.S).group(1)
        assert "<" not in blob and ">" not in blob
    data = _data(attack_report.read_bytes("report.html").decode())["abcd"]
    rows = {r["id"]: r for r in data["rows"]}
    assert len(rows) == N
    for i in range(N):  # the attack strings come back unchanged, as data
        assert rows[f"d{i}#3"]["context"][0] == ["customer", ATTACKS[i % len(ATTACKS)]]
        assert rows[f"d{i}#3"]["human"] == ATTACKS[(i + 1) % len(ATTACKS)]


def test_attack_is_inert_in_chromium(attack_report, tmp_path):
    """The attack report renders like a normal one (same rows, same paging) and no script of the data runs."""
    r = _browser(tmp_path, "--dump-dom", attack_report.path("report.html").as_uri())
    dom = r.stdout
    assert 'data-rendered="1"' in dom, r.stderr[-2000:]
    assert "data-pwned" not in dom
    assert dom.count('<tr class="example">') == 20
    assert "30 of 30 examples · page 1 of 2" in dom
    first = dom.index('<tr class="example">')
    assert dom[first : first + 40].startswith('<tr class="example"><td>d7#3</td>')
    assert "&lt;!--&lt;script&gt;" in dom and "&lt;svg onload=" in dom  # shown as text
    if os.environ.get("DORL_SCREENSHOT"):
        shot = tmp_path / "attack.png"
        _browser(tmp_path, f"--screenshot={shot}", "--window-size=1280,1400", "--hide-scrollbars",
                 attack_report.path("report.html").as_uri())  # fmt: skip
        shutil.copy(shot, os.environ["DORL_SCREENSHOT"].replace(".png", "-attack.png"))


def _hostile_evals(tmp_path, method):
    """Evaluations whose manifest names `method` (made without the report's checks)."""
    rng = np.random.default_rng(1)
    base = rng.uniform(0.3, 0.7, N)
    return [
        _attack_eval(str(tmp_path / "tf"), "tf", base, np.arange(N)),
        _attack_eval(str(tmp_path / "x"), method, base + 0.1, np.arange(N)),
    ]


@pytest.mark.parametrize("name", ["@DATA@", "<img src=x onerror=alert(1)>", "Tf", "", "a" * 65, "_x", "x y"])
def test_names_from_manifests_are_checked(tmp_path, name):
    from dorl.errors import DataError

    uris = _hostile_evals(tmp_path, name)
    with pytest.raises(DataError) as e:
        report(config.load(sets=["report.bootstrap=50"]), eval_uris=uris, out_uri=str(tmp_path / "report"))
    assert "\n" not in str(e.value) and "method" in str(e.value) and uris[1] in str(e.value)
    assert not (tmp_path / "report" / "manifest.json").exists()


def test_baseline_is_a_method_name():
    from dorl.errors import ConfigError

    with pytest.raises(ConfigError, match="report.baseline"):
        config.load(sets=["report.baseline=x<b>"])


def test_template_escapes_names_even_unchecked(tmp_path):
    """Defence in depth: the page is safe even for names the report would refuse (html.write called directly)."""
    from dorl.report import html, table
    from dorl.report.plot import plot
    from dorl.stages.report import _load

    evals = [_load(u) for u in _hostile_evals(tmp_path, "m")]
    evals[1]["method"] = "@DATA@<img src=x onerror=document.body.dataset.pwned=4>"
    evals[1]["dataset"] = evals[0]["dataset"] = "@SECTIONS@</section><b>ds</b>"
    from dorl import config

    t, _ = table.build(evals, config.load(sets=["report.bootstrap=50"]).report, 0.6)
    plot(t, tmp_path / "p.png", 0.95)
    html.write(t, "@DATA@ <i>note</i>", evals, tmp_path / "p.png", tmp_path / "r.html", 1, 0.95)
    page = (tmp_path / "r.html").read_text()
    r = _browser(tmp_path, "--dump-dom", (tmp_path / "r.html").as_uri())
    assert 'data-rendered="1"' in r.stdout and "data-pwned" not in r.stdout, r.stderr[-2000:]
    assert "<img src=x" not in page and "<b>ds</b>" not in page and "<i>note</i>" not in page
    assert "&lt;img src=x onerror=document.body.dataset.pwned=4&gt;" in page and "&lt;i&gt;note&lt;/i&gt;" in page
    assert page.count("<script") == 2
