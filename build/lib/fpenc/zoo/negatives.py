"""Suspects that are not working models of the task: what a verifier must never call ``derived``.

Constant models, pseudo-random-label models, untrained networks, models fed inputs without their
normalisation and a class-permuted copy. Used by the negative suite of the tests and by
``experiments/verdict_suite.py``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class Constant(nn.Module):
    """Answers class ``c`` of ``k`` for every image ``[B, ...]`` (logits ``[B, k]``)."""

    def __init__(self, c: int, k: int):
        super().__init__()
        self.register_buffer("logits", nn.functional.one_hot(torch.tensor(c), k).float() * 10)

    def forward(self, x):
        return x.flatten(1)[:, :1] * 0 + self.logits


class RandomLabel(nn.Module):
    """A pseudo-random, confident label per image: a random linear map of its ``d`` pixels."""

    def __init__(self, seed: int, d: int, k: int):
        super().__init__()
        self.register_buffer("w", torch.randn(d, k, generator=torch.Generator().manual_seed(seed)) * 50)

    def forward(self, x):
        return (x.flatten(1) - 0.5) @ self.w


class Permuted(nn.Module):
    """``net`` with its output classes permuted: class ``c`` answered as ``perm[c]``'s score."""

    def __init__(self, net: nn.Module, perm: list[int]):
        super().__init__()
        self.net = net
        self.register_buffer("perm", torch.as_tensor(perm, dtype=torch.long))

    def forward(self, x):
        return self.net(x).index_select(1, self.perm)


def without_normalisation(net: nn.Module) -> nn.Module:
    """A copy of an fpenc classifier whose input normalisation is removed (fed raw [0, 1] pixels)."""
    out = copy.deepcopy(net)
    if not hasattr(out, "normalize"):
        raise ValueError("the network has no `normalize` layer to remove")
    out.normalize = nn.Identity()
    return out.eval()


def broken_models(
    victim: nn.Module, independent: nn.Module, input_shape, num_classes: int, *, classes=None, seeds=(0, 1, 2)
) -> dict[str, nn.Module]:
    """By name: constant models (``classes``, default every class), random-label models and
    untrained networks of the victim's architecture (and normalisation) for each seed,
    ``independent`` without its normalisation, and the victim with its classes shifted by one.
    (The victim without its normalisation is left out: where it still works it *is* the victim.)"""
    from fpenc.models import arch_config, build_model

    k = num_classes
    d = int(torch.tensor(list(input_shape)).prod())
    out: dict[str, nn.Module] = {
        f"constant_class{c}": Constant(c, k) for c in (range(k) if classes is None else classes)
    }
    out |= {f"random_label_s{s}": RandomLabel(s, d, k) for s in seeds}
    config = arch_config(victim)
    for s in seeds:
        torch.manual_seed(s)
        out[f"untrained_s{s}"] = build_model(**config).eval()
    out["independent_without_normalisation"] = without_normalisation(independent)
    out["victim_classes_permuted"] = Permuted(victim, [(c + 1) % k for c in range(k)]).eval()
    return out
