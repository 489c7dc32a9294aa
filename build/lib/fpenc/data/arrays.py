"""A whole image-classification dataset held in memory (:class:`ImageArrays`), as every reader returns it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from fpenc.errors import FpencError


@dataclass
class ImageArrays:
    """A whole image-classification dataset held in memory.

    Attributes:
        name: dataset name, one of :data:`fpenc.data.datasets.KNOWN_DATASETS`.
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


def check_pairs(parts: dict[str, torch.Tensor], folder: Path) -> None:
    """Raise FpencError if image and label counts differ (``parts``: train_x, train_y, test_x, test_y)."""
    for split in ("train", "test"):
        nx, ny = len(parts[f"{split}_x"]), len(parts[f"{split}_y"])
        if nx != ny:
            raise FpencError(
                f"{folder}: {split} set has {nx} images but {ny} labels; replace the files with a fresh copy"
            )
