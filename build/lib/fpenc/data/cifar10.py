"""CIFAR-10 read from ``cifar-10-batches-py`` (the dataset's own batch pickles): uint8 ``[N, 3, 32, 32]``.

Where the batches are looked for and downloading are :func:`fpenc.data.datasets.locate_dataset`'s
business; this module knows the format.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from fpenc.data.arrays import ImageArrays, check_pairs
from fpenc.errors import FpencError

CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"


def has_cifar(folder: Path) -> bool:
    """Whether ``folder`` holds the five training batches and the test batch."""
    names = CIFAR_TRAIN_BATCHES + (CIFAR_TEST_BATCH,)
    return all((folder / n).is_file() for n in names)


def _unpickle(path: Path) -> dict:
    """Load one CIFAR batch pickle (the dataset's own format) as a dict with bytes keys."""
    try:
        with path.open("rb") as fh:
            return pickle.load(fh, encoding="bytes")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as err:
        raise FpencError(
            f"cannot read CIFAR batch {path} ({err}): the file is corrupt, extract cifar-10-python.tar.gz again"
        ) from err


def _read_cifar_batches(folder: Path, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate batches: images uint8 ``[N,3,32,32]``, labels int64 ``[N]``."""
    xs, ys = [], []
    for name in names:
        batch = _unpickle(folder / name)
        try:
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            labels = np.asarray(batch.get(b"labels", batch.get(b"fine_labels")), dtype=np.int64)
        except (KeyError, ValueError, TypeError) as err:
            raise FpencError(
                f"CIFAR batch {folder / name} has an unexpected layout ({err}): extract cifar-10-python.tar.gz again"
            ) from err
        xs.append(data)
        ys.append(labels)
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def _cifar_classes(folder: Path) -> list[str]:
    meta = folder / "batches.meta"
    if not meta.is_file():
        return list(CIFAR10_CLASSES)
    names = _unpickle(meta).get(b"label_names")
    if not names:
        return list(CIFAR10_CLASSES)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def read_cifar10(folder: Path) -> ImageArrays:
    """Read ``cifar-10-batches-py``: images uint8 ``[N,3,32,32]`` (NCHW), labels int64 ``[N]``."""
    train_x, train_y = _read_cifar_batches(folder, CIFAR_TRAIN_BATCHES)
    test_x, test_y = _read_cifar_batches(folder, (CIFAR_TEST_BATCH,))
    parts = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    check_pairs(parts, folder)
    return ImageArrays("cifar10", classes=_cifar_classes(folder), source=str(folder), **parts)
