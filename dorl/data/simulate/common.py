"""What the three simulators share: seeded randomness, template filling with spans, customer styles,
deterministic JSON and the SYNTHETIC.json marker.

Determinism: dialogue i of a run draws from its own `random.Random(f"{fmt}:{seed}:{i}")`, and every
file is serialised with a fixed key order and no timestamps, so the same (format, n, seed) gives the
same bytes on any machine.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dorl import __version__

MARKER = "SYNTHETIC.json"
_SLOT = re.compile(r"\{(\w+)\}")

Span = tuple[str, int, int, str]  # (slot, start, exclusive end, value)


def dialogue_rng(fmt: str, seed: int, i: int) -> random.Random:
    return random.Random(f"{fmt}:{seed}:{i}")


def fill(template: str, values: dict) -> tuple[str, list[Span]]:
    """Substitute {slot}s and return the text with the character span of every substituted value."""
    parts, spans, pos, last = [], [], 0, 0
    for m in _SLOT.finditer(template):
        literal = template[last : m.start()]
        parts.append(literal)
        pos += len(literal)
        value = str(values[m.group(1)])
        spans.append((m.group(1), pos, pos + len(value), value))
        parts.append(value)
        pos += len(value)
        last = m.end()
    parts.append(template[last:])
    return "".join(parts), spans


def articles(template: str, values: dict) -> str:
    """'a {slot}' -> 'an {slot}' where the value starts with a vowel (before filling, so spans stay right)."""
    for k, value in values.items():
        if str(value)[:1].lower() in "aeiou":
            template = template.replace("a {" + k + "}", "an {" + k + "}").replace("A {" + k + "}", "An {" + k + "}")
    return template


def say(rng: random.Random, templates: list[str], values: dict | None = None) -> str:
    values = values or {}
    return fill(articles(rng.choice(templates), values), values)[0]


@dataclass
class Persona:
    """How one customer writes: the same person keeps the same habits for the whole dialogue."""

    lower: bool = False  # writes in lower case
    no_period: bool = False  # drops the final full stop
    opener: str = ""  # starts some turns with "ok " / "sure, " …
    opener_rate: float = 0.0

    @classmethod
    def draw(cls, rng: random.Random) -> Persona:
        return cls(
            lower=rng.random() < 0.35,
            no_period=rng.random() < 0.4,
            opener=rng.choice(["ok ", "sure, ", "yes, ", "hmm, ", "alright, "]),
            opener_rate=rng.choice([0.0, 0.0, 0.15, 0.3]),
        )

    def style(
        self, rng: random.Random, text: str, spans: list[Span] = (), opener: bool = False
    ) -> tuple[str, list[Span]]:
        """Apply the persona; spans move with the text (lower-casing keeps ASCII lengths)."""
        spans = list(spans)
        if opener and rng.random() < self.opener_rate and not text.lower().startswith(("yes", "no", "ok")):
            text = self.opener + text[0].lower() + text[1:]
            shift = len(self.opener)
            spans = [(s, a + shift, b + shift, v) for s, a, b, v in spans]
        if self.no_period and text.endswith(".") and not any(b == len(text) for _, _, b, _ in spans):
            text = text[:-1]
        if self.lower:
            text = text.lower()
            spans = [(s, a, b, text[a:b]) for s, a, b, _ in spans]
        return text, spans


def split_counts(n: int) -> dict[str, int]:
    """80/10/10 (at least one dialogue in each held-out split once n >= 3)."""
    held = max(1, n // 10) if n >= 3 else 0
    return {"train": n - 2 * held, "dev": held, "test": held}


def chunks(items: list, k: int) -> list[list]:
    """`items` cut into k consecutive, nearly equal parts (some empty when len(items) < k)."""
    q, r = divmod(len(items), k)
    out, start = [], 0
    for j in range(k):
        end = start + q + (1 if j < r else 0)
        out.append(items[start:end])
        start = end
    return out


def dumps(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=1).encode("utf-8")


def write_json(path: Path, value) -> str:
    """Write `value` as JSON (gzipped for .gz, with a fixed header so the bytes are reproducible); lists given
    as iterators are written one item at a time, so a large file never sits in memory. Returns the sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw:
        f = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if path.suffix == ".gz" else raw
        _emit(f, value)
        if f is not raw:
            f.close()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _emit(f, value) -> None:
    if isinstance(value, dict):
        f.write(b"{")
        for k, (key, v) in enumerate(value.items()):
            f.write((", " if k else "").encode() + json.dumps(key).encode() + b": ")
            _emit(f, v)
        f.write(b"}")
    elif isinstance(value, Iterator):
        f.write(b"[")
        for k, item in enumerate(value):
            f.write((",\n" if k else "\n").encode() + dumps(item))
        f.write(b"\n]")
    else:
        f.write(dumps(value))


def write_marker(out: Path, fmt: str, n: int, seed: int, files: dict[str, str], counts: dict[str, int]) -> None:
    marker = {
        "synthetic": True,
        "generator": "dorl data simulate",
        "dorl_version": __version__,
        "format": fmt,
        "dialogues": n,
        "seed": seed,
        "splits": counts,
        "files": dict(sorted(files.items())),
        "note": 'Simulated dialogues in the raw upstream format; every record carries "synthetic": true.',
    }
    (out / MARKER).write_bytes(dumps(marker))
