"""Tests for the fingerprint encoder and the supervised contrastive loss.

* ``supcon_loss`` is checked against a naive double-loop reference of Khosla et al.'s L_out,
  against closed-form values on hand-built geometries, and for its invariances and errors.
* ``FingerprintEncoder``: shapes, config round trip, input validation.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fpenc.encoder.loss import SupConLoss, supcon_loss
from fpenc.encoder.network import FingerprintEncoder

# --------------------------------------------------------------------------------------------
# supcon_loss: naive reference
# --------------------------------------------------------------------------------------------


def naive_supcon(features: torch.Tensor, labels, temperature: float) -> float:
    """Khosla et al. eq. 2 (L_out) with explicit loops, in float64 Python arithmetic."""
    z = features.detach().double()
    z = z / z.norm(dim=1, keepdim=True)
    z = z.tolist()
    labels = [int(v) for v in labels]
    b = len(z)

    def dot(u, v):
        return sum(a * c for a, c in zip(u, v))

    per_anchor = []
    for i in range(b):
        positives = [p for p in range(b) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denom = sum(math.exp(dot(z[i], z[a]) / temperature) for a in range(b) if a != i)
        total = 0.0
        for p in positives:
            total += math.log(math.exp(dot(z[i], z[p]) / temperature) / denom)
        per_anchor.append(-total / len(positives))
    return sum(per_anchor) / len(per_anchor)


REFERENCE_CASES = [
    # (batch, dim, labels or None for random labels among n_classes, n_classes, seed)
    (8, 16, [0, 0, 1, 1, 2, 2, 3, 3], None, 0),
    (10, 5, None, 3, 1),
    (12, 32, None, 2, 2),
    (7, 4, [0, 0, 0, 1, 2, 3, 4], None, 3),  # singletons 1..4 are left out as anchors
    (9, 8, [5, 1, 5, 7, 1, 9, 5, 2, 3], None, 4),  # arbitrary label values, singletons
    (2, 3, [4, 4], None, 5),  # the smallest valid batch
]


@pytest.mark.parametrize("temperature", [0.07, 0.1, 0.5])
@pytest.mark.parametrize("b,d,labels,n_classes,seed", REFERENCE_CASES)
def test_supcon_matches_naive_reference(b, d, labels, n_classes, seed, temperature):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, d, generator=g, dtype=torch.float64)
    if labels is None:
        lab = torch.randint(0, n_classes, (b,), generator=g)
    else:
        lab = torch.tensor(labels)
    got = supcon_loss(feats, lab, temperature)
    assert got.ndim == 0
    expected = naive_supcon(feats, lab, temperature)
    assert float(got) == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_supcon_singletons_are_excluded_from_the_mean():
    """A singleton sample is in every A(i) but is no anchor: the mean is over 4 anchors, not 5."""
    g = torch.Generator().manual_seed(7)
    feats = torch.randn(5, 6, generator=g, dtype=torch.float64)
    lab = torch.tensor([0, 0, 1, 1, 9])
    t = 0.2
    z = F.normalize(feats, dim=1)
    sim = (z @ z.T / t).tolist()
    terms = []
    for i, p in ((0, 1), (1, 0), (2, 3), (3, 2)):  # one positive each; the denominator has 4 terms
        denom = sum(math.exp(sim[i][a]) for a in range(5) if a != i)
        terms.append(-(sim[i][p] - math.log(denom)))
    got = float(supcon_loss(feats, lab, t))
    assert got == pytest.approx(sum(terms) / 4, rel=1e-5)
    assert got != pytest.approx(sum(terms) / 5, rel=1e-3)
    # dropping the singleton from the batch changes the denominators, hence the value
    assert got != pytest.approx(float(supcon_loss(feats[:4], lab[:4], t)), rel=1e-4)


# --------------------------------------------------------------------------------------------
# supcon_loss: hand-built geometry
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("scale", [1.0, 3.5])
def test_supcon_two_opposite_classes_closed_form(temperature, scale):
    u = torch.tensor([0.6, 0.8, 0.0], dtype=torch.float64) * scale
    feats = torch.stack([u, u, -u, -u])
    lab = torch.tensor([0, 0, 1, 1])
    t = temperature
    # each anchor: one positive at cos 1, two negatives at cos -1
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * math.exp(-1 / t)))
    assert float(supcon_loss(feats, lab, t)) == pytest.approx(expected, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_supcon_three_per_class_opposite_closed_form(temperature):
    u = torch.tensor([1.0, 0.0], dtype=torch.float64)
    feats = torch.stack([u, u, u, -u, -u, -u])
    lab = torch.tensor([0, 0, 0, 1, 1, 1])
    t = temperature
    # each anchor: two positives at cos 1, three negatives at cos -1
    expected = -math.log(math.exp(1 / t) / (2 * math.exp(1 / t) + 3 * math.exp(-1 / t)))
    assert float(supcon_loss(feats, lab, t)) == pytest.approx(expected, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_supcon_orthogonal_classes_closed_form(temperature):
    e1 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    e2 = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    feats = torch.stack([e1, e1, e2, e2])
    lab = torch.tensor([3, 3, 8, 8])
    t = temperature
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2.0))
    assert float(supcon_loss(feats, lab, t)) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_supcon_separated_lower_than_mixed():
    u = torch.tensor([1.0, 0.0], dtype=torch.float64)
    lab = torch.tensor([0, 0, 1, 1])
    separated = torch.stack([u, u, -u, -u])
    mixed = torch.stack([u, -u, u, -u])  # each class holds both directions
    for t in (0.1, 0.5, 1.0):
        assert float(supcon_loss(separated, lab, t)) < float(supcon_loss(mixed, lab, t))
    # mixed at t=1: positive at cos -1, negatives at cos 1 and -1
    t = 1.0
    expected_mixed = -math.log(math.exp(-1) / (2 * math.exp(-1) + math.exp(1)))
    assert float(supcon_loss(mixed, lab, t)) == pytest.approx(expected_mixed, rel=1e-5)


def test_supcon_non_negative_and_near_zero_when_separated():
    """With one positive per anchor the loss is >= 0 and tends to 0 as collapsed, opposite classes
    are sharpened by a low temperature."""
    u = torch.tensor([1.0, 0.0], dtype=torch.float64)
    feats = torch.stack([u, u, -u, -u])
    lab = torch.tensor([0, 0, 1, 1])
    val = float(supcon_loss(feats, lab, 0.05))
    assert 0.0 <= val < 1e-6
    g = torch.Generator().manual_seed(11)
    for _ in range(5):
        f = torch.randn(6, 4, generator=g)
        assert float(supcon_loss(f, torch.tensor([0, 0, 1, 1, 2, 2]), 0.1)) >= 0.0


# --------------------------------------------------------------------------------------------
# supcon_loss: gradients and invariances
# --------------------------------------------------------------------------------------------


def test_supcon_gradient_flows():
    g = torch.Generator().manual_seed(21)
    feats = torch.randn(8, 5, generator=g, requires_grad=True)
    lab = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4])
    loss = supcon_loss(feats, lab, 0.1)
    loss.backward()
    assert feats.grad is not None
    assert torch.isfinite(feats.grad).all()
    assert feats.grad.abs().sum() > 0


def test_supcon_gradient_flows_through_encoder_and_float64_input():
    torch.manual_seed(0)
    enc = FingerprintEncoder(6, hidden_dim=16, embed_dim=8, proj_dim=4)
    x = torch.randn(6, 6)
    loss = supcon_loss(enc(x), torch.tensor([0, 0, 0, 1, 1, 1]))
    loss.backward()
    for p in enc.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert enc.encoder[0].weight.grad.abs().sum() > 0
    f64 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    supcon_loss(f64, torch.tensor([0, 0, 1, 1])).backward()
    assert f64.grad is not None and f64.grad.dtype == torch.float64 and torch.isfinite(f64.grad).all()


def test_supcon_scale_invariance():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(10, 7, generator=g, dtype=torch.float64)
    lab = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 5])
    base = float(supcon_loss(feats, lab, 0.1))
    for s in (1e-3, 0.5, 7.0, 1e3):
        assert float(supcon_loss(feats * s, lab, 0.1)) == pytest.approx(base, rel=1e-5)
    # per-row scaling too (each sample is normalised on its own)
    row_scale = torch.rand(10, 1, generator=g, dtype=torch.float64) * 10 + 0.1
    assert float(supcon_loss(feats * row_scale, lab, 0.1)) == pytest.approx(base, rel=1e-5)


def test_supcon_permutation_invariance():
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(11, 6, generator=g)
    lab = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 4, 4, 7])
    base = float(supcon_loss(feats, lab, 0.1))
    for _ in range(3):
        perm = torch.randperm(11, generator=g)
        assert float(supcon_loss(feats[perm], lab[perm], 0.1)) == pytest.approx(base, rel=1e-5)
    # relabelling the classes (a bijection of label values) does not matter either
    relabel = torch.tensor([10, 20, 30, 40, 50, 60, 70, 80])[lab]
    assert float(supcon_loss(feats, relabel, 0.1)) == pytest.approx(base, rel=1e-6)


# --------------------------------------------------------------------------------------------
# supcon_loss: errors and the module
# --------------------------------------------------------------------------------------------


def test_supcon_rejects_1d_features():
    with pytest.raises(ValueError):
        supcon_loss(torch.randn(4), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError):
        supcon_loss(torch.randn(2, 2, 2), torch.tensor([0, 0]))


def test_supcon_rejects_label_mismatch():
    with pytest.raises(ValueError):
        supcon_loss(torch.randn(4, 3), torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError):
        supcon_loss(torch.randn(4, 3), torch.tensor([[0, 0], [1, 1]]))


@pytest.mark.parametrize("t", [0.0, -0.1])
def test_supcon_rejects_non_positive_temperature(t):
    with pytest.raises(ValueError):
        supcon_loss(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), t)
    with pytest.raises(ValueError):
        SupConLoss(t)


def test_supcon_rejects_all_singletons():
    with pytest.raises(ValueError, match="positive"):
        supcon_loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError):
        supcon_loss(torch.randn(1, 3), torch.tensor([0]))


@pytest.mark.parametrize("t", [0.07, 0.1, 0.5])
def test_supcon_module_equals_function(t):
    g = torch.Generator().manual_seed(9)
    feats = torch.randn(8, 4, generator=g)
    lab = torch.tensor([0, 1, 0, 1, 2, 2, 3, 0])
    mod = SupConLoss(t)
    assert mod.temperature == t
    assert torch.equal(mod(feats, lab), supcon_loss(feats, lab, t))
    assert SupConLoss().temperature == 0.1


# --------------------------------------------------------------------------------------------
# FingerprintEncoder
# --------------------------------------------------------------------------------------------


def test_encoder_shapes_and_defaults():
    torch.manual_seed(0)
    enc = FingerprintEncoder(20)
    assert enc.config() == {
        "input_dim": 20,
        "hidden_dim": 512,
        "embed_dim": 128,
        "proj_dim": 64,
        "dropout": 0.1,
        "input_transform": "log",
    }
    x = torch.randn(5, 20)
    assert enc.encode(x).shape == (5, 128)
    assert enc(x).shape == (5, 64)
    small = FingerprintEncoder(12, hidden_dim=16, embed_dim=8, proj_dim=3, dropout=0.0)
    small.eval()
    y = torch.randn(1, 12)  # batch of one is fine in eval mode (BatchNorm running stats)
    assert small.encode(y).shape == (1, 8)
    assert small(y).shape == (1, 3)


def test_encoder_forward_is_head_of_encode():
    torch.manual_seed(1)
    enc = FingerprintEncoder(10, hidden_dim=16, embed_dim=8, proj_dim=4).eval()
    x = torch.randn(4, 10)
    torch.testing.assert_close(enc(x), enc.head(enc.encode(x)))


def test_encoder_config_round_trip():
    torch.manual_seed(2)
    enc = FingerprintEncoder(14, hidden_dim=24, embed_dim=10, proj_dim=5, dropout=0.3)
    # move BatchNorm running statistics away from their init so the state_dict matters
    enc.train()
    with torch.no_grad():
        for _ in range(3):
            enc(torch.randn(8, 14) * 2 + 1)
    cfg = enc.config()
    assert cfg == {
        "input_dim": 14,
        "hidden_dim": 24,
        "embed_dim": 10,
        "proj_dim": 5,
        "dropout": 0.3,
        "input_transform": "log",
    }
    twin = FingerprintEncoder(**cfg)
    twin.load_state_dict(enc.state_dict())
    enc.eval()
    twin.eval()
    x = torch.randn(6, 14)
    with torch.no_grad():
        assert torch.equal(enc.encode(x), twin.encode(x))
        assert torch.equal(enc(x), twin(x))


@pytest.mark.parametrize("shape", [(3, 9), (3, 11), (10,), (2, 10, 1)])
def test_encoder_rejects_wrong_input(shape):
    enc = FingerprintEncoder(10, hidden_dim=8, embed_dim=4, proj_dim=2).eval()
    with pytest.raises(ValueError):
        enc.encode(torch.randn(*shape))
    with pytest.raises(ValueError):
        enc(torch.randn(*shape))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_dim": 0},
        {"input_dim": 5, "hidden_dim": 0},
        {"input_dim": 5, "embed_dim": 0},
        {"input_dim": 5, "proj_dim": -1},
        {"input_dim": 5, "dropout": 1.0},
        {"input_dim": 5, "dropout": -0.1},
    ],
)
def test_encoder_rejects_bad_dims(kwargs):
    with pytest.raises(ValueError):
        FingerprintEncoder(**kwargs)
