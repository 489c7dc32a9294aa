"""fpenc's own key at a query budget: the key's view images ``[V, N]`` with and without the victim's
UAPs (Peng et al., CVPR 2022, eq. 6: fingerprints are a suspect's answers on ``x`` and ``x + v``),
scored by label agreement with the victim, the statistic of fpenc's verdict.

Query order (so that any budget is a prefix): the V x N key images in a seeded order, each as the
pair ``x_i, x_i + v_(i mod U)``; then further rounds ``x_i + v_((i + r) mod U)`` that reuse the
clean answers. All of it: ``V N (U + 1)`` queries. ``no_uap`` (the v = 0 row) queries the clean
images alone: at most ``V N``.
"""

from __future__ import annotations

import torch

from fpenc.baselines.base import Defender, Method


def key_image_order(defender: Defender) -> torch.Tensor:
    """The key's view images as float ``[V N, C, H, W]`` in a seeded order."""
    if defender.key_images is None:
        raise ValueError("this method needs fpenc's key (Defender.key_images)")
    flat = defender.key_images.reshape(-1, *defender.key_images.shape[2:]).float() / 255.0
    g = torch.Generator().manual_seed(defender.seed)
    return flat[torch.randperm(len(flat), generator=g)]


class FpencKey(Method):
    name = "fpenc"

    def build_queries(self, defender: Defender, n: int) -> torch.Tensor:
        if defender.uaps is None:
            raise ValueError("fpenc needs the victim's UAPs (Defender.uaps)")
        x = key_image_order(defender)
        u = defender.uaps.float()
        idx = torch.arange(len(x))
        first = torch.stack([x, (x + u[idx % len(u)]).clamp(0, 1)], 1).reshape(-1, *x.shape[1:])
        rounds = [first] + [(x + u[(idx + r) % len(u)]).clamp(0, 1) for r in range(1, len(u))]
        return torch.cat(rounds)[:n]


class NoUAP(Method):
    name = "no_uap"

    def build_queries(self, defender: Defender, n: int) -> torch.Tensor:
        return key_image_order(defender)[:n]
