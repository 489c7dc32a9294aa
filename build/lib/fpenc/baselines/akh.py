"""QuRD's Anna-Karenina heuristic (AKH; "all happy models are alike"): the victim's *misclassified*
inputs fingerprint it, because independent models err differently while copies inherit the
victim's errors. The defender queries images the victim gets wrong and compares answers:
label agreement (one minus the normalised Hamming distance) or cosine similarity of the output
probabilities. Our implementation, after the method's description; the order of the images is a
seeded permutation of the victim's errors."""

from __future__ import annotations

import torch

from fpenc.baselines.base import Defender, Method


def victim_error_images(defender: Defender, n: int) -> torch.Tensor:
    """Up to ``n`` of the defender's images the victim misclassifies, float ``[n', C, H, W]``, seeded order."""
    x = defender.images.float() / 255.0
    wrong = torch.nonzero(defender.victim_probs(x).argmax(1) != defender.labels).flatten()
    g = torch.Generator().manual_seed(defender.seed)
    return x[wrong[torch.randperm(len(wrong), generator=g)][:n]]


class AKHLabels(Method):
    name = "akh_labels"

    def build_queries(self, defender: Defender, n: int) -> torch.Tensor:
        return victim_error_images(defender, n)


class AKHProbs(Method):
    name = "akh_probs"
    answers = "probs"

    def build_queries(self, defender: Defender, n: int) -> torch.Tensor:
        return victim_error_images(defender, n)

    def similarity(self, suspect_probs: torch.Tensor, victim_probs: torch.Tensor) -> float:
        return float(torch.nn.functional.cosine_similarity(suspect_probs, victim_probs, dim=1).mean())
