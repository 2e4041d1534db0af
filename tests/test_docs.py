"""The docs stay honest: README.md is a short front door, and README.md and docs/*.md name nothing that is not there.

Checked against the tree the test runs on (so a moved module or a renamed option fails here, naming the page):

- README.md has at most 300 lines and gives `make demo` and `make test` as commands (CI greps it for `make test`);
- every relative link or image resolves to a file, and a `#fragment` to a heading of the page it points to;
- every `dorl/…`, `tests/…`, `scripts/…`, `docker/…`, `k8s/…` or `docs/…` path names a file or folder that exists,
  including the bare `x.py` names listed under a `dorl/…/` folder in a plain code block;
- every dotted `dorl.x.y` is a module, and the name after it one the module defines (read with `ast`, nothing
  imported), and for a class the attribute after that;
- every `dorl <command>` of README's command table and of the pages' bash blocks is in `dorl.cli.COMMANDS`, its
  subcommand exists and each option it uses is one of that command's (the commands import nothing heavy);
- every `make <target>` is a target of the Makefile, and every hook of docs/methods.md's table is `Method`'s.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from functools import cache
from pathlib import Path

import click
import pytest

from dorl.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
MAX_README_LINES = 300

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.S | re.M)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# A repository path: not part of a longer path or URL (s3://bucket/dorl/… is not one).
PATH = re.compile(r"(?<![\w/.\-])(?:dorl|tests|scripts|docker|k8s|docs)/[\w./\-]*")
# A dotted name under dorl: not a label such as dorl.dev/after.
DOTTED = re.compile(r"(?<![\w./\-])dorl(?:\.[A-Za-z_]\w*)+(?![\w/\-])")
MAKE = re.compile(r"(?<![\w-])make ([a-z][\w-]*)")


def rel(page: Path) -> str:
    return str(page.relative_to(REPO))


def fences(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(text)]


def prose(text: str) -> str:
    return FENCE.sub("", text)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose(page.read_text()).splitlines():
        if m := re.match(r"#{1,6} (.+)", line):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


# ---------------------------------------------------------------- README is a front door


def test_readme_is_a_front_door():
    text = README.read_text()
    lines = text.count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines (at most {MAX_README_LINES}): move detail to docs/"
    bash = [body for lang, body in fences(text) if lang == "bash"]
    commands = [line.split("#")[0].strip() for body in bash for line in body.split("\n")]
    assert "make demo" in commands and "make test" in commands, "README.md must give `make demo` and `make test`"
    for page in PAGES[1:]:
        assert f"]({rel(page)})" in text, f"README.md does not link {rel(page)}"


# ---------------------------------------------------------------- links


def test_every_relative_link_resolves():
    bad = []
    for page in PAGES:
        for target in LINK.findall(prose(page.read_text())):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            where, _, fragment = target.partition("#")
            dest = (page.parent / where).resolve() if where else page
            if not dest.exists():
                bad.append(f"{rel(page)}: link to {target}: no such file")
            elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
                bad.append(f"{rel(page)}: link to {target}: no heading #{fragment} in {dest.relative_to(REPO)}")
    assert not bad, "\n".join(bad)


# ---------------------------------------------------------------- paths and modules


def named_paths(text: str) -> set[str]:
    """Every repository path the text names; placeholders (`test_<method>.py`, `{a,b}.py`) keep their folder."""
    out = set()
    for m in PATH.finditer(text):
        path = m.group(0)
        if text[m.end() : m.end() + 1] in ("<", "{", "*"):
            path = path.rsplit("/", 1)[0] + "/"
        out.add(path.rstrip("."))
    # bare file names listed under a dorl/… folder in a plain code block (the architecture map)
    for lang, body in fences(text):
        if lang:
            continue
        folder = None
        for line in body.splitlines():
            if m := re.match(r"(dorl/[\w/]*/)\s", line):
                folder = m.group(1)
            elif not line.startswith(" "):
                folder = None
            if folder:
                rest = line[len(folder) :] if line.startswith(folder) else line
                out.update(folder + f for f in re.findall(r"(?<![\w/.])(\w+\.py)\b", rest))
    return out


def test_every_named_path_exists():
    bad = [
        f"{rel(p)}: {path}" for p in PAGES for path in sorted(named_paths(p.read_text())) if not (REPO / path).exists()
    ]
    assert not bad, "paths named in the docs that are not in the tree:\n" + "\n".join(bad)


@cache
def module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


@cache
def definitions(file: Path) -> dict[str, ast.AST]:
    """The names a module defines at top level: functions, classes, assignments, imports."""
    out: dict[str, ast.AST] = {}
    for node in ast.parse(file.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out[node.name] = node
        elif isinstance(node, ast.Assign):
            out.update({t.id: node for t in node.targets if isinstance(t, ast.Name)})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = node
        elif isinstance(node, ast.Import | ast.ImportFrom):
            out.update({(a.asname or a.name).split(".")[0]: node for a in node.names})
    return out


def class_members(cls: ast.ClassDef) -> set[str]:
    names = set()
    for node in cls.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def missing(dotted: str) -> str | None:
    """Why `dotted` (dorl.x.y[.Name[.attr]]) names nothing in the tree, or None."""
    parts = dotted.split(".")
    n = max((i for i in range(1, len(parts) + 1) if module_file(".".join(parts[:i]))), default=0)
    if n == 0:
        return "no module"
    rest = parts[n:]
    if not rest:
        return None
    module = ".".join(parts[:n])
    defs = definitions(module_file(module))
    if rest[0] not in defs:
        return f"{module} has no module or name {rest[0]!r}"
    node = defs[rest[0]]
    if len(rest) > 1 and isinstance(node, ast.ClassDef) and rest[1] not in class_members(node):
        return f"{module}.{rest[0]} has no attribute {rest[1]!r}"
    return None


def test_every_named_module_exists():
    bad = []
    for page in PAGES:
        for dotted in sorted(set(DOTTED.findall(page.read_text()))):
            if why := missing(dotted):
                bad.append(f"{rel(page)}: {dotted}: {why}")
    assert not bad, "modules named in the docs that are not in the tree:\n" + "\n".join(bad)


def test_the_checks_catch_what_is_not_there(tmp_path):
    """The checks above would fail on a wrong name (a guard against a test that cannot fail)."""
    assert missing("dorl.cli.COMMANDS") is None and missing("dorl.cli") is None
    assert missing("dorl.no_such_module") == "dorl has no module or name 'no_such_module'"
    assert missing("dorl.methods.base.Method.nope") == "dorl.methods.base.Method has no attribute 'nope'"
    assert missing("dorl.cli.NO_SUCH_NAME") == "dorl.cli has no module or name 'NO_SUCH_NAME'"
    text = "`dorl/no_such.py`, `tests/x/test_<m>.py`, s3://b/dorl/x, dorl.dev/after\n```\ndorl/store/  nope.py\n```\n"
    assert named_paths(text) == {"dorl/no_such.py", "tests/x/", "dorl/store/", "dorl/store/nope.py"}
    assert DOTTED.findall(text) == []
    page = tmp_path / "p.md"
    page.write_text("# The goals, plainly\n\n## Exit codes (the contract)\n\n## `make bench`\n")
    assert anchors(page) == {"the-goals-plainly", "exit-codes-the-contract", "make-bench"}
    with pytest.raises(AssertionError, match="no such command"):
        check_invocation("dorl frobnicate --x")
    with pytest.raises(AssertionError, match="has no option --no-such-option"):
        check_invocation("dorl train --method tf --no-such-option 1")


# ---------------------------------------------------------------- commands


def command(name: str) -> click.Command:
    module, attr = COMMANDS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def options(cmd: click.Command) -> set[str]:
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")} | {"--help", "-h"}


def check_invocation(text: str) -> None:
    """`text` (`dorl CMD [SUB] [options…]`, a table cell's syntax allowed: `a|b`, `[…]`, `(…)`) names a command,
    subcommand and options that exist."""
    words = text.replace("\\|", "|").split()
    assert words[0] == "dorl"
    names = words[1].split("|")
    for name in names:
        assert name in COMMANDS, f"`{text}`: no such command `dorl {name}` (dorl.cli.COMMANDS)"
        cmd = command(name)
        targets = [cmd]
        if isinstance(cmd, click.Group):
            subs = words[2].split("|") if len(words) > 2 else []
            for sub in subs:
                assert sub in cmd.commands, f"`{text}`: no such command `dorl {name} {sub}`"
            targets = [cmd.commands[s] for s in subs]
        for target in targets:
            if any(isinstance(p, click.Argument) and p.nargs == -1 for p in target.params):
                continue  # passes its arguments on (dorl launch)
            for opt in re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text):
                assert opt in options(target), f"`{text}`: `dorl {name}` has no option {opt}"


def invocations(page: Path) -> list[str]:
    """Every `dorl …` command line of the page's bash blocks (continuations joined, comments dropped), and for
    README.md every command of its command table."""
    text = page.read_text()
    out = []
    for lang, body in fences(text):
        if lang != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                words = line.split("#")[0].split()
            if words[:1] == ["dorl"]:
                out.append(" ".join(words))
    if page == README:
        table = prose(text).split("## Commands", 1)[1].split("\n## ", 1)[0]
        for row in table.splitlines():
            if row.startswith("| `dorl"):
                first = re.split(r"(?<!\\)\|", row)[1]
                out += [s for s in CODE_SPAN.findall(first) if s.startswith("dorl ")]
    return out


def test_readme_command_table_lists_every_command():
    names = {inv.split()[1] for inv in invocations(README)}
    assert names == set(COMMANDS), f"not in README's command table: {sorted(set(COMMANDS) - names)}"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_dorl_command_shown_exists(page):
    for inv in invocations(page):
        check_invocation(inv)


def test_every_make_target_exists():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    bad = []
    for page in PAGES:
        text = page.read_text()
        code = CODE_SPAN.findall(prose(text)) + [body for _, body in fences(text)]
        bad += [f"{rel(page)}: make {t}" for t in sorted({t for c in code for t in MAKE.findall(c)} - targets)]
    assert not bad, "make targets named in the docs that the Makefile lacks:\n" + "\n".join(bad)


def test_method_hooks_in_the_docs_are_methods_hooks():
    base = module_file("dorl.methods.base")
    assert base, "dorl/methods/base.py is gone: update docs/methods.md's interface table"
    members = class_members(definitions(base)["Method"])
    text = (REPO / "docs" / "methods.md").read_text()
    table = text.split("| hook | used by | what |", 1)[1].split("\n\n", 1)[0]
    hooks = [span.split("(")[0] for row in table.splitlines()[2:] for span in CODE_SPAN.findall(row.split("|")[1])]
    assert hooks, "docs/methods.md: the hook table is gone"
    assert not [h for h in hooks if h not in members], f"docs/methods.md names hooks Method lacks: {hooks}"
