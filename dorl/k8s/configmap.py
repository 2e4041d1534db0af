"""The run config as every pod mounts it: its text (run.yaml, the differences from the defaults), and the name of
the immutable ConfigMap that holds it, taken from the text's hash (an edited config is a new ConfigMap).

In: a RunConfig. Out: strings (`dorl.k8s.render` builds the ConfigMap object; `dorl.k8s.pod` mounts it by name).
"""

from __future__ import annotations

import functools
import hashlib

import yaml

from dorl.config import RunConfig, to_dict
from dorl.config.schema import RunConfig as _Defaults


def _diff(values: dict, defaults: dict) -> dict:
    out = {}
    for key, value in values.items():
        base = defaults.get(key)
        if isinstance(value, dict) and isinstance(base, dict):
            sub = _diff(value, base)
            if sub:
                out[key] = sub
        elif value != base:
            out[key] = value
    return out


@functools.cache
def _defaults() -> dict:
    return to_dict(_Defaults())


def _text(cfg: RunConfig) -> str:
    diff = _diff(to_dict(cfg), _defaults())
    return "# dorl run config (differences from the defaults), rendered by `dorl k8s render`\n" + yaml.safe_dump(
        diff, sort_keys=True
    )


CONFIG_HASH = "dorl.dev/config-hash"  # the annotation every ConfigMap, Job and JobSet of a run carries

# (repr of the last config, its run.yaml, its hash): a render asks once per Job; a dataclass's repr shows every field
_last = ("", "", "")


def _mounted(cfg: RunConfig) -> tuple[str, str]:
    global _last
    key = repr(cfg)
    if _last[0] != key:
        text = _text(cfg)
        _last = (key, text, hashlib.sha256(text.encode()).hexdigest()[:10])
    return _last[1], _last[2]


def run_yaml(cfg: RunConfig) -> str:
    """The run config as its differences from the defaults: exact, and readable by any dorl image that
    knows those keys (a full dump would break on an image one field older or newer)."""
    return _mounted(cfg)[0]


def config_hash(cfg: RunConfig) -> str:
    """The first 10 hex digits of the sha256 of the run config as mounted: names the run's immutable ConfigMap."""
    return _mounted(cfg)[1]


def config_map_name(cfg: RunConfig) -> str:
    return f"dorl-{cfg.run}-config-{config_hash(cfg)}"
