"""How long a zoo plan takes to train on this machine, roughly: each architecture's training step
timed here on a batch of random images, times the steps the plan asks of it.

A step is one optimiser step on a batch (forward, backward, update); a model trains ``epochs x
ceil(images / batch_size)`` steps on its split (half the training set; extraction: the share of the
attacker's pool it queries, plus the victim's answers, counted as a third of a step). Copies made
from weights without training (pruning, INT8) cost nothing here; other attacks cost their epochs.
Rough by design: data loading, evaluation and adversarial inner loops are not counted.
"""

from __future__ import annotations

import math
import time

import torch

EXTRACTION_FACTOR = 4 / 3  # the victim answers every batch: about a third of a training step more


def step_seconds(arch: str, options: dict, num_classes: int, input_shape, batch_size: int, repeats: int = 3) -> float:
    """Seconds of one training step of ``arch`` on a batch of ``batch_size`` random images (median of ``repeats``)."""
    from fpenc.models import build_model

    net = build_model(arch, num_classes, tuple(input_shape), **options).train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    x, y = torch.rand(batch_size, *input_shape), torch.randint(0, num_classes, (batch_size,))
    times = []
    for i in range(repeats + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def plan_seconds(specs, n_train: int, num_classes: int, input_shape) -> float:
    """Rough seconds to train ``specs`` (:class:`fpenc.zoo.plan.ModelSpec`) on this machine."""
    from fpenc.config.attack_spec import parse_attacks

    cache: dict[tuple, float] = {}
    total = 0.0
    for s in specs:
        if s.weights_sha256 is not None:
            continue  # the owner's model: loaded
        steps = parse_attacks(s.attack) if s.attack else []
        if steps and not any(a.kind == "extract" or a.trains for a in steps):
            continue  # pruning, quantisation: no training
        images = n_train // 2
        factor = 1.0
        if s.extraction is not None:
            images = max(1, int(images * s.extraction.get("pool_fraction", 1.0)))
            factor = EXTRACTION_FACTOR
        key = (s.architecture, repr(sorted(s.options.items())), s.batch_size)
        if key not in cache:
            cache[key] = step_seconds(s.architecture, s.options, num_classes, input_shape, s.batch_size)
        total += factor * cache[key] * s.epochs * math.ceil(images / s.batch_size)
    return total
