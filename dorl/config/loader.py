"""Typed configuration: dataclasses loaded from presets, YAML and `--set key=value`, strictly.

A config class is a dataclass whose fields carry a `help` text (use `param`). Values are merged
in this order: the class defaults, then a preset, then a YAML file, then `--set` overrides.
Every value is checked against the field's type; an unknown key or a wrong type raises
`ConfigError` naming the key and what is allowed.

Ranges are checked here too, in one place: a config class lists its numeric keys' allowed ranges in a
class attribute `RANGES = {"lr": "> 0", "confidence": "(0, 1)"}` (`>= x`, `> x`, `<= x`, `< x`, or an
interval with open `(`/`)` or closed `[`/`]` ends), and may define `check(self, where)` for rules across
keys (a width divisible by the head count). NaN is never in a range. This is the only place a configuration
value is validated: a stage, the engine or a method checks only what needs a run (the process count, a
model's positions, an artifact's contents). A method's section (declared beside the method, see
dorl/methods/registry.py) follows the same rules: its RANGES and its `check()`.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from dorl.errors import ConfigError


def param(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None) -> Any:
    """A dataclass field with a help text (shown by `dorl config keys`)."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def default(base: type, name: str, value: Any) -> Any:
    """`base`'s field `name` with another default, for a subclass that declares a section's own defaults (as TRL's
    `KTOConfig(TrainingArguments)` does): the same help text."""
    [f] = [f for f in dataclasses.fields(base) if f.name == name]
    return param(value, f.metadata.get("help", ""))


# ---------------------------------------------------------------- building from plain data


def build(cls: type, data: dict | None, where: str = "") -> Any:
    """Instantiate dataclass `cls` from nested plain data, checking keys and types."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping of keys, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    renamed = getattr(cls, "RENAMED", {})
    for old in unknown:
        if old in renamed:
            raise ConfigError(
                f"config key '{_join(where, old)}' was renamed to '{_join(where, renamed[old])}': use that instead"
            )
    if unknown:
        key = _join(where, unknown[0])
        raise ConfigError(f"unknown config key '{key}'; allowed keys here: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        factory = fields[name].default_factory
        if dataclasses.is_dataclass(hints[name]) and isinstance(value, dict) and factory is not dataclasses.MISSING:
            # A section whose default differs from its class's defaults (e.g. `finetune`, a TrainConfig
            # with the methods' values): overrides start from that default, not from the class's.
            value = merge(dataclasses.asdict(factory()), value)
        kwargs[name] = _coerce(hints[name], value, _join(where, name))
        check_range(getattr(cls, "RANGES", {}).get(name), kwargs[name], _join(where, name))
    obj = cls(**kwargs)
    if hasattr(obj, "check"):
        obj.check(where)
    return obj


_BOUND = re.compile(r"^(>=|>|<=|<)\s*(\S+)$")
_INTERVAL = re.compile(r"^([(\[])\s*(\S+)\s*,\s*(\S+)\s*([)\]])$")


def in_range(spec: str, v: float) -> bool:
    if v != v:  # NaN
        return False
    if m := _BOUND.match(spec):
        op, x = m.group(1), float(m.group(2))
        return {">=": v >= x, ">": v > x, "<=": v <= x, "<": v < x}[op]
    m = _INTERVAL.match(spec)
    if not m:  # pragma: no cover - a schema bug
        raise ValueError(f"bad range {spec!r}")
    lo, hi = float(m.group(2)), float(m.group(3))
    return (v >= lo if m.group(1) == "[" else v > lo) and (v <= hi if m.group(4) == "]" else v < hi)


def check_range(spec: str | None, value: Any, key: str) -> None:
    """Refuse a number outside its key's range, naming the key, the value and the range."""
    if spec is None or value is None:
        return
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not in_range(spec, v):
            raise ConfigError(f"config key '{key}': {v!r} is out of range; allowed: {spec}")


@dataclasses.dataclass(frozen=True)
class _Typed:
    """A `--set` scalar that YAML read as a number, bool or null, with the text as typed: a str field takes
    the text (`--set run=001` is "001", not 1), any other field YAML's value."""

    value: Any
    text: str


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(value, _Typed):
        null = value.value is None and type(None) in args
        value = value.text if (tp is str or str in args) and not null else value.value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"config key '{key}': expected {_name(tp)}, got {_show(value)}")
    if origin is Literal:
        if value in args:
            return value
        allowed = ", ".join(repr(a) for a in args)
        raise ConfigError(f"config key '{key}': {_show(value)} is not allowed; choose one of {allowed}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list of {_name(args[0])}, got {_show(value)}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {_show(value)}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads "5e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported config type {tp!r} for '{key}'")
    raise ConfigError(f"config key '{key}': expected {_name(tp)}, got {_show(value)}")


def _name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is list:
        return f"list of {_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


# ---------------------------------------------------------------- merging sources


def merge(base: dict, override: dict) -> dict:
    """Deep-merge `override` into a copy of `base` (mappings merge, everything else replaces)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_sets(items: typing.Iterable[str]) -> dict:
    """`["train.lr=1e-4", "data.dataset=abcd"]` -> nested dict; values are parsed as YAML."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set expects key=value with a dotted key, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {e}") from None
        if value is None or isinstance(value, (bool, int, float)):
            value = _Typed(value, raw.strip())
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{p}' is set to a value and also used as a section")
        node[leaf] = value
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not text (byte {e.start}: {e.reason}); expected YAML") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; expected a YAML file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level, got {_show(data)}")
    return data


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(key, type, default, help) for every leaf field, for `dorl config keys`."""
    rows = []
    hints = typing.get_type_hints(cls)
    default_obj = cls()
    for f in dataclasses.fields(cls):
        key = _join(prefix, f.name)
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, key))
        elif typing.get_origin(tp) is dict and dataclasses.is_dataclass(typing.get_args(tp)[1]):
            rows.append((key, f"mapping of names to {_join(key, '<name>')}", {}, f.metadata.get("help", "")))
            rows.extend(describe(typing.get_args(tp)[1], _join(key, "<name>")))  # e.g. data.sources.<name>.path
        else:
            rows.append((key, _name(tp), getattr(default_obj, f.name), f.metadata.get("help", "")))
    return rows
