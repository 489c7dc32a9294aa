"""In-memory image datasets: Fashion-MNIST, CIFAR-10 and Tiny ImageNet as uint8 tensors.

Every dataset is loaded whole into memory as ``uint8 [N, C, H, W]`` images and ``int64 [N]``
labels (an :class:`ImageArrays`). The loaders read each dataset's own on-disk format directly
(IDX files, CIFAR batch pickles, Tiny ImageNet JPEG folders); torchvision is used only to
download a missing dataset when ``download=True``.
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fpenc.errors import DatasetNotFoundError, FpencError, ConfigError

KNOWN_DATASETS: tuple[str, ...] = ("fashion_mnist", "cifar10", "tiny_imagenet")
#: classes of each dataset, known before any data is read (the fingerprint width depends on it)
NUM_CLASSES: dict[str, int] = {"fashion_mnist": 10, "cifar10": 10, "tiny_imagenet": 200}
FMNIST_DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
DEFAULT_DOWNLOAD_ROOT = "data"  # relative to the working directory, as torchvision does

FMNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]
FMNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
TINY_DIR = "tiny-imagenet-200"
TINY_SIZE = 64
TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049
PROGRESS_MIN_FILES = 1000


@dataclass
class ImageArrays:
    """A whole image-classification dataset held in memory.

    Attributes:
        name: dataset name, one of :data:`KNOWN_DATASETS`.
        train_x: uint8 ``[N, C, H, W]`` training images.
        train_y: int64 ``[N]`` training labels in ``[0, num_classes)``.
        test_x: uint8 ``[M, C, H, W]`` test images.
        test_y: int64 ``[M]`` test labels.
        classes: ``num_classes`` human-readable class names, indexed by label.
        source: the folder the data was read from.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    source: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)


def check_dataset_name(name: str) -> str:
    """Return ``name`` if it is a known dataset, else raise :class:`ConfigError`."""
    if name not in KNOWN_DATASETS:
        raise ConfigError(
            f"unknown dataset {name!r}: set data.dataset to one of {', '.join(KNOWN_DATASETS)}"
        )
    return name


def locate_dataset(name: str, root: str | None = None, download: bool = False) -> Path:
    """Find the folder holding dataset ``name`` (downloading it if allowed) without loading it.

    Raises:
        ConfigError: ``name`` is not in :data:`KNOWN_DATASETS`.
        DatasetNotFoundError: the dataset is in none of the places looked at.
    """
    locators = {
        "fashion_mnist": _locate_fmnist,
        "cifar10": _locate_cifar10,
        "tiny_imagenet": _locate_tiny_imagenet,
    }
    return locators[check_dataset_name(name)](root, download)


def load_dataset(name: str, root: str | None = None, download: bool = False) -> ImageArrays:
    """Load dataset ``name`` whole into memory as uint8 ``[N, C, H, W]`` tensors.

    Args:
        name: one of :data:`KNOWN_DATASETS`.
        root: folder to look in first (``data.root``); ``None`` = only the default places.
        download: fetch the dataset with torchvision if it is not found (not for tiny_imagenet).

    Returns:
        The train and test images/labels; shapes ``[N,1,28,28]`` (fashion_mnist),
        ``[N,3,32,32]`` (cifar10) or ``[N,3,64,64]`` (tiny_imagenet).
    """
    folder = locate_dataset(name, root, download)
    readers = {
        "fashion_mnist": _read_fmnist,
        "cifar10": _read_cifar10,
        "tiny_imagenet": _read_tiny_imagenet,
    }
    return readers[name](folder)


# ----------------------------------------------------------------------------- Fashion-MNIST


def _fmnist_file(folder: Path, stem: str) -> Path | None:
    """The IDX file ``stem`` in ``folder``, gzipped or not, or None."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _has_fmnist(folder: Path) -> bool:
    return all(_fmnist_file(folder, stem) is not None for stem in FMNIST_FILES.values())


def _fmnist_candidates(root: str | None) -> list[Path]:
    """Folders to look in, in order: root, root/FashionMNIST/raw, the Debian package dir."""
    folders = []
    if root is not None:
        folders += [Path(root), Path(root) / "FashionMNIST" / "raw"]
    folders.append(Path(FMNIST_DEBIAN_ROOT))
    return folders


def _locate_fmnist(root: str | None, download: bool) -> Path:
    for folder in _fmnist_candidates(root):
        if _has_fmnist(folder):
            return folder
    if download:
        return _download_fmnist(root)
    where = f"{root!r} and " if root is not None else ""
    raise DatasetNotFoundError(
        f"Fashion-MNIST not found (looked in {where}{FMNIST_DEBIAN_ROOT}): set data.root to a "
        "folder with the IDX files, or `apt-get install dataset-fashion-mnist` (installs "
        f"{FMNIST_DEBIAN_ROOT}), or set data.download: true to fetch it with torchvision"
    )


def _download_fmnist(root: str | None) -> Path:
    import torchvision

    base = root or DEFAULT_DOWNLOAD_ROOT
    try:
        torchvision.datasets.FashionMNIST(base, train=True, download=True)
    except (OSError, RuntimeError) as err:
        raise DatasetNotFoundError(
            f"Fashion-MNIST download into {base!r} failed ({err}): check the network, or "
            f"`apt-get install dataset-fashion-mnist` (installs {FMNIST_DEBIAN_ROOT})"
        ) from err
    return Path(base) / "FashionMNIST" / "raw"


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


def _read_fmnist(folder: Path) -> ImageArrays:
    """Read the 4 IDX files in ``folder``: images uint8 ``[N,1,28,28]``, labels int64 ``[N]``."""
    parts = {}
    for key, stem in FMNIST_FILES.items():
        magic = IDX_IMAGES_MAGIC if key.endswith("_x") else IDX_LABELS_MAGIC
        array = read_idx(_fmnist_file(folder, stem), magic)
        tensor = torch.from_numpy(array.copy())
        parts[key] = tensor.unsqueeze(1) if key.endswith("_x") else tensor.long()
    _check_pairs(parts, folder)
    return ImageArrays("fashion_mnist", classes=list(FMNIST_CLASSES), source=str(folder), **parts)


def _check_pairs(parts: dict[str, torch.Tensor], folder: Path) -> None:
    """Raise FpencError if image and label counts differ."""
    for split in ("train", "test"):
        nx, ny = len(parts[f"{split}_x"]), len(parts[f"{split}_y"])
        if nx != ny:
            raise FpencError(
                f"{folder}: {split} set has {nx} images but {ny} labels; replace the files with a fresh copy"
            )


# ----------------------------------------------------------------------------- CIFAR-10


def _has_cifar(folder: Path) -> bool:
    names = CIFAR_TRAIN_BATCHES + (CIFAR_TEST_BATCH,)
    return all((folder / n).is_file() for n in names)


def _locate_cifar10(root: str | None, download: bool) -> Path:
    base = Path(root) if root is not None else Path(DEFAULT_DOWNLOAD_ROOT)
    for folder in (base / CIFAR_DIR, base):
        if _has_cifar(folder):
            return folder
    if download:
        return _download_cifar10(base)
    raise DatasetNotFoundError(
        f"CIFAR-10 not found in {base / CIFAR_DIR}: extract cifar-10-python.tar.gz under "
        "data.root (giving data.root/cifar-10-batches-py/data_batch_1..5, test_batch), "
        "or set data.download: true to fetch it with torchvision"
    )


def _download_cifar10(base: Path) -> Path:
    import torchvision

    try:
        torchvision.datasets.CIFAR10(str(base), train=True, download=True)
    except (OSError, RuntimeError) as err:
        raise DatasetNotFoundError(
            f"CIFAR-10 download into {base} failed ({err}): check the network, or extract "
            "cifar-10-python.tar.gz under data.root yourself"
        ) from err
    return base / CIFAR_DIR


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


def _read_cifar10(folder: Path) -> ImageArrays:
    """Read ``cifar-10-batches-py``: images uint8 ``[N,3,32,32]`` (NCHW), labels int64 ``[N]``."""
    train_x, train_y = _read_cifar_batches(folder, CIFAR_TRAIN_BATCHES)
    test_x, test_y = _read_cifar_batches(folder, (CIFAR_TEST_BATCH,))
    parts = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    _check_pairs(parts, folder)
    return ImageArrays("cifar10", classes=_cifar_classes(folder), source=str(folder), **parts)


# ----------------------------------------------------------------------------- Tiny ImageNet


def _locate_tiny_imagenet(root: str | None, download: bool) -> Path:
    base = Path(root) if root is not None else Path(DEFAULT_DOWNLOAD_ROOT)
    for folder in (base / TINY_DIR, base):
        if (folder / "wnids.txt").is_file() and (folder / "train").is_dir():
            return folder
    note = " (data.download is not supported for tiny_imagenet)" if download else ""
    raise DatasetNotFoundError(
        f"Tiny ImageNet not found in {base / TINY_DIR}{note}: download tiny-imagenet-200.zip "
        f"from {TINY_URL} (Stanford CS231n) and unzip it under data.root"
    )


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


def _read_tiny_imagenet(folder: Path) -> ImageArrays:
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
