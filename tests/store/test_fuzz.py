"""Fuzzed manifests (issue 27): whatever manifest.json holds, opening the artifact and reading its files either works
or is one StoreError line (exit 2), and nothing outside the artifact folder is read. Never a traceback.

The target takes bytes, so a coverage-guided fuzzer can drive it too (`python -m tests.fuzz_atheris manifest`)."""

from __future__ import annotations

import copy
import hashlib
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dorl.errors import UserError
from dorl.store import Artifact
from dorl.store.artifact import FORMAT

FUZZ = settings(suppress_health_check=[HealthCheck.too_slow])
_ROOT = Path(tempfile.mkdtemp(prefix="dorl-fuzz-"))
(_ROOT / "art" / "sub").mkdir(parents=True)
(_ROOT / "art" / "a.txt").write_bytes(b"a")
(_ROOT / "art" / "sub" / "b.txt").write_bytes(b"bb")
(_ROOT / "secret.txt").write_bytes(b"outside")
VALID = {
    "format": FORMAT,
    "stage": "evaluate",
    "config": {"k": 1},
    "inputs": {"data": {"uri": "/x", "manifest_sha256": "0" * 64, "stage": "data"}},
    "info": {"method": "tf", "dataset": "abcd"},
    "metrics": {},
    "files": {
        "a.txt": {"size": 1, "sha256": hashlib.sha256(b"a").hexdigest()},
        "sub/b.txt": {"size": 2, "sha256": hashlib.sha256(b"bb").hexdigest()},
    },
}
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["../secret.txt", "/etc/passwd", "sub", "a.txt/x", "sub/b.txt"]),
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.dictionaries(st.text(max_size=8) | st.sampled_from(["size", "sha256", "files", "info"]), kids, max_size=3)
    ),
    max_leaves=8,
)


def target(data: bytes) -> None:
    """Open the artifact whose manifest.json is `data` and use it as the stages do."""
    (_ROOT / "art" / "manifest.json").write_bytes(data)
    try:
        art = Artifact(str(_ROOT / "art"))
        _ = (art.stage, art.digest, art.uri)
        for key in ("method", "dataset", "hub_id"):
            art.info.get(key)
        for name, entry in art.manifest.get("inputs", {}).items():
            _ = (name, entry.get("uri"), entry.get("manifest_sha256"))
        for name in sorted(art.files):
            assert art.read_bytes(name) in (b"a", b"bb")  # only the artifact's own files, verified
            assert art.path(name).resolve().is_relative_to((_ROOT / "art").resolve())
        art.local_dir()
    except UserError as e:
        text = str(e)
        assert "\n" not in text and len(text) < 1000, repr(text[:2000])


def _paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix, k
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield prefix, i
            yield from _paths(v, (*prefix, i))


@FUZZ
@given(data=st.data())
def test_mutated_manifest(data):
    doc = copy.deepcopy(VALID)
    for _ in range(data.draw(st.integers(1, 3))):
        parent_path, key = data.draw(st.sampled_from(list(_paths(doc))))
        parent = doc
        for k in parent_path:
            parent = parent[k]
        if data.draw(st.booleans()):
            parent[key] = data.draw(JSON)
        elif isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
        if not list(_paths(doc)):
            break
    target(json.dumps(doc).encode())


@FUZZ
@given(value=JSON)
def test_arbitrary_json_manifest(value):
    target(json.dumps(value).encode())


@FUZZ
@given(blob=st.binary(max_size=300))
@example(blob=b"[" * 100_000)  # a RecursionError in json.loads
@example(blob=b"null")  # found by this test: not an object
def test_arbitrary_bytes_manifest(blob):
    target(blob)


def test_the_valid_manifest_reads():
    target(json.dumps(VALID).encode())
    assert sorted(Artifact(str(_ROOT / "art")).files) == ["a.txt", "sub/b.txt"]
