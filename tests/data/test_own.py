"""Your own conversations as a dataset: the formats, layouts, splits and ids, and every bad input (one line, exit 2,
naming file, line or row and field; nothing written). The example file is docs/examples/support-chats.jsonl."""

from __future__ import annotations

import copy
import gzip
import json
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dorl.config import load
from dorl.errors import DataError
from dorl.stages.data import prepare
from dorl.store import Artifact
from dorl.text import SOC, SYS_END, SYS_START
from tests.conftest import REPO

EXAMPLE = REPO / "docs" / "examples" / "support-chats.jsonl"
SHAREGPT_ROLE = {"system": "system", "user": "human", "assistant": "gpt"}


def rows() -> list[dict]:
    return [json.loads(line) for line in EXAMPLE.read_text().splitlines()]


def sharegpt(rs: list[dict]) -> list[dict]:
    return [
        {
            "id": r["id"],
            "conversations": [{"from": SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in r["messages"]],
        }
        for r in rs
    ]


def write_jsonl(path, rs) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rs))
    return str(path)


def _prepare(source, out, *sets, dataset="support"):
    return prepare(load(sets=list(sets)), dataset=dataset, source=str(source), out_uri=str(out)).artifact


def dorl_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The real entrypoint in this process (user errors become exit 2 with one line)."""
    from dorl.cli import main

    monkeypatch.setattr(sys, "argv", ["dorl", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


# ---------------------------------------------------------------- the example, formats and layouts


def test_the_example_file_prepares_as_a_public_dataset_does(tmp_path, monkeypatch, capsys):
    code, out, err = dorl_main(
        monkeypatch, capsys, "data", "prepare", "--dataset", "support", "--source", str(EXAMPLE), "--out",
        str(tmp_path / "d"),
    )  # fmt: skip
    assert code == 0, err
    art = Artifact(str(tmp_path / "d"), expect_stage="data")
    assert art.info["dialogues"] == 30 and art.info["format"] == "messages" and art.info["conversational"]
    assert sum(c["dialogues"] for c in art.info["counts"].values()) == 30
    assert set(art.files) == {
        f"{t}/{s}.parquet" for t in ("examples", "conversations") for s in ("train", "validation", "test")
    }
    ex = pd.concat(pd.read_parquet(art.path(f"examples/{s}.parquet")) for s in ("train", "validation", "test"))
    assert list(ex.columns) == ["dialogue_id", "turn_index", "context", "response"]
    assert (
        len(ex)
        == art.info["examples"]
        == sum(len([m for m in r["messages"] if m["role"] == "assistant"]) for r in rows())
    )
    first = ex[ex.dialogue_id == "chat-001"].iloc[0]
    system = rows()[0]["messages"][0]["content"]
    # the system prompt is context: <_soc_><_sos_>…<_eos_>, then the turns; turn_index counts it
    customer = "<_cus_start_>Hi, my new Lumen Arc lamp won't show up in the app.<_cus_end_>"
    assert first.context == f"{SOC}{SYS_START}{system}{SYS_END}{customer}"
    assert first.response == "Sorry about that! Is the lamp blinking amber right now?" and first.turn_index == 2
    # chat-030 ends with two assistant turns: each is an example
    assert list(ex[ex.dialogue_id == "chat-030"].turn_index) == [2, 4, 5]
    # `dorl data stats` works on it
    code, out, err = dorl_main(monkeypatch, capsys, "data", "stats", str(tmp_path / "d"), "--json")
    assert code == 0 and json.loads(out)["dataset"] == "support"


def _other_forms(tmp_path) -> dict[str, str]:
    """The example's conversations in every format and layout that keeps them in one place."""
    import datasets

    rs = rows()
    forms = {"messages jsonl": str(EXAMPLE)}
    forms["sharegpt jsonl"] = write_jsonl(tmp_path / "sharegpt.jsonl", sharegpt(rs))
    pq.write_table(pa.Table.from_pylist(rs), tmp_path / "chats.parquet")
    forms["messages parquet"] = str(tmp_path / "chats.parquet")
    pq.write_table(pa.Table.from_pylist(sharegpt(rs)), tmp_path / "sharegpt.parquet")
    forms["sharegpt parquet"] = str(tmp_path / "sharegpt.parquet")
    (tmp_path / "chats.json").write_text(json.dumps(rs, indent=1))
    forms["messages json"] = str(tmp_path / "chats.json")
    with gzip.open(tmp_path / "chats.jsonl.gz", "wt") as f:
        f.write(EXAMPLE.read_text())
    forms["messages jsonl.gz"] = str(tmp_path / "chats.jsonl.gz")
    datasets.Dataset.from_list(rs).save_to_disk(str(tmp_path / "disk"))
    forms["save_to_disk"] = str(tmp_path / "disk")
    return forms


# What may differ between two data artifacts of the same conversations read from different files: the source they
# record (its files and their sha256, its format and layout, where it was), and the run's own facts (when, how long,
# how fast, with which library versions on which host). Everything else, every file included, is equal.
SOURCE_KEYS = {("config", "source"), ("info", "source"), ("info", "format"), ("info", "layout"), ("info", "raw_files")}
RUN_KEYS = {"created", "wall_time_s", "metrics", "versions", "host"}


def comparable(manifest: dict) -> dict:
    m = {k: v for k, v in copy.deepcopy(manifest).items() if k not in RUN_KEYS}
    for section, key in SOURCE_KEYS:
        m[section].pop(key)
    return m


def test_every_format_gives_a_byte_identical_artifact(tmp_path):
    forms = _other_forms(tmp_path)
    arts = {name: _prepare(src, tmp_path / f"out-{i}") for i, (name, src) in enumerate(forms.items())}
    ref = arts.pop("messages jsonl")
    assert ref.config["source"]["format"] == "messages"
    for name, art in arts.items():
        assert art.files == ref.files, name  # every file: same size and sha256
        assert comparable(art.manifest) == comparable(ref.manifest), name
        assert art.config["source"] != ref.config["source"], name  # the source is recorded, and differs
    assert arts["sharegpt jsonl"].config["source"]["format"] == "sharegpt"
    assert arts["save_to_disk"].info["layout"] == "save_to_disk"


def test_the_format_can_be_named_and_an_unmapped_name_is_refused(tmp_path):
    src = write_jsonl(tmp_path / "sg.jsonl", sharegpt(rows()))
    ref = _prepare(EXAMPLE, tmp_path / "a")
    assert _prepare(src, tmp_path / "b", "data.sources.support.format=sharegpt").files == ref.files
    with pytest.raises(DataError, match=r"sg.jsonl: line 1 \(conversation 'chat-001'\), field 'messages': missing"):
        _prepare(src, tmp_path / "c", "data.sources.support.format=messages")


def test_splits_from_files_from_a_column_or_seeded_and_ids_from_the_content(tmp_path):
    rs = rows()
    # one file per split (Hugging Face's names and shards included), in the folder or its data/
    folder = tmp_path / "folder"
    (folder / "data").mkdir(parents=True)
    write_jsonl(folder / "train.jsonl", rs[:20])
    pq.write_table(pa.Table.from_pylist(rs[20:25]), folder / "data" / "dev-00000-of-00001.parquet")
    write_jsonl(folder / "test.jsonl", rs[25:])
    (folder / "README.md").write_text("notes")
    art = _prepare(folder, tmp_path / "a")
    assert {s: c["dialogues"] for s, c in art.info["counts"].items()} == {"train": 20, "validation": 5, "test": 5}
    assert pd.read_parquet(art.path("conversations/validation.parquet")).dialogue_id.tolist() == [
        r["id"] for r in rs[20:25]
    ]
    assert art.info["split_rule"] == "the files' names"
    # a DatasetDict saved to disk: its keys are the splits
    import datasets

    parts = {"train": rs[:20], "validation": rs[20:25], "test": rs[25:]}
    dd = datasets.DatasetDict({s: datasets.Dataset.from_list(part) for s, part in parts.items()})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert _prepare(tmp_path / "dd", tmp_path / "b").files == art.files
    # a split column
    column = [{**r, "split": "train" if i < 20 else "validation" if i < 25 else "test"} for i, r in enumerate(rs)]
    assert _prepare(write_jsonl(tmp_path / "col.jsonl", column), tmp_path / "c").files == art.files
    # no ids: a stable id from the content (same conversation, same id, in either format)
    no_ids = [{k: v for k, v in r.items() if k != "id"} for r in rs]
    a = _prepare(write_jsonl(tmp_path / "noid.jsonl", no_ids), tmp_path / "d")
    b = _prepare(write_jsonl(tmp_path / "noid-sg.jsonl", [{"conversations": r["conversations"]} for r in sharegpt(rs)]),
                 tmp_path / "e")  # fmt: skip
    assert a.files == b.files
    ids = pd.concat(pd.read_parquet(a.path(f"conversations/{s}.parquet")) for s in ("train", "validation", "test"))
    assert ids.dialogue_id.str.fullmatch(r"[0-9a-f]{16}").all() and ids.dialogue_id.nunique() == 30
    # the seeded split: fractions and seed from the config, the same split whatever the file order
    fr = "data.sources.support.split_fractions=[0.5, 0.25, 0.25]"
    c = _prepare(EXAMPLE, tmp_path / "f", fr)
    assert {s: n["dialogues"] for s, n in c.info["counts"].items()} == {"train": 15, "validation": 7, "test": 8}
    shuffled = _prepare(write_jsonl(tmp_path / "rev.jsonl", rs[::-1]), tmp_path / "g", fr)
    for s in ("train", "validation", "test"):
        want = pd.read_parquet(c.path(f"conversations/{s}.parquet")).dialogue_id.tolist()
        assert pd.read_parquet(shuffled.path(f"conversations/{s}.parquet")).dialogue_id.tolist() == want[::-1]
    other_seed = _prepare(EXAMPLE, tmp_path / "h", fr, "data.sources.support.split_seed=7")
    assert other_seed.files != c.files


def test_a_role_map_and_the_role_dorl_responds_as(tmp_path):
    names = {"system": "instructions", "user": "customer", "assistant": "agent"}
    rs = [
        {**r, "messages": [{"role": names[m["role"]], "content": m["content"]} for m in r["messages"]]} for r in rows()
    ]
    rs[0]["messages"].insert(2, {"role": "tool", "content": {"order": 1}})  # skipped: its content is never read
    src = write_jsonl(tmp_path / "named.jsonl", rs)
    roles = ["data.sources.support.roles={customer: user, agent: assistant, instructions: system, tool: skip}"]
    assert _prepare(src, tmp_path / "a", *roles).files == _prepare(EXAMPLE, tmp_path / "ref").files
    # dorl learns to be the user: the user's turns are the responses, the assistant's the context
    art = _prepare(EXAMPLE, tmp_path / "b", "data.sources.support.respond_as=user")
    ex = pd.read_parquet(art.path("examples/train.parquet"))
    users = {r["id"]: [m["content"] for m in r["messages"] if m["role"] == "user"] for r in rows()}
    for did, part in ex.groupby("dialogue_id"):
        assert part.response.tolist() == users[did]  # every user turn is a response
    assert ex.context.iloc[1].endswith("<_cus_end_>")  # the assistant's turns are the customer's now


def test_the_source_can_live_on_s3(tmp_path, s3):
    import boto3

    client = boto3.client("s3")
    client.upload_file(str(EXAMPLE), s3, "logs/chats.jsonl")
    ref = _prepare(EXAMPLE, tmp_path / "ref")
    art = _prepare(f"s3://{s3}/logs/chats.jsonl", f"s3://{s3}/runs/support/data")
    assert art.files == ref.files and art.info["source"] == f"s3://{s3}/logs/chats.jsonl"
    rs = rows()
    for name, part in (("train.jsonl", rs[:20]), ("validation.jsonl", rs[20:25]), ("test.jsonl", rs[25:])):
        client.put_object(Bucket=s3, Key=f"split/{name}", Body="".join(json.dumps(r) + "\n" for r in part).encode())
    art = _prepare(f"s3://{s3}/split", tmp_path / "b")
    assert art.info["counts"]["validation"]["dialogues"] == 5
    with pytest.raises(DataError, match="no such object or prefix"):
        _prepare(f"s3://{s3}/nothing.jsonl", tmp_path / "c")
    with pytest.raises(DataError, match=r"over the limit of 0.01 MiB \(data.max_file_mb\)"):
        _prepare(f"s3://{s3}/logs/chats.jsonl", tmp_path / "d", "data.max_file_mb=0.01")


# ---------------------------------------------------------------- bad input


def _bad(rs: list, what) -> list:
    rs = copy.deepcopy(rs)
    what(rs)
    return rs


def _set(path, value):
    def change(rs):
        node = rs
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value

    return change


def _delete(path):
    def change(rs):
        node = rs
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]

    return change


def at(n: int, field: str = "", conversation: bool = True) -> str:
    """How an error names line n of the example (conversation chat-00n) and a field."""
    where = f"line {n}" + (f" (conversation 'chat-{n:03d}')" if conversation else "")
    return where + (f", field '{field}'" if field else "")


CONTENT = "messages[2].content"
BAD = {  # case -> (change to the example's rows, the line (from 1) and field the error names, what it says)
    "missing messages": (_delete([3, "messages"]), at(4, "messages"), "missing"),
    "empty messages": (_set([3, "messages"], []), at(4, "messages"), "empty"),
    "messages not a list": (_set([3, "messages"], "hi"), at(4, "messages"), "expected a list"),
    "unknown role": (_set([5, "messages", 2, "role"], "tool"), at(6, "messages[2].role"),
                     "unknown role str 'tool'; expected system, user, assistant (or map it: data.sources.support"),
    "role not a string": (_set([5, "messages", 1, "role"], 3), at(6, "messages[1].role"), "expected str, got int 3"),
    "non-string content": (_set([6, "messages", 2, "content"], ["a"]), at(7, CONTENT), "expected str, got list"),
    "missing content": (_delete([6, "messages", 2, "content"]), at(7, CONTENT), "missing"),
    "empty content": (_set([6, "messages", 2, "content"], "  "), at(7, CONTENT), "empty content"),
    "special token in content": (_set([6, "messages", 2, "content"], "ok<_rep_end_>"), at(7, CONTENT),
                                 "contains dorl's special token <_rep_end_>"),
    "no response turn": (_set([7, "messages"], [{"role": "user", "content": "hello?"}]), at(8, "messages"),
                         "no assistant turn"),
    "duplicate id": (_set([9, "id"], "chat-002"), "line 10 (conversation 'chat-002'), field 'id'",
                     "duplicate id, first at"),
    "bad id": (_set([9, "id"], True), at(10, "id", False), "expected a non-empty string or an integer, got bool True"),
    "unknown split": (_set([10, "split"], "training"), at(11, "split"), "unknown split str 'training'"),
    "lone surrogate": (_set([11, "messages", 1, "content"], "caf\ud800"), at(12, "messages[1].content"),
                       "lone surrogate"),
    "lone surrogate id": (_set([11, "id"], "c\udc00"), at(12, "id", False), "lone surrogate"),
    "not an object": (_set([12], ["a", "list"]), at(13, conversation=False), "expected an object"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_naming_file_line_and_field_and_writes_nothing(tmp_path, monkeypatch, capsys, case):
    change, where, what = BAD[case]
    src = tmp_path / "chats.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _bad(rows(), change)))  # json escapes a lone surrogate
    out = tmp_path / "out"
    code, _, err = dorl_main(monkeypatch, capsys, "data", "prepare", "--dataset", "support", "--source", str(src),
                             "--out", str(out))  # fmt: skip
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"{src}: {where}" in err and what in err, err
    assert not out.exists()  # nothing written
    # --skip-bad: the conversation is left out and listed, the others prepared
    code, _, err = dorl_main(monkeypatch, capsys, "data", "prepare", "--dataset", "support", "--source", str(src),
                             "--out", str(out), "--skip-bad")  # fmt: skip
    assert code == 0, err
    art = Artifact(str(out))
    [skipped] = art.info["skipped"]["dialogues"]
    assert skipped["file"] == str(src) and what in skipped["reason"]
    assert art.info["dialogues"] == 29


def test_other_bad_files(tmp_path, monkeypatch, capsys):
    def fails(src, *needles, args=()):
        out = tmp_path / "out"
        code, _, err = dorl_main(monkeypatch, capsys, "data", "prepare", "--dataset", "support", "--source", str(src),
                                 "--out", str(out), *args)  # fmt: skip
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        for n in needles:
            assert n in err, err
        assert not out.exists()

    lines = EXAMPLE.read_text().splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines[:4] + ['{"id": "x", "messages": [}'] + lines[4:]) + "\n")
    fails(broken, f"{broken}: line 5: not JSON (column 26: Expecting value)")
    code, _, err = dorl_main(monkeypatch, capsys, "data", "prepare", "--dataset", "support", "--source", str(broken),
                             "--out", str(tmp_path / "skip"), "--skip-bad")  # fmt: skip
    assert code == 0 and Artifact(str(tmp_path / "skip")).info["skipped"]["dialogues"][0]["position"] == 5
    fails(EXAMPLE, "over the limit of 0.01 MiB (data.max_file_mb)", args=("--set", "data.max_file_mb=0.01"))
    both = write_jsonl(tmp_path / "both.jsonl", [{**rows()[0], "conversations": []}])
    fails(both, f"{both}: line 1: has both 'messages' and 'conversations': choose with --format")
    neither = write_jsonl(tmp_path / "neither.jsonl", [{"id": "a", "turns": []}])
    fails(neither, f"{neither}: line 1: no 'messages' (role/content) or 'conversations'", "(has: id, turns)")
    text = tmp_path / "chats.txt"
    text.write_text("hello")
    fails(text, "not a .jsonl, .json or .parquet file")
    (tmp_path / "empty").mkdir()
    fails(tmp_path / "empty", "a folder without files named by split")
    (tmp_path / "surrogate.jsonl").write_bytes(b'{"messages": [{"role": "user", "content": "\xff"}]}\n')
    fails(tmp_path / "surrogate.jsonl", "line 1: not UTF-8 text")
    mixed = [{**r, "split": "train"} if i else r for i, r in enumerate(rows())]
    fails(write_jsonl(tmp_path / "mixed.jsonl", mixed), "line 2 (conversation 'chat-002'), field 'split': set, while")
    (tmp_path / "not.parquet").write_bytes(b"PAR1 nope")
    fails(tmp_path / "not.parquet", "not.parquet: not a readable parquet file")
    fails(EXAMPLE, "--dataset: 'My Logs' is not a dataset name", args=("--dataset", "My Logs"))
    fails(EXAMPLE, "--format is for your own conversations", args=("--dataset", "abcd", "--format", "messages"))
