"""Tiny ImageNet read from its JPEG folders (``tiny-imagenet-200``): uint8 ``[N, 3, 64, 64]``.

The official val split serves as the test set. Where the folder is looked for is
:func:`fpenc.data.datasets.locate_dataset`'s business; this module knows the layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fpenc.data.arrays import ImageArrays
from fpenc.errors import DatasetNotFoundError, FpencError

TINY_DIR = "tiny-imagenet-200"
TINY_SIZE = 64
TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
PROGRESS_MIN_FILES = 1000


def has_tiny_imagenet(folder: Path) -> bool:
    """Whether ``folder`` looks like an unzipped ``tiny-imagenet-200`` (wnids.txt and train/)."""
    return (folder / "wnids.txt").is_file() and (folder / "train").is_dir()


def _tiny_classes(folder: Path, wnids: list[str]) -> list[str]:
    """Class names from words.txt (first synonym), falling back to the wnid itself."""
    words: dict[str, str] = {}
    path = folder / "words.txt"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid.strip()] = text.split(",")[0].strip()
    return [words.get(w) or w for w in wnids]


def _tiny_train_files(folder: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for label, wnid in enumerate(wnids):
        images = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        files += images
        labels += [label] * len(images)
    return files, labels


def _tiny_val_files(folder: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    """Val images and labels from ``val/val_annotations.txt`` (filename TAB wnid TAB bbox...)."""
    annotations = folder / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DatasetNotFoundError(
            f"{annotations} is missing: unzip tiny-imagenet-200.zip (from {TINY_URL}) again under data.root"
        )
    index = {w: i for i, w in enumerate(wnids)}
    files, labels = [], []
    for line in annotations.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip():
            continue
        if fields[1] not in index:
            raise FpencError(f"{annotations}: wnid {fields[1]!r} is not in wnids.txt; unzip the dataset again")
        files.append(folder / "val" / "images" / fields[0])
        labels.append(index[fields[1]])
    return files, labels


def decode_images(files: list[Path], size: int = TINY_SIZE, desc: str = "decoding") -> torch.Tensor:
    """Decode image files to RGB uint8 ``[N, 3, size, size]`` (resizing any that differ)."""
    from PIL import Image
    from tqdm import tqdm

    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    iterator = tqdm(files, desc=desc, unit="img") if len(files) > PROGRESS_MIN_FILES else files
    for i, path in enumerate(iterator):
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if img.size != (size, size):
                    img = img.resize((size, size), Image.BILINEAR)
                out[i] = np.asarray(img)
        except OSError as err:
            raise FpencError(f"cannot decode image {path} ({err}): replace it or unzip the dataset again") from err
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def read_tiny_imagenet(folder: Path) -> ImageArrays:
    """Read Tiny ImageNet: train and official val (as test), uint8 ``[N,3,64,64]``.

    Labels index the wnids of ``wnids.txt`` sorted alphabetically.
    """
    wnids = sorted({w.strip() for w in (folder / "wnids.txt").read_text().split() if w.strip()})
    if not wnids:
        raise FpencError(f"{folder / 'wnids.txt'} lists no classes: unzip tiny-imagenet-200.zip again")
    train_files, train_labels = _tiny_train_files(folder, wnids)
    test_files, test_labels = _tiny_val_files(folder, wnids)
    if not train_files:
        raise DatasetNotFoundError(
            f"no training images under {folder / 'train'}: unzip tiny-imagenet-200.zip (from {TINY_URL}) again"
        )
    return ImageArrays(
        "tiny_imagenet",
        train_x=decode_images(train_files, desc="Tiny ImageNet train"),
        train_y=torch.tensor(train_labels, dtype=torch.int64),
        test_x=decode_images(test_files, desc="Tiny ImageNet val"),
        test_y=torch.tensor(test_labels, dtype=torch.int64),
        classes=_tiny_classes(folder, wnids),
        source=str(folder),
    )
