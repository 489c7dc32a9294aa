"""Optimizers of the paper's Table 1 (SGD, Adam, RMSprop), built by name."""

from __future__ import annotations

import torch

from fpenc.errors import ConfigError

DEFAULT_LR = {"sgd": 0.02, "adam": 1e-3, "rmsprop": 5e-4}


def make_optimizer(name: str, params, lr: float | None = None, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """SGD (momentum 0.9, Nesterov), Adam or RMSprop; ``lr=None`` takes :data:`DEFAULT_LR`."""
    key = name.lower()
    if key not in DEFAULT_LR:
        raise ConfigError(f"unknown optimizer '{name}'; known: {', '.join(DEFAULT_LR)}")
    lr = DEFAULT_LR[key] if lr is None else lr
    if key == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    if key == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int) -> dict:
    """Per-step cosine decay to 0 over ``total_steps``, in Lightning's scheduler-dict form."""
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    return {"scheduler": sched, "interval": "step"}
