"""Typed run configuration: `load(preset=..., file=..., sets=[...])` -> RunConfig.

`RunConfig` (an attribute, or `run_config()`) is assembled from the shared sections and the registered methods'
sections (dorl/config/schema.py); import it under `if TYPE_CHECKING:` in a module a method's settings import."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from dorl.config.data import DATASETS, DataConfig
from dorl.config.k8s import K8sConfig
from dorl.config.loader import build, merge, parse_sets, read_yaml, to_dict
from dorl.config.presets import PRESETS
from dorl.config.schema import (
    EvalConfig,
    MetricsConfig,
    ModelConfig,
    PipelineConfig,
    RelabelConfig,
    ReportConfig,
    TrainConfig,
    run_config,
)
from dorl.errors import ConfigError

if TYPE_CHECKING:
    from dorl.config.schema import RunConfig

__all__ = [
    "DATASETS",
    "DataConfig",
    "EvalConfig",
    "K8sConfig",
    "MetricsConfig",
    "ModelConfig",
    "PipelineConfig",
    "RelabelConfig",
    "ReportConfig",
    "RunConfig",
    "TrainConfig",
    "load",
    "run_config",
    "to_dict",
    "PRESETS",
]


def load(preset: str | None = None, file: str | Path | None = None, sets: Iterable[str] = ()) -> RunConfig:
    """Defaults, then the preset, then the YAML file, then `--set` overrides.

    A YAML file may name its own preset with a top-level `preset:` key; `preset=` wins over it.
    """
    data: dict = {}
    file_data = read_yaml(file) if file else {}
    preset = preset or file_data.pop("preset", None)
    file_data.pop("preset", None)
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        data = merge(data, PRESETS[preset])
    data = merge(data, file_data)
    data = merge(data, parse_sets(sets))
    return build(run_config(), data)


def __getattr__(name: str):
    if name == "RunConfig":  # the class for the method registry as it is now (`run_config`)
        return run_config()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
