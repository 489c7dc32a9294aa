"""Similarity scores, hypothesis tests and verdicts (paper §4.3 and §5.2). Plain torch + scipy.

* A fingerprint pair is the suspect's and the victim's fingerprint for the same (UAP, view); its
  similarity is the cosine similarity of their encoder representations.
* A suspect's similarity is the mean over F pairs.
* One-sided Welch t-test (H1: the suspect's pair similarities are larger than the reference
  homologous models' similarities), over F = 20 pairs drawn at random and repeated 30 times as
  in the paper; the mean p-value is reported, and "pirated" is the verdict when it is < alpha.
* The reference is either one pooled sample (the paper's test: ``[R]``) or one row of pair
  similarities per reference model (``[G, P]``). With rows, the suspect is tested against each
  reference model and the p-value is the largest: an intersection-union test (Berger 1982), valid
  at level alpha without any multiplicity correction. "Pirated" then says "significantly more
  similar to the victim than *every* independently trained reference model", not merely than
  their average: a homologous model as close as the closest reference model is not accused.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

PIRATED, NOT_SHOWN = "pirated", "not shown"


def pair_similarities(h_suspect: torch.Tensor, h_victim: torch.Tensor) -> torch.Tensor:
    """Cosine similarities ``[P]`` of paired representations ``[P, D]`` and ``[P, D]``."""
    if h_suspect.shape != h_victim.shape or h_suspect.ndim != 2:
        raise ValueError(f"need two [P, D] tensors of one shape, got {tuple(h_suspect.shape)} and {tuple(h_victim.shape)}")
    return F.cosine_similarity(h_suspect.float(), h_victim.float(), dim=1)


def welch_pvalue(similarities, reference) -> float:
    """One-sided Welch t-test p-value of H1: mean(similarities) > mean(reference)."""
    from scipy import stats

    s, r = np.asarray(similarities, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if s.size < 2 or r.size < 2:
        raise ValueError(f"the t-test needs >= 2 values on each side, got {s.size} and {r.size}")
    if np.ptp(s) == 0 and np.ptp(r) == 0:  # no variance at all: decide on the means alone
        return 0.0 if s.mean() > r.mean() else 1.0
    with warnings.catch_warnings():  # near-constant sides (a label-only copy: all 1.0) are fine here
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        return float(stats.ttest_ind(s, r, equal_var=False, alternative="greater").pvalue)


def reference_pvalue(similarities, reference) -> float:
    """p-value of H1 "the suspect is more similar to the victim than the reference".

    ``reference``: ``[R]`` pooled similarities (one Welch t-test, the paper's) or ``[G, P]``, one
    row per reference model (the largest of the G Welch p-values: intersection-union test).
    """
    r = np.asarray(reference, dtype=np.float64)
    if r.ndim == 1:
        return welch_pvalue(similarities, r)
    if r.ndim != 2 or len(r) < 1:
        raise ValueError(f"reference must be [R] or [G, P] similarities, got shape {r.shape}")
    return max(welch_pvalue(similarities, row) for row in r)


def repeated_test(similarities, reference, num_fingerprints: int = 20, repeats: int = 30, seed: int = 0) -> dict:
    """The paper's protocol: ``repeats`` draws of ``num_fingerprints`` pair similarities (without
    replacement), a test against ``reference`` for each (:func:`reference_pvalue`).

    Returns ``{"p_value": mean p, "p_values": [repeats], "similarity": mean of all similarities}``.
    """
    s = np.asarray(similarities, dtype=np.float64)
    if num_fingerprints < 2:
        raise ValueError(f"num_fingerprints must be >= 2, got {num_fingerprints}")
    if num_fingerprints > s.size:
        raise ValueError(f"num_fingerprints ({num_fingerprints}) exceeds the {s.size} fingerprints available")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rng = np.random.default_rng(seed)
    pvals = [reference_pvalue(s[rng.choice(s.size, num_fingerprints, replace=False)], reference) for _ in range(repeats)]
    return {"p_value": float(np.mean(pvals)), "p_values": [float(p) for p in pvals], "similarity": float(s.mean())}


def verdict(p_value: float, alpha: float = 0.05) -> str:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return PIRATED if p_value < alpha else NOT_SHOWN
