"""Kubernetes objects as YAML text: the rendered files and the JobSet manifests inside Argo's resource templates.

Multi-line strings (the run config) become readable `|` blocks, and no &anchors appear (an object used twice, such
as a labels dict, is written out twice, as `kubectl` and Argo expect to read it). libyaml's emitter when PyYAML has
it (5x faster than the pure-Python one, and the same text: tests/k8s/test_configmap.py).
"""

from __future__ import annotations

import yaml


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    def ignore_aliases(self, data):
        return True


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(*docs: dict) -> str:
    """The documents, in order, separated by `---`."""
    return "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False, width=120) for d in docs)
