"""Fuzzed raw records: the parsers either return a dialogue or raise one DataError line naming the file, never
anything else (which the CLI would show as a traceback), within the profile's time bound (tests/conftest.py).

`target` takes bytes (a raw file of any of the three formats), so a coverage-guided fuzzer can drive it too
(`python -m tests.fuzz_atheris raw`)."""

from __future__ import annotations

import copy
import gzip

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dorl.data import abcd, multiwoz, taskmaster
from dorl.data.dialogue import Dialogue, load_json
from dorl.errors import DataError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)

VALID = {
    "abcd": (
        abcd.parse_conversations,
        {"convo_id": 7, "original": [["agent", "Hi!"], ["action", "Account pulled up."], ["customer", "Hello"]]},
    ),
    "multiwoz22": (
        multiwoz.parse_dialogues,
        {
            "dialogue_id": "X.json",
            "services": [],
            "turns": [
                {"turn_id": "0", "speaker": "USER", "utterance": "a table please", "frames": []},
                {"turn_id": "1", "speaker": "SYSTEM", "utterance": "For how many?", "frames": []},
            ],
        },
    ),
    "taskmaster3": (
        taskmaster.parse_dialogs,
        {
            "conversation_id": "dlg-1",
            "utterances": [
                {"index": 0, "speaker": "user", "text": "two tickets"},
                {"index": 1, "speaker": "assistant", "text": "Which movie?"},
            ],
        },
    ),
}
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow])  # examples and deadline: the profile (tests/conftest.py)


def _paths(obj, prefix=()):
    """Every (container path, key) in a JSON value."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix, k
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield prefix, i
            yield from _paths(v, (*prefix, i))


def _one_line(e: DataError, name: str) -> None:
    text = str(e)
    assert text.startswith(name) and "\n" not in text and "\r" not in text and len(text) < 1000, repr(text[:2000])


def _check(parse, records, skip_bad=False):
    try:
        out = parse(records, "fuzz.json", skip_bad)
    except DataError as e:
        _one_line(e, "fuzz.json")
        return None
    assert all(isinstance(d, Dialogue) or d.reason.startswith("fuzz.json") for d in out)
    return out


@pytest.mark.parametrize("fmt", sorted(VALID))
@FUZZ
@given(data=st.data())
def test_mutated_records_fail_cleanly(fmt, data):
    parse, valid = VALID[fmt]
    record = copy.deepcopy(valid)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(record))
        if not paths:
            break
        parent_path, key = data.draw(st.sampled_from(paths))
        parent = record
        for k in parent_path:
            parent = parent[k]
        if data.draw(st.booleans()):
            parent[key] = data.draw(JSON)
        elif isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    out = _check(parse, [record])
    if out is not None:  # a mutation that still reads as a dialogue has non-empty customer/agent texts
        (d,) = out
        assert d.turns and all(s in ("customer", "agent") and t.strip() for s, t in d.turns)
    skipped = _check(parse, [record, copy.deepcopy(valid)], skip_bad=True)
    assert skipped is not None and len(skipped) == 2 and isinstance(skipped[1], Dialogue)


@pytest.mark.parametrize("fmt", sorted(VALID))
@FUZZ
@given(value=JSON)
def test_arbitrary_json_fails_cleanly(fmt, value):
    parse, _ = VALID[fmt]
    _check(parse, value)
    _check(parse, [value])
    _check(parse, [value], skip_bad=True)


@FUZZ
@given(value=JSON)
def test_abcd_top_level(value, tmp_path_factory):
    path = tmp_path_factory.mktemp("abcd") / "abcd_v1.1.json"
    import json

    path.write_text(json.dumps(value))
    try:
        abcd.parse_file(path)
    except DataError as e:
        _one_line(e, "abcd_v1.1.json")


@FUZZ
@given(blob=st.binary(max_size=64), gz=st.booleans())
def test_arbitrary_bytes_fail_cleanly(blob, gz, tmp_path_factory):
    path = tmp_path_factory.mktemp("bytes") / ("f.json.gz" if gz else "f.json")
    path.write_bytes(gzip.compress(blob) if gz and blob[:1] == b"[" else blob)
    try:
        load_json(path, "f.json")
    except DataError as e:
        _one_line(e, "f.json")


_RAW = {"abcd": ("abcd_v1.1.json", abcd.parse_file), "multiwoz22": ("dialogues_001.json", multiwoz.parse_file),
        "taskmaster3": ("data_00.json", taskmaster.parse_file)}  # fmt: skip


def target(data: bytes) -> None:
    """A raw file of each format holding `data`: parsed (strictly and with skip_bad) or one DataError line."""
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="dorl-fuzz-"))
    try:
        for name, parse in _RAW.values():
            (folder / name).write_bytes(data)
            for skip in (False, True):
                try:
                    parse(folder / name, skip_bad=skip)
                except DataError as e:
                    _one_line(e, name)
    finally:
        import shutil

        shutil.rmtree(folder)


@FUZZ
@given(value=JSON | st.dictionaries(st.sampled_from(["train", "dev", "test"]) | st.text(max_size=6), JSON, max_size=4))
def test_raw_files(value):
    import json

    target(json.dumps(value).encode())


@FUZZ
@given(blob=st.binary(max_size=120))
@example(blob=b"[" * 100_000)
@example(blob=b'{"a\\nb": 1}')  # a key with a line break, echoed in the message
def test_raw_file_bytes(blob):
    target(blob)
