"""Command-line flags generated from a pydantic settings model, so that each setting is defined once.

A field becomes a flag when its annotation carries a :class:`Flag` marker::

    port: Annotated[int, Flag("server")] = Field(8000, ge=0, le=65535, description="listen port")

gives ``--port PORT`` in the ``server`` group, of type ``int``, default 8000, help ``listen port (default 8000)``.
The flag's type follows the field's: ``bool`` is a switch (``store_true``), a ``Literal`` gives choices, a
``tuple[X, ...]`` a repeatable flag, ``X | None`` an optional value; :attr:`Flag.load` turns the flag's text into the
field's value (a file name into its contents) when the settings are built, not while the flags are parsed.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo


@dataclass(frozen=True, slots=True)
class Flag:
    """How a settings field appears on the command line (a marker in the field's ``Annotated`` type)."""

    group: str  #: the key of the argument group (see :func:`add_flags`)
    name: str | None = None  #: the flag; default ``--field-name``
    metavar: str | None = None
    load: Callable[[str], Any] | None = None  #: turns the flag's text into the field's value


def flag_of(field: FieldInfo) -> Flag | None:
    """The :class:`Flag` marker of ``field``, or None when the field has no flag."""
    return next((item for item in field.metadata if isinstance(item, Flag)), None)


def flag_name(model: type[BaseModel], field: str) -> str:
    """The command-line flag of ``model``'s field ``field`` (``--field-name`` when it has no :class:`Flag`)."""
    info = model.model_fields.get(field)
    flag = flag_of(info) if info is not None else None
    if flag is not None and flag.name:
        return flag.name
    return "--" + field.replace("_", "-")


def _optional(annotation: Any) -> Any:
    """``X`` for ``X | None``, else None."""
    if get_origin(annotation) in (Union, types.UnionType):
        others = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(others) == 1:
            return others[0]
    return None


def _default_text(field: FieldInfo) -> str:
    default = field.default
    if default is None or isinstance(default, bool) or default == ():
        return ""
    if isinstance(default, tuple):
        return " (default " + ", ".join(str(item) for item in default).replace("%", "%%") + ")"
    return " (default %(default)s)"


def _argument(name: str, field: FieldInfo, flag: Flag, note: str) -> dict[str, Any]:
    """The keyword arguments of ``add_argument`` for one field."""
    annotation = field.annotation
    description = (field.description or "").replace("%", "%%")
    options: dict[str, Any] = {"dest": name, "help": description + _default_text(field) + note}
    if flag.metavar:
        options["metavar"] = flag.metavar
    if flag.load is not None:
        options.update(default=None, metavar=flag.metavar or "VALUE")
    elif annotation is bool:
        options.update(action="store_true", default=False)
    elif get_origin(annotation) is Literal:
        choices = list(get_args(annotation))
        options.update(choices=choices, type=type(choices[0]), default=field.default)
    elif get_origin(annotation) is tuple:
        options.update(action="append", type=get_args(annotation)[0], default=None)
    elif (inner := _optional(annotation)) is not None:
        options.update(type=inner, default=None)
    elif annotation in (int, float, str):
        options.update(type=annotation, default=field.default)
    else:
        raise TypeError(f"field {name}: no flag for the type {annotation!r}; give its Flag a load function")
    return options


def make_groups(parser: argparse.ArgumentParser, groups: Mapping[str, str]) -> dict[str, argparse._ArgumentGroup]:
    """Argument groups of ``parser`` in the order of ``groups`` (key: title), by key."""
    return {key: parser.add_argument_group(title) for key, title in groups.items()}


def add_flags(
    groups: Mapping[str, argparse._ArgumentGroup], model: type[BaseModel], notes: Mapping[str, str] | None = None
) -> None:
    """Add a flag for every field of ``model`` that has a :class:`Flag` to its group (see :func:`make_groups`), group
    by group, in the order of the fields; ``notes`` (field: text) are appended to some fields' help."""
    flagged = [(name, field, flag) for name, field in model.model_fields.items() if (flag := flag_of(field))]
    for name, _, flag in flagged:
        if flag.group not in groups:
            raise KeyError(f"field {name}: unknown flag group {flag.group!r}")
    for key, group in groups.items():
        for name, field, flag in flagged:
            if flag.group == key:
                note = (notes or {}).get(name, "").replace("%", "%%")
                group.add_argument(flag_name(model, name), **_argument(name, field, flag, note))


def given_values(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    """The values that the parsed flags give for ``model``'s fields, as given (not loaded): unset optional and
    repeatable flags are left out, repeated ones become tuples."""
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if flag_of(field) is None:
            continue
        value = getattr(args, name, None)
        if value is None:
            continue
        values[name] = tuple(value) if isinstance(value, list) else value
    return values


def load_values(model: type[BaseModel], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with each flag's :attr:`Flag.load` applied (a file name read into the field's value)."""
    loaded = dict(values)
    for name, value in values.items():
        flag = flag_of(model.model_fields[name])
        if flag is not None and flag.load is not None:
            loaded[name] = flag.load(value)
    return loaded


def describe_errors(error: ValidationError, model: type[BaseModel]) -> str:
    """One clause per invalid value of ``model``, naming its flag, what is wrong and the value given."""
    clauses = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "settings"
        value = item.get("input")
        given = "" if isinstance(value, dict) else f" (got {value!r})"
        clauses.append(f"{flag_name(model, field)}: {item['msg']}{given}")
    return "; ".join(clauses)
