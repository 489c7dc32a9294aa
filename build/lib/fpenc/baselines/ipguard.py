"""IPGuard (Cao, Jia, Gong, AsiaCCS 2021): a classifier's decision boundary fingerprints it. The
defender crafts data points near the victim's boundary, where a copy answers like the victim and
an independent model does not, and scores a suspect by the share of labels it matches.

Our batched version of its objective: from a seeded sample of the defender's images, ``steps``
signed-gradient steps on ``ReLU(z_j - z_i + k) + ReLU(max_(t != i,j) z_t - z_i)`` with ``i`` the
victim's class of the start point and ``j`` its runner-up (Cao et al.'s loss with the roles of the
two classes fixed, margin ``k``), so that ``i`` barely wins over ``j``: points just on the victim's
side of the boundary between its two top classes."""

from __future__ import annotations

import torch

from fpenc.baselines.base import Defender, Method


def boundary_points(
    victim: torch.nn.Module, x: torch.Tensor, steps: int = 40, step_size: float = 0.01, margin: float = 0.05
) -> torch.Tensor:
    """Images ``[B, C, H, W]`` in [0, 1] moved from ``x`` toward the victim's boundary between its top
    two classes (class unchanged, logit gap below ``margin`` once reached)."""
    victim.eval()
    with torch.no_grad():
        top2 = victim(x).topk(2, dim=1).indices
    i, j = top2[:, 0], top2[:, 1]
    rows = torch.arange(len(x))
    z = x.clone().requires_grad_(True)
    for _ in range(steps):
        logits = victim(z)
        zi, zj = logits[rows, i], logits[rows, j]
        others = logits.clone()
        others[rows, i] = float("-inf")
        others[rows, j] = float("-inf")
        loss = torch.relu(zi - zj - margin) + torch.relu(others.max(1).values - zi)  # i just above j, above the rest
        (grad,) = torch.autograd.grad(loss.sum(), z)
        with torch.no_grad():
            z -= step_size * grad.sign()
            z.clamp_(0, 1)
    return z.detach()


class IPGuard(Method):
    name = "ipguard"

    def __init__(self, max_queries: int = 4000, steps: int = 40, step_size: float = 0.01):
        super().__init__(max_queries)
        self.steps, self.step_size = steps, step_size

    def build_queries(self, defender: Defender, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(defender.seed)
        idx = torch.randperm(len(defender.images), generator=g)[:n]
        x = defender.images[idx].float() / 255.0
        return torch.cat(
            [
                boundary_points(defender.victim, x[s : s + 500], self.steps, self.step_size)
                for s in range(0, len(x), 500)
            ]
        )
