"""Export the trained encoder of a run as a self-contained verification bundle (``fpenc.bundle``):
the encoder, the run's UAPs and key, the victim's fingerprints, the reference models' evidence,
the labelled images of the sanity gates and the zoo embeddings of the out-of-distribution gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fpenc.verdict import DEFAULT_ALPHA, DEFAULT_STATISTIC


def bundle_path(export_dir: str | Path, name: str) -> Path:
    return Path(export_dir) / f"{name}.fpenc.safetensors"


def sanity_set(arrays, key: dict, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` labelled test images (uint8 ``[S, C, H, W]``, int64 ``[S]``) drawn with ``seed``,
    apart from the key's images when the key comes from the test set."""
    exclude = set()
    if key.get("pool") == "test":
        exclude = set(key["views"].reshape(-1).tolist()) | set(key["datapoints"].tolist())
    candidates = np.array([i for i in range(len(arrays.test_y)) if i not in exclude], dtype=np.int64)
    if len(candidates) < size:
        raise ValueError(
            f"only {len(candidates)} test images outside the key, fewer than the {size} labelled images asked for"
        )
    idx = torch.as_tensor(np.sort(np.random.default_rng(seed).choice(candidates, size, replace=False)))
    return arrays.test_x[idx].clone(), arrays.test_y[idx].clone().long()


def gate_thresholds(
    victim,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    accuracy_share: float,
    entropy_share: float,
    ood_threshold: float | None,
):
    """:class:`fpenc.verdict.Gates` from the victim's accuracy and label entropy on the labelled images."""
    from fpenc.verdict import Gates, label_entropy
    from fpenc.zoo.evaluate import predict_probs

    pred = predict_probs(victim, images).argmax(1)
    acc = float((pred == labels).double().mean())
    return Gates.from_victim(
        acc, label_entropy(pred.numpy(), num_classes), num_classes, accuracy_share, entropy_share, ood_threshold
    ), acc


def export_from_run(
    encoder,
    dm,
    representations: dict[int, torch.Tensor],
    export_dir: str | Path,
    *,
    alpha: float = DEFAULT_ALPHA,
    statistic: str = DEFAULT_STATISTIC,
    accuracy_share: float = 0.5,
    entropy_share: float = 0.5,
    ood_margin: float = 1.5,
    sanity_images: int = 200,
) -> Path:
    """Write ``<export_dir>/<run name>.fpenc.safetensors`` from a set-up FingerprintDataModule.

    ``representations``: ``{model index: h [P, D]}`` of the encoder for the victim and every model
    of the train, val and reference splits. The bundle's reference models are ``dm.reference_models()``;
    its zoo embeddings are the victim's and the training models'; the out-of-distribution limit is
    ``ood_margin`` times the largest distance of a validation or reference model to them.
    """
    from dataclasses import asdict

    from fpenc.bundle import export_bundle
    from fpenc.data.datasets import load_data
    from fpenc.fingerprint.key import load_key
    from fpenc.rundir import RunDir
    from fpenc.uap.bank import load_bank
    from fpenc.verdict import ood_distance, pair_agreement, pair_similarities

    cfg, run_dir = dm.cfg, RunDir(dm.run_dir)
    bank, key, victim = load_bank(run_dir.uaps), load_key(run_dir.key), run_dir.victim_entry()
    victim_fps = dm.victim.fingerprints
    u, v = len(bank["uaps"]), key["views"].shape[0]
    victim_h = representations[dm.victim.index]
    reference = dm.reference_models()
    ref_sims = torch.stack([pair_similarities(representations[m.index], victim_h) for m in reference])
    ref_agree = torch.stack([pair_agreement(m.fingerprints, victim_fps, dm.num_classes) for m in reference])
    zoo = [dm.victim, *dm.split("train")]
    zoo_h = torch.stack([representations[m.index] for m in zoo])
    calib = {m.id: ood_distance(representations[m.index], zoo_h)[0] for m in [*dm.split("val"), *reference]}
    ood_threshold = ood_margin * max(calib.values()) if calib and ood_margin > 0 else None
    arrays = load_data(cfg.data)
    s_images, s_labels = sanity_set(arrays, key, sanity_images, cfg.seed)
    gates, victim_acc = gate_thresholds(
        run_dir.load_model(victim), s_images, s_labels, dm.num_classes, accuracy_share, entropy_share, ood_threshold
    )
    meta = {
        "name": cfg.name,
        "victim_id": victim["id"],
        "victim_sha256": victim["sha256"],
        "victim_architecture": victim["architecture"],
        "dataset": cfg.data.dataset,
        "num_classes": dm.num_classes,
        "input_shape": list(bank["uaps"].shape[1:]),
        "api": dm.api,
        "uap": asdict(cfg.uap),
        "key": asdict(cfg.key),
        "alpha": alpha,
        "statistic": statistic,
        "reference_models": [m.id for m in reference],
        "zoo_embedding_models": [m.id for m in zoo],
        "gates": {
            "min_accuracy": gates.min_accuracy,
            "min_label_entropy": gates.min_label_entropy,
            "ood_threshold": gates.ood_threshold,
            "accuracy_share": accuracy_share,
            "entropy_share": entropy_share,
            "ood_margin": ood_margin,
            "ood_calibration": {k: round(d, 6) for k, d in calib.items()},
            "victim_accuracy": round(victim_acc, 6),
        },
    }
    path = bundle_path(export_dir, cfg.name)
    was_training = encoder.training
    encoder.eval()
    try:
        export_bundle(
            path,
            encoder=encoder,
            uaps=bank["uaps"].float(),
            view_images=key["view_images"],
            datapoints=key["datapoints"],
            views=key["views"],
            victim_fingerprints=victim_fps.reshape(u, v, -1).float().cpu(),
            reference_similarities=ref_sims.float(),
            reference_agreement=ref_agree.float(),
            sanity_images=s_images,
            sanity_labels=s_labels,
            zoo_embeddings=zoo_h.float(),
            meta=meta,
        )
    finally:
        encoder.train(was_training)
    return path
