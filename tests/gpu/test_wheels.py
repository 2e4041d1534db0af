"""scripts/gpu/constraints-gpu.txt, what the GPU check carries: constraints.txt's pins, and every dependency of
dorl either carried, kept from the GPU machine's image (with the difference said) or skipped (with why)."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import REPO

GPU = REPO / "scripts/gpu/constraints-gpu.txt"


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            out[norm(name)] = version.strip()
    return out


def noted(kind: str) -> set[str]:
    return {norm(m) for m in re.findall(rf"^# {kind} ([A-Za-z0-9_.-]+):", GPU.read_text(), re.M)}


def test_carried_wheels_are_pinned_as_constraints_txt():
    carried, pinned = pins(GPU.read_text()), pins((REPO / "constraints.txt").read_text())
    assert carried
    for name, version in carried.items():
        assert pinned.get(name) == version, f"{name}=={version} carried, constraints.txt pins {pinned.get(name)}"


def test_every_dependency_is_carried_kept_or_skipped():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = {norm(re.split(r"[=<>!~\[; ]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    carried, kept, skipped = set(pins(GPU.read_text())), noted("keep"), noted("skip")
    assert not carried & kept and not carried & skipped and not kept & skipped
    missing = deps - carried - kept - skipped
    assert not missing, f"say in {GPU.name} whether the GPU check carries, keeps or skips: {sorted(missing)}"
