"""Checking and normalising the arguments of :func:`fpenc.models.registry.build_model` into the
plain-JSON architecture config (``arch``, ``num_classes``, ``input_shape``, ``mean``, ``std`` and
every builder option with its value resolved) that rebuilds the same module.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

from fpenc.errors import ConfigError
from fpenc.models.arch_spec import ArchSpec


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be an int, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ConfigError(f"{what} must be an int, got {value!r}") from None


def _check_input_shape(input_shape: Any) -> list[int]:
    bad = ConfigError(
        f"input_shape must be 3 positive ints (channels, height, width), got {input_shape!r}; e.g. [3, 32, 32]"
    )
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) or len(input_shape) != 3:
        raise bad
    try:
        shape = [_as_int(v, "input_shape entry") for v in input_shape]
    except ConfigError:
        raise bad from None
    if any(v < 1 for v in shape):
        raise bad
    return shape


def _check_stats(name: str, values: Any, channels: int) -> list[float] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ConfigError(f"{name} must be a list of {channels} floats (one per channel) or null, got {values!r}")
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a list of {channels} floats (one per channel), got {values!r}") from None
    if not all(math.isfinite(v) for v in out):
        raise ConfigError(f"{name} must be finite numbers, got {out}")
    if len(out) != channels:
        raise ConfigError(f"{name} has {len(out)} values but the input has {channels} channels; give one per channel")
    return out


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively, so the config equals its JSON round trip."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def normalized_config(
    spec: ArchSpec,
    /,
    num_classes: Any,
    input_shape: Any,
    mean: Any = None,
    std: Any = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """The architecture config of ``spec`` built with these arguments. Raises ConfigError."""
    name = spec.name
    k = _as_int(num_classes, "num_classes")
    if k < 2:
        raise ConfigError(f"num_classes must be >= 2, got {k}; set it to the number of labels in the dataset")
    shape = _check_input_shape(input_shape)
    channels, height, width = shape
    if min(height, width) < spec.min_input_size:
        raise ConfigError(
            f"architecture '{name}' needs inputs of at least {spec.min_input_size}x{spec.min_input_size} pixels, "
            f"got {height}x{width}; use a larger input_shape or another architecture"
        )
    mean_l, std_l = _check_stats("mean", mean, channels), _check_stats("std", std, channels)
    if (mean_l is None) != (std_l is None):
        raise ConfigError("give both mean and std for normalization, or neither")
    if std_l is not None and any(s <= 0 for s in std_l):
        raise ConfigError(f"std must be > 0 for every channel, got {std_l}; fix the normalization std")
    defaults = spec.option_defaults()
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        accepted = ", ".join(defaults) or "none"
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for architecture '{name}'; accepted: {accepted}")
    for key, value in kwargs.items():
        if isinstance(defaults[key], bool) and not isinstance(value, bool):
            raise ConfigError(f"option {key} of architecture '{name}' must be true or false, got {value!r}")
    options = _plain({**defaults, **kwargs})
    cfg: dict[str, Any] = {
        "arch": name,
        "num_classes": k,
        "input_shape": shape,
        "mean": mean_l,
        "std": std_l,
        **options,
    }
    try:
        if json.loads(json.dumps(cfg)) != cfg:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(
            f"options for '{name}' must be plain JSON values (numbers, strings, lists), got {options}"
        ) from None
    return cfg
