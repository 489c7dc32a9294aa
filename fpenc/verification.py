"""Verify one suspect against an exported bundle (paper §4.3 / §5.2), with the gates and the
calibrated test of :mod:`fpenc.verdict`.

The suspect answers, in this order:

1. the bundle's ``S`` labelled images (sanity gates: accuracy, diversity of its answers);
2. the clean images of the chosen views (``V_chosen * N``) and the perturbed images of the chosen
   (UAP, view) pairs (``F * N``): its fingerprints ``[F, 2 N K]``.

By default every pair of the bundle is used (``F = U * V``), so the verdict does not depend on a
random draw; with fewer pairs (``num_fingerprints``) the pairs are drawn with ``seed`` and the
reference models are scored on exactly the same pairs. The fingerprints are reduced to the
bundle's ``api`` (a label-only encoder takes the arg-max of richer answers), encoded, and compared
with the victim's (similarity) and with its labels (agreement).

Plain torch + scipy: no Lightning.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from fpenc.answer_margin import answer_groups
from fpenc.api import apply_api, parse_api, reveals
from fpenc.errors import ConfigError, FpencError
from fpenc.fingerprint.fingerprints import pair_fingerprints, query_images
from fpenc.verdict import (
    DEFAULT_ALPHA,
    decide,
    label_entropy,
    ood_distance,
    pair_similarities,
    pvalue_floor,
    sanity_reasons,
    slot_agreement,
)

__all__ = [
    "choose_pairs",
    "pair_fingerprints",
    "verify_suspect",
    "bundle_pvalue_floor",
    "check_alpha",
    "queries_needed",
]


def choose_pairs(num_uaps: int, num_views: int, num_fingerprints: int | None = None, seed: int = 0) -> torch.Tensor:
    """(UAP, view) pairs ``[F, 2]`` (int64: u, v): every pair in row-major order when
    ``num_fingerprints`` is None or ``U * V``, else that many distinct pairs drawn with ``seed``."""
    total = num_uaps * num_views
    if num_fingerprints is None or num_fingerprints == total:
        flat = np.arange(total)
    elif not 2 <= num_fingerprints <= total:
        raise ValueError(
            f"num_fingerprints must be in [2, {total}] (U={num_uaps} UAPs x V={num_views} views), "
            f"got {num_fingerprints}"
        )
    else:
        flat = np.sort(np.random.default_rng(seed).choice(total, num_fingerprints, replace=False))
    return torch.as_tensor(np.stack([flat // num_views, flat % num_views], 1), dtype=torch.int64)


def bundle_statistic(bundle) -> str:
    """The verdict statistic recorded in the bundle (``agreement`` when none is)."""
    return str(bundle.meta.get("statistic", "agreement"))


def bundle_pvalue_floor(bundle, flat: np.ndarray | None = None) -> float:
    """The smallest p-value ``bundle`` can give (see :func:`fpenc.verdict.pvalue_floor`) on the pairs ``flat``."""
    sel = slice(None) if flat is None else flat
    ref_a = bundle.reference_agreement.double().numpy()[:, sel].mean(1)
    ref_s = bundle.reference_similarities.double().numpy()[:, sel].mean(1)
    return pvalue_floor(ref_a, ref_s, bundle_statistic(bundle))


def check_alpha(alpha: float, floor: float) -> None:
    """Refuse an ``alpha`` that no suspect could ever reach (at or below the bundle's p-value floor)."""
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    if alpha <= floor:
        raise ConfigError(
            f"alpha {alpha:g} is at or below this bundle's p-value floor {floor:.3g} (the p-value of "
            f"the victim itself against its reference models): no suspect could be shown derived; use "
            f"alpha > {floor:.3g}, or export a bundle with more reference models"
        )


def queries_needed(bundle, num_fingerprints: int | None = None, seed: int = 0) -> int:
    """Distinct images one verdict asks a remote suspect: the labelled images, the clean images of
    the chosen views and the perturbed images of the chosen pairs (at most ``S + V_chosen N + F N``;
    an image the key holds twice is asked once, its answer reused from the answer log)."""
    from fpenc.remote_client import AnswerLog  # the answer log's key: one image, one answer

    pairs = choose_pairs(bundle.num_uaps, bundle.num_views, num_fingerprints, seed)
    x = bundle.view_images.float() / 255.0
    uaps = bundle.uaps.float()
    images = [bundle.sanity_images.float() / 255.0, x[torch.unique(pairs[:, 1])].flatten(0, 1)]
    images += [(x[v] + uaps[u]).clamp(0, 1) for u, v in pairs.tolist()]
    return len({AnswerLog.key(im.numpy()) for im in torch.cat(images)})


def sanity_check(bundle, suspect, batch_size: int = 2000) -> dict:
    """The suspect's answers on the bundle's labelled images: accuracy, label entropy, top class."""
    x = bundle.sanity_images.float() / 255.0
    out = query_images(suspect, x, batch_size, bundle.input_shape, str(bundle.meta.get("dataset", "unknown")))
    pred = out.argmax(1).numpy()
    counts = np.bincount(pred, minlength=bundle.num_classes)
    return {
        "accuracy": float((pred == bundle.sanity_labels.numpy()).mean()),
        "label_entropy": label_entropy(pred, bundle.num_classes),
        "top_class": int(counts.argmax()),
        "top_class_share": float(counts.max() / len(pred)),
        "labelled_images": int(len(pred)),
    }


def verify_suspect(
    bundle,
    suspect,
    num_fingerprints: int | None = None,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    batch_size: int = 2000,
) -> dict:
    """Judge ``suspect`` (a :class:`fpenc.suspects.Suspect`) against ``bundle`` (a :class:`fpenc.bundle.Bundle`).

    The suspect's ``num_classes`` is set to the bundle's if unset; another value is an error.

    Returns a dict: ``verdict`` ("derived" / "not shown" / "not assessable"), ``reasons`` (list of
    sentences), ``p_value`` (``p_agreement``; the larger of it and ``p_similarity`` under the
    bundle's ``agreement+similarity`` statistic), ``p_value_floor``,
    ``similarity`` (mean pair cosine similarity), ``agreement`` (share of the key's labels that
    are the victim's), ``sanity`` (accuracy, label entropy, top class on the labelled images),
    ``ood_distance`` / ``ood_threshold``, the reference ranges, ``queries``, ``num_fingerprints``,
    ``alpha``, ``seed``, ``pairs``, ``similarities`` and ``agreements`` (per pair), ``victim``,
    ``bundle_sha256``, ``seconds``.

    Raises:
        ConfigError: ``num_fingerprints`` outside ``[2, U*V]``, or ``alpha`` outside (0, 1) or at
            or below the bundle's p-value floor.
        FpencError: the suspect answers another number of classes, NaN/inf, fails on the bundle's
            images, or reveals less than the bundle's encoder needs.
    """
    t0 = time.perf_counter()
    total = bundle.num_pairs
    if num_fingerprints is not None and not 2 <= num_fingerprints <= total:
        raise ConfigError(f"the number of fingerprints must be in [2, {total}] for this bundle, got {num_fingerprints}")
    pairs = choose_pairs(bundle.num_uaps, bundle.num_views, num_fingerprints, seed)
    flat = (pairs[:, 0] * bundle.num_views + pairs[:, 1]).numpy()
    floor = bundle_pvalue_floor(bundle, flat)
    check_alpha(alpha, floor)
    k, meta = bundle.num_classes, bundle.meta
    if suspect.num_classes is None:
        suspect.num_classes = k
    elif suspect.num_classes != k:
        raise FpencError(f"the suspect was set up for {suspect.num_classes} classes but the bundle's victim has {k}")
    wanted = parse_api(meta.get("api", "probs"))
    if not reveals(suspect.api, wanted):
        raise FpencError(
            f"this bundle's encoder was trained on '{wanted}' fingerprints, but the suspect answers "
            f"only '{suspect.api}': verify it with a bundle exported from a run with "
            f"data.api: {suspect.api}, or query the suspect with --api {wanted}"
        )
    gates = bundle.gates()
    before = suspect.queries
    sanity = sanity_check(bundle, suspect, batch_size)
    fps = pair_fingerprints(
        suspect, bundle.uaps, bundle.view_images, pairs, batch_size, dataset=str(meta.get("dataset", "unknown"))
    )
    fps = apply_api(fps.reshape(-1, k), wanted).reshape(fps.shape)  # the encoder's view of the answers
    victim_fps = bundle.victim_fingerprints[pairs[:, 0], pairs[:, 1]].float()
    slot_agree = slot_agreement(fps, victim_fps, k)  # [P, 2N]: for the agreement and its margin in answers
    agreements = slot_agree.double().mean(1)
    enc = bundle.encoder()
    with torch.inference_mode():  # one encoder pass for both sides (eval mode: rows are independent)
        h = enc.encode(torch.cat([fps, victim_fps]))
        h_suspect = h[: len(pairs)]
        sims = pair_similarities(h_suspect, h[len(pairs) :])
    dist, nearest = ood_distance(h_suspect, bundle.zoo_embeddings[:, torch.as_tensor(flat)].float())
    ood = None
    if gates.ood_threshold is not None and dist > gates.ood_threshold:
        ood = (
            f"its fingerprints are far from every model the encoder was trained on (distance {dist:.3f} > "
            f"{gates.ood_threshold:.3f}, the calibrated limit): this bundle's encoder cannot judge it"
        )
    ref_a = bundle.reference_agreement.double().numpy()[:, flat].mean(1)
    ref_s = bundle.reference_similarities.double().numpy()[:, flat].mean(1)
    decision = decide(
        agreement=float(agreements.mean()),
        similarity=float(sims.double().mean()),
        reference_agreement=ref_a,
        reference_similarity=ref_s,
        alpha=alpha,
        sanity=sanity_reasons(
            sanity["accuracy"], sanity["label_entropy"], sanity["top_class"], sanity["top_class_share"], gates
        ),
        ood=ood,
        statistic=bundle_statistic(bundle),
        answers=(answer_groups(bundle.view_images, pairs), slot_agree),
    )
    zoo_ids = meta.get("zoo_embedding_models") or []
    return {
        **decision.as_dict(),
        "p_value_floor": floor,
        "similarity": float(sims.double().mean()),
        "agreement": float(agreements.mean()),
        "sanity": sanity,
        "gates": {
            "min_accuracy": gates.min_accuracy,
            "min_label_entropy": gates.min_label_entropy,
            "ood_threshold": gates.ood_threshold,
        },
        "ood_distance": dist,
        "nearest_zoo_model": zoo_ids[nearest] if nearest < len(zoo_ids) else nearest,
        "queries": int(suspect.queries - before),
        "num_fingerprints": int(len(pairs)),
        "alpha": float(alpha),
        "seed": int(seed),
        "pairs": pairs.tolist(),
        "similarities": [round(float(s), 6) for s in sims],
        "agreements": [round(float(a), 6) for a in agreements],
        "reference_models": list(meta.get("reference_models", [])),
        "victim": meta.get("victim_id"),
        "bundle_sha256": bundle.sha256,
        "seconds": round(time.perf_counter() - t0, 4),
    }
