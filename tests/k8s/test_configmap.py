"""The mounted run config's text and hash (dorl.k8s.configmap) and the YAML text of objects (dorl.k8s.yamltext)."""

from __future__ import annotations

import yaml

from dorl import config
from dorl.k8s import configmap, yamltext
from dorl.k8s.render import render
from tests.k8s.conftest import EXAMPLE


def test_the_hash_follows_the_config_even_when_it_is_edited_in_place():
    cfg = config.load(file=EXAMPLE)
    before = configmap.config_hash(cfg)
    cfg.k8s.image = "ghcr.io/dorl/dorl:9.9"  # the same object, edited: not the remembered hash
    assert configmap.config_hash(cfg) != before and "ghcr.io/dorl/dorl:9.9" in configmap.run_yaml(cfg)
    assert configmap.config_hash(config.load(file=EXAMPLE)) == before  # an equal config, another object
    assert configmap.config_map_name(cfg) == f"dorl-example-config-{configmap.config_hash(cfg)}"


class _PurePython(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True


_PurePython.add_representer(str, yamltext._str)


def test_the_yaml_text_is_pure_pythons():
    """libyaml's emitter (when PyYAML has it) writes what the pure-Python one writes, for every kind of object."""
    m = render(
        config.load(
            file=EXAMPLE, sets=["k8s.nodes=2", "k8s.gpus=4", "pipeline.scorers=[ilql_scorer]", "eval.num_responses=2"]
        )
    )
    docs = [m.config_map, *m.rbac, *m.objects().values(), m.workflow_template, m.workflow]
    for doc in docs:
        assert yamltext.dump(doc) == yaml.dump(doc, Dumper=_PurePython, sort_keys=False, width=120)
    assert "&id" not in yamltext.dump(*docs) and "run.yaml: |" in yamltext.dump(m.config_map)
