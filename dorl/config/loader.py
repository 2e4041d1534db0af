"""Typed configuration: dataclasses loaded from presets, YAML and `--set key=value`, strictly.

A config class is a dataclass whose fields carry a `help` text (use `param`). Values are merged
in this order: the class defaults, then a preset, then a YAML file, then `--set` overrides.
Every value is checked against the field's type; an unknown key or a wrong type raises
`ConfigError` naming the key and what is allowed.

Ranges are checked here too, in one place: a config class lists its numeric keys' allowed ranges in a
class attribute `RANGES = {"lr": "> 0", "confidence": "(0, 1)"}` (`>= x`, `> x`, `<= x`, `< x`, or an
interval with open `(`/`)` or closed `[`/`]` ends), and may define `check(self, where)` for rules across
keys (a width divisible by the head count). NaN and infinity are never in a range. This is the only place a
configuration value is validated: a stage, the engine or a method checks only what needs a run (the process count, a
model's positions, an artifact's contents). A method's section (declared beside the method, see
dorl/methods/registry.py) follows the same rules: its RANGES and its `check()`.

YAML (a file or a `--set` value) is input from outside and loaded within bounds (`load_yaml`: size, nesting depth,
values with aliases expanded); every error is one short line, and values echoed in it are shortened.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from dorl.errors import ConfigError

MAX_LISTED_KEYS = 24  # a section with more keys names the closest ones instead of all (one short line)


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
    unknown = sorted((k for k in data if k not in fields), key=str)  # YAML keys may be null, numbers, dates
    renamed = getattr(cls, "RENAMED", {})
    for old in unknown:
        if old in renamed:
            raise ConfigError(
                f"config key '{_join(where, old)}' was renamed to '{_join(where, renamed[old])}': use that instead"
            )
    if unknown:
        key = _join(where, unknown[0])
        if len(fields) <= MAX_LISTED_KEYS:
            raise ConfigError(f"unknown config key '{key}'; allowed keys here: {', '.join(sorted(fields))}")
        close = difflib.get_close_matches(str(unknown[0]), list(fields), n=3)
        hint = f"did you mean {' or '.join(repr(_join(where, c)) for c in close)}? " if close else ""
        raise ConfigError(
            f"unknown config key '{key}'; {hint}`dorl config keys {_join(where, '')}` lists the {len(fields)} keys here"
        )
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
    if isinstance(v, float) and not math.isfinite(v):  # NaN, or infinity (`.inf`, `1e400`): never a setting
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


# Echoed values are shortened (an error message must not grow with its input): at most 4 items of a list or
# mapping, 3 levels, 60 characters of a string, then the whole clipped to one short line.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 60, 60, 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 4


def _clip(text: str, limit: int = 120) -> str:
    """One line of at most `limit` characters (newlines and control characters escaped)."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: limit + 1])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(value: Any) -> str:
    return _clip(f"{type(value).__name__} {_REPR.repr(value)}")


def _join(where: str, key: Any) -> str:
    key = _clip(str(key), 80)
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
    """`["train.lr=1e-4", "data.dataset=abcd"]` -> nested dict; values are parsed as YAML (bounded, see `load_yaml`)."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set expects key=value with a dotted key, got {_clip(repr(item), 100)}")
        try:
            value = load_yaml(raw) if raw.strip() else ""
        except ValueError as e:
            raise ConfigError(f"--set {_clip(key, 80)}: cannot parse value {_clip(repr(raw), 80)}: {e}") from None
        if value is None or isinstance(value, (bool, int, float)):
            value = _Typed(value, raw.strip())
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(
                    f"--set {_clip(key, 80)}: '{_clip(p, 40)}' is set to a value and also used as a section"
                )
        node[leaf] = value
    return out


# ---------------------------------------------------------------- bounded YAML

# YAML is input from outside: what loading it may cost is bounded. A config file is a few kB and a few levels deep;
# these bounds are far above any real one and far below what exhausts memory or the stack.
MAX_YAML_BYTES = 2**20
MAX_YAML_DEPTH = 32  # nesting of lists and mappings (the composer recurses per level)
MAX_YAML_NODES = 20_000  # values after expanding aliases: a 300-byte alias bomb stands for 43 million


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader (plain data only, no Python objects) that counts, while it composes, how deep the
    document nests and how many values it stands for with every alias expanded (`*a` counts as all of `&a`),
    and stops at the bounds above before anything is built. An alias to a node that holds it is refused."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[int, int] = {}  # id(anchored node) -> values it stands for, once composed

    def _refuse(self, problem: str, mark) -> None:
        raise yaml.composer.ComposerError(None, None, problem, mark)

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) and event.anchor in self.anchors:
            size = self._sizes.get(id(self.anchors[event.anchor]))
            if size is None:
                self._refuse(f"alias *{_clip(event.anchor, 40)} refers to itself", event.start_mark)
            self._count(size, event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            self._refuse(f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
        start = self._nodes
        self._count(1, event.start_mark)
        node = super().compose_node(parent, index)
        if getattr(event, "anchor", None) is not None:
            self._sizes[id(node)] = self._nodes - start
        self._depth -= 1
        return node

    def _count(self, n: int, mark) -> None:
        self._nodes += n
        if self._nodes > MAX_YAML_NODES:
            self._refuse(f"expands to more than {MAX_YAML_NODES} values (aliases counted in full)", mark)


def load_yaml(text: str) -> Any:
    """Parse YAML text within the bounds above. Raises ValueError with one short line (the problem and where)."""
    return _parse(text, MAX_YAML_BYTES, many=False)


def load_yaml_all(text: str, max_bytes: int = 16 * MAX_YAML_BYTES) -> list:
    """Every document of a YAML stream (e.g. `kubectl kustomize`'s output), each within the bounds above and the
    stream within `max_bytes`. Raises ValueError with one short line."""
    return _parse(text, max_bytes, many=True)


def _parse(text: str, max_bytes: int, many: bool) -> Any:
    if len(text) > max_bytes:
        raise ValueError(f"larger than {max_bytes // 2**20} MiB")
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader checks the characters here already
        if not many:
            return loader.get_single_data()
        docs = []
        while loader.check_data():
            loader._nodes, loader._sizes = 0, {}  # each document within the bounds
            docs.append(loader.get_data())
        return docs
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ValueError(_clip(f"{e.problem or e.context}{where}", 200)) from None
    except yaml.YAMLError as e:  # e.g. a character YAML does not allow (ReaderError)
        raise ValueError(_clip(" ".join(str(e).split()), 200)) from None
    except ValueError as e:  # an integer of more than Python's 4300 digits
        raise ValueError(_clip(str(e), 200)) from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            blob = f.read(MAX_YAML_BYTES + 1)  # never more: `--config /dev/zero` is refused, not read forever
        if len(blob) > MAX_YAML_BYTES:
            raise ConfigError(
                f"config file {path} is larger than {MAX_YAML_BYTES // 2**20} MiB; expected a YAML config"
            )
        data = load_yaml(blob.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not text (byte {e.start}: {e.reason}); expected YAML") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; expected a YAML file") from None
    except PermissionError:
        raise ConfigError(f"config file {path} cannot be read (permission denied)") from None
    except ValueError as e:
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
