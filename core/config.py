"""Dataclass configs <-> plain dicts, JSON and argparse flags, so every config is saved with its
weights and every field is a CLI flag without hand-written glue."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(config: Any) -> dict:
    """A JSON-ready dict of a (possibly nested) dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type[T], data: dict | None) -> T:
    """Build `cls` from a dict, ignoring unknown keys (old runs keep loading) and recursing into
    nested dataclass fields; a missing key takes the field's default."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        value = data[field.name]
        ftype = hints.get(field.name)
        if dataclasses.is_dataclass(ftype) and isinstance(value, dict):
            value = from_dict(ftype, value)
        elif typing.get_origin(ftype) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[field.name] = value
    return cls(**kwargs)


def ranged(lo: float, hi: float, default):
    """A dataclass field whose value a file or a form may set only within [lo, hi] (checked
    below); tuples of numbers check each item. A mutable default is copied per instance."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata={"range": (lo, hi)})
    return dataclasses.field(default=default, metadata={"range": (lo, hi)})


def field_range(cls: type, name: str) -> tuple:
    """(lo, hi) of a `ranged` field: what every form, flag and file may set it to."""
    return next(f for f in dataclasses.fields(cls) if f.name == name).metadata["range"]


def field_default(cls: type, name: str) -> Any:
    """A field's default, as the dataclass declares it."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _check_value(name: str, value: Any, ftype: Any, limits: tuple | None) -> Any:
    """`value` as field type `ftype` (int, float, str, bool, tuple[int|float|str, ...], or
    Optional of those), within `limits` (lo, hi) for numbers and tuple items; ValueError naming
    the field otherwise."""
    origin = typing.get_origin(ftype)
    if origin is typing.Union or origin is types.UnionType:
        if value is None:
            return None
        ftype = next(a for a in typing.get_args(ftype) if a is not type(None))
        origin = typing.get_origin(ftype)
    if origin is tuple:
        inner = typing.get_args(ftype)[0]
        if not isinstance(value, (list, tuple)) or not value or len(value) > 64:
            raise ValueError(f"{name} must be a list of 1 to 64 values, not {value!r:.60}")
        return tuple(_check_value(f"{name}[{i}]", v, inner, limits) for i, v in enumerate(value))
    if ftype is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, not {value!r:.60}")
        return value
    if ftype is str:
        if not isinstance(value, str) or len(value) > 10_000:
            raise ValueError(f"{name} must be a text, not {value!r:.60}")
        return value
    if ftype in (int, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
            math.isfinite(value) and (ftype is float or float(value).is_integer())
        if not ok:
            raise ValueError(f"{name} must be a finite {'whole ' if ftype is int else ''}number, "
                             f"not {value!r:.60}")
        value = ftype(value)
        if limits is not None and not limits[0] <= value <= limits[1]:
            raise ValueError(f"{name} must be between {limits[0]:g} and {limits[1]:g}, not "
                             f"{value:g}")
        return value
    return value


def checked(cls: type[T], data: Any) -> T:
    """Like from_dict, for a config read from a file that may come from anywhere: `data` must
    be a JSON object, every known field of the type its annotation says and inside the range its
    dataclass field names in metadata["range"]. Raises ValueError naming the first bad field."""
    if not isinstance(data, dict):
        raise ValueError(f"the {cls.__name__} is not a JSON object")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name in data and data[field.name] in ([], ()) and field.default == ():
            kwargs[field.name] = ()   # an empty list where the default is empty (no filter)
        elif field.name in data:
            kwargs[field.name] = _check_value(field.name, data[field.name], hints[field.name],
                                              field.metadata.get("range"))
    return cls(**kwargs)


def save_json(path: str | Path, data: dict) -> None:
    """Write JSON atomically (temp file then rename) so a reader never sees half a file."""
    from core.atomic import atomic_path

    text = json.dumps(data, indent=2, sort_keys=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _flag_type(ftype: Any):
    origin = typing.get_origin(ftype)
    if origin is typing.Union or origin is types.UnionType:  # Optional[X] / X | None
        args = [a for a in typing.get_args(ftype) if a is not type(None)]
        return _flag_type(args[0]) if args else str
    if origin is tuple:
        inner = typing.get_args(ftype)[0]
        return lambda s: tuple(inner(v) for v in s.split(","))
    if ftype is bool:
        return lambda s: s.lower() in ("1", "true", "yes", "on")
    return ftype if ftype in (int, float, str) else str


def add_arguments(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """Expose every scalar field of dataclass `cls` as `--{prefix}{field-name}` (default None, so
    only the flags a user gives override a preset). Nested dataclasses are skipped."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(cls.__name__)
    for field in dataclasses.fields(cls):
        ftype = hints[field.name]
        if dataclasses.is_dataclass(ftype):
            continue
        flag = "--" + (prefix + field.name).replace("_", "-")
        group.add_argument(flag, dest=prefix + field.name, type=_flag_type(ftype), default=None,
                           help=f"{field.name} (default {field.default!r})"
                           if field.default is not dataclasses.MISSING else field.name)


def given(args: argparse.Namespace, cls: type, prefix: str = "") -> dict:
    """{field: value} of every field of dataclass `cls` the user set on the command line (the
    flags add_arguments made), for a job's overrides."""
    return {f.name: getattr(args, prefix + f.name) for f in dataclasses.fields(cls)
            if getattr(args, prefix + f.name, None) is not None}


def refuse_beside(args: argparse.Namespace, flag: str, allowed: tuple[str, ...] = ()) -> None:
    """UserError naming every flag given beside `flag` (e.g. --from-config, which starts from a
    file as it is) other than the `allowed` destinations and the subcommand."""
    from core.errors import UserError

    extra = [f"--{k.replace('_', '-')}" for k, v in vars(args).items()
             if v not in (None, False, []) and k not in ("command", flag.lstrip("-").replace("-", "_"),
                                                          *allowed)]
    if extra:
        raise UserError(f"{flag} starts from the run's config.json as it is; leave out "
                        f"{', '.join(extra)}")


def override(config: T, args: argparse.Namespace, prefix: str = "") -> T:
    """A copy of `config` with every field the user set on the command line replaced."""
    return dataclasses.replace(config, **given(args, type(config), prefix))
