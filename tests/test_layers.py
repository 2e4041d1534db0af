"""The layers read top-down, and a tool checks it (`lint-imports`, contracts in pyproject.toml): stages on top,
methods in the middle, the engine and the decoder below, store and config at the bottom; the method registry is a
leaf; relabel never imports the methods; no package's modules import each other in a circle."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(root)}
    )


def test_the_tree_keeps_every_contract():
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(
    ("module", "line", "caught"),
    [
        # the engine reaching up into a stage
        ("dorl/engine/data.py", "from dorl.stages import graph", "dorl.engine.data -> dorl.stages.graph"),
        # the store reaching up into the methods
        ("dorl/store/location.py", "from dorl.methods import base", "dorl.store.location -> dorl.methods.base"),
        # the registry stops being a leaf
        ("dorl/methods/registry.py", "from dorl.config import schema", "dorl.methods.registry -> dorl.config"),
        # a circle inside one package
        ("dorl/stages/graph.py", "from dorl.stages import pipeline", "No cycles are allowed in dorl.stages"),
        # relabel reaching for a method (it writes scored candidates; each method builds its own set)
        ("dorl/stages/relabel.py", "from dorl.methods import dt", "dorl.stages.relabel -> dorl.methods.dt"),
    ],
)
def test_a_wrong_import_is_caught(tmp_path, module, line, caught):
    shutil.copytree(ROOT / "dorl", tmp_path / "dorl", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path = tmp_path / module
    text = path.read_text()
    head = text.index("\nfrom __future__ import annotations\n") + len("\nfrom __future__ import annotations\n")
    path.write_text(text[:head] + f"\n{line}  # noqa\n" + text[head:])
    out = lint(tmp_path)
    assert out.returncode != 0
    assert caught in out.stdout.replace("\n", " ") or caught in out.stdout, out.stdout
