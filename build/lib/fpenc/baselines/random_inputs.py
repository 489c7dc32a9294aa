"""The floor: uniform-noise images, label agreement with the victim (a test any suspect of the same
task half-passes, since many models answer noise with the same few classes)."""

from __future__ import annotations

import torch

from fpenc.baselines.base import Defender, Method


class RandomInputs(Method):
    name = "random"

    def build_queries(self, defender: Defender, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(defender.seed)
        return torch.rand((n, *defender.images.shape[1:]), generator=g)
