"""LightningDataModule over an in-memory image dataset, optionally restricted to one split.

Batches are ``(x, y, idx)``: ``x`` float32 ``[B, C, H, W]`` in ``[0, 1]`` (uint8 / 255, not
normalized), ``y`` int64 ``[B]`` true labels, ``idx`` int64 ``[B]`` indices into the full train
(or test) set. A whole batch is gathered with one tensor index op (``__getitems__``), so an
epoch over tens of thousands of images costs little Python overhead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.datasets import ImageArrays, check_dataset_name, load_dataset, locate_dataset
from fpenc.errors import ConfigError

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class IndexedImageDataset(Dataset):
    """Items ``(x, y, idx)`` drawn from uint8 images ``[N, C, H, W]`` at the given indices.

    ``x`` is converted to float32 in ``[0, 1]`` when fetched; ``__getitems__`` returns a whole
    batch ``([B,C,H,W], [B], [B])`` from one index op. Gathering and conversion run in numpy
    (single-threaded): torch's intra-op threads make these small ops slower, not faster, on a
    busy 2-core machine.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor):
        self.images = images
        self.labels = labels
        self.indices = indices.to(torch.int64)
        self._images_np = images.numpy()  # shares memory with ``images``
        self._labels_np = labels.numpy()
        self._indices_np = self.indices.numpy()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Batch:
        x, y, idx = self.__getitems__([i])
        return x[0], y[0], idx[0]

    def __getitems__(self, positions: Sequence[int]) -> Batch:
        idx = self._indices_np[np.asarray(positions, dtype=np.int64)]
        x = self._images_np[idx].astype(np.float32)
        np.divide(x, np.float32(255.0), out=x)
        return torch.from_numpy(x), torch.from_numpy(self._labels_np[idx]), torch.from_numpy(idx)


def collate_batch(batch):
    """Collate for :class:`IndexedImageDataset`: pass whole batches through, stack item lists."""
    if isinstance(batch, tuple) and len(batch) == 3 and isinstance(batch[0], torch.Tensor):
        return batch
    return torch.utils.data.default_collate(batch)


class ImageDataModule(pl.LightningDataModule):
    """Train/val/test loaders over one dataset, optionally restricted to one split of its train set.

    Args:
        dataset: one of ``fashion_mnist``, ``cifar10``, ``tiny_imagenet``.
        root: folder to look for the dataset in (see :func:`datamodules.datasets.load_dataset`).
        download: fetch a missing dataset with torchvision.
        split: ``None`` = whole train set, else a key of ``splits``.
        splits: name -> int64 indices into the train set (see :func:`datamodules.splits.make_splits`).
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
            indices = self._split_indices(len(self.arrays.train_y))
            self.train_indices, self.val_indices = _hold_out(indices, self.val_fraction, self.seed)

    def _split_indices(self, n_train: int) -> torch.Tensor:
        """int64 ``[k]`` train-set indices of the selected split (all of ``0..n_train-1`` if none)."""
        if self.split is None:
            return torch.arange(n_train, dtype=torch.int64)
        idx = torch.as_tensor(np.asarray(self.splits[self.split]), dtype=torch.int64)
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n_train):
            raise ConfigError(
                f"split {self.split!r} has indices outside [0, {n_train}) of {self.dataset}'s train set: "
                "recompute the splits for this dataset"
            )
        return idx

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
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            IndexedImageDataset(images, labels, indices),
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=collate_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

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


def _hold_out(indices: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``indices`` [k] into sorted (train, val) with ``round(fraction * k)`` random val indices."""
    n_val = int(round(fraction * len(indices)))
    if n_val == 0:
        return indices, indices[:0]
    perm = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed))
    val, train = indices[perm[:n_val]], indices[perm[n_val:]]
    return train.sort().values, val.sort().values
