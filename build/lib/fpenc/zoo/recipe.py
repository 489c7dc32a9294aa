"""The training recipes of independent models (:class:`fpenc.config.recipe_spec.Recipe`): the loss
of one batch with augmentation, label smoothing or PGD adversarial training; and PGD itself, which
the adversarial-training attacks (:mod:`fpenc.zoo.attacks`) share."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fpenc.config.recipe_spec import Recipe


def recipe_loss(
    recipe: Recipe, net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, logits)`` of one training batch ``x [B, C, H, W]`` in [0, 1], ``y [B]``, under ``recipe``."""
    if recipe.augment:
        x = shift_flip(x)
    if recipe.adversarial_eps > 0:
        was_training = net.training
        net.eval()  # the attack sees the model as served
        x = pgd(net, x, y, recipe.adversarial_eps)
        net.train(was_training)
    logits = net(x)
    return F.cross_entropy(logits, y, label_smoothing=float(recipe.label_smoothing)), logits


def shift_flip(x: torch.Tensor, pad: int = 2) -> torch.Tensor:
    """Each image of ``x [B, C, H, W]`` shifted by up to ``pad`` pixels (zero fill), and flipped
    left-right with probability 1/2 when ``W > 28`` (Fashion-MNIST's garments are not
    mirror-invariant in the dataset's sense, CIFAR's scenes are)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b)).tolist()
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
    if w > 28:
        flip = torch.rand(b) < 0.5
        out[flip] = out[flip].flip(-1)
    return out


def pgd(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 5) -> torch.Tensor:
    """L-inf PGD (Madry et al.) from a random start: ``x + delta`` maximising the loss, ``|delta| <= eps``."""
    delta = (torch.rand_like(x) * 2 - 1) * eps
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(net((x + delta).clamp(0, 1)), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + eps / 2 * grad.sign()).clamp(-eps, eps)
    return (x + delta).clamp(0, 1).detach()
