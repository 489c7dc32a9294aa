"""fpenc's own key at a query budget: the key's view images ``[V, N]`` with and without the victim's
UAPs (Peng et al., CVPR 2022, eq. 6: fingerprints are a suspect's answers on ``x`` and ``x + v``),
scored by label agreement with the victim, the statistic of fpenc's verdict.

Query order (so that any budget is a prefix): the V x N key images in a seeded order, each as the
pair ``x_i, x_i + v_(i mod U)``; then further rounds ``x_i + v_((i + r) mod U)`` that reuse the
clean answers. All of it: ``V N (U + 1)`` queries. ``no_uap`` (the v = 0 row) queries the clean
images alone: at most ``V N``. ``paper`` is the paper's own setting without its encoder: datapoints
chosen by k-means on the victim's features over its training data (§4.2), the same pairs, scored
by the cosine similarity of the probability vectors (the raw-fingerprint row of App. C.1).

``fpenc_ranked`` (and ``fpenc_ranked_clean``, without UAPs) spends the budget on the key's queries
that carry the most evidence: every clean key image and its UAP-perturbed twin is a candidate,
ranked by how much more often the owner's training copies than its training independent models
agree with the victim on it (add-one-half smoothed shares, ``q - p``); label agreement on the
top ``b``. The ranking reads only the encoder's training models. ``fpenc_ranked_pool`` ranks every
held-out image (and its UAP twin) instead of the key's; ``fpenc_ranked_boundary`` adds IPGuard's
boundary points to the key's candidates.
"""

from __future__ import annotations

import torch

from fpenc.baselines.base import Defender, Method
from fpenc.baselines.ipguard import IPGuard


def key_image_order(defender: Defender, images: torch.Tensor | None = None) -> torch.Tensor:
    """The key's view images (or ``images``, uint8 ``[..., C, H, W]``) as float ``[n, C, H, W]`` in a seeded order."""
    images = defender.key_images if images is None else images
    if images is None:
        raise ValueError("this method needs fpenc's key (Defender.key_images)")
    flat = images.reshape(-1, *images.shape[-3:]).float() / 255.0
    g = torch.Generator().manual_seed(defender.seed)
    return flat[torch.randperm(len(flat), generator=g)]


def uap_pairs(x: torch.Tensor, uaps: torch.Tensor | None, n: int) -> torch.Tensor:
    """The first ``n`` queries of the pair order above for images ``x [m, C, H, W]`` and UAPs ``[U, C, H, W]``."""
    if uaps is None:
        raise ValueError("this method needs the victim's UAPs (Defender.uaps)")
    u = uaps.float()
    idx = torch.arange(len(x))
    first = torch.stack([x, (x + u[idx % len(u)]).clamp(0, 1)], 1).reshape(-1, *x.shape[1:])
    rounds = [first] + [(x + u[(idx + r) % len(u)]).clamp(0, 1) for r in range(1, len(u))]
    return torch.cat(rounds)[:n]


class FpencKey(Method):
    name = "fpenc"

    def build_queries(self, defender: Defender, n: int) -> torch.Tensor:
        return uap_pairs(key_image_order(defender), defender.uaps, n)


class PaperKey(Method):
    name = "paper"
    answers = "probs"

    def build_queries(self, defender: Defender, n: int) -> torch.Tensor:
        if defender.kmeans_images is None:
            raise ValueError("paper needs k-means datapoints (Defender.kmeans_images)")
        return uap_pairs(key_image_order(defender, defender.kmeans_images), defender.uaps, n)

    def similarity(self, suspect_probs: torch.Tensor, victim_probs: torch.Tensor) -> float:
        return float(torch.nn.functional.cosine_similarity(suspect_probs, victim_probs, dim=1).mean())


class NoUAP(Method):
    name = "no_uap"

    def build_queries(self, defender: Defender, n: int) -> torch.Tensor:
        return key_image_order(defender)[:n]


@torch.inference_mode()
def agreement_gain(defender: Defender, queries: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """``q - p`` per query ``[n]``: the add-one-half smoothed shares of the defender's training
    copies (``q``) and training independent models (``p``) that give the victim's label on each of
    ``queries [n, C, H, W]``."""
    if not defender.train_copies or not defender.train_independents:
        raise ValueError("this method needs the owner's training copies and independent models (Defender.train_*)")
    victim = defender.victim_probs(queries, batch_size).argmax(1)

    def share(nets) -> torch.Tensor:
        agree = torch.zeros(len(queries))
        for net in nets:
            net.eval()
            labels = torch.cat([net(queries[i : i + batch_size]).argmax(1) for i in range(0, len(queries), batch_size)])
            agree += (labels == victim).float()
        return (agree + 0.5) / (len(nets) + 1)

    return share(defender.train_copies) - share(defender.train_independents)


class RankedKey(Method):
    name = "fpenc_ranked"
    with_uaps = True
    pool = "key"  # the candidates: the key's view images; "images": every held-out image; "boundary": the
    # key's and IPGuard's boundary points of 4,000 held-out images

    def build_queries(self, defender: Defender, n: int) -> torch.Tensor:
        x = key_image_order(defender, defender.images if self.pool == "images" else None)
        if self.with_uaps:
            if defender.uaps is None:
                raise ValueError("this method needs the victim's UAPs (Defender.uaps)")
            u = defender.uaps.float()
            x = torch.cat([x, (x + u[torch.arange(len(x)) % len(u)]).clamp(0, 1)])
        if self.pool == "boundary":
            x = torch.cat([x, IPGuard().build_queries(defender, 4000)])
        order = torch.argsort(-agreement_gain(defender, x), stable=True)  # ties: the key's seeded order
        return x[order][:n]


class RankedCleanKey(RankedKey):
    name = "fpenc_ranked_clean"
    with_uaps = False


class RankedPool(RankedKey):
    name = "fpenc_ranked_pool"
    pool = "images"


class RankedBoundary(RankedKey):
    name = "fpenc_ranked_boundary"
    pool = "boundary"
