"""The five small Fashion-MNIST CNNs "A"-"E" of Peng et al., CVPR 2022, Table 1.

Table 1 fixes only the activation, dropout, kernel size and number of conv layers:

    ===  ==========  =======  ======  ==============
    arc  activation  dropout  kernel  # conv layers
    ===  ==========  =======  ======  ==============
    A    ELU         no       3       2
    B    ELU         no       5       3
    C    ReLU        no       3       2
    D    PReLU       no       3       4
    E    ReLU        yes      5       2
    ===  ==========  =======  ======  ==============

The rest is our choice, kept small so that each net trains on a 2-core CPU:

* conv ``i`` has ``channels[i]`` output channels (default ``(16, 32, 32, 32)``), kernel
  ``k``, padding ``k // 2`` (size preserving), followed by the activation;
* a 2x2 max-pool after each of the first two conv layers only (28x28 -> 14x14 -> 7x7);
* flatten, ``Linear(C_last * H' * W', 128)``, activation -> the 128-d features ``[B, 128]``;
* arc E (the one with dropout) adds ``Dropout(0.25)`` before the flatten and
  ``Dropout(0.5)`` after the hidden activation;
* head: ``Linear(128, num_classes)``.

Every activation is its own module instance (PReLU has one learned slope per layer).

Cost with the default channels, one epoch of 30,000 28x28 images at batch 128, forward +
backward + SGD step, ``torch.set_num_threads(2)`` on an otherwise idle 2-core Xeon:
A 4.1 s, B 4.9 s, C 2.7 s, D 5.5 s, E 3.9 s (206,922 - 241,002 parameters). Doubling
the channels to ``(32, 64, 64, 64)`` roughly doubles this (A ~8 s, B ~13 s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from torch import nn

from fpenc.errors import ConfigError

__all__ = ["FMNIST_ARCS", "DEFAULT_CHANNELS", "DEFAULT_HIDDEN", "FmnistArcSpec", "build_fmnist_cnn"]

DEFAULT_CHANNELS: tuple[int, ...] = (16, 32, 32, 32)
"""Output channels of conv layers 1..4 (a net with ``n`` conv layers uses the first ``n``)."""

DEFAULT_HIDDEN = 128
"""Width ``D`` of the hidden fully connected layer, i.e. of ``features(x)``."""

_ACTIVATIONS: dict[str, type[nn.Module]] = {"elu": nn.ELU, "relu": nn.ReLU, "prelu": nn.PReLU}
_NUM_POOLS = 2


@dataclass(frozen=True)
class FmnistArcSpec:
    """One row of Peng et al. (CVPR 2022) Table 1."""

    name: str
    """``"A"`` .. ``"E"``."""
    activation: str
    """``"elu"``, ``"relu"`` or ``"prelu"``."""
    dropout: bool
    """Whether the net has dropout layers."""
    kernel_size: int
    """Square conv kernel size."""
    num_conv: int
    """Number of conv layers."""

    def as_dict(self) -> dict:
        """A plain dict of the row, for printing/logging."""
        return asdict(self)


FMNIST_ARCS: dict[str, FmnistArcSpec] = {
    "A": FmnistArcSpec("A", activation="elu", dropout=False, kernel_size=3, num_conv=2),
    "B": FmnistArcSpec("B", activation="elu", dropout=False, kernel_size=5, num_conv=3),
    "C": FmnistArcSpec("C", activation="relu", dropout=False, kernel_size=3, num_conv=2),
    "D": FmnistArcSpec("D", activation="prelu", dropout=False, kernel_size=3, num_conv=4),
    "E": FmnistArcSpec("E", activation="relu", dropout=True, kernel_size=5, num_conv=2),
}
"""Table 1 of Peng et al. (CVPR 2022), keyed by arc letter."""


def _activation(name: str) -> nn.Module:
    return _ACTIVATIONS[name]()


def build_fmnist_cnn(
    spec: FmnistArcSpec,
    in_channels: int,
    input_size: tuple[int, int],
    num_classes: int,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    hidden: int = DEFAULT_HIDDEN,
) -> tuple[nn.Sequential, nn.Linear]:
    """Build ``(body, head)`` for one Table 1 arc.

    Args:
        spec: the Table 1 row (see :data:`FMNIST_ARCS`).
        in_channels: ``C`` of the input images ``[B, C, H, W]``.
        input_size: ``(H, W)``; each must be >= 4 (two 2x2 max-pools).
        num_classes: ``K``.
        channels: output channels per conv layer; at least ``spec.num_conv`` entries.
        hidden: width ``D`` of the hidden layer / features.

    Returns:
        ``body``: ``[B, C, H, W] -> [B, hidden]``; ``head``: ``Linear(hidden, K)``.
    """
    if spec.activation not in _ACTIVATIONS:
        raise ConfigError(f"unknown activation {spec.activation!r}; use one of {', '.join(_ACTIVATIONS)}")
    channels = [int(c) for c in channels]
    if len(channels) < spec.num_conv or any(c < 1 for c in channels):
        raise ConfigError(
            f"arc {spec.name} needs {spec.num_conv} positive conv channel counts, got {channels}; "
            "pass channels=[...] with one entry per conv layer"
        )
    if int(hidden) < 1:
        raise ConfigError(f"hidden must be a positive int, got {hidden}")
    height, width = input_size
    min_size = 2 ** min(spec.num_conv, _NUM_POOLS)
    if min(height, width) < min_size:
        raise ConfigError(
            f"arc {spec.name} needs inputs of at least {min_size}x{min_size} pixels, "
            f"got {height}x{width}; use a larger input_shape"
        )

    layers: list[nn.Module] = []
    prev = in_channels
    for i in range(spec.num_conv):
        layers.append(nn.Conv2d(prev, channels[i], spec.kernel_size, padding=spec.kernel_size // 2))
        layers.append(_activation(spec.activation))
        if i < _NUM_POOLS:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        prev = channels[i]
    if spec.dropout:
        layers.append(nn.Dropout(0.25))
    layers.append(nn.Flatten())
    layers.append(nn.Linear(prev * height * width, int(hidden)))
    layers.append(_activation(spec.activation))
    if spec.dropout:
        layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers), nn.Linear(int(hidden), num_classes)
