"""Similarity scores, hypothesis tests and verdicts (paper §4.3 and §5.2). Plain torch + scipy.

* A fingerprint pair is the suspect's and the victim's fingerprint for the same (UAP, view); its
  similarity is the cosine similarity of their encoder representations.
* A suspect's similarity is the mean over F pairs.
* One-sided Welch t-test (H1: the suspect's pair similarities are larger than the reference
  homologous models' similarities), over F = 20 pairs drawn at random and repeated 30 times as
  in the paper; the mean p-value is reported, and "pirated" is the verdict when it is < alpha.
"""

from __future__ import annotations

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
    return float(stats.ttest_ind(s, r, equal_var=False, alternative="greater").pvalue)


def repeated_test(similarities, reference, num_fingerprints: int = 20, repeats: int = 30, seed: int = 0) -> dict:
    """The paper's protocol: ``repeats`` draws of ``num_fingerprints`` pair similarities (without
    replacement), a Welch t-test against ``reference`` for each.

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
    pvals = [welch_pvalue(s[rng.choice(s.size, num_fingerprints, replace=False)], reference) for _ in range(repeats)]
    return {"p_value": float(np.mean(pvals)), "p_values": [float(p) for p in pvals], "similarity": float(s.mean())}


def verdict(p_value: float, alpha: float = 0.05) -> str:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return PIRATED if p_value < alpha else NOT_SHOWN
