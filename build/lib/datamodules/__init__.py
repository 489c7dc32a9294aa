"""LightningDataModules of the pipeline: ``ImageDataModule`` (images of one split) and
``FingerprintDataModule`` (the zoo's fingerprints, for the encoder).

The data they serve comes from :mod:`fpenc.data` (dataset readers, splits, image loaders), which
is re-exported here for convenience. ``datamodules`` imports ``fpenc``; within ``fpenc`` only the
command-line entry :mod:`fpenc.lightning_cli` imports ``datamodules``. ``ImageDataModule`` /
``IndexedImageDataset`` are imported lazily, so that using datasets or splits alone does not pay
for importing pytorch_lightning.
"""

from fpenc.data.datasets import (
    FMNIST_DEBIAN_ROOT,
    KNOWN_DATASETS,
    ImageArrays,
    load_dataset,
    locate_dataset,
    read_idx,
)
from fpenc.data.splits import SPLIT_NAMES, load_splits, make_splits, save_splits

_LAZY = {"ImageDataModule", "IndexedImageDataset"}

__all__ = [
    "FMNIST_DEBIAN_ROOT",
    "KNOWN_DATASETS",
    "SPLIT_NAMES",
    "ImageArrays",
    "ImageDataModule",
    "IndexedImageDataset",
    "load_dataset",
    "load_splits",
    "locate_dataset",
    "make_splits",
    "read_idx",
    "save_splits",
]


def __getattr__(name: str):
    if name in _LAZY:
        from datamodules import image

        return getattr(image, name)
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
