"""YAML that `dorl k8s` reads (an overlay's kustomization.yaml, kustomize's output, the run config a cluster holds)
is loaded within the bounds of every YAML dorl reads (dorl.config.loader): one line, never a traceback."""

import time
from types import SimpleNamespace

import pytest

from dorl import config
from dorl.config.loader import load_yaml_all
from dorl.errors import ConfigError
from dorl.k8s.overlay import apply_overlay
from dorl.k8s.submit import _changed_keys
from tests.config.test_yaml_bounds import _bomb

DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(
    "text,match",
    [
        (DEEP, "nested deeper than 32 levels"),  # before: a RecursionError
        ("kind: Component\n" + _bomb(9), "expands to more than 20000 values"),  # before: handed to kubectl
        ("- kind: Component\n", "expected a mapping at the top level"),  # before: an AttributeError
    ],
)
def test_an_overlay_kustomization_is_read_within_bounds(tmp_path, text, match):
    (tmp_path / "kustomization.yaml").write_text(text)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=match) as e:
        apply_overlay(None, tmp_path)  # refused before the manifests are looked at
    assert time.perf_counter() - started < 2 and "\n" not in str(e.value) and len(str(e.value)) < 400


def test_a_yaml_stream_is_read_within_bounds():
    assert load_yaml_all("a: 1\n---\nb: [2]\n") == [{"a": 1}, {"b": [2]}]
    with pytest.raises(ValueError, match="nested deeper than 32 levels"):
        load_yaml_all("a: 1\n---\n" + DEEP)
    with pytest.raises(ValueError, match="larger than 1 MiB"):
        load_yaml_all("a: 1\n" * 220_000, max_bytes=2**20)


@pytest.mark.parametrize("held", [DEEP, _bomb(9), "- a\n- b\n", "run: [unclosed\n"])
def test_the_run_config_a_cluster_holds_is_read_within_bounds(held):
    """What changed since the last submit is told from the ConfigMap the cluster holds; one dorl cannot read
    (before: a RecursionError on deep nesting, an AttributeError on a list) means 'not known', not a crash."""
    cfg = config.load(preset="tiny")
    cm = SimpleNamespace(data={"run.yaml": held})
    clients = SimpleNamespace(core=SimpleNamespace(read_namespaced_config_map=lambda name, ns: cm))
    assert _changed_keys(clients, cfg, "abc", "run: x\n") == []
    cm.data["run.yaml"] = "run: y\n"
    assert _changed_keys(clients, cfg, "abc", "run: x\n") == ["run"]
