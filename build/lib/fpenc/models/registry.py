"""Architecture registry: names -> builders, and a plain-JSON config to rebuild a model.

Every model is an :class:`~fpenc.models.classifier.ImageClassifier` built by
:func:`build_model`. :func:`arch_config` gives the plain-JSON dict (``arch``,
``num_classes``, ``input_shape``, ``mean``, ``std`` and every builder option with its
value resolved) from which ``build_model(**cfg)`` rebuilds the same module, so weights
are stored as ``{"arch": cfg, "state_dict": model.state_dict()}`` and loaded with
``torch.load(path, weights_only=True)``.

Names: ``fmnist_a`` .. ``fmnist_e`` (Peng et al., CVPR 2022, Table 1; aliases ``A`` ..
``E``, ``arc_a`` .. ``arc_e``, case-insensitive), ``resnet18``, ``resnet34``, ``vgg16``,
``densenet121``, ``googlenet`` (CIFAR-10 / TinyImageNet nets of the paper); ``mlp`` and
``bn_resnet``, small families outside the paper for suspects fpenc never trains on; and any
user's ``nn.Module`` by its class path (``mypkg.nets.MyNet``, :mod:`fpenc.models.user_model`), its
constructor's keyword arguments as the options.

Construction draws initial weights from the global torch RNG; the caller seeds. The build
arguments are checked and normalised by :mod:`fpenc.models.build_args`.
"""

from __future__ import annotations

import copy
import difflib
import functools
from collections.abc import Sequence
from typing import Any

from torch import nn

from fpenc.errors import ConfigError, UnknownArchitectureError
from fpenc.models.arch_spec import ArchSpec
from fpenc.models.build_args import normalized_config
from fpenc.models.classifier import ImageClassifier
from fpenc.models.fmnist_cnn import FMNIST_ARCS, build_fmnist_cnn
from fpenc.models.small_nets import build_bn_resnet, build_mlp
from fpenc.models.torchvision_nets import (
    build_densenet121,
    build_googlenet,
    build_resnet18,
    build_resnet34,
    build_vgg16,
)
from fpenc.models.user_model import build_user_model, import_class, is_class_path, user_config

__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "arch_config",
    "build_model",
    "canonical_arch",
    "known_architectures",
    "resolve_architecture",
]


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
    "mlp": ArchSpec("mlp", build_mlp, "multi-layer perceptron (hidden widths 256, 128), outside Table 1"),
    "bn_resnet": ArchSpec(
        "bn_resnet", build_bn_resnet, "small residual CNN with BatchNorm (16-32-64 channels), outside Table 1"
    ),
    "resnet18": ArchSpec("resnet18", build_resnet18, "torchvision ResNet18, CIFAR stem (3x3 s1 conv, no max-pool)"),
    "resnet34": ArchSpec("resnet34", build_resnet34, "torchvision ResNet34, CIFAR stem (3x3 s1 conv, no max-pool)"),
    "vgg16": ArchSpec(
        "vgg16", build_vgg16, "torchvision VGG16 (BN by default), 1x1 avg-pool + 512-512 classifier", min_input_size=32
    ),
    "densenet121": ArchSpec(
        "densenet121",
        build_densenet121,
        "torchvision DenseNet121, CIFAR stem (3x3 s1 conv0, no pool0)",
        min_input_size=8,
    ),
    "googlenet": ArchSpec(
        "googlenet",
        build_googlenet,
        "torchvision GoogLeNet, no aux heads, 3x3 s1 conv1, no maxpool1/2",
        min_input_size=2,
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
    if is_class_path(name):  # a user's own nn.Module class (fpenc.models.user_model)
        import_class(name.strip())
        return name.strip()
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


def _normalized_config(
    arch: str,
    num_classes: Any,
    input_shape: Any,
    mean: Any = None,
    std: Any = None,
    **kwargs: Any,
) -> dict[str, Any]:
    arch = canonical_arch(arch)
    if is_class_path(arch):
        if mean is not None or std is not None:
            raise ConfigError(f"{arch} is a user's class: its normalisation belongs inside it (no mean/std)")
        return user_config(arch, num_classes, input_shape, kwargs.get("init_args", kwargs))
    spec = ARCHITECTURES[arch]
    return normalized_config(spec, num_classes, input_shape, mean, std, **kwargs)


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
        raise ConfigError(
            f"architecture config is missing {', '.join(missing)}; give arch, num_classes and input_shape"
        )
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
    if is_class_path(cfg["arch"]):
        return build_user_model(cfg)
    spec = ARCHITECTURES[cfg["arch"]]
    options = {k: cfg[k] for k in spec.option_defaults()}
    channels, height, width = cfg["input_shape"]
    body, head = spec.builder(channels, (height, width), cfg["num_classes"], **options)
    model = ImageClassifier(body, head, cfg["mean"], cfg["std"])
    model.config = copy.deepcopy(cfg)
    return model
