"""Projections onto epsilon balls in [0, 1] pixel space."""

from __future__ import annotations

import torch

NORMS = ("linf", "l2")


def check_norm(norm: str) -> str:
    norm = norm.lower().replace("-", "").replace("inf", "inf")
    if norm in ("linf", "inf"):
        return "linf"
    if norm == "l2":
        return "l2"
    raise ValueError(f"unknown norm '{norm}'; use linf or l2")


def project(v: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project perturbations ``v`` of shape ``[B, C, H, W]`` (or ``[C, H, W]``) onto the ``norm``-ball of radius ``eps``.

    L-inf clamps every pixel to [-eps, eps]; L2 rescales each perturbation whose norm exceeds eps.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    norm = check_norm(norm)
    if norm == "linf":
        return v.clamp(-eps, eps)
    flat = v.reshape(v.shape[0], -1) if v.dim() == 4 else v.reshape(1, -1)
    n = flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    scaled = flat * torch.clamp(eps / n, max=1.0)
    return scaled.reshape(v.shape)


def perturbation_norm(v: torch.Tensor, norm: str) -> float:
    """The ``norm`` of a single perturbation ``[C, H, W]`` (or ``[1, C, H, W]``)."""
    norm = check_norm(norm)
    return float(v.abs().max()) if norm == "linf" else float(v.reshape(-1).norm())
