"""Architecture registry: names -> builders, and a plain-JSON config to rebuild a model.

Every model is an :class:`~fpenc.models.classifier.ImageClassifier` built by
:func:`build_model`. :func:`arch_config` gives the plain-JSON dict (``arch``,
``num_classes``, ``input_shape``, ``mean``, ``std`` and every builder option with its
value resolved) from which ``build_model(**cfg)`` rebuilds the same module, so weights
are stored as ``{"arch": cfg, "state_dict": model.state_dict()}`` and loaded with
``torch.load(path, weights_only=True)``.

Names: ``fmnist_a`` .. ``fmnist_e`` (Peng et al., CVPR 2022, Table 1; aliases ``A`` ..
``E``, ``arc_a`` .. ``arc_e``, case-insensitive), ``resnet18``, ``resnet34``, ``vgg16``,
``densenet121``, ``googlenet`` (CIFAR-10 / TinyImageNet nets of the paper).

Construction draws initial weights from the global torch RNG; the caller seeds.
"""

from __future__ import annotations

import copy
import difflib
import functools
import inspect
import json
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from fpenc.errors import ConfigError, UnknownArchitectureError
from fpenc.models.classifier import ImageClassifier
from fpenc.models.fmnist_cnn import FMNIST_ARCS, FmnistArcSpec, build_fmnist_cnn
from fpenc.models.torchvision_nets import (
    build_densenet121,
    build_googlenet,
    build_resnet18,
    build_resnet34,
    build_vgg16,
)

__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "arch_config",
    "build_model",
    "canonical_arch",
    "known_architectures",
    "resolve_architecture",
]

Builder = Callable[..., tuple[nn.Module, nn.Linear]]
"""``builder(in_channels, (H, W), num_classes, **options) -> (body, head)``."""

_POSITIONAL = ("in_channels", "input_size", "num_classes")


@dataclass(frozen=True)
class ArchSpec:
    """One registered architecture."""

    name: str
    """Canonical name, e.g. ``"fmnist_a"`` or ``"resnet18"``."""
    builder: Builder
    """``builder(in_channels, (H, W), num_classes, **options) -> (body, head)``."""
    description: str
    """One line for listings."""
    min_input_size: int = 1
    """Smallest ``H`` and ``W`` the net accepts."""
    table1: FmnistArcSpec | None = None
    """The Table 1 row for the Fashion-MNIST arcs, else ``None``."""

    def option_defaults(self) -> dict[str, Any]:
        """Keyword options of the builder (beyond C, (H, W), K) with their defaults."""
        params = inspect.signature(self.builder).parameters
        return {k: p.default for k, p in params.items() if k not in _POSITIONAL}


def _fmnist_spec(letter: str) -> ArchSpec:
    row = FMNIST_ARCS[letter]
    return ArchSpec(
        name=f"fmnist_{letter.lower()}",
        builder=functools.partial(build_fmnist_cnn, row),
        description=(
            f"Fashion-MNIST arc {letter} (Table 1): {row.num_conv} conv {row.kernel_size}x{row.kernel_size}, "
            f"{row.activation}, {'dropout' if row.dropout else 'no dropout'}"
        ),
        min_input_size=2 ** min(row.num_conv, 2),
        table1=row,
    )


ARCHITECTURES: dict[str, ArchSpec] = {
    **{s.name: s for s in (_fmnist_spec(letter) for letter in FMNIST_ARCS)},
    "resnet18": ArchSpec("resnet18", build_resnet18, "torchvision ResNet18, CIFAR stem (3x3 s1 conv, no max-pool)"),
    "resnet34": ArchSpec("resnet34", build_resnet34, "torchvision ResNet34, CIFAR stem (3x3 s1 conv, no max-pool)"),
    "vgg16": ArchSpec(
        "vgg16", build_vgg16, "torchvision VGG16 (BN by default), 1x1 avg-pool + 512-512 classifier", min_input_size=32
    ),
    "densenet121": ArchSpec(
        "densenet121", build_densenet121, "torchvision DenseNet121, CIFAR stem (3x3 s1 conv0, no pool0)", min_input_size=8
    ),
    "googlenet": ArchSpec(
        "googlenet", build_googlenet, "torchvision GoogLeNet, no aux heads, 3x3 s1 conv1, no maxpool1/2", min_input_size=2
    ),
}
"""Canonical name -> :class:`ArchSpec`, in listing order."""

_ALIASES: dict[str, str] = {
    alias: f"fmnist_{letter.lower()}"
    for letter in FMNIST_ARCS
    for alias in (letter.lower(), f"arc_{letter.lower()}", f"fmnist_{letter.lower()}")
}


def known_architectures() -> list[str]:
    """Canonical architecture names, in registry order."""
    return list(ARCHITECTURES)


def canonical_arch(name: str) -> str:
    """Map a name or alias (``"A"``, ``"arc_a"``, ``"FMNIST-A"``, ``"ResNet18"``) to its canonical name.

    Raises:
        UnknownArchitectureError: with the known names and a "did you mean" when close.
    """
    if not isinstance(name, str):
        raise ConfigError(f"architecture name must be a string, got {type(name).__name__}; use one of the known names")
    key = name.strip().lower().replace("-", "_")
    if key in ARCHITECTURES:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    candidates = {**{k: k for k in ARCHITECTURES}, **{a: c for a, c in _ALIASES.items() if len(a) > 1}}
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    hint = f"; did you mean '{candidates[close[0]]}'?" if close else ""
    raise UnknownArchitectureError(
        f"unknown architecture {name!r}; known: {', '.join(known_architectures())} "
        f"(aliases A..E / arc_a..arc_e for fmnist_a..fmnist_e){hint}"
    )


def resolve_architecture(name: str) -> str:
    """Same as :func:`canonical_arch` (the name config validation uses)."""
    return canonical_arch(name)


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


def _normalized_config(
    arch: str,
    num_classes: Any,
    input_shape: Any,
    mean: Any = None,
    std: Any = None,
    **kwargs: Any,
) -> dict[str, Any]:
    name = canonical_arch(arch)
    spec = ARCHITECTURES[name]
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
        raise ConfigError(f"options for '{name}' must be plain JSON values (numbers, strings, lists), got {options}") from None
    return cfg


def arch_config(model_or_arch: ImageClassifier | str | None = None, /, **args: Any) -> dict[str, Any]:
    """The plain-JSON architecture dict of a model, or of build arguments.

    ``arch_config(model)`` returns (a copy of) the config a model built by
    :func:`build_model` carries; ``arch_config("A", num_classes=10, input_shape=(1, 28, 28))``
    or ``arch_config(arch=..., ...)`` validates and normalizes build arguments without
    building anything. Either way ``build_model(**cfg)`` rebuilds the same module::

        {"arch": "fmnist_a", "num_classes": 10, "input_shape": [1, 28, 28],
         "mean": [0.286], "std": [0.353], "channels": [16, 32, 32, 32], "hidden": 128}

    Raises:
        ConfigError: invalid arguments, or a model that was not built by ``build_model``.
    """
    if isinstance(model_or_arch, nn.Module):
        if args:
            raise TypeError("arch_config(model) takes no other arguments")
        cfg = getattr(model_or_arch, "config", None)
        if not isinstance(cfg, dict):
            raise ConfigError(
                f"this {type(model_or_arch).__name__} carries no architecture config; build it with fpenc.models.build_model"
            )
        return copy.deepcopy(cfg)
    if model_or_arch is not None:
        if "arch" in args:
            raise TypeError("arch given twice")
        args["arch"] = model_or_arch
    missing = [k for k in ("arch", "num_classes", "input_shape") if k not in args]
    if missing:
        raise ConfigError(f"architecture config is missing {', '.join(missing)}; give arch, num_classes and input_shape")
    return _normalized_config(**args)


def build_model(
    arch: str,
    num_classes: int,
    input_shape: Sequence[int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **kwargs: Any,
) -> ImageClassifier:
    """Build a freshly initialized model (never pretrained) for images ``[B, *input_shape]`` in [0, 1].

    Args:
        arch: a name from :func:`known_architectures` or an alias (case-insensitive).
        num_classes: ``K`` >= 2; ``model(x)`` is ``[B, K]``.
        input_shape: ``(C, H, W)`` of one image.
        mean, std: per-channel normalization applied inside the model, or both ``None``.
        **kwargs: builder options (``channels``/``hidden`` for fmnist arcs, ``batch_norm`` for vgg16).

    Returns:
        an :class:`ImageClassifier` whose ``.config`` is ``arch_config(...)`` of these arguments.

    Raises:
        UnknownArchitectureError: unknown ``arch``.
        ConfigError: invalid ``num_classes``, ``input_shape``, ``mean``/``std`` or options.
    """
    cfg = _normalized_config(arch, num_classes, input_shape, mean, std, **kwargs)
    spec = ARCHITECTURES[cfg["arch"]]
    options = {k: cfg[k] for k in spec.option_defaults()}
    channels, height, width = cfg["input_shape"]
    body, head = spec.builder(channels, (height, width), cfg["num_classes"], **options)
    model = ImageClassifier(body, head, cfg["mean"], cfg["std"])
    model.config = copy.deepcopy(cfg)
    return model
