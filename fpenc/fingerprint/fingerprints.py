"""Fingerprints of a suspect (paper eq. 6): for a UAP ``v`` and a view set ``X = (x_1..x_N)``,

    F(M, v, X) = [M(x_1), M(x_1 + v), ..., M(x_N), M(x_N + v)]      (length 2 N K)

with ``x + v`` clamped to [0, 1] and ``M(.)`` what the suspect's API returns.
"""

from __future__ import annotations

import torch


def fingerprint_images(uaps: torch.Tensor, view_images: torch.Tensor) -> torch.Tensor:
    """All query images, ``[V*N + U*V*N, C, H, W]`` float in [0, 1]: the clean views, then each
    UAP added to them. ``uaps [U, C, H, W]``, ``view_images [V, N, C, H, W]`` (uint8 or float)."""
    x = view_images.float() / 255.0 if view_images.dtype == torch.uint8 else view_images.float()
    v, n = x.shape[:2]
    clean = x.reshape(v * n, *x.shape[2:])
    adv = (clean.unsqueeze(0) + uaps.float().unsqueeze(1)).clamp(0, 1)  # [U, V*N, C, H, W]
    return torch.cat([clean, adv.reshape(-1, *x.shape[2:])])


def fingerprints(suspect, uaps: torch.Tensor, view_images: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Fingerprints ``[U, V, 2*N*K]`` of ``suspect`` (images -> probabilities ``[B, K]``).

    The clean outputs are queried once and shared by all UAPs: ``V*N*(1+U)`` queries in total.
    """
    u, (v, n) = len(uaps), view_images.shape[:2]
    images = fingerprint_images(uaps, view_images)
    out = torch.cat([suspect(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    k = out.shape[1]
    clean = out[: v * n].reshape(1, v, n, k).expand(u, v, n, k)
    adv = out[v * n :].reshape(u, v, n, k)
    return torch.stack([clean, adv], dim=3).reshape(u, v, 2 * n * k)  # x_1, x_1+v, x_2, ...
