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


# How agents vary their wording, beyond an act's several templates: word choices (each pair said either way),
# acknowledgements before a turn, and how they type. Real agents rarely repeat one another word for word.
SWAPS = [
    ("Could you", "Can you"), ("could you", "can you"), ("Can I", "May I"), ("can I", "may I"),
    ("I will", "I'll"), ("I am", "I'm"), ("you are", "you're"), ("You are", "You're"), ("it is", "it's"),
    ("It is", "It's"), ("cannot", "can't"), ("do not", "don't"), ("that is", "that's"),
    ("What is", "What's"), ("there is", "there's"), ("There is", "There's"), ("Let me", "Allow me to"),
    ("Great", "Perfect"), ("great", "wonderful"), ("help you with", "assist you with"),
    ("help with", "assist with"), ("Thank you", "Thanks"), ("thank you", "thanks"), ("would like", "want"),
    ("anything else", "something else"), ("Sure", "Certainly"), ("OK.", "Okay."), ("OK,", "Okay,"),
    ("Done", "All done"), ("All set", "You're all set"), ("One moment", "One second"),
]  # fmt: skip
ACKS = [
    "Okay", "Alright", "Sure", "Got it", "Perfect", "Great", "Thanks", "Thank you", "I see", "Understood",
    "No problem", "Of course", "Absolutely", "Excellent", "Wonderful", "Very well", "Ok", "Cool",
]  # fmt: skip
_JOINERS = [", ", ". ", "! ", " - "]


def combos(leads: list[str], tails: list[str]) -> list[str]:
    """Every lead followed by every tail ("" leads: the tail alone), the tail capitalised where it starts a
    sentence: one act's wordings built from two parts."""
    out = []
    for a in leads:
        for b in tails:
            if not a or a[-1] in ".!?":
                b = b[:1].upper() + b[1:]
            elif not b.startswith(("I ", "I'")):  # after "Next," or "Sure,": the sentence goes on
                b = b[:1].lower() + b[1:]
            out.append(f"{a} {b}".strip())
    return out


@dataclass
class AgentStyle:
    """How one agent writes, for a whole dialogue: which way it says each swappable phrase, how often it opens a
    turn with an acknowledgement (and which ones it likes), and how it types (case, final punctuation)."""

    swaps: dict[str, str]  # phrase -> the agent's way of saying it
    acks: list[str]
    ack_rate: float
    joiner: str
    lower: bool = False
    end: str = ""  # "" keeps the final punctuation, "drop" drops a final full stop, "!" ends statements with "!"

    @classmethod
    def draw(cls, rng: random.Random, lower_rate: float = 0.0) -> AgentStyle:
        swaps = {}
        for a, b in SWAPS:
            if rng.random() < 0.5:
                swaps[a] = b
            elif rng.random() < 0.5:
                swaps[b] = a
        return cls(
            swaps=swaps,
            acks=rng.sample(ACKS, 4),
            ack_rate=rng.choice([0.15, 0.3, 0.45, 0.6]),
            joiner=rng.choice(_JOINERS),
            lower=rng.random() < lower_rate,
            end=rng.choice(["", "", "drop", "!"]),
        )

    def template(self, tpl: str) -> str:
        """The agent's words in a template (before its slots are filled, so slot spans stay right)."""
        for a, b in self.swaps.items():
            tpl = re.sub(rf"(?<!\w){re.escape(a)}(?!\w)", b, tpl)
        return tpl

    def surface(
        self, rng: random.Random, text: str, spans: list[Span] = (), ack: bool = True
    ) -> tuple[str, list[Span]]:
        """An acknowledgement before the turn (`ack`: where one reads naturally), case and final punctuation;
        spans move with the text."""
        spans = list(spans)
        word = rng.choice(self.acks)
        if ack and text and not text.lower().startswith(word.lower()) and rng.random() < self.ack_rate:
            lead = word + self.joiner
            first = text if self.joiner != ", " or text[:2] == "I " else text[0].lower() + text[1:]
            text = lead + first
            spans = [(s, a + len(lead), b + len(lead), v) for s, a, b, v in spans]
        ends_in_span = any(b == len(text) for _, _, b, _ in spans)
        if self.end == "drop" and text.endswith(".") and not ends_in_span:
            text = text[:-1]
        elif self.end == "!" and text.endswith(".") and not ends_in_span:
            text = text[:-1] + "!"
        if self.lower:
            text = text.lower()
        return text, [(s, a, b, text[a:b]) for s, a, b, _ in spans]


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
