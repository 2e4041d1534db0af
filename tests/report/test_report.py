"""The report: every number recomputed here from the evaluation artifacts' predictions.csv."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dorl import config
from dorl.errors import DataError
from dorl.report.bootstrap import holm
from dorl.stages.report import report
from dorl.store import run_stage
from tests.conftest import run_dorl

N = 60


def _eval_artifact(uri, dataset, method, bert, meteor, contexts=None, released=False):
    contexts = contexts or [f"<_soc_>context {i}" for i in range(N)]
    pred = pd.DataFrame(
        {
            "context": contexts,
            "true_response": [f"truth {i}" for i in range(N)],
            "response_1": [f"{method} says {i}" for i in range(N)],
            "bertscore_1": bert,
            "meteor_1": meteor,
            "bleu_1": np.zeros(N),
        }
    )

    def body(ctx):
        pred.to_csv(ctx.out.path("predictions.csv"), index=False)
        ctx.out.path("metrics.json").write_text(json.dumps({"method": method}))
        ctx.info.update(method=method, dataset=dataset, **({"released": True} if released else {}))

    return run_stage("evaluate", uri, {"method": method, "dataset": dataset}, {}, body).artifact


@pytest.fixture
def evals(tmp_path):
    rng = np.random.default_rng(7)
    tf_bert = rng.uniform(0.3, 0.7, N)
    tf_met = rng.uniform(0, 0.5, N)
    uris = {
        "tf": _eval_artifact(str(tmp_path / "tf"), "abcd", "tf", tf_bert, tf_met).uri,
        # Clearly better on BERTScore, identical METEOR.
        "dt": _eval_artifact(str(tmp_path / "dt"), "abcd", "dt", tf_bert + 0.1, tf_met).uri,
        "tf_top": _eval_artifact(str(tmp_path / "top"), "abcd", "tf_top", tf_bert - 0.1, tf_met).uri,
    }
    return uris, {"tf": (tf_bert, tf_met), "dt": (tf_bert + 0.1, tf_met), "tf_top": (tf_bert - 0.1, tf_met)}


def _boot(values, n_boot, seed):
    idx = np.random.default_rng(seed).integers(0, len(values), size=(n_boot, len(values)))
    return values[idx].mean(axis=1)


def test_every_number_recomputed(evals, tmp_path):
    uris, raw = evals
    cfg = config.load(sets=["report.bootstrap=400", "report.seed=3", "report.test=t"])
    art = report(cfg, eval_uris=list(uris.values()), out_uri=str(tmp_path / "report")).artifact
    table = pd.read_csv(art.path("results.csv"))
    assert {"results.md", "results.csv", "results.json", "results.png"} <= set(art.files)
    assert art.path("results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for method, (bert, met) in raw.items():
        for metric, values in {
            "bertscore": bert,
            "meteor": met,
            "bleu": np.zeros(N),
            "bert_click": (bert > 0.6).astype(float),
        }.items():
            row = table[(table.method == method) & (table.metric == metric)].iloc[0]
            assert row["n"] == N
            assert row["mean"] == pytest.approx(values.mean())
            means = _boot(values, 400, 3)
            assert row["ci_low"] == pytest.approx(np.quantile(means, 0.025))
            assert row["ci_high"] == pytest.approx(np.quantile(means, 0.975))
            if method == "tf":
                assert np.isnan(row["p_value"])
                continue
            diff = (
                values
                - {
                    "bertscore": raw["tf"][0],
                    "meteor": raw["tf"][1],
                    "bleu": np.zeros(N),
                    "bert_click": (raw["tf"][0] > 0.6).astype(float),
                }[metric]
            )
            assert row["delta"] == pytest.approx(diff.mean())
            dm = _boot(diff, 400, 3)
            assert row["delta_low"] == pytest.approx(np.quantile(dm, 0.025))
            p = 1.0 if np.all(diff == 0) else stats.ttest_rel(values, values - diff).pvalue
            assert row["p_value"] == pytest.approx(p)
            assert row["seeds"] == 1 and np.isnan(row["seed_low"])
            assert np.isnan(row["control_p_value"])  # no tf_human evaluated: no control comparison
    # Holm across the family: the 2 methods x 4 metrics compared with tf (BLEU all zero: p = 1).
    assert table["p_holm"].to_numpy()[table["p_value"].notna()] == pytest.approx(
        holm(table["p_value"].dropna().to_numpy())
    )
    results = json.loads(art.read_bytes("results.json"))
    assert results["statistics"]["test"] == "t" and results["statistics"]["family"] == 8
    # dt is significantly better on BERTScore, tf_top worse, METEOR identical (p = 1).
    dt_b = table[(table.method == "dt") & (table.metric == "bertscore")].iloc[0]
    top_b = table[(table.method == "tf_top") & (table.metric == "bertscore")].iloc[0]
    assert dt_b["p_value"] < 0.05 < 1 - dt_b["p_value"] and top_b["delta"] < 0
    assert table[(table.method == "dt") & (table.metric == "meteor")].iloc[0]["p_value"] == 1.0

    md = art.read_bytes("results.md").decode()
    header = md.splitlines()[0]
    assert header.startswith("| method | abcd BERTScore | abcd METEOR | abcd BLEU | abcd BERT-click |")
    lines = _rows(md)
    assert list(lines)[1:] == ["tf", "tf_top", "dt"]  # the paper's method order
    dt_cell = lines["dt"].split("|")[2].strip()
    assert dt_cell == f"{dt_b['mean']:.3f} [{dt_b['ci_low']:.3f}, {dt_b['ci_high']:.3f}]*"
    assert lines["tf_top"].split("|")[2].strip().endswith("†")


def _rows(md: str) -> dict[str, str]:
    """The main table's lines (the first table of results.md), by method."""
    table = md.split("\n\n")[0]
    return {ln.split("|")[1].strip(): ln for ln in table.splitlines() if ln.startswith("| ")}


def test_different_examples_are_refused(tmp_path):
    bert = np.full(N, 0.5)
    a = _eval_artifact(str(tmp_path / "tf"), "abcd", "tf", bert, bert).uri
    b = _eval_artifact(str(tmp_path / "dt"), "abcd", "dt", bert, bert, contexts=[f"other {i}" for i in range(N)]).uri
    with pytest.raises(DataError, match="evaluated on different examples"):
        report(config.load(), eval_uris=[a, b], out_uri=str(tmp_path / "report"))


def test_cli_errors(tmp_path):
    r = run_dorl("report", "--eval", str(tmp_path / "missing"), "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "no artifact at" in r.stderr and "Traceback" not in r.stderr
    bert = np.full(N, 0.5)
    uri = _eval_artifact(str(tmp_path / "tf"), "abcd", "tf", bert, bert).uri
    r = run_dorl("report", "--eval", uri, "--eval", uri, "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "is given twice" in r.stderr


def test_holm_adjusted_p_values():
    # statsmodels.stats.multitest.multipletests([0.01, 0.04, 0.03, 0.005], method="holm")[1]
    got = holm([0.01, 0.04, np.nan, 0.03, 0.005])
    assert got[[0, 1, 3, 4]] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(got[2])


def test_mark_follows_confidence_and_holm(evals, tmp_path):
    """A difference significant at p < 0.05 alone but not after Holm's correction across comparisons is unmarked;
    report.confidence sets the level."""
    uris, raw = evals
    rng = np.random.default_rng(11)
    bert = raw["tf"][0]
    # A small, noisy gain, 2.5 standard errors: raw p about 0.01, above 0.05 after Holm's correction.
    noise = rng.normal(size=N)
    gain = 0.05 * (noise - noise.mean()) / noise.std() + 0.05 * 2.5 / np.sqrt(N)
    small = _eval_artifact(str(tmp_path / "all"), "abcd", "tf_all", bert + gain, raw["tf"][1]).uri
    cfg = config.load(sets=["report.bootstrap=2000"])
    art = report(cfg, eval_uris=[*uris.values(), small], out_uri=str(tmp_path / "r95")).artifact
    t = pd.read_csv(art.path("results.csv"))
    row = t[(t.method == "tf_all") & (t.metric == "bertscore")].iloc[0]
    assert 0.0 < row["p_value"] < 0.05 <= row["p_holm"] < 0.2, (row["p_value"], row["p_holm"])
    lines = _rows(art.read_bytes("results.md").decode())
    assert not lines["tf_all"].split("|")[2].strip().endswith("*")
    assert lines["dt"].split("|")[2].strip().endswith("*")
    assert "Holm-adjusted p < 0.05" in art.read_bytes("results.md").decode()
    # At 80% the same comparison is marked.
    cfg = config.load(sets=["report.bootstrap=2000", "report.confidence=0.8"])
    art = report(cfg, eval_uris=[*uris.values(), small], out_uri=str(tmp_path / "r80")).artifact
    md = art.read_bytes("results.md").decode()
    lines = _rows(md)
    assert lines["tf_all"].split("|")[2].strip().endswith("*") and "Holm-adjusted p < 0.2" in md


def test_seeds(tmp_path):
    """Three seeds of dt and two of tf: per-example means over seeds for the interval over examples and the paired
    test, the t-interval over the seeds' means."""
    from scipy import stats

    rng = np.random.default_rng(5)
    tf = [rng.uniform(0.3, 0.7, N) for _ in range(2)]
    dt = [t + d for t, d in zip([tf[0], tf[1], tf[0]], (0.05, 0.08, 0.11))]
    uris = [_eval_artifact(str(tmp_path / f"tf{i}"), "abcd", "tf", b, b).uri for i, b in enumerate(tf)]
    uris += [_eval_artifact(str(tmp_path / f"dt{i}"), "abcd", "dt", b, b).uri for i, b in enumerate(dt)]
    art = report(config.load(sets=["report.bootstrap=300"]), eval_uris=uris, out_uri=str(tmp_path / "r")).artifact
    t = pd.read_csv(art.path("results.csv"))
    row = t[(t.method == "dt") & (t.metric == "bertscore")].iloc[0]
    per_example = np.mean(dt, axis=0)
    seed_means = np.array([d.mean() for d in dt])
    half = stats.t.ppf(0.975, 2) * seed_means.std(ddof=1) / np.sqrt(3)
    assert row["seeds"] == 3 and row["mean"] == pytest.approx(per_example.mean())
    assert row["seed_low"] == pytest.approx(seed_means.mean() - half)
    assert row["seed_high"] == pytest.approx(seed_means.mean() + half)
    assert row["ci_low"] == pytest.approx(np.quantile(_boot(per_example, 300, 0), 0.025))
    assert row["delta"] == pytest.approx((per_example - np.mean(tf, axis=0)).mean())
    assert t[(t.method == "tf") & (t.metric == "bertscore")].iloc[0]["seeds"] == 2
    md = art.read_bytes("results.md").decode()
    dt_cell = [ln for ln in md.splitlines() if ln.startswith("| dt ")][0].split("|")[2].strip()
    assert dt_cell == f"{row['mean']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}] ±{half:.3f}*"
    assert "Several seeds (tf: 2, dt: 3)" in md
    assert {"eval_abcd_dt", "eval_abcd_dt_1", "eval_abcd_dt_2"} <= set(art.manifest["inputs"])
    # Seeds as a random effect: the gain's t-interval over the seeds' gains (3 dt seeds against tf's mean: tf has 2).
    gains = seed_means - np.mean([x.mean() for x in tf])
    g_half = stats.t.ppf(0.975, 2) * gains.std(ddof=1) / np.sqrt(3)
    assert row["gain_seed_low"] == pytest.approx(gains.mean() - g_half)
    assert row["gain_seed_high"] == pytest.approx(gains.mean() + g_half)
    assert f"seeds [{gains.mean() - g_half:+.3f}, {gains.mean() + g_half:+.3f}]" in md
    assert "**Warning**: only 2 seeds for some methods" in md  # tf's 2 seeds: 1 degree of freedom


def test_seeds_all_the_way_pair_each_seed_with_the_baselines_same_seed(tmp_path):
    """With as many tf seeds as method seeds (pipeline.seed_scope=all), seed s's gain is against tf's seed s."""
    rng = np.random.default_rng(6)
    tf = [rng.uniform(0.3, 0.7, N) for _ in range(3)]
    dt = [t + d for t, d in zip(tf, (0.05, 0.02, 0.08))]
    uris = [_eval_artifact(str(tmp_path / f"tf{i}"), "abcd", "tf", b, b).uri for i, b in enumerate(tf)]
    uris += [_eval_artifact(str(tmp_path / f"dt{i}"), "abcd", "dt", b, b).uri for i, b in enumerate(dt)]
    art = report(config.load(sets=["report.bootstrap=100"]), eval_uris=uris, out_uri=str(tmp_path / "r")).artifact
    row = pd.read_csv(art.path("results.csv")).query("method == 'dt' and metric == 'bertscore'").iloc[0]
    gains = np.array([0.05, 0.02, 0.08])
    half = stats.t.ppf(0.975, 2) * gains.std(ddof=1) / np.sqrt(3)
    assert row["gain_seed_low"] == pytest.approx(gains.mean() - half)
    assert "Warning" not in art.read_bytes("results.md").decode()  # 3 seeds everywhere


@pytest.mark.parametrize("test", ["sign_flip", "bootstrap"])
def test_a_clear_gain_is_never_p_zero(evals, tmp_path, test):
    """The audit's finding: with report.bootstrap=1000 the paired bootstrap reported p = 0, which Holm then kept.
    The smallest p a resampling test gives is 1/(B+1), and the report says how many resamples it drew."""
    uris, _ = evals
    cfg = config.load(sets=[f"report.test={test}", "report.resamples=400"])
    art = report(cfg, eval_uris=list(uris.values()), out_uri=str(tmp_path / "r")).artifact
    row = pd.read_csv(art.path("results.csv")).query("method == 'dt' and metric == 'bertscore'").iloc[0]
    assert row["p_value"] == pytest.approx(1 / 401)
    assert row["p_holm"] == pytest.approx(min(1.0, 8 / 401))  # the smallest p of 8 comparisons
    stats_ = json.loads(art.read_bytes("results.json"))["statistics"]
    assert stats_["resamples"] == 400 and stats_["family"] == 8 and stats_["smallest_p"] == pytest.approx(1 / 401)
    assert "400 resamples" in art.read_bytes("results.md").decode()


def test_auto_resamples_follow_the_family(evals, tmp_path):
    uris, _ = evals
    art = report(config.load(), eval_uris=list(uris.values()), out_uri=str(tmp_path / "r")).artifact
    stats_ = json.loads(art.read_bytes("results.json"))["statistics"]
    assert stats_["test"] == "sign_flip" and stats_["family"] == 8 and stats_["resamples"] == 10_000


def test_the_control_is_a_second_comparison(evals, tmp_path):
    """tf_human (the same recipe on the human responses alone) is a row, and every other method's gain against it is
    a second column, tested in the same Holm family as the gains against tf."""
    uris, raw = evals
    human = raw["tf"][0] + 0.08
    extra = _eval_artifact(str(tmp_path / "human"), "abcd", "tf_human", human, raw["tf"][1]).uri
    cfg = config.load(sets=["report.bootstrap=200", "report.resamples=2000"])
    art = report(cfg, eval_uris=[*uris.values(), extra], out_uri=str(tmp_path / "r")).artifact
    t = pd.read_csv(art.path("results.csv"))
    assert list(dict.fromkeys(t["method"])) == ["tf", "tf_human", "tf_top", "dt"]
    dt = t.query("method == 'dt' and metric == 'bertscore'").iloc[0]
    assert dt["control_delta"] == pytest.approx((raw["dt"][0] - human).mean())  # +0.02
    assert dt["delta"] == pytest.approx(0.1)
    assert np.isnan(t.query("method == 'tf_human'")["control_p_value"]).all()  # not against itself
    assert np.isnan(t.query("method == 'tf'")["control_p_value"]).all()
    family = int(t["p_value"].notna().sum() + t["control_p_value"].notna().sum())
    assert family == 3 * 4 + 2 * 4
    joint = holm(np.concatenate([t["p_value"], t["control_p_value"]]))
    assert np.allclose(np.concatenate([t["p_holm"], t["control_p_holm"]]), joint, equal_nan=True)
    md = art.read_bytes("results.md").decode()
    assert "### Gains against `tf` and against the control `tf_human`" in md
    assert "| method | BERTScore vs tf | BERTScore vs tf_human |" in md
    assert json.loads(art.read_bytes("results.json"))["statistics"]["family"] == 20


def test_a_released_checkpoint_sits_beside_dorls_own(evals, tmp_path):
    """An evaluation of an imported reference checkpoint (`dorl models import`) is its own row, `dt (released)`,
    right after dorl's `dt`, and is tested against the baseline like any other."""
    uris, raw = evals
    rng = np.random.default_rng(11)
    bert, met = rng.uniform(0.3, 0.7, N), rng.uniform(0, 0.5, N)
    extra = [
        _eval_artifact(str(tmp_path / "dt-rel"), "abcd", "dt", bert, met, released=True).uri,
        _eval_artifact(str(tmp_path / "tf-rel"), "abcd", "tf", bert, met, released=True).uri,
    ]
    cfg = config.load(sets=["report.bootstrap=100"])
    art = report(cfg, eval_uris=list(uris.values()) + extra, out_uri=str(tmp_path / "report")).artifact
    table = pd.read_csv(art.path("results.csv"))
    assert list(dict.fromkeys(table["method"])) == ["tf", "tf (released)", "tf_top", "dt", "dt (released)"]
    row = table[(table.method == "dt (released)") & (table.metric == "bertscore")].iloc[0]
    assert row["mean"] == pytest.approx(bert.mean()) and row["delta"] == pytest.approx(
        bert.mean() - raw["tf"][0].mean()
    )
    md = art.path("results.md").read_text()
    assert md.index("| dt |") < md.index("| dt (released) |")
    assert {"eval_abcd_dt", "eval_abcd_dt_released", "eval_abcd_tf_released"} <= set(art.manifest["inputs"])
    assert "dt (released)" in art.path("report.html").read_text()


def test_what_the_reader_needs_besides_the_numbers(tmp_path, data_artifact):
    """The report follows each evaluation to the artifacts it read: the training reward (the relabel artifact's
    relabel.reward, marked in the header), the train/test overlap of the data (and of the evaluated examples, two of
    which are training examples here), and how many of DT's responses changed with its return token."""
    from tests.fixtures import make_relabel_artifact

    relabel = make_relabel_artifact(str(tmp_path / "relabel"), data_artifact)
    test = pd.read_parquet(data_artifact.path("examples/test.parquet"))
    train = pd.read_parquet(data_artifact.path("examples/train.parquet"))
    examples = pd.concat([test, train.head(2)], ignore_index=True)  # two evaluated pairs from training
    n = len(examples)
    uris = []
    for method, bert in (("tf", 0.4), ("dt", 0.5)):
        model = run_stage(f"train/{method}", str(tmp_path / method), {"m": method}, {"data": relabel},
                          lambda ctx, m=method: ctx.info.update(method=m)).artifact  # fmt: skip
        pred = pd.DataFrame({"dialogue_id": examples["dialogue_id"], "turn_index": examples["turn_index"],
                             "context": examples["context"], "true_response": examples["response"],
                             "response_1": "x", "bertscore_1": np.full(n, bert)})  # fmt: skip

        def body(ctx, pred=pred, method=method):
            pred.to_csv(ctx.out.path("predictions.csv"), index=False)
            ctx.info.update(method=method, dataset="abcd")
            if method == "dt":
                ctx.metrics["generation"] = {"return_token": {"top": "a", "bottom": "b", "n": len(pred), "changed": 3}}

        inputs = {"model": model, "data": data_artifact}
        uris.append(run_stage("evaluate", str(tmp_path / f"eval-{method}"), {"m": method}, inputs, body).artifact.uri)
    art = report(config.load(sets=["report.bootstrap=100"]), eval_uris=uris, out_uri=str(tmp_path / "r")).artifact
    checks = json.loads(art.read_bytes("results.json"))["checks"]
    assert checks["reward"]["abcd"]["metric"] == "bertscore" and checks["reward"]["abcd"]["threshold"] == 0.6
    seen = set(train["response"])
    data = checks["overlap"]["abcd"]["data"]
    assert data["responses_in_train"] == int(test["response"].isin(seen).sum()) and data["examples"] == len(test)
    evaluated = checks["overlap"]["abcd"]["evaluated"]
    assert evaluated["examples"] == n and evaluated["pairs_in_train"] >= 2
    assert evaluated["responses_in_train"] == int(examples["response"].isin(seen).sum())
    assert checks["dt_token"]["abcd"] == [{"top": "a", "bottom": "b", "n": n, "changed": 3}]
    assert art.path("dt_token.png").read_bytes()[:4] == b"\x89PNG"
    md = art.read_bytes("results.md").decode()
    assert md.splitlines()[0].startswith("| method | abcd BERTScore (reward) | abcd BERT-click (reward) |")
    assert f"3 of {n} ({3 / n:.1%})" in md and "trained on `bertscore`" in md
