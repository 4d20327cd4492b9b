"""The config system: keyword-only dataclasses <-> JSON, presets, and overrides.

Every component owns a small ``@dataclass(kw_only=True)`` config next to the code it
configures; named presets are plain functions returning a full config. This module is
the one place that turns such a config into JSON (saved with every checkpoint) and back,
strictly: unknown or missing keys are errors, so a checkpoint never loads with a silently
different configuration.

Follows: torchtitan's per-component config dataclasses and preset functions.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from reelm.errors import ReelmError

T = TypeVar("T")


class ConfigError(ReelmError):
    """A config that cannot be built: unknown key, wrong type, unknown preset."""


def to_dict(cfg: Any) -> dict:
    """A JSON-ready dict of a (nested) config dataclass."""
    if not dataclasses.is_dataclass(cfg):
        raise ConfigError(f"not a config dataclass: {type(cfg).__name__}")
    return _to_jsonable(dataclasses.asdict(cfg))


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    return value


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build ``cls`` from a dict, recursing into nested config dataclasses.

    Unknown keys raise; missing keys take the dataclass defaults.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown config keys {unknown}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value, f"{cls.__name__}.{name}") for name, value in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _coerce(args[0], value, where)
        return value
    if origin in (tuple, list) and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) == len(value):
            return tuple(_coerce(a, v, where) for a, v in zip(args, value))
        inner = args[0] if args else Any
        items = [_coerce(inner, v, where) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def save_json(path: str | Path, payload: Any) -> None:
    """Write JSON (a config dataclass or plain data) with stable formatting."""
    if dataclasses.is_dataclass(payload):
        payload = to_dict(payload)
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def load_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None


def apply_overrides(cfg: T, overrides: list[str] | None) -> T:
    """Return a copy of ``cfg`` with ``dotted.key=value`` overrides applied.

    Values are parsed as JSON when they can be (``3``, ``0.1``, ``true``, ``[1,2]``),
    else taken as strings.
    """
    if not overrides:
        return cfg
    data = to_dict(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a config section")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"override {item!r}: unknown key {parts[-1]!r}")
        node[parts[-1]] = value
    return from_dict(type(cfg), data)


def resolve_preset(presets: Mapping[str, Callable[[], T]], name: str, what: str) -> T:
    """Call the preset function ``name`` from ``presets``, with a clear error otherwise."""
    try:
        factory = presets[name]
    except KeyError:
        raise ConfigError(f"unknown {what} preset {name!r}; choose from {sorted(presets)}") from None
    return factory()
