"""Export the trained encoder of a run as a self-contained verification bundle (``fpenc.bundle``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def bundle_path(export_dir: str | Path, name: str) -> Path:
    return Path(export_dir) / f"{name}.fpenc.safetensors"


def export_from_run(encoder, dm, reference: np.ndarray, report: dict, export_dir: str | Path) -> Path:
    """Write ``<export_dir>/<run name>.fpenc.safetensors`` from a set-up FingerprintDataModule:
    the encoder, the run's UAPs and key, the victim's fingerprints and ``reference`` similarities."""
    from dataclasses import asdict

    from fpenc.bundle import export_bundle
    from fpenc.fingerprint.key import load_key
    from fpenc.uap.bank import load_bank
    from fpenc.zoo.builder import victim_entry

    cfg, run_dir = dm.cfg, Path(dm.run_dir)
    bank, key, victim = load_bank(run_dir / "uaps.pt"), load_key(run_dir / "key.pt"), victim_entry(run_dir)
    fps = dm.victim.fingerprints
    u, v = len(bank["uaps"]), key["views"].shape[0]
    meta = {
        "name": cfg.name, "victim_id": victim["id"], "victim_sha256": victim["sha256"],
        "victim_architecture": victim["architecture"], "dataset": cfg.data.dataset,
        "num_classes": dm.num_classes, "input_shape": list(bank["uaps"].shape[1:]), "api": dm.api,
        "uap": asdict(cfg.uap), "key": asdict(cfg.key),
        "alpha": report["alpha"], "num_fingerprints": report["num_fingerprints"], "repeats": report["repeats"],
        "reference_models": report.get("reference_models", []), "reference_test": report["reference_test"],
        "test_auc": report["auc"], "test_tpr_at_1pct_fpr": report["tpr_at_1pct_fpr"],
    }
    path = bundle_path(export_dir, cfg.name)
    was_training = encoder.training
    encoder.eval()
    try:
        export_bundle(path, encoder=encoder, uaps=bank["uaps"].float(), view_images=key["view_images"],
                      datapoints=key["datapoints"], views=key["views"],
                      victim_fingerprints=fps.reshape(u, v, -1).float().cpu(),
                      reference_similarities=torch.as_tensor(reference, dtype=torch.float32), meta=meta)
    finally:
        encoder.train(was_training)
    return path
