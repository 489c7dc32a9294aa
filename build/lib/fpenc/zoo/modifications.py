"""Modified copies of a model, as a thief might ship them (paper §5.4): magnitude pruning, INT8
weight quantization, fine-tuning. Each returns a new network; the original is left untouched."""

from __future__ import annotations

import copy

import torch
from torch import nn

PRUNABLE = (nn.Conv2d, nn.Linear)


def pruned_copy(net: nn.Module, amount: float) -> nn.Module:
    """Global unstructured L1 (magnitude) pruning of ``amount`` (0..1) of all conv and linear weights."""
    from torch.nn.utils import prune

    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")
    out = copy.deepcopy(net).eval()
    params = [(m, "weight") for m in out.modules() if isinstance(m, PRUNABLE)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    for m, name in params:
        prune.remove(m, name)
    return out


@torch.no_grad()
def int8_copy(net: nn.Module) -> nn.Module:
    """Post-training INT8 weight quantization: every conv and linear weight rounded to a symmetric,
    per-output-channel 8-bit grid (``scale = max|w| / 127``), stored dequantized (so any runtime
    executes it); biases and normalisation stay float."""
    out = copy.deepcopy(net).eval()
    for m in out.modules():
        if isinstance(m, PRUNABLE):
            w = m.weight
            scale = w.abs().reshape(len(w), -1).amax(1).clamp_min(1e-12) / 127.0
            scale = scale.reshape(-1, *([1] * (w.ndim - 1)))
            w.copy_(torch.clamp(torch.round(w / scale), -127, 127) * scale)
    return out


def fine_tuned_copy(
    net: nn.Module,
    arrays,
    splits: dict,
    split: str = "attacker",
    *,
    optimizer: str = "adam",
    lr: float = 1e-4,
    epochs: int = 2,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = False,
) -> nn.Module:
    """Fine-tune all layers (FTAL) of a copy of ``net`` on the true labels of ``splits[split]``."""
    from fpenc.data.images import train_loader
    from fpenc.zoo.classifier import ClassifierModule
    from fpenc.zoo.training import fit_module, quiet_lightning

    quiet_lightning()
    torch.manual_seed(seed)
    out = copy.deepcopy(net).train()
    loader = train_loader(arrays, splits, split, batch_size, seed)
    fit_module(ClassifierModule(out, optimizer=optimizer, lr=lr), loader, epochs, f"fine-tune lr {lr:g}", progress)
    return out.cpu().eval()
