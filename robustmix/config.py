"""Strict TOML -> dataclass conversion shared by recipes and sweep specs.

Unknown keys and wrong types are errors naming the key (``train.epochs``), so
a typo in a recipe never silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError


SEED_MAX = 2**32 - 1  # NumPy's legacy limit; derived per-unit seeds stay far from int64 overflow


def check_seed(value: Any, where: str = "seed") -> int:
    """A seed is an int in [0, SEED_MAX], the same rule for every command."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise ConfigError(f"{where}: a seed must be an integer from 0 to {SEED_MAX}, got {value!r}")
    return value


def load_toml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found; pass the path of a TOML file")
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise ConfigError(f"{path} is {kind}; pass the path of a TOML file")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 text; a binary file fails before parsing
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start} is not UTF-8), so not TOML; "
                          f"pass the path of a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc}); pass the path of a readable TOML file") from None


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        return f"list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "table"
    if dataclasses.is_dataclass(tp):
        return "table"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it converted."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, get_args(tp)))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        (item,) = get_args(tp)
        return [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return from_dict(tp, value, where)
    if tp is float:
        # TOML writes 1 for 1.0; accept ints for floats but never bools.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{where}." if where else ""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key '{prefix}{unknown[0]}'; valid keys{' in ' + where if where else ''}: "
            f"{', '.join(sorted(fields))}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = coerce(data[name], hints[name], prefix + name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing key '{prefix}{name}' ({_type_name(hints[name])}); add it")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(where)
    return obj


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


__all__ = ["load_toml", "coerce", "from_dict", "to_dict", "typing"]
