"""The real raw samples in ../shared/data parse and render as the reference rules say.

Expected strings and counts are written by hand from the raw files and the rules (docs/data.md, the
reference's text format), not produced by the code under test.
"""

from __future__ import annotations

import gzip
import json
import shutil

import pandas as pd
import pytest

from dorl.config import load
from dorl.data import abcd, multiwoz, taskmaster
from dorl.data.dialogue import Dialogue, load_json
from dorl.stages.data import prepare
from dorl.text import examples, render_conversation
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not present")

ABCD = SHARED_DATA / "abcd"
MWOZ = SHARED_DATA / "multiwoz22"
TM3 = SHARED_DATA / "taskmaster3"


def _by_id(entries):
    assert all(isinstance(e, Dialogue) for e in entries)
    return {e.id: e for e in entries}


def test_abcd_samples_drop_action_rows_and_count_agent_turns():
    d = _by_id(abcd.parse_conversations(load_json(ABCD / "dialogstudio_original_examples.json"), "ds.json"))
    assert list(d) == ["3592", "9489", "3695", "5798", "3647"]
    # rows in `original` minus action rows; agent rows = examples
    assert {k: len(v.turns) for k, v in d.items()} == {"3592": 25, "9489": 19, "3695": 19, "5798": 19, "3647": 20}
    assert {k: len(examples(v.turns)) for k, v in d.items()} == {
        "3592": 12,
        "9489": 9,
        "3695": 11,
        "5798": 12,
        "3647": 7,
    }
    ex = examples(d["3592"].turns)
    # The agent speaks first, twice in a row: each turn is an example.
    assert ex[0] == (0, "<_soc_>", "Hi!")
    assert ex[1] == (1, "<_soc_><_rep_start_>Hi!<_rep_end_>", "How can I help you?")
    assert ex[2] == (
        3,
        "<_soc_><_rep_start_>Hi!<_rep_end_><_rep_start_>How can I help you?<_rep_end_>"
        "<_cus_start_>Hi! I need to return an item, can you help me with that?<_cus_end_>",
        "sure, may I have your name please?",
    )
    # The action row "Account has been pulled up for Crystal Minh." sits between these turns and is dropped.
    context, response = ex[4][1], ex[4][2]
    assert context.endswith(
        "<_rep_start_>thanks, may I ask the reason for the return?<_rep_end_>"
        "<_cus_start_>I got the wrong size.<_cus_end_>"
    )
    assert response == "ok, may I have your username, email address and order ID please?"
    conv = render_conversation(d["3592"].turns)
    assert conv.startswith("<_soc_><_rep_start_>Hi!<_rep_end_><_rep_start_>How can I help you?<_rep_end_>")
    assert conv.endswith("<_rep_start_>Have a great night!<_rep_end_><_cus_start_>That's it. Take care.<_cus_end_>")
    assert "pulled up" not in conv and "Purchase validation" not in conv
    assert conv.count("<_rep_start_>") == 12 and conv.count("<_cus_start_>") == 13


def test_abcd_sample_file_is_the_first_three():
    sample = _by_id(abcd.parse_conversations(load_json(ABCD / "abcd_sample.json"), "abcd_sample.json"))
    assert list(sample) == ["3592", "9489", "3695"]


def test_multiwoz_dialogstudio_examples():
    d = _by_id(multiwoz.parse_file(MWOZ / "dialogstudio_original_examples.json"))
    assert {k: len(examples(v.turns)) for k, v in d.items()} == {
        "SSNG0007.json": 4,
        "SNG1161.json": 3,
        "MUL1443.json": 7,
        "SNG01678.json": 3,
        "MUL1170.json": 6,
    }
    assert examples(d["SSNG0007.json"].turns)[0] == (
        1,
        "<_soc_><_cus_start_>I am looking for a Chinese place in the centre.<_cus_end_>",
        "I have 10 restaurants matching your request. Did you have a price range you would like?",
    )
    d = _by_id(multiwoz.parse_file(MWOZ / "dialogstudio_original_examples.c6afe3f.json"))
    assert {k: len(v.turns) for k, v in d.items()} == {
        "PMUL4398.json": 12,
        "SNG1013.json": 12,
        "PMUL0121.json": 14,
        "PMUL3484.json": 20,
        "SNG0389.json": 18,
    }


def test_multiwoz_dummy_files_prepare_as_official_splits(tmp_path):
    """hf_dummy_data has the upstream layout (21 files, 2 turns of 1 dialogue each): --source reads it."""
    art = prepare(
        load(), dataset="multiwoz22", source=str(MWOZ / "hf_dummy_data"), out_uri=str(tmp_path / "data")
    ).artifact
    counts = art.info["counts"]
    assert counts == {
        "train": {"dialogues": 17, "examples": 17},
        "validation": {"dialogues": 2, "examples": 2},
        "test": {"dialogues": 2, "examples": 2},
    }
    assert art.info["synthetic"] is False and art.info["dataset"] == "multiwoz22"
    train = pd.read_parquet(art.path("examples/train.parquet"))
    first = train.iloc[0]
    assert first.dialogue_id == "PMUL4398.json" and first.turn_index == 1
    assert first.context == "<_soc_><_cus_start_>i need a place to dine in the center thats expensive<_cus_end_>"
    assert first.response == "I have several options for you; do you prefer African, Asian, or British food?"
    val = pd.read_parquet(art.path("conversations/validation.parquet"))
    assert val.dialogue_id.iloc[0] == "PMUL0698.json"
    assert val.text.iloc[0] == (
        "<_soc_><_cus_start_>I'm looking for a local place to dine in the centre that serves chinese food.<_cus_end_>"
        "<_rep_start_>I have restaurants matching your criteria in all price ranges. Do you have a preference on "
        "price?<_rep_end_>"
    )
    # raw checksums of the inputs are recorded (this sha256 is MANIFEST.tsv's for the dummy train/dialogues_001.json)
    assert len(art.info["raw_files"]) == 21
    assert art.info["raw_files"]["train/dialogues_001.json"]["size"] == 1469


def test_taskmaster_examples_and_consecutive_agent_turns():
    d = _by_id(taskmaster.parse_file(TM3 / "dialogstudio_original_examples.json"))
    assert len(d) == 5 and all(len(v.turns) == 18 and len(examples(v.turns)) == 9 for v in d.values())
    first = d["dlg-bca5ce0a-056f-446e-be94-3ba77b32a84f"]
    assert examples(first.turns)[0] == (
        1,
        "<_soc_><_cus_start_>hi....am buying a ticket tonight so we go and see a movie at AMC mountain 16<_cus_end_>",
        "No problem. Is there a particular type of movie you\u2019re looking for?",
    )
    # The assistant may speak twice in a row; both turns are examples.
    turns = [("customer", "hi"), ("agent", "Let me check."), ("agent", "I found two films.")]
    record = {
        "conversation_id": "dlg-x",
        "utterances": [
            {"index": i, "speaker": "user" if s == "customer" else "assistant", "text": t}
            for i, (s, t) in enumerate(turns)
        ],
    }
    (parsed,) = taskmaster.parse_dialogs([record], "x.json")
    assert examples(parsed.turns) == [
        (1, "<_soc_><_cus_start_>hi<_cus_end_>", "Let me check."),
        (2, "<_soc_><_cus_start_>hi<_cus_end_><_rep_start_>Let me check.<_rep_end_>", "I found two films."),
    ]


def test_taskmaster_seeded_split_on_real_dialogs(tmp_path):
    """10 real dialogs as data_00 (5) and data_01 (5), data_02..19 empty: the reference's split by hand.

    numpy RandomState(42).permutation(10) = [8, 1, 5, 0, 7, 2, 9, 4, 3, 6]; int(10*0.8) = 8, int(10*0.9) = 9.
    """
    src = tmp_path / "TM-3-2020" / "data"
    src.mkdir(parents=True)
    shutil.copy(TM3 / "dialogstudio_original_examples.json", src / "data_00.json")
    shutil.copy(TM3 / "dialogstudio_original_examples.c6afe3f.json", src / "data_01.json")
    for k in range(2, 20):
        (src / f"data_{k:02d}.json").write_text("[]")
    art = prepare(
        load(), dataset="taskmaster3", source=str(tmp_path), out_uri=str(tmp_path / "data")
    ).artifact  # a clone's layout
    ids = {
        s: pd.read_parquet(art.path(f"conversations/{s}.parquet")).dialogue_id.str[4:12].tolist()
        for s in ("train", "validation", "test")
    }
    assert ids == {
        "train": ["93c4ad2c", "bd494e2c", "cdb028fc", "bca5ce0a", "77582711", "c9064676", "7ab34bbd", "df1f0d45"],
        "validation": ["f7500bcf"],
        "test": ["53054786"],
    }
    assert art.info["counts"]["train"] == {"dialogues": 8, "examples": 72}


def test_abcd_prepare_from_official_layout(tmp_path):
    convos = json.loads((ABCD / "dialogstudio_original_examples.json").read_text())
    raw = {"train": convos[:3], "dev": [convos[3]], "test": [convos[4]]}
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "abcd_v1.1.json.gz").write_bytes(gzip.compress(json.dumps(raw).encode()))
    art = prepare(load(), dataset="abcd", source=str(tmp_path / "src"), out_uri=str(tmp_path / "data")).artifact
    assert art.info["counts"] == {
        "train": {"dialogues": 3, "examples": 12 + 9 + 11},
        "validation": {"dialogues": 1, "examples": 12},
        "test": {"dialogues": 1, "examples": 7},
    }
    test = pd.read_parquet(art.path("examples/test.parquet"))
    assert test.dialogue_id.tolist() == ["3647"] * 7
    assert test.response.iloc[0] == "Hello, how can i help you"
    assert test.turn_index.dtype == "int32"
