"""Plain YAML data to the config dataclasses, through jsonargparse, and the stacking of files.

Types are jsonargparse's (the same parser LightningCLI uses for ``fpenc fit``/``test``): a value of
the wrong type is an error naming where it is. Keys are checked first against the dataclasses'
fields (:func:`check_keys`), so an unknown key is an error with a "did you mean" hint and a typo
never silently falls back to a default.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import re
import types
import typing
from typing import Any

from fpenc.errors import ConfigError


def _merge_grids(base: list, over: list) -> list:
    """Zoo grids of an overlay: when every one names a grid (``name:``), they update the base's grids
    of those names key by key (``options``, the architectures' keyword arguments, as a whole: they
    belong to the architectures, so an overlay that changes these restates them) and add the others;
    otherwise the overlay's list replaces the base's."""
    if not over or not all(isinstance(g, dict) and g.get("name") for g in over):
        return list(over)
    out = [dict(g) if isinstance(g, dict) else g for g in base]
    index = {g.get("name"): i for i, g in enumerate(out) if isinstance(g, dict) and g.get("name")}
    for grid in over:
        if grid["name"] in index:
            merged = merge(out[index[grid["name"]]], grid)
            if isinstance(grid.get("options"), dict):
                merged["options"] = dict(grid["options"])
            out[index[grid["name"]]] = merged
        else:
            out.append(dict(grid))
    return out


def merge(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged in key by key (nested mappings recursively, ``over`` wins;
    named zoo grids by name, :func:`_merge_grids`)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        elif key == "grids" and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_grids(out[key], value)
        else:
            out[key] = value
    return out


def unknown_key(key: str, known: list[str], where: str) -> ConfigError:
    """The error for an unknown ``key`` at ``where``, with a "did you mean" hint when one is close."""
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"{where}: unknown key '{key}'{hint}; known keys: {', '.join(known)}")


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass inside ``tp`` (``X``, ``X | None``), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return found[0] if len(found) == 1 else None
    return None


def check_keys(cls: type, data: Any, where: str) -> None:
    """Refuse keys of ``data`` that are no field of dataclass ``cls`` (recursively, list items too)."""
    if not isinstance(data, dict):
        if data is not None:
            raise ConfigError(f"{where}: expected a mapping of keys, got {type(data).__name__} {data!r}")
        return
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    for key, value in data.items():
        if key not in fields:
            raise unknown_key(str(key), fields, where)
        tp = hints[key]
        inner = _dataclass_of(tp)
        if inner is not None:
            check_keys(inner, value, f"{where}.{key}")
        elif typing.get_origin(tp) is list and isinstance(value, list):
            (item,) = typing.get_args(tp)
            if dataclasses.is_dataclass(item):
                for i, v in enumerate(value):
                    check_keys(item, v, f"{where}.{key}[{i}]")


@functools.cache
def _parser(cls: type):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False, default_env=False)
    parser.add_argument("--value", type=cls)
    return parser


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true/false",
    "str": "a string",
    "dict": "a mapping",
    "list": "a list",
    "NoneType": "null",
}


def _one_line(err: Exception, where: str) -> ConfigError:
    """jsonargparse's (multi-line) error as one line that names the key: ``pipeline.seed: expected an integer, got 'x'``."""
    text = str(err)
    keys = [k.removeprefix("value").lstrip(".") for k in re.findall(r'(?:Parser key|key) "([^"]+)"', text)]
    path = ".".join(k for k in keys if k)
    at = f"{where}.{path}" if path else where
    m = re.search(r"Expected a <class '(\w+)'>\. Got value: (.*)", text)
    if m:
        what = _TYPE_WORDS.get(m.group(1), m.group(1))
        return ConfigError(f"{at}: expected {what}, got {m.group(2).strip()!r}")
    m = re.search(r"Subtypes: \[(.*?)\].*Given value: (.*)", text, re.S)
    if m:
        names = [_TYPE_WORDS.get(n, n) for n in re.findall(r"<class '(?:\w+\.)*(\w+)'>", m.group(1))]
        return ConfigError(f"{at}: expected {' or '.join(names)}, got {m.group(2).strip()!r}")
    m = re.search(r"does not accept option '([^']+)'|Option '([^']+)' is not accepted", text)
    if m:
        return ConfigError(f"{at}: unknown key '{m.group(1) or m.group(2)}'")
    return ConfigError(f"{at}: {' '.join(text.split())}")


def from_dict(cls: type, data: Any, where: str = "pipeline") -> Any:
    """Build dataclass ``cls`` from plain data: keys checked (:func:`check_keys`), types by jsonargparse.

    Raises:
        ConfigError: an unknown key (with a did-you-mean hint) or a value of the wrong type, in one line.
    """
    import warnings

    check_keys(cls, data, where)
    parser = _parser(cls)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jsonargparse's deprecation notices are not the user's business
        try:
            namespace = parser.parse_object({"value": copy.deepcopy(data or {})})  # (it edits its input)
            return parser.instantiate(namespace).value
        except ConfigError:
            raise
        except Exception as err:  # jsonargparse raises ArgumentError / TypeError / ValueError
            raise _one_line(err, where) from None


def to_dict(obj: Any) -> dict:
    """A config dataclass as nested plain dicts and lists."""
    return dataclasses.asdict(obj)
