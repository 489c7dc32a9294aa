"""The verdict on a suspect: ``derived``, ``not shown`` or ``not assessable``, always with reasons.

A suspect is judged in three steps (plain numpy + scipy; the encoder runs in :mod:`fpenc.verification`):

1. **Sanity gates** on the bundle's labelled images (a random sample of the test set, apart from
   the key): a suspect that is not a working model of the task (constant, random, untrained,
   fed the wrong preprocessing) is ``not assessable``, never ``derived``:
   - accuracy >= ``min_accuracy`` (default: chance + half the victim's margin over chance);
   - normalised entropy of its predicted labels >= ``min_label_entropy`` (default: half the
     victim's): a model answering one class for everything is not assessable.
2. **Out-of-distribution gate**: the suspect's encoder representations ``h [P, D]`` are compared,
   pair by pair, with those of the models the encoder was trained on (``[M, P, D]``); the distance
   to the nearest of them (mean over pairs of 1 - cosine) above ``ood_threshold`` (the largest
   distance of the validation and reference models, times a margin) is ``not assessable``: the
   encoder has never seen anything like it and its similarity says nothing reliable.
3. **A calibrated test against a population of independent models** (the bundle's reference
   models, chosen apart from the models that train the encoder, pick its checkpoint or choose
   the key). Two statistics, both computed on the same fingerprint pairs for the suspect and
   every reference model, so the comparison is exact and independent of any draw:
   - ``agreement``: share of the key's labels (clean and UAP-perturbed views) on which the
     suspect predicts the victim's class -- monotone raw evidence;
   - ``similarity``: mean cosine similarity of the encoder representations of its fingerprints
     and the victim's (Peng et al., CVPR 2022, §4.3).
   Each gets a one-sided prediction t-test against the reference models' values (``G - 1``
   degrees of freedom: "is the suspect above what a new independent model would score?").
   The bundle's ``statistic`` says which decide: ``agreement``; ``agreement+similarity``, an
   intersection-union test, ``p = max(p_agreement, p_similarity)``; or ``agreement-or-similarity``,
   a Bonferroni union, ``p = min(1, 2 min(p_agreement, p_z))``, where ``p_z`` tests the similarity
   on Fisher's z scale and counts only for a suspect whose agreement is above the reference
   models' mean. Whichever, ``derived`` needs ``p < alpha``, and a suspect that agrees with the
   victim no more than independent models do (``p_agreement >= 0.5``) can never be ``derived``,
   whatever the encoder says.

The smallest p-value a bundle can give (the victim itself: agreement 1, similarity 1) is its
**p-value floor**; an ``alpha`` at or below it can never yield ``derived`` and is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from fpenc.answer_margin import answers_to_flip
from fpenc.prediction_test import SD_FLOOR, decision_threshold, fisher_z, prediction_pvalue  # noqa: F401

DERIVED, NOT_SHOWN, NOT_ASSESSABLE = "derived", "not shown", "not assessable"
OUTCOMES = (DERIVED, NOT_SHOWN, NOT_ASSESSABLE)
EXIT_CODES = {NOT_SHOWN: 0, DERIVED: 10, NOT_ASSESSABLE: 11}
"""``fpenc verify`` exit codes by outcome (2 is an input error, as for every fpenc command)."""

STATISTICS = ("agreement", "agreement+similarity", "agreement-or-similarity")

DEFAULT_STATISTIC = "agreement"
"""The default verdict statistic. ``agreement-or-similarity`` is experimental: on the demo's bundle it
derives more copies but accused an independent test model (docs/verdict.md)."""

DEFAULT_ALPHA = 0.01
"""The default significance level. Alpha is the false-accusation rate the test is built to allow
per independent suspect: at 0.05, one independent model in twenty would be called ``derived`` by
design, which a tool that must never accuse cannot ship as its default."""


def pair_similarities(h_suspect: torch.Tensor, h_victim: torch.Tensor) -> torch.Tensor:
    """Cosine similarities ``[P]`` of paired encoder representations ``[P, D]`` and ``[P, D]``."""
    if h_suspect.shape != h_victim.shape or h_suspect.ndim != 2:
        raise ValueError(
            f"need two [P, D] tensors of one shape, got {tuple(h_suspect.shape)} and {tuple(h_victim.shape)}"
        )
    return torch.nn.functional.cosine_similarity(h_suspect.float(), h_victim.float(), dim=1)


def slot_agreement(fingerprints: torch.Tensor, victim_fingerprints: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per pair and answer slot, whether the fingerprint's arg-max class is the victim's: ``[P, 2 N]`` bool.

    ``fingerprints``, ``victim_fingerprints``: ``[P, 2 N K]`` (laid out as
    :func:`fpenc.fingerprint.fingerprints.fingerprints`).
    """
    if fingerprints.shape != victim_fingerprints.shape or fingerprints.ndim != 2:
        raise ValueError(
            f"need two [P, 2NK] tensors of one shape, got {tuple(fingerprints.shape)} and "
            f"{tuple(victim_fingerprints.shape)}"
        )
    p = fingerprints.shape[0]
    return fingerprints.reshape(p, -1, num_classes).argmax(-1) == victim_fingerprints.reshape(
        p, -1, num_classes
    ).argmax(-1)


def pair_agreement(fingerprints: torch.Tensor, victim_fingerprints: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per pair, the share of the ``2 N`` answers of a fingerprint whose arg-max class is the victim's:
    ``[P]`` float64 in [0, 1] (:func:`slot_agreement` averaged over the slots)."""
    return slot_agreement(fingerprints, victim_fingerprints, num_classes).double().mean(1)


def label_entropy(labels, num_classes: int) -> float:
    """Normalised entropy in [0, 1] of the histogram of predicted ``labels [S]`` (0: one class only)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    q = counts[counts > 0] / counts.sum()
    return float(-(q * np.log(q)).sum() / math.log(num_classes)) if num_classes > 1 else 0.0


# -- the test ----------------------------------------------------------------------------------
NEAR_TIE = 0.005
"""A margin (in agreement units) below which the report flags a verdict as a near tie: half a
percent of the key's answer slots would flip it. A verdict that one changed answer would flip
(``|margin_answers| <= 1``, :mod:`fpenc.answer_margin`) is a near tie too."""


def check_statistic(statistic: str) -> str:
    if statistic not in STATISTICS:
        raise ValueError(f"the verdict statistic must be one of {STATISTICS}, got {statistic!r}")
    return statistic


def pvalue_floor(reference_agreement, reference_similarity, statistic: str = "agreement") -> float:
    """The smallest p-value these reference models allow: the one the victim itself would get
    (agreement 1 and similarity 1). Both arguments: ``[G]`` per-model values."""
    p = prediction_pvalue(1.0, reference_agreement)
    if check_statistic(statistic) == "agreement+similarity":
        p = max(p, prediction_pvalue(1.0, reference_similarity))
    elif statistic == "agreement-or-similarity":
        p = min(1.0, 2.0 * min(p, prediction_pvalue(float(fisher_z(1.0)), fisher_z(reference_similarity))))
    return p


@dataclass
class Gates:
    """Thresholds of the sanity and out-of-distribution gates (recorded in a bundle's header)."""

    min_accuracy: float
    min_label_entropy: float
    ood_threshold: float | None = None  # None: no out-of-distribution gate

    @classmethod
    def from_victim(
        cls,
        victim_accuracy: float,
        victim_entropy: float,
        num_classes: int,
        accuracy_share: float = 0.5,
        entropy_share: float = 0.5,
        ood_threshold: float | None = None,
    ):
        """``min_accuracy = chance + accuracy_share * (victim - chance)``, ``min_label_entropy =
        entropy_share * victim's``."""
        chance = 1.0 / num_classes
        return cls(
            min_accuracy=round(chance + accuracy_share * max(victim_accuracy - chance, 0.0), 6),
            min_label_entropy=round(entropy_share * victim_entropy, 6),
            ood_threshold=ood_threshold,
        )


def sanity_reasons(accuracy: float, entropy: float, top_class: int, top_share: float, gates: Gates) -> list[str]:
    """Why a suspect is not a working model of the task (empty: it is)."""
    reasons = []
    if accuracy < gates.min_accuracy:
        reasons.append(
            f"accuracy {accuracy:.3f} on the bundle's labelled images is below {gates.min_accuracy:.3f}: "
            "not a working model of this task (constant, random or untrained, or fed inputs with another "
            "preprocessing? suspects take [0, 1] pixels and normalise inside)"
        )
    if entropy < gates.min_label_entropy:
        reasons.append(
            f"its answers are not diverse: class {top_class} for {100 * top_share:.0f}% of the labelled "
            f"images (normalised label entropy {entropy:.3f} < {gates.min_label_entropy:.3f})"
        )
    return reasons


def ood_distance(h: torch.Tensor, zoo_h: torch.Tensor) -> tuple[float, int]:
    """Distance of a suspect's representations ``h [P, D]`` to the nearest of ``zoo_h [M, P, D]``
    (same pairs): ``min_m mean_p (1 - cos(h_p, zoo_h[m, p]))``. Returns ``(distance, m)``."""
    if zoo_h.ndim != 3 or zoo_h.shape[1:] != h.shape:
        raise ValueError(f"need h [P, D] and zoo_h [M, P, D], got {tuple(h.shape)} and {tuple(zoo_h.shape)}")
    cos = torch.nn.functional.cosine_similarity(h.double().unsqueeze(0), zoo_h.double(), dim=-1)  # [M, P]
    d = (1.0 - cos).mean(1)
    m = int(d.argmin())
    return max(0.0, float(d[m])), m  # a distance: never the -1e-17 of a rounding cos > 1


@dataclass
class Decision:
    """The outcome of :func:`decide`, JSON-ready through :meth:`as_dict`."""

    outcome: str
    p_value: float | None
    reasons: list[str]
    evidence: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"verdict": self.outcome, "p_value": self.p_value, "reasons": list(self.reasons), **self.evidence}


def _range(values) -> str:
    v = np.asarray(values, dtype=np.float64)
    return f"{v.min():.3f}-{v.max():.3f}"


def decide(
    *,
    agreement: float,
    similarity: float,
    reference_agreement,
    reference_similarity,
    alpha: float,
    sanity: list[str] = (),
    ood: str | None = None,
    statistic: str = "agreement",
    answers: tuple | None = None,
) -> Decision:
    """The verdict from the suspect's statistics and the reference models' (``[G]`` each, on the
    same pairs); ``sanity`` and ``ood``: reasons from the gates (any makes it not assessable);
    ``answers``: ``(groups, agree)`` of the agreement's answer slots (:mod:`fpenc.answer_margin`), for
    the margin in distinct answers (``margin_answers``).

    Returns a :class:`Decision` with ``p_agreement``, ``p_similarity``, the reference ranges, the
    thresholds and the **margin** in its evidence. ``p_value``: ``p_agreement`` for the
    ``agreement`` statistic; ``max`` of the two for ``agreement+similarity`` (the
    intersection-union test); for ``agreement-or-similarity`` ``min(1, 2 min(p_agreement, p_z))``,
    ``p_z`` the similarity's test on Fisher's z scale, counted only when the agreement is above the
    reference mean (a Bonferroni union: each test at ``alpha / 2``). ``margin``: the statistic's
    value minus the threshold at which its test reaches its level (positive: derived side; the
    smaller of the two margins for ``agreement+similarity``, the larger of those that count for
    ``agreement-or-similarity``); ``near_tie``: ``|margin| <`` :data:`NEAR_TIE`.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    statistic = check_statistic(statistic)
    ref_a = np.asarray(reference_agreement, dtype=np.float64)
    ref_s = np.asarray(reference_similarity, dtype=np.float64)
    both, either = statistic == "agreement+similarity", statistic == "agreement-or-similarity"
    p_a = prediction_pvalue(agreement, ref_a)
    if either:
        level = alpha / 2.0  # Bonferroni: each of the two tests at alpha / 2
        ref_z = fisher_z(ref_s)
        p_s = prediction_pvalue(float(fisher_z(similarity)), ref_z)
        thr_a = decision_threshold(ref_a, level)
        thr_s = float(np.tanh(decision_threshold(ref_z, level)))
        counts = p_a < 0.5  # the similarity counts only above the reference models' mean agreement
        p = min(1.0, 2.0 * min(p_a, p_s if counts else 1.0))
        margin = max(float(agreement) - thr_a, float(similarity) - thr_s if counts else -math.inf)
    else:
        p_s = prediction_pvalue(similarity, ref_s)
        p = max(p_a, p_s) if both else p_a
        thr_a, thr_s = decision_threshold(ref_a, alpha), decision_threshold(ref_s, alpha)
        margin = float(agreement) - thr_a
        if both:
            margin = min(margin, float(similarity) - thr_s)
    flips = None if answers is None else answers_to_flip(*answers, float(agreement) - thr_a)
    evidence = {
        "statistic": statistic,
        "p_agreement": p_a,
        "p_similarity": p_s,
        "agreement_threshold": thr_a,
        "similarity_threshold": thr_s,
        "margin": margin,
        "margin_answers": flips,
        "near_tie": abs(margin) < NEAR_TIE or (statistic == "agreement" and flips is not None and abs(flips) <= 1),
        "reference_agreement_range": [float(ref_a.min()), float(ref_a.max())],
        "reference_similarity_range": [float(ref_s.min()), float(ref_s.max())],
    }
    reasons = list(sanity) + ([ood] if ood else [])
    if reasons:
        return Decision(NOT_ASSESSABLE, p, reasons, evidence)
    a_txt = (
        f"agreement with the victim on the key {agreement:.3f} (independent reference models "
        f"{_range(ref_a)}, p {p_a:.2g})"
    )
    z = ", Fisher z" if either else ""
    s_txt = f"encoder similarity {similarity:.3f} (reference {_range(ref_s)}, p {p_s:.2g}{z})"
    if p < alpha:
        if either and counts and p_s < p_a:
            what = f"{s_txt} is above what an independent model plausibly reaches, with the agreement above theirs"
        else:
            what = f"{a_txt} and {s_txt} are both" if both else f"{a_txt} is"
            what += " above what an independent model plausibly reaches"
        tested = "both tested" if both else ("either tested, Bonferroni" if either else s_txt)
        return Decision(DERIVED, p, [f"{what} (p = {p:.2g} < alpha {alpha:g}; {tested})"], evidence)
    if either:
        why = f"{a_txt}; {s_txt}" + ("" if counts else " (not counted: the agreement is not above the reference mean)")
        return Decision(
            NOT_SHOWN,
            p,
            [f"{why}: neither beyond what independent models reach (p = {p:.2g} >= alpha {alpha:g}, Bonferroni)"],
            evidence,
        )
    weak = [t for t, q in ((a_txt, p_a), (s_txt, p_s)) if q >= alpha and (both or t is a_txt)]
    return Decision(
        NOT_SHOWN,
        p,
        [f"{' and '.join(weak)}: not beyond what independent models reach (p = {p:.2g} >= alpha {alpha:g})"],
        evidence,
    )
