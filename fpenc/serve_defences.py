"""What a server that does not want to be fingerprinted can do to its inputs and answers, for
``fpenc serve`` and the evasion measurements (``benchmarks/remote_evasion.py``):

* input transforms, applied to every query before the model sees it: ``jpeg`` (re-encoding at a
  quality), ``input_noise`` (Gaussian pixel noise of a standard deviation, clipped to [0, 1]),
  ``median`` (a k x k median filter);
* answer perturbations: ``prob_noise`` (Gaussian noise on the probabilities, clipped and
  renormalised), then rounding and top-k / label answers (``fpenc.serve``);
* ``detector``: a stateful detector of near-duplicate queries (:mod:`fpenc.serve_detector`,
  Blacklight-style) whose flagged queries get random answers; the value is its match threshold.

Each is seeded, so that a measurement is repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Defences:
    jpeg: int | None = None  # JPEG quality 1..95
    input_noise: float = 0.0  # std of Gaussian pixel noise
    median: int = 0  # median filter size (odd, >= 3), 0: none
    prob_noise: float = 0.0  # std of Gaussian noise on the probabilities
    detector: int = 0  # near-duplicate detector's threshold (shared hashes, 1..50), 0: none
    seed: int = 0

    def make_detector(self):
        """A fresh :class:`~fpenc.serve_detector.DuplicateDetector` (one per server: it remembers
        the queries), or None."""
        if not self.detector:
            return None
        from fpenc.serve_detector import DuplicateDetector

        return DuplicateDetector(self.detector, seed=self.seed + 2)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Queries ``[B, C, H, W]`` in [0, 1] as the defended model sees them."""
        if self.jpeg is not None:
            x = _jpeg(x, self.jpeg)
        if self.median:
            x = _median(x, self.median)
        if self.input_noise > 0:
            g = torch.Generator().manual_seed(self.seed)
            x = (x + self.input_noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
        return x

    def answers(self, probs: torch.Tensor) -> torch.Tensor:
        if self.prob_noise <= 0:
            return probs
        g = torch.Generator().manual_seed(self.seed + 1)
        noisy = (probs + self.prob_noise * torch.randn(probs.shape, generator=g)).clamp_min(0) + 1e-12
        return noisy / noisy.sum(1, keepdim=True)


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    import io

    from PIL import Image

    out = []
    for img in (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy():
        arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
        dec = np.asarray(Image.open(buf))
        out.append(dec[None] if dec.ndim == 2 else dec.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out)).float() / 255


def _median(x: torch.Tensor, k: int) -> torch.Tensor:
    pad = k // 2
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    patches = padded.unfold(2, k, 1).unfold(3, k, 1)  # [B, C, H, W, k, k]
    return patches.reshape(*patches.shape[:4], -1).median(-1).values
