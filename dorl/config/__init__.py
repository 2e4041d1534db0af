"""Typed run configuration: `load(preset=..., file=..., sets=[...])` -> RunConfig."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dorl.config.loader import build, merge, parse_sets, read_yaml, to_dict
from dorl.config.presets import PRESETS
from dorl.config.schema import (
    DATASETS,
    METHODS,
    DataConfig,
    EvalConfig,
    ILQLConfig,
    K8sConfig,
    MetricsConfig,
    ModelConfig,
    PipelineConfig,
    RelabelConfig,
    ReportConfig,
    RunConfig,
    TrainConfig,
)
from dorl.errors import ConfigError

__all__ = [
    "DATASETS",
    "METHODS",
    "DataConfig",
    "EvalConfig",
    "ILQLConfig",
    "K8sConfig",
    "MetricsConfig",
    "ModelConfig",
    "PipelineConfig",
    "RelabelConfig",
    "ReportConfig",
    "RunConfig",
    "TrainConfig",
    "load",
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
    return build(RunConfig, data)
