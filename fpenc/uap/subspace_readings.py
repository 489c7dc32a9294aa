"""Readings of the paper's eq. 5 (Peng et al., CVPR 2022, §4.1): how far a model's UAPs lie from
the victim's UAP subspace. The equation is not legible in our copy of the paper, so each reading is
stated and computed; :func:`fpenc.uap.subspace.subspace_analysis` reports all three and the ratio
homologous / piracy of each, with the victim's own sampling noise (a third victim UAP set) as floor.

With ``U [n, d]`` a model's UAPs (rows flattened, unit norm), ``B [d, r]`` the right singular
vectors of the victim's basis set and ``B_k`` its first ``k`` (the directions holding
``energy_share`` of the basis set's squared singular values):

* ``profile_l1``: ``|| p_M - p_V ||_1`` with ``p = mean_i (U B)[i]^2`` normalised to sum 1, the
  share of UAP energy along each victim direction (``p_V``: a second victim set);
* ``principal_angles``: ``1 - mean_j cos^2 theta_j``, the mean squared sine of the principal angles
  between ``span(B_k)`` and the model's own top-``k`` subspace (Bjorck & Golub 1973);
* ``projection_energy``: ``1 - mean_i || B_k^T u_i ||^2``, the share of the model's UAP energy
  outside the victim's top-``k`` subspace.

All three are 0 for a model whose UAPs the victim's subspace explains exactly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

READINGS = ("profile_l1", "principal_angles", "projection_energy")


def _unit_rows(uaps: torch.Tensor) -> torch.Tensor:
    return F.normalize(uaps.flatten(1).double(), dim=1)


def energy_rank(singular: torch.Tensor, share: float = 0.9) -> int:
    """The fewest leading directions holding ``share`` of ``sum(singular**2)`` (``singular [r]``)."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"energy share must be in (0, 1], got {share}")
    energy = singular.double().pow(2)
    cum = torch.cumsum(energy, 0) / energy.sum()
    return int(min(len(singular), int((cum < share - 1e-12).sum()) + 1))


def profile(uaps: torch.Tensor, basis: torch.Tensor) -> np.ndarray:
    """Share of the (unit-normalised) UAPs' energy along each basis direction, ``[r]``, sums to 1."""
    p = (_unit_rows(uaps) @ basis).pow(2).mean(0)
    return (p / p.sum()).numpy()


def profile_distance(uaps: torch.Tensor, reference_profile: np.ndarray, basis: torch.Tensor) -> float:
    """``|| p_M - p_V ||_1``: the ``profile_l1`` reading of ``uaps`` against the victim's profile."""
    return float(np.abs(profile(uaps, basis) - reference_profile).sum())


def principal_angle_distance(uaps: torch.Tensor, basis_k: torch.Tensor) -> float:
    """``1 - mean cos^2`` of the principal angles between ``span(basis_k [d, k])`` and the top-k
    right singular subspace of ``uaps [n, ...]``."""
    k = basis_k.shape[1]
    _, _, vh = torch.linalg.svd(_unit_rows(uaps), full_matrices=False)
    own = vh[:k].T  # [d, k]
    cos = torch.linalg.svdvals(basis_k.double().T @ own).clamp(max=1.0)
    return float(1.0 - cos.pow(2).mean())


def projection_deficit(uaps: torch.Tensor, basis_k: torch.Tensor) -> float:
    """``1 - mean_i ||basis_k^T u_i||^2`` over the unit rows ``u_i`` of ``uaps``."""
    return float(1.0 - (_unit_rows(uaps) @ basis_k.double()).pow(2).sum(1).mean())


def readings(uaps: torch.Tensor, basis: torch.Tensor, k: int, reference_profile: np.ndarray) -> dict[str, float]:
    """Every reading of ``uaps`` against the victim's ``basis [d, r]`` (first ``k`` columns for the
    subspace readings) and the victim's reference ``profile``."""
    return {
        "profile_l1": profile_distance(uaps, reference_profile, basis),
        "principal_angles": principal_angle_distance(uaps, basis[:, :k]),
        "projection_energy": projection_deficit(uaps, basis[:, :k]),
    }
