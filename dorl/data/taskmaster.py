"""Taskmaster-3 (google-research-datasets/Taskmaster, TM-3-2020) `data/data_NN.json`: JSON lists of dialogs.

Dialog: {"conversation_id", "vertical", "scenario", "instructions", "utterances": [{"index",
"speaker": "user"|"assistant", "text", "segments"?, "apis"?}]}. `user` is the customer, `assistant`
the agent; the assistant may speak twice in a row (each of its turns is an example).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dorl.data.dialogue import (
    Dialogue,
    Entry,
    Where,
    check_turns,
    get,
    load_json,
    parse_records,
    show,
    synthetic_flag,
    utterance,
)
from dorl.text import Turn

SPEAKERS = {"user": "customer", "assistant": "agent"}


def parse_dialog(rec: Any, where: Where) -> Dialogue:
    conversation_id = get(rec, "conversation_id", str, where)
    if not conversation_id:
        raise where.error("empty", "conversation_id")
    where.dialogue_id = conversation_id
    turns: list[Turn] = []
    for i, utt in enumerate(get(rec, "utterances", list, where)):
        if not isinstance(utt, dict):
            raise where.error(f"expected an object, got {show(utt)}", f"utterances[{i}]", i)
        speaker = get(utt, "speaker", str, where, i)
        if speaker not in SPEAKERS:
            raise where.error(f"unknown speaker {speaker!r}; expected user or assistant", "speaker", i)
        if "text" not in utt:
            raise where.error("missing", "text", i)
        turns.append((SPEAKERS[speaker], utterance(utt["text"], where, i, "text")))
    return Dialogue(conversation_id, check_turns(turns, where), synthetic_flag(rec, where))


def parse_dialogs(records: Any, name: str, skip_bad: bool = False) -> list[Entry]:
    return parse_records(records, name, parse_dialog, skip_bad)


def parse_file(path: Path, name: str | None = None, skip_bad: bool = False) -> list[Entry]:
    name = name or path.name
    return parse_dialogs(load_json(path, name), name, skip_bad)
