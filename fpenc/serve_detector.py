"""A stateful detector of near-duplicate queries, Blacklight-style (Li et al., "Blacklight: Scalable
Defense for Neural Networks against Query-Based Black-Box Attacks", USENIX Security 2022), for
``fpenc serve --detector T`` and the evasion measurements.

Each query is quantised (pixel values in steps of ``step``/255), flattened, cut into every window of
``window`` consecutive values, and each window hashed; the ``num_hashes`` largest distinct hashes
are the query's fingerprint. A query whose fingerprint shares at least ``threshold`` hashes with
one earlier query is *flagged*; the server answers flagged queries at random. Fingerprint queries
``(x, x + v)`` share one UAP ``v`` over many images, and where the images are flat (a Fashion-MNIST
background) ``x + v`` is ``v`` itself, so those queries repeat windows of ``v``.

The hash is a polynomial hash of the window over the integers modulo 2^64 (numpy's wrapping
uint64 arithmetic), not a cryptographic one: the server only compares queries with each other.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import chain

import numpy as np
import torch


class DuplicateDetector:
    """Args: threshold (shared hashes that flag a query, 1..num_hashes), window, step, num_hashes, seed
    (the random answers to flagged queries)."""

    def __init__(self, threshold: int, window: int = 20, step: int = 50, num_hashes: int = 50, seed: int = 0):
        if not 1 <= threshold <= num_hashes:
            raise ValueError(f"the detector's threshold must be in [1, {num_hashes}], got {threshold}")
        if window < 1 or not 1 <= step <= 255:
            raise ValueError(f"window must be >= 1 and step in [1, 255], got {window}, {step}")
        self.threshold, self.window, self.step, self.num_hashes = (
            int(threshold),
            int(window),
            int(step),
            int(num_hashes),
        )
        self.powers = np.uint64(1_000_003) ** np.arange(self.window, dtype=np.uint64)[::-1]
        self.seen: dict[int, list[int]] = defaultdict(list)  # hash -> earlier queries that had it
        self.count = 0
        self.flagged = 0
        self.rng = torch.Generator().manual_seed(seed)

    def fingerprint(self, x: torch.Tensor) -> np.ndarray:
        """The distinct hashes ``[<= num_hashes]`` of one query ``x [C, H, W]`` in [0, 1]."""
        q = np.floor(x.clamp(0, 1).numpy().reshape(-1) * 255 / self.step).astype(np.uint64) + np.uint64(1)
        if len(q) < self.window:
            q = np.pad(q, (0, self.window - len(q)))
        windows = np.lib.stride_tricks.sliding_window_view(q, self.window)
        with np.errstate(over="ignore"):
            hashes = np.unique(windows @ self.powers)
        return hashes[-self.num_hashes :]

    def flag(self, x: torch.Tensor) -> torch.Tensor:
        """Whether each query of ``x [B, C, H, W]`` nearly repeats an earlier one (bool ``[B]``);
        every query then joins the history, in order."""
        out = torch.zeros(len(x), dtype=torch.bool)
        for i, image in enumerate(x):
            hashes = self.fingerprint(image).tolist()
            matches = Counter(chain.from_iterable(self.seen[h] for h in hashes if h in self.seen))
            out[i] = bool(matches) and matches.most_common(1)[0][1] >= self.threshold
            for h in hashes:
                self.seen[h].append(self.count)
            self.count += 1
        self.flagged += int(out.sum())
        return out

    def random_answers(self, n: int, num_classes: int) -> torch.Tensor:
        """Probabilities ``[n, K]`` drawn at random (a random class gets the most)."""
        p = torch.rand(n, num_classes, generator=self.rng)
        return p / p.sum(1, keepdim=True)
