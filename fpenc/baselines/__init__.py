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
``fpenc_follows`` the key's images plus a moderate (L-inf 0.1) victim UAP where it changes the
               victim's class; label agreement: does the suspect follow the victim's new class
               (``_ensemble``: UAPs of the victim and the owner's training copies together;
               ``fpenc_ranked_follows``: those and the clean key images, ranked as above)
``fpenc_encoder`` the bundle's fingerprint pairs (key views with and without a UAP); cosine
               similarity of the suspect's and the victim's encoder representations (needs
               ``fpenc bench --bundle``)
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
from fpenc.baselines.encoder_similarity import EncoderSimilarity
from fpenc.baselines.follows import EnsembleFollows, RankedFollows, UAPFollows
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
        EncoderSimilarity,
        UAPFollows,
        EnsembleFollows,
        RankedFollows,
        AKHLabels,
        AKHProbs,
        IPGuard,
        RandomInputs,
        CKA,
    )
}

__all__ = [
    "CKA",
    "EncoderSimilarity",
    "EnsembleFollows",
    "RankedFollows",
    "UAPFollows",
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
