"""The one-sided prediction t-test of the verdict: is a suspect's value above what a *new* model of
a reference population (independently trained models, one value each) plausibly reaches?

``t = (value - mean) / (sd * sqrt(1 + 1/G))`` with ``G - 1`` degrees of freedom, ``sd`` at least
:data:`SD_FLOOR` (plain numpy + scipy). A similarity bounded by 1 is tested on Fisher's z scale
(:func:`fisher_z`), where copies piled up just below 1 spread out and the normal fit of the
reference values is closer.
"""

from __future__ import annotations

import math

import numpy as np

SD_FLOOR = 0.01
"""The smallest spread (standard deviation) the reference models' values are taken to have: near-
identical reference models would otherwise make any suspect a hair above them "significant"."""

Z_CLIP = 1.0 - 1e-6
"""Similarities are clipped to ``[-Z_CLIP, Z_CLIP]`` before :func:`fisher_z` (``atanh(1)`` is infinite):
the victim itself maps to z = 7.25."""


def fisher_z(values):
    """Fisher's z, ``atanh``, of cosine similarities (any shape; clipped to ``±``:data:`Z_CLIP`)."""
    return np.arctanh(np.clip(np.asarray(values, dtype=np.float64), -Z_CLIP, Z_CLIP))


def reference_fit(reference) -> tuple[float, float, int]:
    """``(mean, sd * sqrt(1 + 1/G), G)`` of the reference values ``[G]`` (G >= 2, finite), ``sd``
    at least :data:`SD_FLOOR`: the location, scale and size of the prediction t-test."""
    r = np.asarray(reference, dtype=np.float64).reshape(-1)
    if r.size < 2:
        raise ValueError(f"the prediction test needs >= 2 reference models, got {r.size}")
    if not np.isfinite(r).all():
        raise ValueError("the prediction test needs finite values")
    sd = max(float(r.std(ddof=1)), SD_FLOOR)
    return float(r.mean()), sd * math.sqrt(1.0 + 1.0 / r.size), int(r.size)


def prediction_pvalue(value: float, reference) -> float:
    """One-sided prediction t-test: the probability that a new model of the reference population
    (``reference [G]``, one value per model, G >= 2) scores ``value`` or more, under a normal fit:
    ``t = (value - mean) / (sd * sqrt(1 + 1/G))`` with ``G - 1`` degrees of freedom, and ``sd``
    at least :data:`SD_FLOOR`."""
    from scipy import stats

    mean, scale, g = reference_fit(reference)
    if not np.isfinite(value):
        raise ValueError("the prediction test needs finite values")
    return float(stats.t.sf((float(value) - mean) / scale, g - 1))


def decision_threshold(reference, alpha: float) -> float:
    """The value at which :func:`prediction_pvalue` against ``reference [G]`` equals ``alpha``:
    ``mean + t_{1-alpha, G-1} * sd * sqrt(1 + 1/G)``. A suspect is ``derived`` on a statistic only
    above it; ``value - threshold`` is the verdict's **margin** in the statistic's own units."""
    from scipy import stats

    mean, scale, g = reference_fit(reference)
    return float(mean + stats.t.isf(alpha, g - 1) * scale)
