"""Fashion-MNIST read from its IDX files (gzipped or not): uint8 ``[N, 1, 28, 28]`` images.

Where the files are looked for (``data.root``, the Debian package folder) and downloading are
:func:`fpenc.data.datasets.locate_dataset`'s business; this module knows the format.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from fpenc.data.arrays import ImageArrays, check_pairs
from fpenc.errors import FpencError

FMNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FMNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049


def fmnist_file(folder: Path, stem: str) -> Path | None:
    """The IDX file ``stem`` in ``folder``, gzipped or not, or None."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def has_fmnist(folder: Path) -> bool:
    """Whether ``folder`` holds all four Fashion-MNIST IDX files."""
    return all(fmnist_file(folder, stem) is not None for stem in FMNIST_FILES.values())


def _read_bytes(path: Path) -> bytes:
    """Whole file contents, gunzipped if the file is gzip-compressed."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise FpencError(
            f"cannot read {path}: {err}; the file is truncated or corrupt, replace it with a fresh copy"
        ) from err


def read_idx(path: Path | str, expected_magic: int) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) into a uint8 array of its big-endian dims.

    Images (magic 2051) give ``[N, H, W]``; labels (magic 2049) give ``[N]``.

    Raises:
        FpencError: the file is truncated, garbled or of the wrong kind (names the file).
    """
    path = Path(path)
    data = _read_bytes(path)

    def bad(why: str) -> FpencError:
        return FpencError(f"{path} is not a valid IDX file ({why}): replace it with a fresh copy")

    if len(data) < 4:
        raise bad("too short for a header")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise bad(f"magic number {magic}, expected {expected_magic}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise bad("header truncated")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(dims))
    if len(data) - header != size:
        raise bad(f"{len(data) - header} data bytes for dims {dims}, expected {size}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_fmnist(folder: Path) -> ImageArrays:
    """Read the 4 IDX files in ``folder``: images uint8 ``[N,1,28,28]``, labels int64 ``[N]``."""
    parts = {}
    for key, stem in FMNIST_FILES.items():
        magic = IDX_IMAGES_MAGIC if key.endswith("_x") else IDX_LABELS_MAGIC
        array = read_idx(fmnist_file(folder, stem), magic)
        tensor = torch.from_numpy(array.copy())
        parts[key] = tensor.unsqueeze(1) if key.endswith("_x") else tensor.long()
    check_pairs(parts, folder)
    return ImageArrays("fashion_mnist", classes=list(FMNIST_CLASSES), source=str(folder), **parts)
