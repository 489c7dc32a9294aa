"""The server-side defences of `fpenc serve` (fpenc/serve_defences.py) against naive references."""

from __future__ import annotations

import numpy as np
import torch

from fpenc.serve_defences import Defences


def test_median_filter_matches_a_naive_one():
    x = torch.rand(2, 1, 6, 7)
    got = Defences(median=3).inputs(x)
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    want = np.empty_like(x.numpy())
    for b in range(2):
        for i in range(6):
            for j in range(7):
                want[b, 0, i, j] = np.median(padded[b, 0, i : i + 3, j : j + 3])
    assert np.allclose(got.numpy(), want)


def test_jpeg_noise_and_probability_noise_are_seeded_and_bounded():
    x = torch.rand(3, 1, 28, 28)
    jpeg = Defences(jpeg=75).inputs(x)
    assert jpeg.shape == x.shape and 0 < float((jpeg - x).abs().mean()) < 0.2
    assert float((Defences(jpeg=30).inputs(x) - x).abs().mean()) > float((jpeg - x).abs().mean())
    noisy = Defences(input_noise=0.1, seed=3).inputs(x)
    assert torch.equal(noisy, Defences(input_noise=0.1, seed=3).inputs(x)) and noisy.min() >= 0 and noisy.max() <= 1
    p = torch.softmax(torch.randn(5, 10), 1)
    q = Defences(prob_noise=0.1).answers(p)
    assert torch.allclose(q.sum(1), torch.ones(5)) and (q >= 0).all() and not torch.allclose(q, p)
    assert torch.equal(Defences().inputs(x), x) and torch.equal(Defences().answers(p), p)


def naive_hashes(x: torch.Tensor, window: int = 20, step: int = 50, keep: int = 50) -> set[int]:
    """Blacklight's fingerprint by hand: quantise, every window, a polynomial hash mod 2^64, the largest."""
    q = [int(v * 255 // step) + 1 for v in x.flatten().tolist()]
    hashes = set()
    for i in range(len(q) - window + 1):
        h = 0
        for v in q[i : i + window]:
            h = (h * 1_000_003 + v) % 2**64
        hashes.add(h)
    return set(sorted(hashes)[-keep:])


def test_detector_fingerprints_match_a_naive_hash_and_flag_only_near_duplicates():
    from fpenc.serve_detector import DuplicateDetector

    g = torch.Generator().manual_seed(0)
    images = torch.rand(30, 1, 28, 28, generator=g)
    d = DuplicateDetector(25)
    for x in images[:3]:
        assert set(d.fingerprint(x).tolist()) == naive_hashes(x)
    assert not d.flag(images).any()  # distinct random images: nothing flagged
    again = d.flag(images[:5] + 0.001)  # the same images once more, barely changed
    assert again.all() and d.flagged == 5 and d.count == 35
    # a shared perturbation on flat images (a background): x + v repeats v's windows
    flat = torch.zeros(6, 1, 28, 28)
    flat[:, :, 10:18, 10:18] = torch.rand(6, 1, 8, 8, generator=g)
    v = torch.rand(1, 1, 28, 28, generator=g) * 0.25
    shared = DuplicateDetector(25).flag((flat + v).clamp(0, 1))
    assert not shared[0] and shared[1:].all()
    p = d.random_answers(4, 10)
    assert p.shape == (4, 10) and torch.allclose(p.sum(1), torch.ones(4))
    for bad in ({"threshold": 0}, {"threshold": 51}, {"threshold": 5, "step": 0}):
        try:
            DuplicateDetector(**bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    assert Defences().make_detector() is None and Defences(detector=10).make_detector().threshold == 10
