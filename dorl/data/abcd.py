"""ABCD (asappresearch/abcd) `abcd_v1.1.json`: {"train"|"dev"|"test": [conversation, ...]}.

Only each conversation's `original` rows are used, as the reference did: `[speaker, text]` with
speaker 'customer' or 'agent' (kept) or 'action' (system messages such as "Account has been pulled
up for ...", dropped everywhere). The dialogue id is `convo_id`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dorl.data.dialogue import Dialogue, Entry, Where, check_turns, get, load_json, parse_records, show, synthetic_flag
from dorl.errors import DataError
from dorl.text import Turn

# raw split key -> dorl split name
SPLITS = {"train": "train", "dev": "validation", "test": "test"}
SPEAKERS = {"customer": "customer", "agent": "agent"}
DROPPED = "action"


def parse_conversation(rec: Any, where: Where) -> Dialogue:
    convo_id = get(rec, "convo_id", int, where)
    where.dialogue_id = str(convo_id)
    rows = get(rec, "original", list, where)
    turns: list[Turn] = []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 2:
            raise where.error(f"expected a [speaker, text] pair, got {show(row)}", f"original[{i}]", i)
        speaker, text = row
        if not isinstance(speaker, str) or (speaker not in SPEAKERS and speaker != DROPPED):
            raise where.error(f"unknown speaker {show(speaker)}; expected customer, agent or action", "speaker", i)
        if not isinstance(text, str):
            raise where.error(f"expected str, got {show(text)}", "text", i)
        if speaker == DROPPED:
            continue
        if not text.strip():
            raise where.error("empty utterance", "text", i)
        turns.append((SPEAKERS[speaker], text))
    return Dialogue(str(convo_id), check_turns(turns, where), synthetic_flag(rec, where))


def parse_conversations(records: Any, name: str, skip_bad: bool = False) -> list[Entry]:
    """A JSON list of conversations (one split, or `abcd_sample.json`)."""
    return parse_records(records, name, parse_conversation, skip_bad)


def _keys(data: dict, most: int = 8) -> str:
    """The keys a file has, shortened and escaped for a one-line message."""
    shown = [repr(k)[:40] for k in list(data)[:most]]
    return ", ".join(shown) + (f", … ({len(data)} in all)" if len(data) > most else "")


def parse_file(path: Path, name: str | None = None, skip_bad: bool = False) -> dict[str, list[Entry]]:
    """`abcd_v1.1.json[.gz]` -> {dorl split: entries}."""
    name = name or path.name
    data = load_json(path, name)
    if not isinstance(data, dict):
        raise DataError(f"{name}: expected an object with keys {', '.join(SPLITS)}, got {show(data)}")
    missing = [k for k in SPLITS if k not in data]
    if missing:
        raise DataError(f"{name}: missing split key(s) {', '.join(missing)} (has: {_keys(data) or 'none'})")
    return {split: parse_conversations(data[key], f"{name}[{key}]", skip_bad) for key, split in SPLITS.items()}
