"""Build and cache the fingerprint key of a victim: selected datapoints and their view sets.

``runs/<name>/key.pt``: ``datapoints [N]`` and ``views [V, N]`` (indices into the training
set), ``view_images [V, N, C, H, W]`` uint8 (so the key is self-contained), the config and the
victim's hash it was built for.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import torch

from fpenc.config import PipelineConfig
from fpenc.fingerprint.selection import kmeans_select, representations, sample_views
from fpenc.io import load_tensors, save_tensors

FORMAT = "fpenc-key/1"


def load_key(path) -> dict:
    return load_tensors(path, FORMAT, what="fingerprint key", remedy="delete it and rerun `fpenc fingerprint`")


def build_key(cfg: PipelineConfig, log=print) -> dict:
    """Select datapoints and views on the victim's training split (cached)."""
    from datamodules.datasets import load_dataset
    from datamodules.splits import load_splits
    from fpenc.zoo.builder import load_zoo_model, victim_entry

    run_dir = cfg.run_dir
    path = run_dir / "key.pt"
    ve = victim_entry(run_dir)
    meta = {"victim_sha256": ve["sha256"], "config": asdict(cfg.key), "seed": cfg.seed}
    if path.exists():
        key = load_key(path)
        if {k: key.get(k) for k in meta} == meta:
            log(f"[skip] fingerprint key in {path}")
            return key
    t0 = time.perf_counter()
    victim = load_zoo_model(ve, run_dir)
    arrays = load_dataset(cfg.data.dataset, root=cfg.data.root, download=cfg.data.download)
    splits, _ = load_splits(run_dir / "splits.npz")
    train_idx = splits["victim"]
    images = arrays.train_x[torch.as_tensor(train_idx)]
    k = cfg.key
    sel_reps = representations(victim, images, k.selection_layer)
    chosen = kmeans_select(sel_reps, k.num_datapoints, seed=cfg.seed, niter=k.kmeans_iters)
    out_reps = sel_reps if k.view_layer == k.selection_layer else representations(victim, images, k.view_layer)
    views = sample_views(out_reps, chosen, k.num_views, k.neighbours, seed=cfg.seed)  # [V, N] into the split
    seconds = time.perf_counter() - t0
    key = {
        **meta,
        "datapoints": torch.as_tensor(train_idx[chosen]),
        "views": torch.as_tensor(train_idx[views]),
        "view_images": images[torch.as_tensor(views.reshape(-1))].reshape(*views.shape, *images.shape[1:]).clone(),
        "datapoint_labels": arrays.train_y[torch.as_tensor(train_idx[chosen])].clone(),
        "seconds": round(seconds, 3),
    }
    save_tensors(path, key, FORMAT)
    classes = len(np.unique(key["datapoint_labels"].numpy()))
    log(f"[done] key: {k.num_datapoints} datapoints over {classes} classes, {k.num_views} views, in {seconds:.2f}s")
    return load_key(path)
