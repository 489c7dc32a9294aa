"""The SGD-UAP objective (Shafahi et al., "Universal adversarial training", AAAI 2020), one
function for the UAP bank (:class:`fpenc.uap.module.SGDUAPModule`) and the subspace analysis
(:func:`fpenc.uap.subspace.batched_sgd_uaps`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def uap_ascent_loss(
    net: torch.nn.Module, x: torch.Tensor, x_perturbed: torch.Tensor, clip: float = 10.0
) -> torch.Tensor:
    """Per-image clipped cross-entropy ``[B]`` of ``net`` on ``x_perturbed [B, C, H, W]`` against
    its own (clean) classes of ``x [B, C, H, W]``; a UAP *ascends* its mean. The clip caps each
    image's loss so that images already fooled stop dominating the gradient."""
    with torch.no_grad():
        clean = net(x).argmax(1)
    return F.cross_entropy(net(x_perturbed), clean, reduction="none").clamp(max=clip)
