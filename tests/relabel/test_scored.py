"""`dorl relabel --scored`: your own scored responses as the scored candidates the methods train from, alone or
beside the beams; returns cut with relabel's bins; every bad row one line naming file, line and field."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dorl.config import load
from dorl.errors import ConfigError
from dorl.relabel.returns import edges, to_returns
from dorl.stages.data import prepare
from dorl.stages.relabel import relabel
from dorl.text import parse_context
from tests.conftest import REPO
from tests.data.test_own import dorl_main

EXAMPLES = REPO / "docs" / "examples"
SCORED = EXAMPLES / "support-scored.jsonl"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("scored") / "data"
    return prepare(load(), dataset="support", source=str(EXAMPLES / "support-chats.jsonl"), out_uri=str(out)).artifact


def write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def scored_rows() -> list[dict]:
    return [json.loads(line) for line in SCORED.read_text().splitlines()]


def _candidates(art, split="train") -> pd.DataFrame:
    return pd.read_parquet(art.path(f"candidates/{split}.parquet"))


def test_a_kto_file_becomes_the_candidates(data, tmp_path):
    art = relabel(load(), data_uri=data.uri, scored=str(SCORED), out_uri=str(tmp_path / "rl")).artifact
    assert set(art.manifest["inputs"]) == {"data"} and art.info["candidates"]["human"] is False
    assert art.info["reward"] == art.info["scored"]
    facts = art.info["scored"]
    assert facts["column"] == "label" and facts["rows"] == 60 and facts["matched_rows"] == 60
    assert (facts["min"], facts["max"]) == (0.0, 1.0)
    # every context is one of the data's examples: it takes that example's split, dialogue and turn
    for split in ("train", "validation", "test"):
        ex = pd.read_parquet(data.path(f"examples/{split}.parquet"))
        cands = _candidates(art, split)
        assert set(cands.dialogue_id) <= set(ex.dialogue_id) and len(cands) == 2 * cands.dialogue_id.nunique()
        merged = cands.merge(ex, on=["dialogue_id", "turn_index"], suffixes=("", "_data"))
        assert len(merged) == len(cands) and (merged.context == merged.context_data).all()
        assert (merged.response == merged.response_data).all()  # the data's human response, for reference
        assert list(cands.candidate_index.unique()) == [1, 2]  # no candidate 0: no human response added
        assert (cands["return"] == (cands.reward > 0.6)).all()  # label true -> 1.0 -> return 1 (threshold 0.6)
    # the same file read again: skipped; another reward name: refused (it is part of the stage's identity)
    again = relabel(load(), data_uri=data.uri, scored=str(SCORED), out_uri=str(tmp_path / "rl"))
    assert again.skipped
    other = load(sets=["data.sources.support.reward_name=resolved"])
    with pytest.raises(Exception, match="differs"):
        relabel(other, data_uri=data.uri, scored=str(SCORED), out_uri=str(tmp_path / "rl"))


def test_rewards_bins_text_prompts_splits_and_ids(data, tmp_path):
    rows = [{"prompt": r["prompt"], "completion": r["completion"], "reward": 4.0 if r["label"] else 1.0}
            for r in scored_rows()[:4]]  # fmt: skip
    rows[1]["reward"] = 2.5
    rows += [
        {"prompt": "Do you ship to Norway?", "completion": "Yes, in 3 to 5 days.", "reward": 5, "split": "train"},
        {"prompt": "Do you ship to Norway?", "completion": "No.", "reward": 1, "split": "train"},
        {"prompt": [{"role": "user", "content": "Hi"}], "completion": "Hello! How can I help?", "reward": 3.2,
         "id": "log-7"},
    ]  # fmt: skip
    cfg = load(
        sets=["relabel.return_bins=3", "relabel.return_edges=[2.0, 3.0]", "data.sources.support.reward_name=csat"]
    )
    art = relabel(
        cfg, data_uri=data.uri, scored=write(tmp_path / "s.jsonl", rows), out_uri=str(tmp_path / "rl")
    ).artifact
    assert art.info["reward"]["name"] == "csat" and art.info["reward"]["column"] == "reward"
    assert (art.info["reward"]["min"], art.info["reward"]["max"]) == (1.0, 5.0)
    alls = pd.concat([_candidates(art, s) for s in ("train", "validation", "test")])
    want = to_returns(alls.reward.to_numpy(), edges(cfg.relabel))  # relabel's own bins
    assert np.array_equal(alls["return"].to_numpy(), want) and set(want) == {0, 1, 2}
    norway = alls[alls.candidate.str.contains("Norway") | alls.context.str.contains("Norway")]
    assert len(norway) == 2 and set(norway.response) == {""}  # no human reference for a logged row
    assert norway.context.iloc[0] == "<_soc_><_cus_start_>Do you ship to Norway?<_cus_end_>"
    assert norway.dialogue_id.str.fullmatch(r"[0-9a-f]{16}").all() and norway.dialogue_id.nunique() == 1
    assert list(norway.candidate_index) == [1, 2] and (norway.turn_index == 1).all()
    assert set(_candidates(art, "train").dialogue_id) >= set(norway.dialogue_id)  # its split field
    [hi] = alls[alls.dialogue_id == "log-7"].itertuples()  # its id; a seeded split by that id
    assert parse_context(hi.context) == [("customer", "Hi")]


def test_both_the_beams_and_your_rows(data_artifact, tiny_model_artifact, tmp_path):
    """With --base the scored rows join the beams: candidate 0 the human response, 1..n the beams, then yours."""
    ex = pd.read_parquet(data_artifact.path("examples/train.parquet"))
    ex = ex[ex.turn_index == 2].head(3)  # contexts of one dialogue each (every dialogue opens with a greeting)
    rows = [{"prompt": c, "completion": "Let me check that for you.", "reward": 0.9} for c in ex.context]
    rows.append({"prompt": "an unmatched question", "completion": "an answer", "reward": 0.1, "split": "validation"})
    cfg = load(preset="tiny", sets=["relabel.num_candidates=2", "relabel.num_beams=2", "relabel.max_new_tokens=3"])
    art = relabel(
        cfg, data_uri=data_artifact.uri, base_uri=tiny_model_artifact.uri, scored=write(tmp_path / "s.jsonl", rows),
        out_uri=str(tmp_path / "rl"),
    ).artifact  # fmt: skip
    assert art.info["candidates"] == {"human": True, "beams": 2, "imported_from": 3}
    train = _candidates(art)
    first = train[(train.dialogue_id == ex.dialogue_id.iloc[0]) & (train.turn_index == 2)]
    assert list(first.candidate_index) == [0, 1, 2, 3] and first.candidate.iloc[3] == "Let me check that for you."
    assert first["return"].iloc[0] == 1 and first["return"].iloc[3] == 1  # the human (always) and 0.9 > 0.6
    n = len(pd.read_parquet(data_artifact.path("examples/train.parquet")))
    assert len(train) == 3 * n + 3 and art.info["counts"]["train"]["imported"] == 3
    val = _candidates(art, "validation")
    assert val.iloc[-1].candidate == "an answer" and val.iloc[-1]["return"] == 0  # after every example
    assert set(art.manifest["inputs"]) == {"data", "model"} and "scored" in art.config


def test_what_relabel_needs(data, tmp_path):
    with pytest.raises(ConfigError, match="needs --base .* or --scored FILE"):
        relabel(load(), data_uri=data.uri, out_uri=str(tmp_path / "a"))
    sets = ["data.sources.support.scored=" + str(SCORED), "data.sources.support.candidates=scored"]
    art = relabel(load(sets=sets), data_uri=data.uri, out_uri=str(tmp_path / "b")).artifact  # from the config
    assert art.info["scored"]["rows"] == 60
    with pytest.raises(ConfigError, match="'scored' makes the candidates your scored rows alone"):
        relabel(load(sets=sets), data_uri=data.uri, base_uri=str(tmp_path / "tf"), out_uri=str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="your scored rows alone need neither"):
        relabel(load(), data_uri=data.uri, scored=str(SCORED), out_uri=str(tmp_path / "d"), assemble=2)


def _set(i, key, value):
    def change(rows):
        rows[i][key] = value

    return change


def _del(i, key):
    def change(rows):
        del rows[i][key]

    return change


def _prompt_role(rows):
    rows[2]["prompt"][1]["role"] = "tool"


BAD = {  # change -> (where, what)
    "missing prompt": (_del(3, "prompt"), "line 4, field 'prompt'", "missing"),
    "prompt not a list or text": (_set(3, "prompt", 7), "line 4, field 'prompt'", "expected a list of role/content"),
    "unknown role": (_prompt_role, "line 3, field 'prompt[1].role'", "unknown role str 'tool'"),
    "missing completion": (_del(4, "completion"), "line 5, field 'completion'", "missing"),
    "empty completion": (_set(4, "completion", " "), "line 5, field 'completion'", "empty content"),
    "two completion messages": (_set(4, "completion", [{"role": "assistant", "content": "a"}] * 2),
                                "line 5, field 'completion'", "expected one assistant message, got 2"),
    "label not a bool": (_set(5, "label", "yes"), "line 6, field 'label'", "expected true or false, got str 'yes'"),
    "missing label": (_del(5, "label"), "line 6, field 'label'", "missing (the first row has label"),
    "reward and label": (_set(6, "reward", 0.5), "line 7, field 'reward'", "has both 'reward' and 'label'"),
    "unknown split": (_set(7, "split", "holdout"), "line 8, field 'split'", "unknown split str 'holdout'"),
    "lone surrogate": (_set(8, "completion", "ok \ud800"), "line 9, field 'completion'", "lone surrogate"),
    "special token": (_set(8, "completion", "<_eos_>"), "line 9, field 'completion'", "special token <_eos_>"),
    "not a context": (_set(9, "prompt", "<_soc_>hi"), "line 10, field 'prompt'", "not a dorl context"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_row_is_one_line_and_nothing_is_written(data, tmp_path, monkeypatch, capsys, case):
    change, where, what = BAD[case]
    rows = scored_rows()
    change(rows)
    src = write(tmp_path / "scored.jsonl", rows)
    out = tmp_path / "rl"
    code, _, err = dorl_main(monkeypatch, capsys, "relabel", "--data", data.uri, "--scored", src, "--out", str(out))
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"{src}: {where}" in err and what in err, err
    assert not out.exists()


def test_other_bad_files(data, tmp_path, monkeypatch, capsys):
    def fails(src, *needles):
        code, _, err = dorl_main(monkeypatch, capsys, "relabel", "--data", data.uri, "--scored", str(src), "--out",
                                 str(tmp_path / "o"))  # fmt: skip
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        for n in needles:
            assert n in err, err
        assert not (tmp_path / "o").exists()

    (tmp_path / "broken.jsonl").write_text(SCORED.read_text().splitlines()[0] + "\n{oops\n")
    fails(tmp_path / "broken.jsonl", "broken.jsonl: line 2: not JSON")
    nan = [{**r, "reward": float("nan")} for r in scored_rows()]
    for r in nan:
        r.pop("label")
    (tmp_path / "nan.jsonl").write_text("".join(json.dumps(r) + "\n" for r in nan))  # json writes NaN
    fails(tmp_path / "nan.jsonl", "line 1, field 'reward': expected a finite number, got float nan")
    fails(write(tmp_path / "neither.jsonl", [{"prompt": "a", "completion": "b"}]), "line 1: expected 'reward'")
    code, _, err = dorl_main(monkeypatch, capsys, "relabel", "--data", data.uri, "--scored", str(SCORED), "--out",
                             str(tmp_path / "o"), "--set", "data.max_file_mb=0.001")  # fmt: skip
    assert code == 2 and "over the limit of 0.001 MiB (data.max_file_mb)" in err, err
