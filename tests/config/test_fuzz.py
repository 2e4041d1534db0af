"""Fuzzed configuration (issue 27): any YAML file text and any `--set` string either loads or is one ConfigError
line (exit 2), within a time bound (the profile's deadline) and a memory bound. Never a traceback.

The targets take bytes, so a coverage-guided fuzzer can drive them too (`python -m tests.fuzz_atheris config`)."""

from __future__ import annotations

import tempfile
import tracemalloc
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dorl import config
from dorl.config.loader import describe
from dorl.errors import UserError

FUZZ = settings(suppress_health_check=[HealthCheck.too_slow])
MEMORY = 64 * 2**20  # bytes: far above what any config takes, far below what an expansion attack does
_FILE = Path(tempfile.mkdtemp(prefix="dorl-fuzz-")) / "run.yaml"

KEYS = [k for k, *_ in describe(config.RunConfig)]
SECTIONS = sorted({k.split(".")[0] for k in KEYS})
NAMES = sorted({part for k in KEYS for part in k.split(".")})
SPECIAL = st.sampled_from(
    ["abcd", "tf", "s3://b/x", "~nosuchuser/x", "1e300", ".inf", "-.nan", "[", "&a", "*a", "!!str"]
)
SCALAR = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12) | SPECIAL
DOCS = st.recursive(
    SCALAR,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=6), kids, max_size=4)
    ),
    max_leaves=12,
)
YAMLISH = st.text(
    alphabet=st.sampled_from(list("abc01:-[]{},&*!|>'\"#%@`?\n\t .~\\") + ["\u2028", "\x00", "é"]), max_size=120
)


def check(run) -> None:
    """`run()` returns or raises a one-line UserError, within the memory bound."""
    tracemalloc.start()
    try:
        run()
    except UserError as e:
        text = str(e)
        assert "\n" not in text and "\r" not in text and len(text) < 700, repr(text[:2000])
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MEMORY, f"{peak / 2**20:.0f} MiB"


def target_file(data: bytes) -> None:
    _FILE.write_bytes(data)
    check(lambda: config.load(file=_FILE))


def target_sets(data: bytes) -> None:
    items = data.decode("utf-8", "replace").split("\x1f")[:4]  # \x1f separates --set items
    check(lambda: config.load(sets=items))


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(SECTIONS), DOCS, max_size=3) | DOCS)
def test_structured_yaml(doc):
    text = yaml.safe_dump(doc, allow_unicode=True)
    target_file(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(text=YAMLISH)
def test_yaml_text(text):
    target_file(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(blob=st.binary(max_size=200))
@example(blob=b"?\n?:")  # found by atheris: keys null and '' (sorting them was a TypeError)
def test_yaml_bytes(blob):
    target_file(blob)


@FUZZ
@given(key=st.sampled_from(KEYS) | st.text(max_size=20), value=YAMLISH | st.text(max_size=40) | SPECIAL)
@example(key="root", value="~nosuchuser/x")  # found by this test: a RuntimeError from Path.expanduser
def test_set_strings(key, value):
    check(lambda: config.load(sets=[f"{key}={value}"]))


@FUZZ
@given(items=st.lists(st.text(max_size=40), max_size=3))
def test_arbitrary_set_items(items):
    check(lambda: config.load(sets=items))
