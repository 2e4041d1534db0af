"""YAML is data from outside: what loading it may expand is bounded, and every error is one short line (issue 27)."""

import time

import pytest

from dorl import config
from dorl.errors import ConfigError
from tests.conftest import run_dorl


def _bomb(levels: int) -> str:
    """A billion-laughs document: 9**levels strings from ~35 bytes a level, all under a known key."""
    names = [f"a{i}" for i in range(levels)]
    parts = [f"&{names[0]} [x,x,x,x,x,x,x,x,x]"]
    parts += [f"&{n} [" + ",".join([f"*{p}"] * 9) + "]" for p, n in zip(names, names[1:])]
    return "run: [" + ",".join(parts) + "]\n"


def _one_line(e: BaseException, limit: int = 400) -> str:
    text = str(e)
    assert "\n" not in text and len(text) < limit, text[:2000]
    return text


def test_alias_bomb_is_refused_fast(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(8))  # 9**8 = 43 million strings from ~300 bytes
    assert path.stat().st_size < 400
    started = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        config.load(file=path)
    assert time.perf_counter() - started < 2
    assert "expands to more than" in _one_line(e.value) and str(path) in str(e.value)


def test_alias_bomb_in_a_set_value_is_refused_fast():
    started = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        config.load(sets=["run=" + _bomb(8).removeprefix("run: ").strip()])
    assert time.perf_counter() - started < 2
    assert "--set run" in _one_line(e.value)


def test_a_few_aliases_are_fine(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("k8s:\n  node_selector: &sel {pool: gpu}\n  gpu_node_selector: *sel\n")
    cfg = config.load(file=path)
    assert cfg.k8s.gpu_node_selector == {"pool": "gpu"}


def test_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run: &a [*a]\n")
    with pytest.raises(ConfigError) as e:
        config.load(file=path)
    assert "refers to itself" in _one_line(e.value)


@pytest.mark.parametrize("text", ["run: " + "[" * 5000 + "]" * 5000, "run: " + "{a: " * 3000 + "1" + "}" * 3000])
def test_deep_nesting_is_refused(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as e:
        config.load(file=path)
    assert "nested deeper than" in _one_line(e.value)


def test_huge_file_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# " + "x" * (2 * 2**20) + "\n")
    with pytest.raises(ConfigError) as e:
        config.load(file=path)
    assert "larger than" in _one_line(e.value)


def test_echoed_values_are_short():
    with pytest.raises(ConfigError) as e:
        config.load(sets=["run=[" + ",".join(["xxxxxxxxxx"] * 10000) + "]"])
    assert "config key 'run'" in _one_line(e.value)
    with pytest.raises(ConfigError) as e:
        config.load(sets=["run.x=" + "y" * 100000])
    _one_line(e.value)


@pytest.mark.parametrize(
    "item",
    [
        "run=[1,",
        "run={a: [",
        "run='x",
        'run="\\q"',
        "run=a: b: c",
        "run=@x",
        "run=\t!!",
        "run=a\x00b",
        "run=" + "1" * 5000,
    ],
)
def test_set_parse_errors_are_one_line(item):
    with pytest.raises(ConfigError) as e:
        config.load(sets=[item])
    assert _one_line(e.value).startswith("--set run: cannot parse value")


@pytest.mark.parametrize(
    "text", ["a: [1,\n", "a: b: c\n", "x:\n  - 1\n - 2\n", "{{{\n", "a: !!python/object:os.system x\n"]
)
def test_file_parse_errors_are_one_line_with_a_position(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(file=path)
    assert _one_line(e.value).startswith(f"config file {path} is not valid YAML: ") and "line" in str(e.value)


def test_cli_exits_2_with_one_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(8))
    deep = tmp_path / "deep.yaml"
    deep.write_text("run: " + "[" * 5000 + "]" * 5000 + "\n")
    for args in (["--config", str(path)], ["--config", str(deep)], ["--set", "run=[1,"]):
        r = run_dorl("config", "show", *args, timeout=60)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
