"""A verdict's margin counted in the suspect's answers: how many distinct queries would have to be
answered otherwise to flip the agreement test.

The agreement is a share of *answer slots*: every fingerprint pair ``(u, v)`` holds ``2 N`` of them,
``[M(x_1), M(x_1 + uap_u), ..., M(x_N), M(x_N + uap_u)]`` for the images ``x_i`` of view ``v``. One
query fills several slots: a clean image once per UAP of the pairs and once per view that holds it
(views are nearest neighbours among few key images, so they overlap), a perturbed image once per view
that holds it. A margin in slots overstates how much evidence stands between a verdict and its
opposite; this module counts distinct queries instead.
"""

from __future__ import annotations

import numpy as np
import torch


def answer_groups(view_images: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """The distinct query behind each answer slot: ``[P, 2 N]`` int64, laid out as the fingerprints.

    ``view_images [V, N, C, H, W]`` (the bundle's views), ``pairs [P, 2]`` (UAP index, view index).
    Images equal pixel for pixel are one query; the same image plus one UAP is one query.
    """
    v, n = view_images.shape[:2]
    _, content = torch.unique(view_images.reshape(v * n, -1), dim=0, return_inverse=True)
    content = content.reshape(v, n)
    distinct = int(content.max()) + 1
    clean = content[pairs[:, 1]]  # [P, N]
    perturbed = distinct * (1 + pairs[:, :1]) + clean  # [P, N]: one id per (UAP, image)
    return torch.stack([clean, perturbed], dim=2).reshape(len(pairs), 2 * n)


def answers_to_flip(groups, agree, margin: float) -> int | None:
    """The fewest distinct queries whose answers, changed, move the agreement across its threshold.

    Args:
        groups: ``[S]`` (any shape) the distinct query behind each answer slot (:func:`answer_groups`).
        agree: ``[S]`` bool, whether the slot's answer is the victim's class.
        margin: the agreement minus its threshold (a share of the ``S`` slots).

    Returns:
        ``+k`` for a margin >= 0 (``k`` of the queries answered as the victim would have to change, the
        most-repeated first), ``-k`` for a negative one (``k`` answered otherwise would have to become
        the victim's), ``None`` if no number of changes reaches the threshold.
    """
    groups = np.asarray(groups, dtype=np.int64).ravel()
    agree = np.asarray(agree, dtype=bool).ravel()
    if groups.shape != agree.shape or not len(groups):
        raise ValueError(f"groups and agree must have one non-empty shape, got {groups.shape} and {agree.shape}")
    movable = agree if margin >= 0 else ~agree
    reach = np.cumsum(np.sort(np.bincount(groups[movable]))[::-1]) / len(groups)  # most slots first
    need = abs(float(margin))
    if need == 0.0:
        return 0
    k = int(np.searchsorted(reach, need * (1 - 1e-9))) + 1  # (a float-noise tolerance at exact reach)
    if k > len(reach) or reach[k - 1] == 0:
        return None
    return k if margin >= 0 else -k
