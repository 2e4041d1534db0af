"""Your own conversations in the ecosystem's formats -> dorl's dialogues: one row is one conversation.

    reader = Conversations(source_config, "data.sources.mylogs")
    fmt = reader.detect(first_row, where)                  # 'messages' | 'sharegpt' (unless configured)
    dialogue, split = reader.parse(row, where)             # Dialogue(id, [(speaker, text)]), split or None

Formats: `messages: [{role, content}, …]` (roles system / user / assistant: TRL's and every chat template's) or
ShareGPT `conversations: [{from, value}, …]` (system / human / gpt). `roles` maps other names to system, user,
assistant or skip (the turn is left out, as ABCD's action rows). The role dorl learns to respond as (`respond_as`,
default assistant) is the agent; the other of user / assistant is the customer; a system message is context
(`dorl.text`: <_sos_>TEXT<_eos_>). Content is kept exactly as written. Optional fields: `id` (a string or an integer;
else a stable id from the content: the first 16 hex digits of the sha256 of the conversation as dorl reads it,
`[[role, content], …]` after the role map, as compact UTF-8 JSON, so the same conversation in either format gets the
same id) and `split` (train, validation (valid, val, dev) or test). Anything else in a row is ignored.

Every problem raises `DataError` naming the file, the line or row, the conversation (when known) and the field,
e.g. `chats.jsonl: line 12 (conversation 'c-7'), field 'messages[3].role': unknown role 'tool'; …`.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from dorl.data.dialogue import Dialogue, Where, show
from dorl.data.rows import SPLIT_NAMES
from dorl.text import SPECIAL_TOKENS

FORMATS = {  # format -> (the row's list field, the message's role field, its text field, the standard role names)
    "messages": ("messages", "role", "content", {"system": "system", "user": "user", "assistant": "assistant"}),
    "sharegpt": ("conversations", "from", "value", {"system": "system", "human": "user", "gpt": "assistant"}),
}
_SPECIAL = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))


class RowWhere(Where):
    """A row of one of your files: `chats.jsonl: line 12 (conversation 'c-7')`."""

    def __init__(self, file: str, unit: str, position: int):
        super().__init__(file, position)
        self.unit = unit

    def __str__(self) -> str:
        who = f" (conversation {self.dialogue_id!r})" if self.dialogue_id else ""
        return f"{self.file}: {self.unit} {self.position}{who}"


def stable_id(messages: list[tuple[str, str]]) -> str:
    blob = json.dumps([list(m) for m in messages], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def check_text(text: str, where: Where, field: str) -> str:
    """Non-empty, valid Unicode (no lone surrogate, which JSON's \\u escapes allow and UTF-8 cannot hold), and
    free of dorl's special tokens (a literal `<_rep_end_>` in a message would end the turn for the tokenizer)."""
    if not text.strip():
        raise where.error("empty content", field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise where.error(f"not valid Unicode text (lone surrogate {text[e.start]!r} at character {e.start})",
                          field) from None  # fmt: skip
    if "<_" in text and (m := _SPECIAL.search(text)):
        raise where.error(f"contains dorl's special token {m.group(0)} (at character {m.start()})", field)
    return text


class Conversations:
    def __init__(self, fmt: str, roles: dict[str, str], respond_as: str, key: str):
        """`fmt`: auto | messages | sharegpt; `roles`: your names -> system|user|assistant|skip; `key`: the config
        key that holds the role map (named in errors)."""
        self.fmt = None if fmt == "auto" else fmt
        self.roles, self.respond_as, self.key = dict(roles), respond_as, key
        self.speaker = {"system": "system", respond_as: "agent"}
        self.speaker["user" if respond_as == "assistant" else "assistant"] = "customer"

    def detect(self, row: Any, where: Where) -> str:
        """The format, from the first row (unless configured)."""
        if self.fmt is None:
            if not isinstance(row, dict):
                raise where.error(f"expected an object (one conversation), got {show(row)}")
            has = [f for f, (field, *_) in FORMATS.items() if field in row]
            if len(has) != 1:
                fields = ", ".join(map(str, list(row)[:8])) or "none"
                raise where.error(
                    f"has both 'messages' and 'conversations': choose with --format ({self.key}.format)"
                    if has
                    else f"no 'messages' (role/content) or 'conversations' (ShareGPT from/value) field (has: {fields})"
                )
            self.fmt = has[0]
        return self.fmt

    def parse(self, row: Any, where: RowWhere) -> tuple[Dialogue, str | None]:
        """One conversation: its dialogue and its `split` field (None if it has none)."""
        field = FORMATS[self.fmt][0]
        if not isinstance(row, dict):
            raise where.error(f"expected an object (one conversation), got {show(row)}")
        row_id(row, where)
        split = row_split(row, where)
        messages = row.get(field)
        if messages is None:
            raise where.error(f"missing (a {self.fmt} row has a list of {'/'.join(FORMATS[self.fmt][1:3])} objects)",
                              field)  # fmt: skip
        kept = self.messages(messages, where, field)
        if not kept:
            raise where.error("empty: no messages", field)
        if not any(role == self.respond_as for role, _ in kept):
            raise where.error(f"no {self.respond_as} turn: nothing to respond to ({self.key}.respond_as)", field)
        did = where.dialogue_id or stable_id(kept)
        return Dialogue(did, self.turns(kept), False, (where.file, where.position)), split

    def messages(self, messages: Any, where: Where, field: str, fmt: str | None = None) -> list[tuple[str, str]]:
        """(standard role, text) of each message of the list `messages` kept by the role map."""
        _, role_key, text_key, standard = FORMATS[fmt or self.fmt]
        if not isinstance(messages, list):
            raise where.error(f"expected a list of {role_key}/{text_key} objects, got {show(messages)}", field)
        if not messages:
            return []
        kept: list[tuple[str, str]] = []
        for i, m in enumerate(messages):
            at = f"{field}[{i}]"
            if not isinstance(m, dict):
                raise where.error(f"expected an object with {role_key} and {text_key}, got {show(m)}", at)
            role = m.get(role_key)
            if not isinstance(role, str):
                raise where.error("missing" if role is None else f"expected str, got {show(role)}", f"{at}.{role_key}")
            std = self.roles.get(role) or standard.get(role)
            if std is None:
                raise where.error(
                    f"unknown role {show(role)}; expected {', '.join(standard)} (or map it: {self.key}.roles)",
                    f"{at}.{role_key}",
                )
            if std == "skip":
                continue
            text = m.get(text_key)
            if not isinstance(text, str):
                raise where.error("missing" if text is None else f"expected str, got {show(text)}", f"{at}.{text_key}")
            kept.append((std, check_text(text, where, f"{at}.{text_key}")))
        return kept

    def turns(self, kept: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """dorl's (speaker, text) turns of (standard role, text) messages."""
        return [(self.speaker[role], text) for role, text in kept]


def row_id(row: dict, where: Where) -> str | None:
    """The row's `id` (a non-empty string or an integer, as a string), also set on `where`; None if it has none."""
    given = row.get("id")
    if given is None:
        return None
    if isinstance(given, bool) or not isinstance(given, (str, int)) or given == "":
        raise where.error(f"expected a non-empty string or an integer, got {show(given)}", "id")
    try:
        str(given).encode("utf-8")
    except UnicodeEncodeError as e:
        raise where.error(f"not valid Unicode text (lone surrogate {given[e.start]!r} at character {e.start})",
                          "id") from None  # fmt: skip
    where.dialogue_id = str(given)
    return where.dialogue_id


def row_split(row: dict, where: Where) -> str | None:
    """The row's `split` (train, validation or test; aliases allowed), or None if it has none."""
    split = row.get("split")
    if split is None:
        return None
    if not isinstance(split, str) or split.lower() not in SPLIT_NAMES:
        raise where.error(f"unknown split {show(split)}; expected train, validation (valid, val, dev) or test", "split")
    return SPLIT_NAMES[split.lower()]
