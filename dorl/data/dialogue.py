"""What every parser produces, and the strict checks they share.

A dialogue is (dialogue_id, [(speaker, text), ...]) with speaker 'customer' or 'agent'. Parsers read
one raw record at a time; anything malformed raises `DataError` naming the file, the dialogue (id
and position), the turn and the field. With `skip_bad` the parser records a `Bad` entry in the
dialogue's place instead, so positions (and the Taskmaster-3 split) stay as if it were there.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from dorl.errors import DataError
from dorl.text import Turn


class Dialogue(NamedTuple):
    id: str
    turns: list[Turn]
    synthetic: bool = False
    origin: tuple[str, int] = ("", -1)  # (file, record position), for messages


@dataclass(frozen=True)
class Bad:
    """A dialogue left out by --skip-bad, and why."""

    file: str
    position: int  # index of the record in its file (or split list)
    dialogue_id: str | None
    reason: str

    def to_dict(self) -> dict:
        return {"file": self.file, "position": self.position, "dialogue_id": self.dialogue_id, "reason": self.reason}


Entry = Dialogue | Bad


class Where:
    """A location inside a raw file, for error messages."""

    def __init__(self, file: str, position: int, dialogue_id: str | None = None):
        self.file, self.position, self.dialogue_id = file, position, dialogue_id

    def __str__(self) -> str:
        who = (
            f"dialogue {self.dialogue_id!r} (record #{self.position})"
            if self.dialogue_id
            else f"record #{self.position}"
        )
        return f"{self.file}: {who}"

    def error(self, problem: str, field: str | None = None, turn: int | None = None) -> DataError:
        parts = [str(self)]
        if turn is not None:
            parts.append(f"turn {turn}")
        if field is not None:
            parts.append(f"field '{field}'")
        return DataError(", ".join(parts) + f": {problem}")


def show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '…' if len(text) > 60 else text}"


def get(obj: Any, key: str, kind: type | tuple[type, ...], where: Where, turn: int | None = None, field: str = ""):
    """obj[key], which must exist and be of `kind` (bool is never an int here)."""
    name = field or key
    if not isinstance(obj, dict):
        raise where.error(f"expected an object, got {show(obj)}", None, turn)
    if key not in obj:
        raise where.error("missing", name, turn)
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise where.error(f"expected {expected}, got {show(value)}", name, turn)
    return value


def utterance(value: Any, where: Where, turn: int, field: str) -> str:
    """A turn's text: a non-empty string (kept exactly as written: the reference does no normalisation)."""
    if not isinstance(value, str):
        raise where.error(f"expected str, got {show(value)}", field, turn)
    if not value.strip():
        raise where.error("empty utterance", field, turn)
    return value


def synthetic_flag(record: dict, where: Where) -> bool:
    """dorl's simulator marks every record `"synthetic": true`; real records have no such key."""
    if "synthetic" not in record:
        return False
    return get(record, "synthetic", bool, where)


def check_turns(turns: list[Turn], where: Where) -> list[Turn]:
    if not turns:
        raise where.error("no customer or agent turns")
    for i, (_, text) in enumerate(turns):
        # A lone surrogate ("\ud800", valid in JSON's \u escapes) cannot be written as UTF-8: refuse it while
        # parsing, before any output file exists.
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise where.error(f"not valid Unicode text (lone surrogate {text[e.start]!r} at character {e.start})",
                              "text", i) from None  # fmt: skip
    if where.dialogue_id is not None:
        try:
            str(where.dialogue_id).encode("utf-8")
        except UnicodeEncodeError:
            raise where.error("the dialogue id is not valid Unicode text (a lone surrogate)", "id") from None
    return turns


def load_json(path: Path, name: str | None = None) -> Any:
    """Parse a JSON (or gzipped JSON) file; any decoding problem is a DataError naming the file."""
    name = name or str(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        return json.loads(raw)
    except FileNotFoundError:
        raise DataError(f"{name}: file not found") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{name}: not a valid gzip file ({e})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{name}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{name}: not UTF-8 text at byte {e.start}") from None
    except RecursionError:
        raise DataError(f"{name}: JSON nested too deeply") from None


def parse_records(
    records: Any, name: str, parse_one: Callable[[Any, Where], Dialogue], skip_bad: bool, what: str = "list"
) -> list[Entry]:
    """Apply `parse_one` to each record of a JSON list, in order; bad ones raise or become `Bad`."""
    if not isinstance(records, list):
        raise DataError(f"{name}: expected a JSON {what} of dialogues, got {show(records)}")
    out: list[Entry] = []
    for i, rec in enumerate(records):
        where = Where(name, i)
        try:
            out.append(parse_one(rec, where)._replace(origin=(name, i)))
        except DataError as e:
            if not skip_bad:
                raise
            out.append(Bad(name, i, where.dialogue_id, str(e)))
    return out


def drop_duplicates(entries: list[Entry], skip_bad: bool) -> list[Entry]:
    """A dialogue id seen before is an error (ids key the examples downstream); --skip-bad drops the repeat."""
    seen: dict[str, Dialogue] = {}
    out: list[Entry] = []
    for e in entries:
        if isinstance(e, Dialogue):
            first = seen.setdefault(e.id, e)
            if first is not e:
                (file, pos), (file0, pos0) = e.origin, first.origin
                msg = f"{file}: dialogue {e.id!r} (record #{pos}): duplicate id (first at {file0} record #{pos0})"
                if not skip_bad:
                    raise DataError(msg)
                e = Bad(file, pos, e.id, msg)
        out.append(e)
    return out
