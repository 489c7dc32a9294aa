"""Known answers for the report's ROC numbers (`fpenc.report.roc_metrics`), and a naive reference."""

from __future__ import annotations

import numpy as np
import pytest

from fpenc.report import roc_metrics


def naive_auc(scores, positive) -> float:
    """P(score of a positive > score of a negative), ties counting half (Mann-Whitney)."""
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    return sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))


def test_hand_computed_case():
    # positives 0.9, 0.8, 0.6; negatives 0.7, 0.5, 0.4: 8 of 9 pairs ordered right
    m = roc_metrics([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 1, 0, 1, 0, 0])
    assert m["auc"] == pytest.approx(8 / 9)
    # no false positive allowed: the threshold stays above 0.7, so 2 of 3 positives are caught
    assert m["tpr_at_1pct_fpr"] == pytest.approx(2 / 3) and m["tpr_at_5pct_fpr"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "scores, positive, auc, tpr",
    [
        ([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0], 1.0, 1.0),  # perfect
        ([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0], 0.0, 0.0),  # reversed
        ([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0], 0.5, 0.0),  # all tied: chance, nothing caught without a false positive
    ],
)
def test_extremes(scores, positive, auc, tpr):
    m = roc_metrics(scores, positive)
    assert m["auc"] == pytest.approx(auc) and m["tpr_at_1pct_fpr"] == pytest.approx(tpr)


def test_tpr_at_fpr_uses_the_allowed_false_positives():
    # 100 negatives at 0..0.99, positives: 0.995 (above all) and 0.975 (above 98 negatives)
    neg = list(np.arange(100) / 100)
    m = roc_metrics(neg + [0.995, 0.975], [0] * 100 + [1, 1])
    assert m["tpr_at_1pct_fpr"] == pytest.approx(0.5)  # 1 false positive allowed: 0.975 still below 2 negatives
    assert m["tpr_at_5pct_fpr"] == pytest.approx(1.0)


def test_matches_the_naive_reference_on_random_scores():
    rng = np.random.default_rng(0)
    for _ in range(5):
        scores = np.round(rng.normal(size=60), 1)  # rounded: ties happen
        positive = rng.integers(0, 2, size=60)
        assert roc_metrics(scores, positive)["auc"] == pytest.approx(naive_auc(scores, positive), abs=1e-6)


def test_needs_both_classes():
    with pytest.raises(ValueError, match="both positive and negative"):
        roc_metrics([0.1, 0.2], [1, 1])


def test_trust_headline_says_what_the_test_models_and_the_reference_show():
    from fpenc.report import trust_headline

    def row(split, role, verdict, arch="fmnist_c"):
        return {"split": split, "role": role, "verdict": verdict, "architecture": arch}

    models = [
        row("test", "piracy", "derived"),
        row("test", "piracy", "not shown"),
        row("test", "homologous", "not shown"),
        row("reference", "homologous", "not shown", arch="fmnist_a"),
    ]
    report = {"models": models, "p_value_floor": 1e-5, "alpha": 0.01, "victim_architecture": "fmnist_a"}
    text = trust_headline(report)
    assert text.startswith("**Yes, within what was tested**") and "accused: 0 of 1 (95% upper bound 0.97)" in text
    assert "copies detected: 1 of 2" in text and "1.0e-05 below alpha 0.01" in text
    uncovered = trust_headline({**report, "victim_architecture": "mypkg.Net"})
    assert uncovered.startswith("**Not for models of the victim's own architecture (mypkg.Net)**")
    accused = trust_headline({**report, "models": [*models, row("test", "homologous", "derived")]})
    assert accused.startswith("**No: it accused an independent model**") and "accused: 1 of 2" in accused
    assert "NOT below" in trust_headline({**report, "p_value_floor": 0.02})
