"""`dorl data simulate|prepare|stats` through the real entrypoint; user errors exit 2 without a traceback."""

from __future__ import annotations

import json

from dorl.store import Artifact
from tests.conftest import run_dorl


def _user_error(r, *needles):
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


def test_simulate_prepare_stats(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "runs" / "abcd-data"
    r = run_dorl("data", "simulate", "--format", "abcd", "-n", "50", "--seed", "3", "--out", str(raw))
    assert r.returncode == 0, r.stderr
    assert (raw / "abcd_v1.1.json.gz").is_file() and (raw / "SYNTHETIC.json").is_file()
    r = run_dorl("data", "prepare", "--dataset", "abcd", "--source", str(raw), "--out", str(out), "--skip-bad")
    assert r.returncode == 0, r.stderr
    assert "train 40 dialogues" in r.stdout and "dialogues/s" in r.stderr
    art = Artifact(str(out))
    assert art.info["skipped"] == {"count": 0, "dialogues": []} and art.config["skip_bad"] is True
    r = run_dorl("data", "stats", str(out))
    assert r.returncode == 0, r.stderr
    assert "validation" in r.stdout and "context" in r.stdout and "p90" in r.stdout
    r = run_dorl("data", "stats", str(out), "--json")
    result = json.loads(r.stdout)
    assert result["splits"]["test"]["dialogues"] == 5
    assert result["splits"]["train"]["examples"] == art.info["counts"]["train"]["examples"]
    # how much of the test split repeats training word for word, recomputed here
    import pandas as pd

    train, test = (pd.read_parquet(art.path(f"examples/{s}.parquet")) for s in ("train", "test"))
    hits = int(test["response"].isin(set(train["response"])).sum())
    pairs = int(pd.MultiIndex.from_frame(test[["context", "response"]]).isin(
        pd.MultiIndex.from_frame(train[["context", "response"]])).sum())  # fmt: skip
    o = result["overlap"]
    assert (o["split"], o["examples"], o["responses_in_train"], o["pairs_in_train"]) == ("test", len(test), hits, pairs)
    assert o["responses"] == round(hits / len(test), 4)
    assert f"test responses found verbatim among train responses: {hits:,} of {len(test):,}" in " ".join(
        run_dorl("data", "stats", str(out)).stdout.split()
    )


def test_default_out_follows_the_run_layout(tmp_path):
    raw = tmp_path / "raw"
    assert run_dorl("data", "simulate", "--format", "taskmaster3", "-n", "20", "--out", str(raw)).returncode == 0
    r = run_dorl("data", "prepare", "--dataset", "taskmaster3", "--source", str(raw), "--set", f"root={tmp_path}/r")
    assert r.returncode == 0, r.stderr
    assert Artifact(str(tmp_path / "r" / "default" / "taskmaster3" / "data")).info["dialogues"] == 20


def test_user_errors(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "abcd_v1.1.json.gz").write_bytes(b"not gzip")
    _user_error(
        run_dorl("data", "prepare", "--dataset", "abcd", "--source", str(raw), "--out", str(tmp_path / "o")),
        "abcd_v1.1.json.gz",
        "not a valid gzip file",
    )
    assert not (tmp_path / "o").exists()
    _user_error(
        run_dorl("data", "prepare", "--dataset", "multiwoz22", "--source", str(raw), "--out", str(tmp_path / "o")),
        "missing multiwoz22 file(s) train/dialogues_001.json",
    )
    # any other name is your own dataset: a file or folder of conversations (tests/data/test_own.py)
    _user_error(
        run_dorl("data", "prepare", "--dataset", "woz", "--source", str(raw)), "a folder without files named by split"
    )
    _user_error(
        run_dorl("data", "prepare", "--dataset", "Woz", "--source", str(raw)), "--dataset: 'Woz' is not a dataset name"
    )
    _user_error(run_dorl("data", "stats", str(tmp_path / "nothing")), "no artifact at")
    _user_error(run_dorl("data", "simulate", "--format", "abcd", "-n", "0", "--out", str(tmp_path / "s")), "-n")


def test_bad_content_is_one_line_and_writes_nothing(tmp_path):
    """A lone surrogate in raw text fails while parsing (no partial parquet); a file given as an artifact folder
    is one line naming it."""
    import gzip
    import json

    raw, out = tmp_path / "raw", tmp_path / "o"
    r = run_dorl("data", "simulate", "--format", "abcd", "-n", "20", "--seed", "3", "--out", str(raw))
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(gzip.decompress((raw / "abcd_v1.1.json.gz").read_bytes()))
    split = next(iter(data))
    data[split][-1]["original"][0][1] = "bad \ud800 text"
    blob = json.dumps(data).encode()  # \ud800 escaped: valid JSON
    (raw / "abcd_v1.1.json.gz").write_bytes(gzip.compress(blob))
    r = run_dorl("data", "prepare", "--dataset", "abcd", "--source", str(raw), "--out", str(out))
    _user_error(r, "abcd_v1.1.json.gz", "lone surrogate")
    assert not out.exists() or not list(out.rglob("*.parquet"))

    afile = tmp_path / "afile.txt"
    afile.write_text("hi")
    for args in (["data", "stats", str(afile)], ["artifacts", "show", str(afile)]):
        _user_error(run_dorl(*args), str(afile), "is a file, not an artifact folder")
