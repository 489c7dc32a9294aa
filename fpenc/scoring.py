"""Similarity scores, hypothesis tests and verdicts (paper §4.3 and §5.2). Plain torch + scipy.

* A fingerprint pair is the suspect's and the victim's fingerprint for the same (UAP, view); its
  similarity is the cosine similarity of their encoder representations.
* A suspect's similarity is the mean over F pairs.
* A one-sided t-test (H1: the suspect is more similar to the victim than the reference homologous
  models are), over F = 20 pairs drawn at random and repeated 30 times as in the paper; the mean
  p-value is reported, and "pirated" is the verdict when it is < alpha.
* The reference holds one row of pair similarities per reference homologous model (``[G, P]``),
  and a suspect is tested against it in one of two ways (:func:`reference_pvalue`):
  - ``population`` (our default): is the suspect outside the population of independently trained
    models? A one-sided prediction t-test of the suspect's mean against the G reference models'
    means: t = (mean(s) - mean(m)) / sqrt(var(m) (1 + 1/G) + var(s) / n), G - 1 degrees of freedom.
    Independent models differ from one another more than F fingerprints of one model do, so this
    is the null that "never accuses an independently trained model" needs.
  - ``pooled`` (the paper's): a Welch t-test against all reference similarities pooled, i.e. "is
    the suspect more similar than the *average* reference model?". Any homologous model a little
    above that average is accused once enough fingerprints are drawn.
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


REFERENCE_TESTS = ("population", "pooled")


def population_pvalue(similarities, reference) -> float:
    """One-sided prediction t-test: is the suspect (pair similarities ``[n]``) more similar to the
    victim than a new draw from the population of reference models (``[G, P]``, G >= 2)?"""
    from scipy import stats

    s, r = np.asarray(similarities, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if s.size < 2:
        raise ValueError(f"the t-test needs >= 2 suspect similarities, got {s.size}")
    if r.ndim != 2 or len(r) < 2 or r.shape[1] < 1:
        raise ValueError(f"the population test needs [G, P] reference similarities of G >= 2 models, got shape "
                         f"{r.shape}: train more homologous models of the training architectures (their validation "
                         "models are the reference), or use the pooled test")
    means, g = r.mean(1), len(r)
    var = means.var(ddof=1) * (1 + 1 / g) + s.var(ddof=1) / s.size
    if var <= 0:
        return 0.0 if s.mean() > means.mean() else 1.0
    return float(stats.t.sf((s.mean() - means.mean()) / np.sqrt(var), g - 1))


def reference_pvalue(similarities, reference, test: str = "population") -> float:
    """p-value of H1 "the suspect is more similar to the victim than the reference homologous models".

    ``reference``: ``[G, P]`` (one row per reference model) or ``[R]`` (pooled; ``pooled`` test only).
    ``test``: "population" (:func:`population_pvalue`) or "pooled" (:func:`welch_pvalue`, the paper's).
    """
    if test not in REFERENCE_TESTS:
        raise ValueError(f"test must be one of {REFERENCE_TESTS}, got {test!r}")
    if test == "pooled":
        return welch_pvalue(similarities, np.asarray(reference, dtype=np.float64).reshape(-1))
    return population_pvalue(similarities, reference)


def repeated_test(similarities, reference, num_fingerprints: int = 20, repeats: int = 30, seed: int = 0,
                  test: str = "population") -> dict:
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
    pvals = [reference_pvalue(s[rng.choice(s.size, num_fingerprints, replace=False)], reference, test)
             for _ in range(repeats)]
    return {"p_value": float(np.mean(pvals)), "p_values": [float(p) for p in pvals], "similarity": float(s.mean())}


def verdict(p_value: float, alpha: float = 0.05) -> str:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return PIRATED if p_value < alpha else NOT_SHOWN
