"""Verify one suspect against an exported bundle (paper §4.3 / §5.2), querying only what is needed.

F (UAP, view) pairs are drawn at random among the bundle's U*V; the suspect answers the clean
images of the chosen views (``V_chosen * N``) and the chosen perturbed images (``F * N``), and its
fingerprints ``[F, 2 N K]`` (laid out as :func:`fpenc.fingerprint.fingerprints.fingerprints`) go
through the bundle's encoder. The cosine similarities of the suspect's and the victim's
representations per pair are tested against the bundle's reference similarities (the one-sided
t-test named by the bundle's ``reference_test``, :func:`fpenc.scoring.reference_pvalue`); "pirated" is the
verdict when p < alpha. The suspect's answers are reduced to what the bundle's encoder was
trained on (its ``api``: a label-only encoder takes the arg-max of a suspect's probabilities).

Plain torch + scipy: no Lightning.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from fpenc.errors import FpencError
from fpenc.fingerprint.fingerprints import pair_fingerprints
from fpenc.api import apply_api, parse_api, reveals
from fpenc.scoring import pair_similarities, reference_pvalue, verdict

__all__ = ["choose_pairs", "pair_fingerprints", "verify_suspect"]


def choose_pairs(num_uaps: int, num_views: int, num_fingerprints: int, seed: int = 0) -> torch.Tensor:
    """``num_fingerprints`` distinct (UAP, view) pairs ``[F, 2]`` (int64: u, v), drawn with ``seed``."""
    total = num_uaps * num_views
    if not 2 <= num_fingerprints <= total:
        raise ValueError(f"num_fingerprints must be in [2, {total}] (U={num_uaps} UAPs x V={num_views} views), "
                         f"got {num_fingerprints}")
    flat = np.random.default_rng(seed).choice(total, num_fingerprints, replace=False)
    return torch.as_tensor(np.stack([flat // num_views, flat % num_views], 1), dtype=torch.int64)


def verify_suspect(bundle, suspect, num_fingerprints: int = 20, alpha: float = 0.05, seed: int = 0,
                   batch_size: int = 2000) -> dict:
    """Fingerprint ``suspect`` (a :class:`fpenc.suspects.Suspect`) on ``num_fingerprints`` random
    (UAP, view) pairs of ``bundle`` (a :class:`fpenc.bundle.Bundle`) and test it.

    The suspect's ``num_classes`` is set to the bundle's if unset; another value is an error.

    Returns a dict: ``similarity`` (mean pair cosine similarity), ``p_value``, ``verdict``
    ("pirated" / "not shown"), ``queries`` (images the suspect answered here), ``num_fingerprints``,
    ``alpha``, ``seed``, ``pairs`` ([[u, v], ...]), ``similarities`` (per pair),
    ``reference_mean``, ``victim``, ``bundle_sha256``, ``seconds``.

    Raises:
        ValueError: ``num_fingerprints`` outside ``[2, U*V]`` or ``alpha`` outside (0, 1).
        FpencError: the suspect answers another number of classes, NaN/inf, or fails on the
            bundle's images.
    """
    t0 = time.perf_counter()
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    pairs = choose_pairs(bundle.num_uaps, bundle.num_views, num_fingerprints, seed)
    k, meta = bundle.num_classes, bundle.meta
    if suspect.num_classes is None:
        suspect.num_classes = k
    elif suspect.num_classes != k:
        raise FpencError(f"the suspect was set up for {suspect.num_classes} classes but the bundle's victim has {k}")
    wanted = parse_api(meta.get("api", "probs"))
    if not reveals(suspect.api, wanted):
        raise FpencError(f"this bundle's encoder was trained on '{wanted}' fingerprints, but the suspect answers "
                         f"only '{suspect.api}': verify it with a bundle exported from a run with "
                         f"data.api: {suspect.api}, or query the suspect with --api {wanted}")
    before = suspect.queries
    fps = pair_fingerprints(suspect, bundle.uaps, bundle.view_images, pairs, batch_size,
                            dataset=str(meta.get("dataset", "unknown")))
    fps = apply_api(fps.reshape(-1, k), wanted).reshape(fps.shape)  # the encoder's view of the answers
    enc = bundle.encoder()
    with torch.inference_mode():  # one encoder pass for both sides (eval mode: rows are independent)
        h = enc.encode(torch.cat([fps, bundle.victim_fingerprints[pairs[:, 0], pairs[:, 1]].float()]))
        sims = pair_similarities(h[: len(pairs)], h[len(pairs) :])
    ref = bundle.reference_similarities.numpy()
    p = reference_pvalue(sims.numpy(), ref, meta.get("reference_test", "population" if ref.ndim == 2 else "pooled"))
    return {
        "similarity": float(sims.mean()),
        "p_value": float(p),
        "verdict": verdict(p, alpha),
        "queries": int(suspect.queries - before),
        "num_fingerprints": int(num_fingerprints),
        "alpha": float(alpha),
        "seed": int(seed),
        "pairs": pairs.tolist(),
        "similarities": [round(float(s), 6) for s in sims],
        "reference_mean": float(bundle.reference_similarities.double().mean()),
        "reference_model_means": [round(float(m), 6) for m in np.atleast_2d(ref).mean(1)],
        "victim": meta.get("victim_id"),
        "bundle_sha256": bundle.sha256,
        "seconds": round(time.perf_counter() - t0, 4),
    }
