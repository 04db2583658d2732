"""Typed job configs: dataclasses loaded from YAML with ``key=value`` overrides.

A job config is a (possibly nested) dataclass. :func:`load_config` reads an optional YAML
file, applies dotted overrides (``optim.lr=0.1``), checks every value against the field's type
annotation and returns a new instance. Unknown keys, wrong types and unparsable values raise
:class:`~echoseek.errors.ConfigError` naming the key, so a typo never silently falls back to a
default. Override values are parsed as YAML scalars (``k=3`` is an int, ``k=[1,2]`` a list,
``k=null`` None) and then coerced to the annotated type.

``dataclasses.asdict(cfg)`` feeds MLflow params and Tune search spaces; :func:`flatten` turns
it into dotted keys.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from echoseek.errors import ConfigError

T = TypeVar("T")


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build ``cls`` from an optional YAML file plus ``key=value`` overrides.

    >>> @dataclasses.dataclass
    ... class C:
    ...     lr: float = 0.1
    >>> load_config(C, None, ["lr=0.5"]).lr
    0.5
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    for item in overrides:
        key, value = _split_override(item)
        _set_dotted(raw, key, value)
    return from_dict(cls, raw)


def with_values(cls: type[T], data: Mapping[str, Any], values: Mapping[str, Any]) -> T:
    """Build ``cls`` from plain nested ``data`` (e.g. :func:`to_dict` of a config) with
    already-parsed ``values`` set at dotted keys (a sweep trial's draw: ``{"optim.lr": 0.01}``).
    ``data`` is not modified."""
    raw = json.loads(json.dumps(data, default=list))  # a deep copy; tuples become lists
    for key, value in values.items():
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"bad field name '{key}'")
        _set_dotted(raw, key, value)
    return from_dict(cls, raw)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file's top-level mapping ({} for an empty file), with clear errors."""
    return _read_yaml(Path(path))


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Construct dataclass ``cls`` from a mapping, type-checking every field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        known = ", ".join(sorted(fields))
        raise ConfigError(f"unknown config field '{where}{unknown[0]}' (known: {known})")
    kwargs = {
        name: _coerce(value, hints[name], f"{prefix}.{name}" if prefix else name)
        for name, value in data.items()
    }
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from None


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys: ``{"a": {"b": 1}} -> {"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def field_defaults(cls: type, prefix: str = "", defaults: Any = None) -> list[tuple[str, str, Any]]:
    """``(dotted key, type, default)`` of every leaf field of config class ``cls``, in order.

    Nested dataclass fields are expanded with the values of the nested instance the outer
    default builds (``defaults``); a field without a default has ``dataclasses.MISSING``.
    """
    hints = get_type_hints(cls)
    out: list[tuple[str, str, Any]] = []
    for f in dataclasses.fields(cls):
        if defaults is not None:
            default = getattr(defaults, f.name)
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = f.default
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            nested = default if dataclasses.is_dataclass(default) else None
            out += field_defaults(tp, f"{prefix}{f.name}.", nested)
        else:
            out.append((f"{prefix}{f.name}", _type_name(tp), default))
    return out


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def to_dict(cfg: Any) -> dict[str, Any]:
    """``dataclasses.asdict`` for a config instance (nested dataclasses become dicts)."""
    return dataclasses.asdict(cfg)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: config file is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
            f"at offset {exc.start})"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_first_line(exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config fields")
    return data


def _split_override(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"bad override '{item}': expected key=value (e.g. optim.lr=0.1)")
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        value = text
    return key, value


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"bad override '{key}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_dict(tp, value if value is not None else {}, key)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (list, tuple, Sequence, typing.Sequence):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    return _coerce_scalar(value, tp, key)


def _coerce_scalar(value: Any, tp: Any, key: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" and "inf" as strings
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: cannot use {value!r} as {getattr(tp, '__name__', tp)}")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def config_help(config_cls: type) -> str:
    """The ``--help`` epilog: every config key (dotted when nested), its default and type."""
    rows = [(key, _show(default), tp) for key, tp, default in field_defaults(config_cls)]
    width = max(len(f"{key}={value}") for key, value, _ in rows)
    lines = ["config keys (key=default  type):"]
    lines += [f"  {f'{key}={value}':<{width}}  {tp}" for key, value, tp in rows]
    return "\n".join(lines)


def override_example(config_cls: type) -> str:
    """``, e.g. KEY=DEFAULT`` for a real key of the command (a dotted one if it has any)."""
    rows = field_defaults(config_cls)
    preferred = [r for r in rows if "." in r[0]] or [r for r in rows if r[0] == "output"] or rows
    key, _, default = preferred[0]
    return f", e.g. {key}={_show(default)}"


def _show(value: Any) -> str:
    """A default as it would be written on the command line."""
    if value is dataclasses.MISSING:
        return "(required)"
    if isinstance(value, str):
        return value or "''"
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value, default=str)


def plain(cfg: Any) -> dict[str, Any]:
    """A config dataclass as plain nested dicts (what Ray ships to the workers)."""
    return dataclasses.asdict(cfg)
