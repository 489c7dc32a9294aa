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
