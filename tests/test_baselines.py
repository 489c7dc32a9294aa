"""The ownership tests of fpenc.baselines against naive references and on models whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fpenc.baselines import (
    METHODS,
    AKHLabels,
    AKHProbs,
    Defender,
    FpencKey,
    IPGuard,
    NoUAP,
    RandomInputs,
    RankedCleanKey,
    RankedKey,
    RankedPool,
    linear_cka,
)
from fpenc.baselines.follows import RankedFollows, UAPFollows, follows_uaps, fooled_queries
from fpenc.baselines.ipguard import boundary_points
from fpenc.baselines.key_methods import agreement_gain, key_image_order


class Net(torch.nn.Module):
    """A tiny classifier of 1x8x8 images with fpenc's ``features`` (penultimate layer)."""

    def __init__(self, seed: int = 0, classes: int = 5):
        super().__init__()
        torch.manual_seed(seed)
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU())
        self.head = torch.nn.Linear(16, classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


class Constant(torch.nn.Module):
    def __init__(self, cls: int, classes: int = 5):
        super().__init__()
        self.cls, self.classes, self.w = cls, classes, torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.nn.functional.one_hot(torch.full((len(x),), self.cls), self.classes).float() * 10


def defender(seed: int = 0) -> Defender:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (300, 1, 8, 8), generator=g, dtype=torch.uint8)
    victim = Net(0)
    with torch.no_grad():
        predicted = victim(images.float() / 255).argmax(1)
    labels = predicted.clone()
    labels[::3] = (labels[::3] + 1) % 5  # the victim is wrong on every third image
    return Defender(
        victim=victim,
        images=images,
        labels=labels,
        num_classes=5,
        key_images=torch.randint(0, 256, (3, 4, 1, 8, 8), generator=g, dtype=torch.uint8),
        uaps=(torch.rand(2, 1, 8, 8, generator=g) - 0.5) * 0.6,
        seed=seed,
        kmeans_images=torch.randint(0, 256, (2, 5, 1, 8, 8), generator=g, dtype=torch.uint8),
        train_copies=(Net(0), Net(0)),
        train_independents=(Net(1), Net(2), Net(3)),
    )


def naive_cka(a: np.ndarray, b: np.ndarray) -> float:
    """CKA with linear kernels and the centring matrix, as Kornblith et al. write it (HSIC)."""
    n = len(a)
    h = np.eye(n) - np.ones((n, n)) / n
    ka, kb = a @ a.T, b @ b.T

    def hsic(x, y):
        return np.trace(x @ h @ y @ h)

    return hsic(ka, kb) / np.sqrt(hsic(ka, ka) * hsic(kb, kb))


def test_linear_cka_matches_the_hsic_formula_and_its_invariances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 6)), rng.normal(size=(40, 9))
    assert linear_cka(torch.tensor(a), torch.tensor(b)) == pytest.approx(naive_cka(a, b), rel=1e-9)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))  # orthogonal transform and scaling: CKA 1
    assert linear_cka(torch.tensor(a), torch.tensor(3 * a @ q)) == pytest.approx(1.0, abs=1e-9)


def test_akh_queries_only_the_victims_errors_and_scores_copies_above_others():
    d = defender()
    m = AKHLabels(max_queries=50).prepare(d)
    assert m.available == 50
    wrong = (d.images.float() / 255)[d.victim_probs(d.images.float() / 255).argmax(1) != d.labels]
    assert all(any(torch.equal(q, w) for w in wrong) for q in m.queries[:10])
    victim_answers, spent = m.observe(d.victim)
    assert spent == 50 and m.score(victim_answers, 20) == 1.0
    other = m.score(m.observe(Net(7))[0], 50)
    assert other < 1.0
    # the score at a budget is the agreement on exactly the first `budget` queries
    ans = m.observe(Net(7))[0]
    naive = float((ans[:20].argmax(1) == m.victim_answers[:20].argmax(1)).float().mean())
    assert m.score(ans, 20) == naive
    assert AKHProbs(max_queries=50).prepare(d).score(AKHProbs(50).prepare(d).observe(d.victim)[0], 50) == pytest.approx(
        1.0
    )


def test_label_methods_see_labels_only():
    d = defender()
    answers, _ = AKHLabels(max_queries=10).prepare(d).observe(Net(3))
    assert set(answers.unique().tolist()) <= {0.0, 1.0} and torch.all(answers.sum(1) == 1)


def test_fpenc_key_order_pairs_each_image_with_a_uap_then_adds_rounds():
    d = defender()
    m = FpencKey(max_queries=10_000).prepare(d)
    v, n, u = 3, 4, 2
    assert m.available == v * n * (u + 1)
    q = m.queries
    x0 = q[0]
    assert torch.allclose(q[1], (x0 + d.uaps[0]).clamp(0, 1))
    assert torch.allclose(q[3], (q[2] + d.uaps[1]).clamp(0, 1))
    assert NoUAP(max_queries=10_000).prepare(d).available == v * n
    assert m.spent(4000) == 36 and m.spent(5) == 5


def test_boundary_points_narrow_the_victims_top_two_gap():
    victim = Net(0)
    with torch.no_grad():
        victim.head.weight.mul_(30)  # confident: top-two gaps far above the margin
    x = torch.rand(64, 1, 8, 8)

    def gap(z):
        with torch.no_grad():
            top = victim(z).topk(2, dim=1).values
        return (top[:, 0] - top[:, 1]).median()

    z = boundary_points(victim, x, steps=30, step_size=0.01)
    assert gap(z) < 0.5 * gap(x) and z.min() >= 0 and z.max() <= 1
    assert IPGuard(max_queries=30, steps=5).prepare(defender()).available == 30


def test_every_method_scores_the_victim_at_least_as_close_as_a_constant_model():
    d = defender()
    for name, cls in METHODS.items():
        if name == "fpenc_encoder":  # needs a bundle: tests/test_bundle_verify.py
            continue
        m = cls(max_queries=40).prepare(d)
        own = m.score(m.observe(d.victim)[0], 40)
        const = m.score(m.observe(Constant(2))[0], 40) if m.black_box else 0.0
        assert own >= const and own == pytest.approx(1.0, abs=1e-6), name
    assert RandomInputs(max_queries=40).prepare(d).queries.shape == (40, 1, 8, 8)


def test_ranked_key_spends_the_budget_on_the_queries_training_copies_share_and_independents_do_not():
    d = defender()
    clean = key_image_order(d)
    u = d.uaps.float()
    candidates = torch.cat([clean, (clean + u[torch.arange(len(clean)) % len(u)]).clamp(0, 1)])
    gain = agreement_gain(d, candidates)
    # naive reference: smoothed shares, model by model, query by query
    with torch.no_grad():
        victim = d.victim(candidates).argmax(1)
        q = [
            (sum(int(n(c[None]).argmax(1) == v) for n in d.train_copies) + 0.5) / 3 for c, v in zip(candidates, victim)
        ]
        p = [
            (sum(int(n(c[None]).argmax(1) == v) for n in d.train_independents) + 0.5) / 4
            for c, v in zip(candidates, victim)
        ]
    assert torch.allclose(gain, torch.tensor(q) - torch.tensor(p), atol=1e-6)
    ranked = RankedKey(max_queries=10).prepare(d)
    assert len(ranked.queries) == 10
    order = torch.argsort(-gain, stable=True)[:10]
    assert torch.equal(ranked.queries, candidates[order].clamp(0, 1))
    assert (gain[order][:-1] >= gain[order][1:]).all()  # most evidence first
    only_clean = RankedCleanKey(max_queries=100).prepare(d)
    assert len(only_clean.queries) == len(clean)  # every clean key image, no UAP twin
    assert {tuple(x.flatten().tolist()) for x in only_clean.queries} == {tuple(x.flatten().tolist()) for x in clean}
    pool = RankedPool(max_queries=10_000).prepare(d)  # every held-out image and its UAP twin, ranked
    assert len(pool.queries) == 2 * len(d.images)
    rows = {tuple(x.flatten().tolist()) for x in pool.queries}
    assert all(tuple((x.float() / 255).flatten().tolist()) in rows for x in d.images)
    with pytest.raises(ValueError, match="training copies and independent models"):
        RankedKey().prepare(Defender(d.victim, d.images, d.labels, 5, key_images=d.key_images, uaps=d.uaps))


def test_follows_queries_are_the_uap_images_that_change_the_victims_class_in_round_order():
    d = defender()
    uaps = follows_uaps(d, eps=0.3, num_uaps=3, ensemble=False, steps=20, batch_size=16)
    assert uaps.shape == (3, 1, 8, 8) and uaps.abs().max() <= 0.3 + 1e-6
    x = key_image_order(d)
    got = fooled_queries(d, x, uaps, 10_000)
    # naive reference: image by image, round by round
    want = []
    with torch.no_grad():
        for r in range(3):
            for i in range(len(x)):
                p = (x[i] + uaps[(i + r) % 3]).clamp(0, 1)
                if d.victim(p[None]).argmax(1) != d.victim(x[i][None]).argmax(1):
                    want.append(p)
    assert len(want) > 0 and torch.equal(got, torch.stack(want))
    assert torch.equal(fooled_queries(d, x, uaps, 3), got[:3])
    m = UAPFollows(max_queries=4000)
    m.eps, m.num_uaps = 0.3, 3
    m.prepare(d)
    assert m.score(m.observe(d.victim)[0], 4000) == 1.0  # the victim follows itself
    ranked = RankedFollows(max_queries=5).prepare(d)
    assert len(ranked.queries) == 5
    with pytest.raises(ValueError, match="training copies"):
        follows_uaps(Defender(d.victim, d.images, d.labels, 5), 0.1, 2, ensemble=True, steps=2)


def test_an_ensemble_of_one_network_twice_gives_that_networks_uaps():
    from fpenc.uap.subspace import batched_sgd_uaps

    d = defender()
    one = batched_sgd_uaps(d.victim, d.images, 2, 0.2, "linf", steps=5, batch_size=8, seed=1)
    twice = batched_sgd_uaps([d.victim, d.victim], d.images, 2, 0.2, "linf", steps=5, batch_size=8, seed=1)
    torch.testing.assert_close(one, twice)
    other = batched_sgd_uaps([d.victim, Net(7)], d.images, 2, 0.2, "linf", steps=5, batch_size=8, seed=1)
    assert not torch.allclose(one, other)
