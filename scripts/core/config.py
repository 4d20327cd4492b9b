"""The config system: keyword-only dataclasses <-> JSON, presets, and ``--set`` overrides, strictly typed.

Every component owns a small ``@dataclass(kw_only=True)`` config next to the code it
configures; named presets are plain functions returning a full config. This module is the
one place that turns such a config into JSON (saved with every checkpoint) and back, and
that applies ``--set dotted.key=value`` overrides. Both check every value against the
dataclass field's type annotation (``int``, ``float``, ``bool``, ``str``, tuples and lists of
those, ``X | None``, nested configs): an unknown key or a value of the wrong type is a
one-line :class:`ConfigError` naming the key, the value and what was expected, never a
string that fails later. Keys missing from saved JSON take the field's default, so a
config written before a field was added still loads; a key the code does not know is an
error, so a checkpoint never loads with a silently different configuration.

A config file (``--config FILE``, YAML or JSON: :func:`read_config_file`) holds the same
nested keys as the saved JSON; :func:`merge_settings` lays it over a preset with the same
checks, and ``--set`` goes on top of both. YAML is read with PyYAML's ``safe_load`` and then
typed by the dataclass annotations here, exactly as JSON is.

Follows: torchtitan's per-component config dataclasses and preset functions.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from reelm.core.errors import ReelmError

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


def from_dict(cls: type[T], data: Mapping[str, Any], *, where: str | None = None) -> T:
    """Build ``cls`` from a dict, recursing into nested config dataclasses and checking every type.

    Unknown keys and wrongly typed values raise :class:`ConfigError`; missing keys take the defaults.
    """
    where = where or cls.__name__
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of settings, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown config keys {unknown} (known: {sorted(fields)})")
    hints = typing.get_type_hints(cls)
    kwargs = {name: coerce(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ReelmError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def coerce(hint: Any, value: Any, where: str) -> Any:
    """``value`` checked against the annotation ``hint`` (JSON lists become tuples where a tuple is expected)."""
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where=where)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(arg, value, where)
            except ConfigError:
                continue
        raise _wrong(where, value, hint)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _wrong(where, value, hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise _wrong(where, value, hint)
            return tuple(coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        items = [coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise _wrong(where, value, hint)
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _wrong(where, value, hint)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _wrong(where, value, hint)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _wrong(where, value, hint)
    if hint is str:
        if isinstance(value, str):
            return value
        raise _wrong(where, value, hint)
    return value


def describe(hint: Any) -> str:
    """What a value of type ``hint`` looks like, for messages: ``an integer``, ``a list of 2 numbers``."""
    if dataclasses.is_dataclass(hint):
        return f"a {hint.__name__} section (set its keys one by one)"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            inner = {describe(a) for a in args}
            kind = inner.pop() if len(inner) == 1 else "values"
            return f"a list of {len(args)} {_plural(kind)} like [{', '.join(_example(a) for a in args)}]"
        inner = describe(args[0]) if args else "values"
        return f"a list of {_plural(inner)}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _plural(kind: str) -> str:
    return {"an integer": "integers", "a number": "numbers", "a string": "strings",
            "true or false": "booleans"}.get(kind, kind)


def _example(hint: Any) -> str:
    return {bool: "true", int: "2", float: "0.9", str: '"x"'}.get(hint, "...")


def _wrong(where: str, value: Any, hint: Any) -> ConfigError:
    return ConfigError(f"{where}: expected {describe(hint)}, got {_show(value)}")


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (int, float, bool, str, list, dict, type(None))) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def save_json(path: str | Path, payload: Any) -> Path:
    """Write JSON (a config dataclass or plain data) with stable formatting, atomically."""
    from reelm.core.atomic import write_json

    if dataclasses.is_dataclass(payload):
        payload = to_dict(payload)
    return write_json(path, payload, error=ConfigError)


def load_json(path: str | Path) -> Any:
    path = Path(path)
    text = _read_text(path, "JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); fix the file or write it again") from None


def _read_text(path: Path, kind: str) -> str:
    """The UTF-8 text of a settings file, or a one-line :class:`ConfigError` naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, expected a {kind} file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None


CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def read_config_file(path: str | Path) -> dict:
    """The settings in a YAML or JSON file (a mapping at the top), or a one-line :class:`ConfigError` naming it."""
    path = Path(path)
    if path.suffix.lower() not in CONFIG_SUFFIXES:
        raise ConfigError(f"{path}: a config file must end in .yaml, .yml or .json")
    if path.suffix.lower() == ".json":
        data = load_json(path)
    else:
        import yaml

        text = _read_text(path, "YAML")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
            raise ConfigError(f"{path}: not valid YAML{at} ({getattr(exc, 'problem', None) or exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top, got {_show(data)}")
    return data


def merge_settings(cfg: T, settings: Mapping[str, Any], *, where: str) -> T:
    """``cfg`` with the nested ``settings`` laid over it (a config file's section), every value checked."""
    if not isinstance(settings, Mapping):
        raise ConfigError(f"{where}: expected a mapping of settings, got {_show(settings)}")
    return from_dict(type(cfg), _deep_merge(to_dict(cfg), settings), where=where)


def _deep_merge(base: dict, settings: Mapping[str, Any]) -> dict:
    merged = dict(base)
    for key, value in settings.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def dump_config(payload: Mapping[str, Any]) -> str:
    """The YAML text of a resolved config (``--print-config``): what ``--config`` reads back."""
    import yaml

    class Dumper(yaml.SafeDumper):  # sections in block style, lists of values on one line
        pass

    Dumper.add_representer(list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data,
                                                                                 flow_style=True))
    return yaml.dump(_to_jsonable(dict(payload)), Dumper=Dumper, sort_keys=False, default_flow_style=False)


def apply_overrides(cfg: T, overrides: list[str] | None, *, prefix: str = "") -> T:
    """Return a copy of ``cfg`` with ``dotted.key=value`` overrides applied, each checked against its field's type.

    A value is read as JSON (``3``, ``0.1``, ``true``, ``[0.9, 0.95]``, ``null``) where the field
    is not a string; a string field takes the text as it is (``null`` still means None where
    allowed). ``prefix`` is how the keys are spelled to the user (``model.``) in messages.
    """
    if not overrides:
        return cfg
    data = to_dict(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        shown = f"--set {prefix}{key}={raw}" if sep else f"--set {prefix}{item}"
        if not sep or not key:
            raise ConfigError(f"{shown}: expected KEY=VALUE")
        hint, node = _field(type(cfg), data, key.split("."), shown)
        node[key.split(".")[-1]] = _to_jsonable(coerce(hint, parse_value(hint, raw), shown))
    return from_dict(type(cfg), data)


def parse_value(hint: Any, raw: str) -> Any:
    """The text of ``--set key=TEXT`` as the value a field of type ``hint`` would hold (unchecked)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kinds = set(typing.get_args(hint)) if union else {hint}
    if str in kinds and raw != "null":
        if kinds & {int, float}:  # a union of numbers and strings (zero_stage: 2 or auto) reads a number as one
            try:
                number = json.loads(raw)
            except json.JSONDecodeError:
                return raw
            if isinstance(number, (int, float)) and not isinstance(number, bool):
                return number
        return raw
    if bool in kinds and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw  # reported by coerce as the wrong type, with what was expected


def _field(cls: type, data: dict, parts: list[str], shown: str) -> tuple[Any, dict]:
    """The annotation of the field at ``parts`` and the dict holding it."""
    node, owner = data, cls
    for depth, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(owner) if f.init}
        if part not in fields:
            where = ".".join(parts[:depth]) or "the config"
            raise ConfigError(f"{shown}: unknown key {part!r} in {where} (known: {sorted(fields)})")
        hint = typing.get_type_hints(owner)[part]
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(hint):
                raise ConfigError(f"{shown}: {part!r} is a section; set its keys ({part}.KEY=VALUE)")
            return hint, node
        if not dataclasses.is_dataclass(hint):
            raise ConfigError(f"{shown}: {part!r} is not a config section")
        node, owner = node[part], hint
    raise ConfigError(f"{shown}: empty key")


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """``(model, training)`` overrides from one ``--set`` list: ``model.KEY=V`` is the model's, anything
    else (``KEY=V``, or ``train.KEY=V``) the training config's — the same key style for every trainer."""
    model, training = [], []
    for item in overrides:
        if item.startswith("model."):
            model.append(item.removeprefix("model."))
        else:
            training.append(item.removeprefix("train."))
    return model, training


def resolve_preset(presets: Mapping[str, Callable[[], T]], name: str, what: str) -> T:
    """Call the preset function ``name`` from ``presets``, with a clear error otherwise."""
    try:
        factory = presets[name]
    except KeyError:
        raise ConfigError(f"unknown {what} preset {name!r}; choose from {sorted(presets)}") from None
    return factory()
