"""Batched inference helpers: probabilities, accuracy, agreement with the victim."""

from __future__ import annotations

import torch

from fpenc.models.classifier import module_device


@torch.inference_mode()
def predict_probs(net: torch.nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Class probabilities ``[N, K]`` (float32, CPU) of ``net`` on uint8 or [0, 1] float images ``[N, C, H, W]``."""
    was_training = net.training
    net.eval()
    device = module_device(net)
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        out.append(torch.softmax(net(x).float(), dim=1).cpu())
    net.train(was_training)
    return torch.cat(out)


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return (probs.argmax(1) == labels).float().mean().item()


def agreement(probs: torch.Tensor, reference_probs: torch.Tensor) -> float:
    """Share of inputs where both models predict the same class."""
    return (probs.argmax(1) == reference_probs.argmax(1)).float().mean().item()
