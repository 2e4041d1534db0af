"""MultiWOZ 2.2 (budzianowski/multiwoz) `{train,dev,test}/dialogues_NNN.json`: JSON lists of dialogues.

Dialogue: {"dialogue_id", "services", "turns": [{"turn_id", "speaker": "USER"|"SYSTEM", "utterance",
"frames"}]}. USER is the customer, SYSTEM the agent (the reference read the same files through the
Hugging Face `multi_woz_v22` loader, which passes utterances through unchanged). The split is the folder.
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

SPEAKERS = {"USER": "customer", "SYSTEM": "agent"}
# raw folder -> dorl split name
SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def parse_dialogue(rec: Any, where: Where) -> Dialogue:
    dialogue_id = get(rec, "dialogue_id", str, where)
    if not dialogue_id:
        raise where.error("empty", "dialogue_id")
    where.dialogue_id = dialogue_id
    turns: list[Turn] = []
    for i, turn in enumerate(get(rec, "turns", list, where)):
        if not isinstance(turn, dict):
            raise where.error(f"expected an object, got {show(turn)}", f"turns[{i}]", i)
        get(turn, "turn_id", str, where, i)
        speaker = get(turn, "speaker", str, where, i)
        if speaker not in SPEAKERS:
            raise where.error(f"unknown speaker {speaker!r}; expected USER or SYSTEM", "speaker", i)
        if "utterance" not in turn:
            raise where.error("missing", "utterance", i)
        turns.append((SPEAKERS[speaker], utterance(turn["utterance"], where, i, "utterance")))
    return Dialogue(dialogue_id, check_turns(turns, where), synthetic_flag(rec, where))


def parse_dialogues(records: Any, name: str, skip_bad: bool = False) -> list[Entry]:
    return parse_records(records, name, parse_dialogue, skip_bad)


def parse_file(path: Path, name: str | None = None, skip_bad: bool = False) -> list[Entry]:
    name = name or path.name
    return parse_dialogues(load_json(path, name), name, skip_bad)
