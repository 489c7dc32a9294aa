"""Shared fixtures: tiny datasets written as real files, tiny pipeline configs."""

from __future__ import annotations

import gzip
import os
import struct
import textwrap
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("WANDB_MODE", "offline")
REPO = Path(__file__).resolve().parents[1]


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """IDX3 (magic 2051) uint8 images [N, H, W], gzipped if the name ends in .gz."""
    n, h, w = images.shape
    data = struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """IDX1 (magic 2049) uint8 labels [N]."""
    data = struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def make_fmnist_files(root: Path, n_train: int = 400, n_test: int = 100, seed: int = 0) -> Path:
    """A tiny, learnable Fashion-MNIST look-alike in the Debian/official gzipped IDX layout.

    Class c images are noise plus a bright horizontal band at rows 2c..2c+3, so small CNNs
    can learn it in an epoch.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 * c + 2 : 2 * c + 6, 4:24] = 230
        write_idx_images(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx_labels(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture
def tiny_fmnist(tmp_path) -> Path:
    return make_fmnist_files(tmp_path / "fmnist")


def tiny_zoo_config(tmp_path: Path, data_root: Path, extra: str = "") -> Path:
    """A 5-model zoo (victim + 2 piracy + 2 homologous) on tiny data, 1 epoch each."""
    text = textwrap.dedent(f"""
        pipeline:
          name: tiny
          runs_dir: {tmp_path / 'runs'}
          data: {{dataset: fashion_mnist, root: {data_root}}}
          zoo:
            victim: {{architecture: fmnist_a, optimizer: adam, batch_size: 64, epochs: 2}}
            grids:
              - {{role: piracy, architectures: [fmnist_b, fmnist_c], optimizers: [adam], seeds: [0], epochs: 1, batch_sizes: [64]}}
              - {{role: homologous, architectures: [fmnist_c], optimizers: [sgd, adam], seeds: [0], epochs: 1, batch_sizes: [64],
                 options: {{channels: [8, 8]}}}}
    """) + textwrap.dedent(extra)
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path
