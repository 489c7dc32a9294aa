"""In-memory image datasets: Fashion-MNIST, CIFAR-10 and Tiny ImageNet as uint8 tensors.

Every dataset is loaded whole into memory as ``uint8 [N, C, H, W]`` images and ``int64 [N]``
labels (an :class:`ImageArrays`). The loaders read each dataset's own on-disk format directly
(IDX files, CIFAR batch pickles, Tiny ImageNet JPEG folders); torchvision is used only to
download a missing dataset when ``download=True``.

This module knows the dataset names and where each dataset is looked for (and downloaded to);
the formats are read by :mod:`fpenc.data.fashion_mnist`, :mod:`fpenc.data.cifar10` and
:mod:`fpenc.data.tiny_imagenet` (their public names are re-exported here).
"""

from __future__ import annotations

from pathlib import Path

from fpenc.data.arrays import ImageArrays
from fpenc.data.cifar10 import (
    CIFAR10_CLASSES,
    CIFAR_DIR,
    CIFAR_TEST_BATCH,
    CIFAR_TRAIN_BATCHES,
    has_cifar,
    read_cifar10,
)
from fpenc.data.fashion_mnist import (
    FMNIST_CLASSES,
    FMNIST_FILES,
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    has_fmnist,
    read_fmnist,
    read_idx,
)
from fpenc.data.tiny_imagenet import (
    PROGRESS_MIN_FILES,
    TINY_DIR,
    TINY_SIZE,
    TINY_URL,
    decode_images,
    has_tiny_imagenet,
    read_tiny_imagenet,
)
from fpenc.errors import ConfigError, DatasetNotFoundError

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR_DIR",
    "CIFAR_TEST_BATCH",
    "CIFAR_TRAIN_BATCHES",
    "DEFAULT_DOWNLOAD_ROOT",
    "FMNIST_CLASSES",
    "FMNIST_DEBIAN_ROOT",
    "FMNIST_FILES",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "KNOWN_DATASETS",
    "NUM_CLASSES",
    "PROGRESS_MIN_FILES",
    "TINY_DIR",
    "TINY_SIZE",
    "TINY_URL",
    "ImageArrays",
    "check_dataset_name",
    "decode_images",
    "load_dataset",
    "locate_dataset",
    "read_idx",
]

KNOWN_DATASETS: tuple[str, ...] = ("fashion_mnist", "cifar10", "tiny_imagenet", "npz", "image_folder")
OWN_LAYOUTS = ("npz", "image_folder")  # the owner's own data (fpenc.data.own_data): data.root names it
#: classes of each dataset, known before any data is read (the fingerprint width depends on it)
NUM_CLASSES: dict[str, int] = {"fashion_mnist": 10, "cifar10": 10, "tiny_imagenet": 200}
FMNIST_DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
DEFAULT_DOWNLOAD_ROOT = "data"  # relative to the working directory, as torchvision does


def num_classes_of(name: str, root: str | None = None, init_args: dict | None = None) -> int:
    """K of dataset ``name``, known before its images are read (the fingerprint width depends on it)."""
    if name in OWN_LAYOUTS:
        from fpenc.data.own_data import own_num_classes

        return own_num_classes(name, root)
    from fpenc.models.user_model import is_class_path

    if is_class_path(name):  # a LightningDataModule: its num_classes attribute, else its data read whole
        from fpenc.data.own_data import datamodule_num_classes

        return datamodule_num_classes(name, init_args or {})
    return NUM_CLASSES[check_dataset_name(name)]


def check_dataset_name(name: str) -> str:
    """Return ``name`` if it is a known dataset, else raise :class:`ConfigError`."""
    if name not in KNOWN_DATASETS:
        raise ConfigError(f"unknown dataset {name!r}: set data.dataset to one of {', '.join(KNOWN_DATASETS)}")
    return name


def locate_dataset(name: str, root: str | None = None, download: bool = False) -> Path:
    """Find the folder holding dataset ``name`` (downloading it if allowed) without loading it.

    Raises:
        ConfigError: ``name`` is not in :data:`KNOWN_DATASETS`.
        DatasetNotFoundError: the dataset is in none of the places looked at.
    """
    if name in OWN_LAYOUTS:
        if root is None:
            raise DatasetNotFoundError(f"data.dataset {name} needs data.root (the .npz file or the image folder)")
        return Path(root)
    locators = {
        "fashion_mnist": _locate_fmnist,
        "cifar10": _locate_cifar10,
        "tiny_imagenet": _locate_tiny_imagenet,
    }
    return locators[check_dataset_name(name)](root, download)


def load_data(data) -> ImageArrays:
    """The dataset a pipeline config's ``data`` section (:class:`fpenc.config.schema.DataConfig`) names:
    a built-in name, ``npz`` / ``image_folder`` (``data.root``), or a ``LightningDataModule``'s class path
    (``data.init_args`` its keyword arguments)."""
    from fpenc.models.user_model import is_class_path

    if is_class_path(data.dataset):
        from fpenc.data.own_data import read_datamodule

        return read_datamodule(data.dataset, data.init_args)
    return load_dataset(data.dataset, root=data.root, download=data.download)


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
    if name in OWN_LAYOUTS:
        from fpenc.data.own_data import read_image_folder, read_npz

        return (read_npz if name == "npz" else read_image_folder)(folder)
    readers = {
        "fashion_mnist": read_fmnist,
        "cifar10": read_cifar10,
        "tiny_imagenet": read_tiny_imagenet,
    }
    return readers[name](folder)


# ----------------------------------------------------------------------------- Fashion-MNIST


def _fmnist_candidates(root: str | None) -> list[Path]:
    """Folders to look in, in order: root, root/FashionMNIST/raw, the Debian package dir."""
    folders = []
    if root is not None:
        folders += [Path(root), Path(root) / "FashionMNIST" / "raw"]
    folders.append(Path(FMNIST_DEBIAN_ROOT))
    return folders


def _locate_fmnist(root: str | None, download: bool) -> Path:
    for folder in _fmnist_candidates(root):
        if has_fmnist(folder):
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


# ----------------------------------------------------------------------------- CIFAR-10


def _locate_cifar10(root: str | None, download: bool) -> Path:
    base = Path(root) if root is not None else Path(DEFAULT_DOWNLOAD_ROOT)
    for folder in (base / CIFAR_DIR, base):
        if has_cifar(folder):
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


# ----------------------------------------------------------------------------- Tiny ImageNet


def _locate_tiny_imagenet(root: str | None, download: bool) -> Path:
    base = Path(root) if root is not None else Path(DEFAULT_DOWNLOAD_ROOT)
    for folder in (base / TINY_DIR, base):
        if has_tiny_imagenet(folder):
            return folder
    note = " (data.download is not supported for tiny_imagenet)" if download else ""
    raise DatasetNotFoundError(
        f"Tiny ImageNet not found in {base / TINY_DIR}{note}: download tiny-imagenet-200.zip "
        f"from {TINY_URL} (Stanford CS231n) and unzip it under data.root"
    )
