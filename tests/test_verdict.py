"""The verdict's statistics and decision (fpenc.verdict) against by-hand formulas and hand-built
cases, and the calibration table (fpenc.calibration)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from fpenc.calibration import clopper_pearson, false_accusation_table
from fpenc.verdict import (
    DERIVED,
    NEAR_TIE,
    NOT_ASSESSABLE,
    NOT_SHOWN,
    SD_FLOOR,
    Gates,
    decide,
    decision_threshold,
    label_entropy,
    ood_distance,
    pair_agreement,
    pair_similarities,
    prediction_pvalue,
    pvalue_floor,
    sanity_reasons,
)


def test_pair_similarities_simple_vectors():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0], [1.0, 0.0]])
    b = torch.tensor([[2.0, 0.0], [-1.0, -1.0], [4.0, 3.0], [0.0, 5.0]])
    torch.testing.assert_close(pair_similarities(a, b), torch.tensor([1.0, -1.0, 24.0 / 25.0, 0.0]))
    with pytest.raises(ValueError):
        pair_similarities(torch.randn(3, 4), torch.randn(3, 5))


def test_pair_agreement_against_a_loop():
    g = torch.Generator().manual_seed(0)
    p, n2, k = 5, 6, 4
    a, b = torch.rand(p, n2 * k, generator=g), torch.rand(p, n2 * k, generator=g)
    want = [
        sum(int(a[i, j * k : (j + 1) * k].argmax() == b[i, j * k : (j + 1) * k].argmax()) for j in range(n2)) / n2
        for i in range(p)
    ]
    assert pair_agreement(a, b, k).tolist() == pytest.approx(want)
    assert pair_agreement(b, b, k).tolist() == [1.0] * p
    with pytest.raises(ValueError):
        pair_agreement(a, b[:2], k)


def test_label_entropy():
    assert label_entropy([3] * 50, 10) == 0.0
    assert label_entropy(list(range(10)) * 5, 10) == pytest.approx(1.0)
    assert 0.0 < label_entropy([0, 0, 0, 1], 10) < 0.3


def prediction_by_hand(value, ref):
    g = len(ref)
    m = sum(ref) / g
    sd = max(math.sqrt(sum((x - m) ** 2 for x in ref) / (g - 1)), SD_FLOOR)
    return float(stats.t.sf((value - m) / (sd * math.sqrt(1 + 1 / g)), g - 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prediction_pvalue_matches_formula(seed):
    rng = np.random.default_rng(seed)
    ref = rng.normal(0.3, 0.05, size=6).tolist()
    for value in (0.2, 0.3, 0.42, 0.9):
        assert prediction_pvalue(value, ref) == pytest.approx(prediction_by_hand(value, ref), rel=1e-9)
    assert prediction_pvalue(0.3, [0.3, 0.3, 0.3]) == pytest.approx(0.5)  # the SD floor: no division by zero
    assert prediction_pvalue(0.3 + 10 * SD_FLOOR, [0.3] * 4) < 0.01
    with pytest.raises(ValueError, match=">= 2 reference"):
        prediction_pvalue(0.5, [0.3])
    with pytest.raises(ValueError, match="finite"):
        prediction_pvalue(float("nan"), [0.3, 0.4])


def test_prediction_pvalue_is_calibrated_on_draws_from_the_reference_population():
    """A new draw from the population the reference models come from is accused at rate ~alpha."""
    rng = np.random.default_rng(0)
    hits = 0
    trials = 4000
    for _ in range(trials):
        ref = rng.normal(0.3, 0.05, size=6)
        hits += prediction_pvalue(rng.normal(0.3, 0.05), ref) < 0.05
    assert abs(hits / trials - 0.05) < 0.012


def test_pvalue_floor_is_the_victims_own_pvalue():
    ra, rs = [0.2, 0.25, 0.3, 0.22], [0.4, 0.5, 0.45, 0.6]
    both = "agreement+similarity"
    assert pvalue_floor(ra, rs) == prediction_pvalue(1.0, ra)
    assert pvalue_floor(ra, rs, both) == max(prediction_pvalue(1.0, ra), prediction_pvalue(1.0, rs))
    wide = pvalue_floor([0.2, 0.25, 0.3, 0.22], [0.1, 0.9, 0.5, 0.2], both)
    assert wide > pvalue_floor(ra, rs, both)  # a wide reference allows less confidence
    with pytest.raises(ValueError, match="statistic"):
        pvalue_floor(ra, rs, "similarity")


def test_decide_on_agreement_ignores_a_non_monotone_encoder():
    ref_a, ref_s = [0.25, 0.28, 0.3, 0.27, 0.26], [0.4, 0.45, 0.5, 0.42, 0.48]
    copy = decide(agreement=0.8, similarity=0.44, reference_agreement=ref_a, reference_similarity=ref_s, alpha=0.05)
    assert copy.outcome == DERIVED and copy.p_value == copy.evidence["p_agreement"]
    odd = decide(agreement=0.2, similarity=0.99, reference_agreement=ref_a, reference_similarity=ref_s, alpha=0.05)
    assert odd.outcome == NOT_SHOWN and odd.evidence["p_agreement"] > 0.5 and "agreement" in odd.reasons[0]


def test_decide_needs_both_statistics():
    ref_a, ref_s = [0.25, 0.28, 0.3, 0.27, 0.26], [0.4, 0.45, 0.5, 0.42, 0.48]
    kw = dict(reference_agreement=ref_a, reference_similarity=ref_s, alpha=0.05, statistic="agreement+similarity")
    copy = decide(agreement=0.8, similarity=0.95, **kw)
    assert copy.outcome == DERIVED and copy.p_value == max(copy.evidence["p_agreement"], copy.evidence["p_similarity"])
    # the encoder likes it, but it agrees with the victim no more than independent models: never derived
    odd = decide(agreement=0.2, similarity=0.99, **kw)
    assert odd.outcome == NOT_SHOWN and odd.evidence["p_agreement"] > 0.5 and "agreement" in odd.reasons[0]
    # the agreement is high, but the encoder says independent: not shown either
    assert decide(agreement=0.8, similarity=0.44, **kw).outcome == NOT_SHOWN
    gated = decide(
        agreement=0.8,
        similarity=0.95,
        reference_agreement=ref_a,
        reference_similarity=ref_s,
        alpha=0.05,
        sanity=["accuracy 0.1 ..."],
    )
    assert gated.outcome == NOT_ASSESSABLE and gated.reasons == ["accuracy 0.1 ..."]
    assert (
        decide(
            agreement=0.8, similarity=0.95, reference_agreement=ref_a, reference_similarity=ref_s, alpha=0.05, ood="far"
        ).outcome
        == NOT_ASSESSABLE
    )
    with pytest.raises(ValueError):
        decide(agreement=0.8, similarity=0.9, reference_agreement=ref_a, reference_similarity=ref_s, alpha=0.0)


def union_by_hand(agreement, similarity, ref_a, ref_s):
    """The Bonferroni union on plain formulas: the similarity on Fisher's z scale (atanh), counted
    only above the reference mean agreement."""

    def p(v, ref):
        r = np.asarray(ref, dtype=np.float64)
        sd = max(r.std(ddof=1), SD_FLOOR)
        return stats.t.sf((v - r.mean()) / (sd * math.sqrt(1 + 1 / len(r))), len(r) - 1)

    p_a = p(agreement, ref_a)
    p_z = p(math.atanh(min(similarity, 1 - 1e-6)), [math.atanh(x) for x in ref_s])
    return min(1.0, 2 * min(p_a, p_z if agreement > np.mean(ref_a) else 1.0))


def test_decide_either_statistic_is_a_bonferroni_union_guarded_by_the_agreement():
    ref_a, ref_s = [0.60, 0.62, 0.66, 0.64, 0.59, 0.63], [0.79, 0.81, 0.74, 0.76, 0.45, 0.85]
    kw = dict(reference_agreement=ref_a, reference_similarity=ref_s, alpha=0.01, statistic="agreement-or-similarity")
    for a, s in [(0.74, 0.985), (0.74, 0.80), (0.90, 0.50), (0.60, 0.999), (0.63, 0.97), (1.0, 1.0)]:
        d = decide(agreement=a, similarity=s, **kw)
        assert d.p_value == pytest.approx(union_by_hand(a, s, ref_a, ref_s), rel=1e-9)
        assert d.outcome == (DERIVED if d.p_value < 0.01 else NOT_SHOWN)
    # the encoder alone carries a copy whose agreement is above the independents' but not by enough
    copy = decide(agreement=0.70, similarity=0.985, **kw)
    assert copy.outcome == DERIVED and copy.evidence["p_agreement"] > 0.005 and "Fisher z" in copy.reasons[0]
    assert decide(agreement=0.70, similarity=0.985, **{**kw, "statistic": "agreement"}).outcome == NOT_SHOWN
    # the same similarity with an agreement at or below the independents' mean counts for nothing
    odd = decide(agreement=0.60, similarity=0.999, **kw)
    assert odd.outcome == NOT_SHOWN and odd.p_value == 1.0 and "not counted" in odd.reasons[0]
    # each test at alpha / 2: an agreement just past its alpha threshold is not enough
    thr = decision_threshold(ref_a, 0.01)
    assert decide(agreement=thr + 1e-3, similarity=0.5, **kw).outcome == NOT_SHOWN
    strong = decide(agreement=decision_threshold(ref_a, 0.005) + 0.01, similarity=0.5, **kw)
    assert strong.outcome == DERIVED and strong.evidence["margin"] == pytest.approx(0.01)
    # the margin is the larger of the two that count, each against its alpha / 2 threshold
    thr_s = math.tanh(decision_threshold([math.atanh(x) for x in ref_s], 0.005))
    assert copy.evidence["similarity_threshold"] == pytest.approx(thr_s)
    assert copy.evidence["margin"] == pytest.approx(0.985 - thr_s)
    floor = pvalue_floor(ref_a, ref_s, "agreement-or-similarity")
    assert floor == pytest.approx(union_by_hand(1.0, 1.0, ref_a, ref_s)) and floor < 1e-4


@pytest.mark.parametrize("alpha", [0.05, 0.01, 1e-3])
def test_decision_threshold_is_where_p_equals_alpha_and_sets_the_margin(alpha):
    ref_a, ref_s = [0.25, 0.28, 0.3, 0.27, 0.26], [0.4, 0.45, 0.5, 0.42, 0.48]
    thr = decision_threshold(ref_a, alpha)
    assert prediction_pvalue(thr, ref_a) == pytest.approx(alpha, rel=1e-9)
    r = np.asarray(ref_a)  # by hand: mean + t quantile x sd x sqrt(1 + 1/G)
    assert thr == pytest.approx(r.mean() + stats.t.ppf(1 - alpha, 4) * r.std(ddof=1) * math.sqrt(1.2))
    slots = (np.arange(4000), np.ones(4000, dtype=bool))  # 4,000 distinct answers, all the victim's
    kw = dict(reference_agreement=ref_a, reference_similarity=ref_s, alpha=alpha, answers=slots)
    above = decide(agreement=thr + 0.02, similarity=0.5, **kw)
    below = decide(agreement=thr - 0.02, similarity=0.5, **kw)
    assert (above.outcome, below.outcome) == (DERIVED, NOT_SHOWN)
    assert above.evidence["margin"] == pytest.approx(0.02) and below.evidence["margin"] == pytest.approx(-0.02)
    assert above.evidence["margin_answers"] == 80 and not above.evidence["near_tie"]
    assert below.evidence["margin_answers"] is None  # no answer is otherwise than the victim's: none to change
    tie = decide(agreement=thr + NEAR_TIE / 2, similarity=0.5, **kw)
    assert tie.outcome == DERIVED and tie.evidence["near_tie"]
    # under agreement+similarity the margin is the smaller of the two statistics'
    both = decide(agreement=0.9, similarity=0.5, statistic="agreement+similarity", **kw)
    assert both.evidence["margin"] == pytest.approx(0.5 - decision_threshold(ref_s, alpha))
    assert both.outcome == NOT_SHOWN and both.evidence["margin"] < 0


def test_gates_from_victim_and_sanity_reasons():
    g = Gates.from_victim(0.9, 0.98, 10)
    assert g.min_accuracy == pytest.approx(0.5) and g.min_label_entropy == pytest.approx(0.49)
    assert sanity_reasons(0.88, 0.97, 2, 0.12, g) == []
    reasons = sanity_reasons(0.1, 0.0, 3, 1.0, g)
    assert len(reasons) == 2 and "accuracy 0.100" in reasons[0] and "class 3 for 100%" in reasons[1]


def test_ood_distance_picks_the_nearest_model():
    g = torch.Generator().manual_seed(0)
    zoo = torch.randn(3, 5, 4, generator=g)
    d, m = ood_distance(zoo[1] * 2.0, zoo)  # a scaled copy of model 1: cosine 1
    assert m == 1 and d == pytest.approx(0.0, abs=1e-9)
    h = torch.randn(5, 4, generator=g)
    want = min(float((1 - F.cosine_similarity(h.double(), z.double(), dim=1)).mean()) for z in zoo)
    assert ood_distance(h, zoo)[0] == pytest.approx(want)
    with pytest.raises(ValueError):
        ood_distance(h, zoo[:, :2])


def test_clopper_pearson_known_values():
    lo, hi = clopper_pearson(0, 20)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 20), rel=1e-6)  # the exact zero-count bound
    lo, hi = clopper_pearson(20, 20)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 20), rel=1e-6)
    lo, hi = clopper_pearson(5, 50)
    assert lo < 0.1 < hi and (lo, hi) == pytest.approx((0.0333, 0.2181), abs=1e-3)
    with pytest.raises(ValueError):
        clopper_pearson(3, 2)


def test_false_accusation_table_counts_only_assessable_models():
    p = [0.001, 0.02, 0.2, 0.004, 0.5]
    ok = [True, True, True, False, True]
    rows = {r["alpha"]: r for r in false_accusation_table(p, ok, alphas=(0.01, 0.05))}
    assert rows[0.01]["derived"] == 1 and rows[0.05]["derived"] == 2 and rows[0.05]["negatives"] == 5
    assert rows[0.05]["rate"] == pytest.approx(0.4)


@pytest.mark.parametrize("statistic", ["agreement", "agreement+similarity", "agreement-or-similarity"])
def test_verify_text_names_the_margin_of_the_bundles_statistic(statistic):
    from fpenc.verify_output import _margin

    ref_a, ref_s = [0.60, 0.62, 0.66, 0.64, 0.59, 0.63], [0.79, 0.81, 0.74, 0.76, 0.45, 0.85]
    for agreement in (0.60, 0.70):
        d = decide(
            agreement=agreement,
            similarity=0.9,
            reference_agreement=ref_a,
            reference_similarity=ref_s,
            alpha=0.01,
            statistic=statistic,
        )
        r = {"agreement": agreement, "similarity": 0.9, **d.evidence, "p_agreement": d.evidence["p_agreement"]}
        line = _margin(r, "")
        assert line.startswith(f"{d.evidence['margin']:+.4f}")
        a_margin = f"{agreement - d.evidence['agreement_threshold']:+.4f}"
        if statistic == "agreement":
            side = "above" if agreement - d.evidence["agreement_threshold"] >= 0 else "below"
            assert f": {side} the agreement at which p = alpha" in line and "similarity" not in line
        else:  # both statistics' margins, each against its own threshold
            s_margin = f"{0.9 - d.evidence['similarity_threshold']:+.4f}"
            assert f"agreement {a_margin}" in line and f"similarity {s_margin}" in line
            assert ("not counted" in line) == (statistic == "agreement-or-similarity" and agreement < np.mean(ref_a))
