"""In-memory image batches and their loaders, restricted to one split of a dataset.

Batches are ``(x, y, idx)``: ``x`` float32 ``[B, C, H, W]`` in ``[0, 1]`` (uint8 / 255, not
normalized), ``y`` int64 ``[B]`` true labels, ``idx`` int64 ``[B]`` indices into the full train
(or test) set. A whole batch is gathered with one tensor index op (``__getitems__``), so an
epoch over tens of thousands of images costs little Python overhead.

The zoo, the UAP bank and the fine-tuned copies train on :func:`train_loader`;
``datamodules.ImageDataModule`` is a LightningDataModule over the same loaders.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fpenc.data.arrays import ImageArrays
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


def image_loader(
    images: torch.Tensor,
    labels: torch.Tensor,
    indices: torch.Tensor,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
) -> DataLoader:
    """Batches ``(x, y, idx)`` of ``images [N, C, H, W]`` at ``indices``; shuffled by a generator
    seeded with ``seed`` when ``shuffle`` (the same order for the same seed, whatever else ran)."""
    generator = torch.Generator().manual_seed(int(seed)) if shuffle else None
    return DataLoader(
        IndexedImageDataset(images, labels, indices),
        batch_size=int(batch_size),
        shuffle=shuffle,
        generator=generator,
        collate_fn=collate_batch,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


def split_indices(
    arrays: ImageArrays, split: str | None = None, splits: dict[str, np.ndarray] | None = None
) -> torch.Tensor:
    """int64 ``[k]`` train-set indices of ``splits[split]`` (all of the train set if ``split`` is None).

    Raises:
        ConfigError: an unknown split, or indices outside the train set (splits of another dataset).
    """
    n_train = len(arrays.train_y)
    if split is None:
        return torch.arange(n_train, dtype=torch.int64)
    if not splits:
        raise ConfigError(f"split {split!r} was requested but no splits were given: pass splits=make_splits(...)")
    if split not in splits:
        raise ConfigError(f"unknown split {split!r}: use one of {', '.join(map(str, splits))} or None")
    idx = torch.as_tensor(np.asarray(splits[split]), dtype=torch.int64)
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n_train):
        raise ConfigError(
            f"split {split!r} has indices outside [0, {n_train}) of {arrays.name}'s train set: "
            "recompute the splits for this dataset"
        )
    return idx


def train_loader(
    arrays: ImageArrays,
    splits: dict[str, np.ndarray] | None,
    split: str | None,
    batch_size: int,
    seed: int,
    num_workers: int = 0,
) -> DataLoader:
    """Shuffled (seeded) batches ``(x, y, idx)`` of the train set's ``split`` (the whole set if None):
    what the zoo's models, the UAPs and the fine-tuned copies train on."""
    indices = split_indices(arrays, split, splits)
    return image_loader(
        arrays.train_x, arrays.train_y, indices, batch_size, shuffle=True, seed=seed, num_workers=num_workers
    )


def hold_out(indices: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``indices`` [k] into sorted (train, val) with ``round(fraction * k)`` random val indices."""
    n_val = int(round(fraction * len(indices)))
    if n_val == 0:
        return indices, indices[:0]
    perm = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed))
    val, train = indices[perm[:n_val]], indices[perm[n_val:]]
    return train.sort().values, val.sort().values
