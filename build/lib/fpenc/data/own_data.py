"""A model owner's own data in two common layouts, read into :class:`~fpenc.data.arrays.ImageArrays`.

``npz`` (``data.dataset: npz``, ``data.root``: the file): arrays ``train_x``, ``train_y``, ``test_x``,
``test_y`` (images uint8 in [0, 255] or float in [0, 1], shaped ``[N, H, W]`` (grey), ``[N, H, W, C]``
or ``[N, C, H, W]`` with C in 1 or 3; labels integers in ``[0, K)``), and optionally ``classes``
(K names). Read with ``allow_pickle=False``: an npz cannot run code.

``image_folder`` (``data.dataset: image_folder``, ``data.root``: the folder): ``train/<class>/*`` and
``test/<class>/*`` image files (PNG, JPEG, ...), one sub-folder per class, the same classes in both,
in sorted order as labels. Images are kept grey when every one is, else RGB, at the size of the
first (others are resized).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fpenc.data.arrays import ImageArrays
from fpenc.errors import DatasetNotFoundError, FpencError

NPZ_KEYS = ("train_x", "train_y", "test_x", "test_y")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _as_uint8_nchw(x: np.ndarray, what: str) -> torch.Tensor:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise FpencError(
            f"{what}: images of shape {x.shape}; give [N, H, W], [N, H, W, C] or [N, C, H, W] with C 1 or 3"
        )
    if np.issubdtype(x.dtype, np.floating):
        if x.min() < 0 or x.max() > 1:
            raise FpencError(f"{what}: float images must be in [0, 1], got [{x.min():.3g}, {x.max():.3g}]")
        x = np.round(x * 255)
    elif x.min() < 0 or x.max() > 255:
        raise FpencError(f"{what}: integer images must be in [0, 255]")
    return torch.from_numpy(np.ascontiguousarray(x.astype(np.uint8)))


def _labels(y: np.ndarray, what: str) -> torch.Tensor:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise FpencError(f"{what}: labels must be a 1-d array of integers >= 0, got {y.dtype} {y.shape}")
    return torch.from_numpy(y.astype(np.int64))


def read_npz(path: str | Path) -> ImageArrays:
    """The npz layout above. Raises DatasetNotFoundError (no file) or FpencError (a wrong array)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path} not found: set data.root to your .npz file ({', '.join(NPZ_KEYS)})")
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in NPZ_KEYS if k not in npz.files]
        if missing:
            raise FpencError(
                f"{path} lacks {', '.join(missing)}; it needs {', '.join(NPZ_KEYS)} (and may hold classes)"
            )
        arrays = {k: npz[k] for k in NPZ_KEYS}
        names = [str(c) for c in npz["classes"]] if "classes" in npz.files else None
    train_x, test_x = (_as_uint8_nchw(arrays[k], f"{path}: {k}") for k in ("train_x", "test_x"))
    train_y, test_y = (_labels(arrays[k], f"{path}: {k}") for k in ("train_y", "test_y"))
    if len(train_x) != len(train_y) or len(test_x) != len(test_y) or train_x.shape[1:] != test_x.shape[1:]:
        raise FpencError(f"{path}: images and labels differ in number, or train and test images in shape")
    k = max(int(train_y.max()), int(test_y.max())) + 1
    names = names or [str(i) for i in range(k)]
    if len(names) < k:
        raise FpencError(f"{path}: {len(names)} class names for labels up to {k - 1}")
    return ImageArrays("npz", train_x, train_y, test_x, test_y, names, str(path))


def folder_classes(root: str | Path) -> list[str]:
    """The class sub-folders of ``root/train`` in sorted order (their index is the label)."""
    train = Path(root) / "train"
    if not train.is_dir() or not (Path(root) / "test").is_dir():
        raise DatasetNotFoundError(
            f"{root} is not an image folder: it needs train/<class>/ and test/<class>/ sub-folders of images"
        )
    return sorted(p.name for p in train.iterdir() if p.is_dir())


def read_image_folder(root: str | Path) -> ImageArrays:
    """The image-folder layout above."""
    from PIL import Image

    root = Path(root)
    classes = folder_classes(root)
    files: dict[str, list[tuple[Path, int]]] = {}
    for split in ("train", "test"):
        extra = sorted({p.name for p in (root / split).iterdir() if p.is_dir()} - set(classes))
        if extra:
            raise FpencError(f"{root / split} has classes {', '.join(extra)} that train/ lacks; use the same classes")
        files[split] = [
            (f, label)
            for label, c in enumerate(classes)
            for f in sorted((root / split / c).iterdir())
            if f.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not files[split]:
            raise FpencError(f"{root / split} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    with Image.open(files["train"][0][0]) as first:
        size = first.size
    grey = all(Image.open(f).mode in ("L", "1", "I;16") for split in files.values() for f, _ in split)
    mode = "L" if grey else "RGB"

    def decode(items):
        out = []
        for f, _ in items:
            try:
                with Image.open(f) as img:
                    img = img.convert(mode)
                    out.append(np.asarray(img if img.size == size else img.resize(size, Image.BILINEAR)))
            except OSError as err:
                raise FpencError(f"cannot decode image {f} ({err}): replace or remove it") from None
        return _as_uint8_nchw(np.stack(out), str(root))

    return ImageArrays(
        "image_folder",
        decode(files["train"]),
        torch.tensor([y for _, y in files["train"]]),
        decode(files["test"]),
        torch.tensor([y for _, y in files["test"]]),
        classes,
        str(root),
    )


def own_num_classes(name: str, root: str | None) -> int:
    """K of an ``npz`` or ``image_folder`` dataset, read without loading its images."""
    if root is None:
        raise DatasetNotFoundError(f"data.dataset {name} needs data.root (the .npz file or the image folder)")
    if name == "image_folder":
        return len(folder_classes(root))
    if not Path(root).is_file():
        raise DatasetNotFoundError(f"{root} not found: set data.root to your .npz file ({', '.join(NPZ_KEYS)})")
    with np.load(root, allow_pickle=False) as npz:
        if "classes" in npz.files:
            return len(npz["classes"])
        return max(int(npz["train_y"].max()), int(npz["test_y"].max())) + 1


def read_datamodule(class_path: str, init_args: dict | None = None) -> ImageArrays:
    """A ``LightningDataModule`` of the owner's (``data.dataset: mypkg.data.MyDataModule``, its keyword
    arguments in ``data.init_args``), read whole: ``prepare_data()``, ``setup("fit")`` and its
    ``train_dataloader()``, ``setup("test")`` and its ``test_dataloader()``; batches ``(images, labels)``
    with images float in [0, 1] (or uint8) ``[B, C, H, W]``. Class names from its ``classes``
    attribute when it has one."""
    from pytorch_lightning import LightningDataModule

    from fpenc.models.user_model import import_class

    return _read_dm(import_class(class_path, LightningDataModule), class_path, init_args or {})


def _read_dm(cls, class_path: str, init_args: dict) -> ImageArrays:
    try:
        dm = cls(**init_args)
    except TypeError as err:
        raise FpencError(f"{class_path}({init_args}) failed: {err}; fix data.init_args") from None

    def collect(stage: str, loader_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        dm.setup(stage)
        xs, ys = [], []
        for batch in getattr(dm, loader_name)():
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise FpencError(f"{class_path}.{loader_name}() must yield (images, labels) batches")
            xs.append(_as_uint8_nchw(torch.as_tensor(batch[0]).numpy(), f"{class_path}.{loader_name}()"))
            ys.append(_labels(torch.as_tensor(batch[1]).numpy(), f"{class_path}.{loader_name}()"))
        if not xs:
            raise FpencError(f"{class_path}.{loader_name}() yielded no batch")
        return torch.cat(xs), torch.cat(ys)

    dm.prepare_data()
    train_x, train_y = collect("fit", "train_dataloader")
    test_x, test_y = collect("test", "test_dataloader")
    k = max(int(train_y.max()), int(test_y.max())) + 1
    names = [str(c) for c in getattr(dm, "classes", [])] or [str(i) for i in range(k)]
    return ImageArrays(class_path, train_x, train_y, test_x, test_y, names, class_path)


def datamodule_num_classes(class_path: str, init_args: dict) -> int:
    """K of a LightningDataModule: its ``num_classes`` attribute, else counted from its data."""
    from pytorch_lightning import LightningDataModule

    from fpenc.models.user_model import import_class

    cls = import_class(class_path, LightningDataModule)
    k = getattr(cls, "num_classes", None)
    if isinstance(k, int):
        return k
    return read_datamodule(class_path, init_args).num_classes
