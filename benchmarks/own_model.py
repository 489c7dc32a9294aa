"""A model owner's own Fashion-MNIST classifier, an architecture fpenc does not define: what
``benchmarks/protect_own_model.py`` protects (``--class-path benchmarks.own_model.OwnerNet``)."""

from __future__ import annotations

import torch
from torch import nn


class OwnerNet(nn.Module):
    """Images ``[B, 1, 28, 28]`` in [0, 1] -> logits ``[B, classes]``; normalises inside (fpenc's contract).

    Two conv blocks with BatchNorm, global average pooling and a two-layer head: not one of Table 1.
    """

    def __init__(self, width: int = 24, classes: int = 10):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

        self.features = nn.Sequential(block(1, width), block(width, 2 * width), nn.AdaptiveAvgPool2d(3), nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(18 * width, 96), nn.ReLU(), nn.Linear(96, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features((x - 0.286) / 0.353))


class OtherNet(nn.Module):
    """Another family for the same task (an independent model of another architecture): an MLP."""

    def __init__(self, hidden: int = 256, classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - 0.286) / 0.353)
