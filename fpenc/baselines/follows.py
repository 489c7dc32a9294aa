"""Does the suspect follow the victim's UAP? Queries ``x + v`` at a moderate UAP strength, on the
key images the UAP fools the victim on; the score is the share where the suspect gives the
victim's *new* class (label agreement on those queries).

The signal (Peng et al., CVPR 2022, §4.1: a copy shares the victim's adversarial subspace): at the
bank's strength (L-inf 0.25, the victim fooled on ~90% of images) every model is pushed the same
way, but at L-inf 0.1 (the victim fooled on ~40%) extracted copies follow the victim's new class
more often than independent models do (``experiments/results/uap_budget_sweep.json``). The UAPs
are computed here, once per victim, by :func:`fpenc.uap.subspace.batched_sgd_uaps` on the
defender's held-out images; ``ensemble`` methods compute them against the victim *and* the owner's
training copies (:attr:`~fpenc.baselines.base.Defender.train_copies`, e.g. its adversarially
fine-tuned ones), so that the perturbation survives what a thief does to a copy.

Query order (any budget a prefix): the key's images in their seeded order, round ``r`` pairing
image ``i`` with UAP ``(i + r) mod U``, each query kept only where the victim's class changes.
``fpenc_ranked_follows`` ranks those queries together with the key's clean images by the
evidence they carried on the owner's training models (:func:`~fpenc.baselines.key_methods.agreement_gain`).
"""

from __future__ import annotations

import torch

from fpenc.baselines.base import Defender, Method
from fpenc.baselines.key_methods import agreement_gain, key_image_order


def follows_uaps(
    defender: Defender, eps: float, num_uaps: int, ensemble: bool, steps: int = 150, batch_size: int = 64
) -> torch.Tensor:
    """``num_uaps`` L-inf SGD-UAPs ``[U, C, H, W]`` of the victim (and, with ``ensemble``, of its
    training copies too), trained on the defender's held-out images with the defender's seed."""
    from fpenc.uap.subspace import batched_sgd_uaps

    nets = [defender.victim]
    if ensemble:
        if not defender.train_copies:
            raise ValueError("this method needs the owner's training copies (Defender.train_copies)")
        nets += list(defender.train_copies)
    return batched_sgd_uaps(
        nets, defender.images, num_uaps, eps, "linf", steps=steps, batch_size=batch_size, seed=defender.seed
    )


@torch.inference_mode()
def fooled_queries(defender: Defender, x: torch.Tensor, uaps: torch.Tensor, n: int) -> torch.Tensor:
    """Up to ``n`` images ``x + v`` ``[n', C, H, W]`` (``x [m, C, H, W]`` float, ``uaps [U, C, H, W]``)
    on which the victim's class differs from its class on ``x``, in the round order above."""
    clean = defender.victim_probs(x).argmax(1)
    idx, out, have = torch.arange(len(x)), [], 0
    for r in range(len(uaps)):
        p = (x + uaps[(idx + r) % len(uaps)].float()).clamp(0, 1)
        keep = p[defender.victim_probs(p).argmax(1) != clean]
        out.append(keep)
        have += len(keep)
        if have >= n:
            break
    return torch.cat(out)[:n] if out else x[:0]


class UAPFollows(Method):
    name = "fpenc_follows"
    in_default = False  # measured on validation and dropped (docs/results.md): run it by name
    eps = 0.1
    num_uaps = 10
    ensemble = False

    def build_queries(self, defender: Defender, n: int) -> torch.Tensor:
        uaps = follows_uaps(defender, self.eps, self.num_uaps, self.ensemble)
        return fooled_queries(defender, key_image_order(defender), uaps, n)


class EnsembleFollows(UAPFollows):
    name = "fpenc_follows_ensemble"
    ensemble = True


class RankedFollows(UAPFollows):
    """The key's clean images and their followed UAP queries, ranked on the owner's training models."""

    name = "fpenc_ranked_follows"
    ensemble = True

    def build_queries(self, defender: Defender, n: int) -> torch.Tensor:
        x = key_image_order(defender)
        perturbed = fooled_queries(
            defender, x, follows_uaps(defender, self.eps, self.num_uaps, self.ensemble), 4 * len(x)
        )
        candidates = torch.cat([x, perturbed])
        order = torch.argsort(-agreement_gain(defender, candidates), stable=True)
        return candidates[order][:n]
