"""One registered architecture (:class:`ArchSpec`): its name, builder and limits; the registry of
them is :mod:`fpenc.models.registry`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from fpenc.models.fmnist_cnn import FmnistArcSpec

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
