"""LightningDataModule over an in-memory image dataset, optionally restricted to one split.

A thin wrapper: the dataset, the loaders and the split handling are :mod:`fpenc.data.images`
(the zoo and the UAP bank use those loaders directly). Batches are ``(x, y, idx)``: ``x`` float32
``[B, C, H, W]`` in ``[0, 1]``, ``y`` int64 ``[B]`` true labels, ``idx`` int64 ``[B]`` indices
into the full train (or test) set.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from fpenc.data.datasets import ImageArrays, check_dataset_name, load_dataset, locate_dataset
from fpenc.data.images import IndexedImageDataset, collate_batch, hold_out, image_loader, split_indices
from fpenc.errors import ConfigError

__all__ = ["ImageDataModule", "IndexedImageDataset", "collate_batch"]


class ImageDataModule(pl.LightningDataModule):
    """Train/val/test loaders over one dataset, optionally restricted to one split of its train set.

    Args:
        dataset: one of ``fashion_mnist``, ``cifar10``, ``tiny_imagenet``.
        root: folder to look for the dataset in (see :func:`fpenc.data.datasets.load_dataset`).
        download: fetch a missing dataset with torchvision.
        split: ``None`` = whole train set, else a key of ``splits``.
        splits: name -> int64 indices into the train set (see :func:`fpenc.data.splits.make_splits`).
        batch_size: images per batch.
        seed: seeds the shuffling of the train loader and the val hold-out.
        val_fraction: fraction in ``[0, 1)`` of the split held out for ``val_dataloader``.
        num_workers: DataLoader worker processes.
        arrays: pre-loaded dataset (skips loading; must match ``dataset``).
    """

    def __init__(
        self,
        dataset: str = "fashion_mnist",
        root: str | None = None,
        download: bool = False,
        split: str | None = None,
        splits: dict[str, np.ndarray] | None = None,
        batch_size: int = 128,
        seed: int = 0,
        val_fraction: float = 0.0,
        num_workers: int = 0,
        arrays: ImageArrays | None = None,
    ):
        super().__init__()
        check_dataset_name(dataset)
        _check_args(dataset, split, splits, batch_size, val_fraction, num_workers, arrays)
        self.dataset, self.root, self.download = dataset, root, download
        self.split, self.splits = split, splits
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.val_fraction, self.num_workers = float(val_fraction), int(num_workers)
        self.arrays = arrays
        self.train_indices: torch.Tensor | None = None
        self.val_indices: torch.Tensor | None = None

    # ------------------------------------------------------------------ lifecycle

    def prepare_data(self) -> None:
        """Check the dataset can be found (downloading it if allowed); raise DatasetNotFoundError early."""
        if self.arrays is None:
            locate_dataset(self.dataset, self.root, self.download)

    def setup(self, stage: str | None = None) -> None:
        """Load the arrays (once) and pick this split's train / val indices."""
        if self.arrays is None:
            self.arrays = load_dataset(self.dataset, self.root, self.download)
        if self.train_indices is None:
            indices = split_indices(self.arrays, self.split, self.splits)
            self.train_indices, self.val_indices = hold_out(indices, self.val_fraction, self.seed)

    # ------------------------------------------------------------------ properties

    def _require_arrays(self) -> ImageArrays:
        if self.arrays is None:
            raise RuntimeError("ImageDataModule: call setup() before using the data")
        return self.arrays

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image (after setup)."""
        return self._require_arrays().input_shape

    @property
    def num_classes(self) -> int:
        """Number of classes (after setup)."""
        return self._require_arrays().num_classes

    @property
    def classes(self) -> list[str]:
        """Class names indexed by label (after setup)."""
        return self._require_arrays().classes

    # ------------------------------------------------------------------ loaders

    def _loader(self, images, labels, indices, shuffle: bool) -> DataLoader:
        return image_loader(images, labels, indices, self.batch_size, shuffle, self.seed, self.num_workers)

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seeded) batches ``(x [B,C,H,W] float32, y [B] int64, idx [B] int64)`` of the split."""
        arrays = self._require_arrays()
        return self._loader(arrays.train_x, arrays.train_y, self.train_indices, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """Batches over the held-out ``val_fraction`` of the split (idx into the train set); [] if none."""
        arrays = self._require_arrays()
        if self.val_indices is None or len(self.val_indices) == 0:
            return []
        return self._loader(arrays.train_x, arrays.train_y, self.val_indices, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Batches over the whole test set in order (idx into the test set)."""
        arrays = self._require_arrays()
        all_test = torch.arange(len(arrays.test_y), dtype=torch.int64)
        return self._loader(arrays.test_x, arrays.test_y, all_test, shuffle=False)


def _check_args(dataset, split, splits, batch_size, val_fraction, num_workers, arrays) -> None:
    """Raise ConfigError on an invalid ImageDataModule argument."""
    if split is not None:
        if not splits:
            raise ConfigError(f"split {split!r} was requested but no splits were given: pass splits=make_splits(...)")
        if split not in splits:
            raise ConfigError(f"unknown split {split!r}: use one of {', '.join(map(str, splits))} or None")
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size={batch_size} must be at least 1")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ConfigError(f"val_fraction={val_fraction} is outside [0, 1): use e.g. 0.1, or 0 for no validation")
    if int(num_workers) < 0:
        raise ConfigError(f"num_workers={num_workers} must be 0 or more")
    if arrays is not None and arrays.name != dataset:
        raise ConfigError(f"pre-loaded arrays are {arrays.name!r} but dataset={dataset!r}: pass matching ones")
