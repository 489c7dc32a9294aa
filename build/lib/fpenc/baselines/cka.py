"""White-box reference: linear CKA (Kornblith et al., ICML 2019) between the victim's and the suspect's
penultimate features on the same images, the representation-similarity fingerprint of the
related work. It needs the suspect's weights, which a verifier with query access does not have:
an upper reference, not a competitor."""

from __future__ import annotations

import torch

from fpenc.baselines.base import Defender, Method
from fpenc.baselines.key_methods import key_image_order


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA of features ``a [n, D1]`` and ``b [n, D2]`` of the same n inputs, in [0, 1]:
    ``||B^T A||_F^2 / (||A^T A||_F ||B^T B||_F)`` after centring the columns."""
    a = a.double() - a.double().mean(0)
    b = b.double() - b.double().mean(0)
    cross = (b.T @ a).norm() ** 2
    denom = (a.T @ a).norm() * (b.T @ b).norm()
    return float(cross / denom) if denom > 0 else 0.0


@torch.inference_mode()
def penultimate(net: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """``net.features(x)`` (fpenc's classifiers expose their penultimate layer), ``[B, D]``; the
    logits of a model without one (a constant or random-label model: its only representation)."""
    layer = net.features if hasattr(net, "features") else net
    net.eval()
    return torch.cat([layer(x[i : i + batch_size]).flatten(1).float() for i in range(0, len(x), batch_size)])


class CKA(Method):
    name = "cka"
    black_box = False

    def build_queries(self, defender: Defender, n: int) -> torch.Tensor:
        if defender.key_images is not None:
            return key_image_order(defender)[:n]
        g = torch.Generator().manual_seed(defender.seed)
        return defender.images[torch.randperm(len(defender.images), generator=g)[:n]].float() / 255.0

    def prepare(self, defender: Defender) -> CKA:
        self.queries = self.build_queries(defender, self.max_queries).float().clamp(0, 1)
        self.victim_answers = penultimate(defender.victim, self.queries)
        return self

    def observe(self, net: torch.nn.Module, batch_size: int = 1000) -> tuple[torch.Tensor, int]:
        return penultimate(net, self.queries, batch_size), 0  # no query: the weights are in hand

    def similarity(self, suspect_features: torch.Tensor, victim_features: torch.Tensor) -> float:
        return linear_cka(suspect_features, victim_features)
