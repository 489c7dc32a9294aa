"""The margin in distinct answers (fpenc.answer_margin), against a brute-force reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fpenc.answer_margin import answer_groups, answers_to_flip


def brute_force(groups, agree, margin):
    """Try every set of distinct queries, smallest first: the first whose changed answers move the
    agreement by at least |margin| (agreeing ones for a margin >= 0, the others for a negative one)."""
    groups, agree = np.asarray(groups).ravel(), np.asarray(agree).ravel()
    movable = agree if margin >= 0 else ~agree
    ids = sorted(set(groups[movable].tolist()))
    if margin == 0:
        return 0
    for k in range(1, len(ids) + 1):
        for chosen in itertools.combinations(ids, k):
            if (movable & np.isin(groups, chosen)).sum() / len(groups) >= abs(margin) * (1 - 1e-9):
                return k if margin >= 0 else -k
    return None


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    slots = int(rng.integers(6, 30))
    groups = rng.integers(0, int(rng.integers(2, 9)), slots)  # few queries, each in several slots
    agree = rng.random(slots) < rng.random()
    for margin in (0.0, 0.03, 0.2, 0.5, -0.04, -0.3, 0.99, -0.99):
        assert answers_to_flip(groups, agree, margin) == brute_force(groups, agree, margin), margin


def test_one_repeated_query_counts_once():
    # 100 slots: one query fills 30 of them (all the victim's), 70 distinct queries fill the rest
    groups = np.r_[np.zeros(30, dtype=int), np.arange(1, 71)]
    agree = np.r_[np.ones(30, dtype=bool), np.arange(70) % 2 == 0]
    assert answers_to_flip(groups, agree, 0.25) == 1  # 25 slots, but one changed answer
    assert answers_to_flip(groups, agree, 0.31) == 2
    assert answers_to_flip(groups, agree, -0.05) == -5  # 5 of the 35 disagreeing distinct queries
    assert answers_to_flip(groups, agree, -0.36) is None  # only 35 slots disagree
    with pytest.raises(ValueError, match="one non-empty shape"):
        answers_to_flip(groups, agree[:5], 0.1)


def test_groups_follow_images_and_uaps():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (3, 1, 4, 4), dtype=torch.uint8, generator=g)
    # view 0: images a, b; view 1: b, c; view 2: a, a (views overlap, and repeat)
    views = torch.stack(
        [torch.stack([imgs[0], imgs[1]]), torch.stack([imgs[1], imgs[2]]), torch.stack([imgs[0], imgs[0]])]
    )
    pairs = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 2]])
    groups = answer_groups(views, pairs)  # [4, 4]: clean, perturbed, clean, perturbed
    clean, perturbed = groups[:, 0::2], groups[:, 1::2]
    assert clean[0, 0] == clean[1, 0] == clean[3, 0] == clean[3, 1]  # image a, whatever the UAP or view
    assert clean[0, 1] == clean[2, 0] != clean[2, 1]  # b in views 0 and 1; c only in view 1
    assert perturbed[0, 1] == perturbed[2, 0]  # b + UAP 0, in two views: one query
    assert perturbed[0, 0] != perturbed[1, 0]  # a + UAP 0 and a + UAP 1: two queries
    assert perturbed[1, 0] == perturbed[3, 0] == perturbed[3, 1]  # a + UAP 1
    assert not set(clean.flatten().tolist()) & set(perturbed.flatten().tolist())
    assert len(set(groups.flatten().tolist())) == 3 + 3 + 2  # a, b, c; + UAP 0: a, b, c; + UAP 1: a, b
