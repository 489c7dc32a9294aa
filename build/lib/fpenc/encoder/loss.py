"""Supervised contrastive loss, the L_out form of Khosla et al., NeurIPS 2020 (eq. 2).

For a batch of embeddings ``z [B, D]`` (L2-normalised here) with labels ``y [B]``:

    L = 1/|I'| sum_{i in I'} -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p / t) / sum_{a in A(i)} exp(z_i.z_a / t) )

``A(i)`` is every other sample of the batch, ``P(i)`` those of ``A(i)`` with label ``y_i`` and
``I'`` the anchors with at least one positive. Peng et al. (CVPR 2022, §4.3) train their
fingerprint encoder with it: label 0 for the victim's and piracy models' fingerprints, 1 for
homologous models'.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Scalar supervised contrastive loss of ``features [B, D]`` and integer ``labels [B]``.

    Anchors without a positive in the batch are left out of the mean; a batch in which no anchor
    has a positive raises ValueError (there is nothing to contrast).
    """
    if features.ndim != 2:
        raise ValueError(f"features must be [B, D], got shape {tuple(features.shape)}")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(f"labels must be [B] with B={features.shape[0]}, got shape {tuple(labels.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b = features.shape[0]
    z = F.normalize(features.float(), dim=1)
    logits = z @ z.T / temperature  # [B, B]
    self_mask = torch.eye(b, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))  # A(i) excludes i
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~self_mask  # P(i)
    counts = positives.sum(1)
    anchors = counts > 0
    if not anchors.any():
        raise ValueError("no sample in the batch has a positive (every label occurs once); use larger batches")
    pos_log_prob = log_prob.masked_fill(~positives, 0.0).sum(1)
    return -(pos_log_prob[anchors] / counts[anchors]).mean()


class SupConLoss(nn.Module):
    """Module form of :func:`supcon_loss` holding the temperature (Khosla et al. use 0.1)."""

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return supcon_loss(features, labels, self.temperature)
