"""Ownership tests to compare at an equal query budget, each a small :class:`~fpenc.baselines.base.Method`
sharing the :class:`~fpenc.baselines.base.Defender` (what the model owner holds) and the scoring.

=============  ============================================================================
name           what it queries and how it scores a suspect (higher: closer to the victim)
=============  ============================================================================
``fpenc``      the fingerprint key's images with and without the victim's UAPs, as
               ``(x, x + v)`` pairs; label agreement with the victim (fpenc's verdict statistic)
``no_uap``     the same key images without UAPs (the v = 0 row); label agreement
``fpenc_ranked`` the key's clean and UAP queries ranked by the evidence they carried on the
               encoder's training models; label agreement (``fpenc_ranked_clean``: clean only;
               ``fpenc_ranked_pool``: every held-out image a candidate; ``fpenc_ranked_boundary``:
               IPGuard's boundary points too)
``paper``      Peng et al.'s key (k-means datapoints of the victim's training data) with the
               same UAP pairs, cosine similarity of probabilities (no encoder)
``akh_labels`` QuRD's Anna-Karenina heuristic (AAAI'25): images the victim misclassifies;
               label agreement (1 - normalised Hamming distance)
``akh_probs``  the same images; mean cosine similarity of the probability vectors
``ipguard``    IPGuard (Cao et al., AsiaCCS'21): points crafted near the victim's decision
               boundary; label agreement
``random``     uniform-noise images; label agreement
``cka``        white box (the suspect's weights in hand): linear CKA of penultimate features
               on the key's images (Kornblith et al. 2019; the representation-similarity
               fingerprint of the related work)
=============  ============================================================================
"""

from fpenc.baselines.akh import AKHLabels, AKHProbs
from fpenc.baselines.base import Defender, Method
from fpenc.baselines.cka import CKA, linear_cka
from fpenc.baselines.ipguard import IPGuard, boundary_points
from fpenc.baselines.key_methods import FpencKey, NoUAP, PaperKey, RankedBoundary, RankedCleanKey, RankedKey, RankedPool
from fpenc.baselines.random_inputs import RandomInputs

METHODS: dict[str, type[Method]] = {
    m.name: m
    for m in (
        FpencKey,
        PaperKey,
        NoUAP,
        RankedKey,
        RankedCleanKey,
        RankedPool,
        RankedBoundary,
        AKHLabels,
        AKHProbs,
        IPGuard,
        RandomInputs,
        CKA,
    )
}

__all__ = [
    "CKA",
    "METHODS",
    "AKHLabels",
    "AKHProbs",
    "Defender",
    "FpencKey",
    "IPGuard",
    "Method",
    "NoUAP",
    "PaperKey",
    "RandomInputs",
    "RankedBoundary",
    "RankedCleanKey",
    "RankedKey",
    "RankedPool",
    "boundary_points",
    "linear_cka",
]
