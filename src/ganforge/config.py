"""Typed configs: dataclasses are the schema, JSON is the storage, ``--set key=value`` the override.

Every component declares its settings as a dataclass with typed, defaulted, documented fields. This
module converts between those dataclasses and plain dicts, validates types and ranges, and parses
command-line overrides, always naming the bad key and the expected type on failure.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin

from .errors import ConfigError

C = TypeVar("C")


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is tuple:
        return "tuple of " + ", ".join(_type_name(a) for a in get_args(tp) if a is not Ellipsis)
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check (and losslessly convert) ``value`` to type ``tp``; raise ConfigError naming ``key``."""
    origin = get_origin(tp)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"config key {key!r}: got {value!r}, expected {_type_name(tp)}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        for arm in get_args(tp):
            if arm is type(None):
                continue
            try:
                return coerce(value, arm, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key!r}: got {value!r}, expected {_type_name(tp)}")
    if origin is tuple:
        args = [a for a in get_args(tp) if a is not Ellipsis]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {key!r}: got {value!r}, expected {_type_name(tp)}")
        if Ellipsis in get_args(tp):
            return tuple(coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"config key {key!r}: got {len(value)} values, expected {len(args)}")
        return tuple(coerce(v, a, key) for v, a in zip(value, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r}: got {value!r}, expected true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key {key!r}: got {value!r}, expected an integer")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key {key!r}: got {value!r}, expected a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key {key!r}: got {value!r}, expected a string")
    raise TypeError(f"unsupported config type {tp!r} for {key!r}")


def parse_value(text: str) -> Any:
    """Parse a command-line value: JSON when it parses (numbers, true/false, null, lists), else a string."""
    low = text.strip()
    if low.lower() in ("true", "false"):
        return low.lower() == "true"
    if low.lower() in ("none", "null"):
        return None
    if low.lower() in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
        return float(low)  # JSON spells only NaN/Infinity; the range checks then name the key
    try:
        return json.loads(low)
    except (ValueError, RecursionError):
        # Not JSON (JSONDecodeError is a ValueError). Also plain ValueError: an integer of more than
        # 4300 digits; and RecursionError: thousands of nested brackets. Such text is kept as a
        # string, so the key's type check reports it like any other bad value.
        if "," in low:  # a,b,c -> list, for tuple-valued keys such as betas=0.5,0.999
            return [parse_value(p) for p in low.split(",")]
        return text


SEED_LIMIT = 2**62  # seeds are offset for separate streams (fixed noise, eval) and must stay in int64


def check_seed(seed: int, key: str = "seed") -> int:
    if not -SEED_LIMIT < seed < SEED_LIMIT:
        raise ConfigError(f"{key} must be an integer between -2**62 and 2**62, got {seed}")
    return seed


class CliText(str):
    """A ``--set`` value as typed; turned into a value by ``value_for`` once its key's type is known."""


def value_for(text: str, tp: Any, key: str) -> Any:
    """The value of command-line ``text`` for a key of type ``tp``: its JSON reading (numbers, lists,
    null, ``a,b`` lists) when that fits the type, else the text itself when the key takes a string.
    So ``tech.diffaugment=color,cutout`` and ``d_norm=none`` stay strings for string keys, while
    ``betas=0.5,0.999`` is a pair and ``data.root=none`` is null for a key that may be null."""
    parsed = parse_value(text)
    try:
        coerce(parsed, tp, key)
        return parsed
    except ConfigError as err:
        try:
            coerce(text.strip(), tp, key)
        except ConfigError:
            raise err from None
        return text.strip()


def fields_of(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def from_dict(cls: type[C], data: dict[str, Any], where: str = "") -> C:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a JSON object, got {type(data).__name__}")
    schema = fields_of(cls)
    unknown = sorted(set(data) - set(schema))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]!r}; valid keys: {', '.join(sorted(schema))}"
        )
    kwargs = {k: coerce(v, schema[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check()
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def replace(obj: C, **changes: Any) -> C:
    """Like dataclasses.replace but with type checking and validation."""
    data = to_dict(obj)
    data.update(changes)
    return from_dict(type(obj), data)


def require(cond: bool, key: str, message: str) -> None:
    """Range checks in ``validate()`` methods: ``require(lr > 0, 'lr_g', 'must be > 0')``."""
    if not cond:
        raise ConfigError(f"config key {key!r} {message}")
