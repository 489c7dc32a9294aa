"""The one model shape every fpenc architecture shares: ``normalize -> body -> head``.

Images always enter a model in **[0, 1] pixel space**, shape ``[B, C, H, W]``; the
per-channel normalization lives *inside* the model (:class:`Normalize`). That way a
universal adversarial perturbation (Peng et al., CVPR 2022, Sec. 3) is crafted, clipped
and added in pixel space, and the same perturbation means the same thing for every
model, whatever normalization it was trained with.

``features(x)`` returns the last-layer representation (the input of the final
``nn.Linear``), ``[B, D]``; the paper uses it to pick fingerprinting datapoints near
the decision boundary by k-means (Sec. 3.2).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fpenc.errors import ConfigError

__all__ = ["ImageClassifier", "Normalize"]


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` on images ``[B, C, H, W] -> [B, C, H, W]``.

    ``mean`` and ``std`` are stored as (persistent) buffers of shape ``[C]`` so they travel
    with the ``state_dict`` and follow ``.to(device)``.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor([float(m) for m in mean], dtype=torch.float32)
        std_t = torch.as_tensor([float(s) for s in std], dtype=torch.float32)
        if mean_t.ndim != 1 or mean_t.numel() == 0 or mean_t.shape != std_t.shape:
            raise ConfigError(
                f"mean and std must be non-empty and the same length, got {len(mean_t)} and {len(std_t)}; "
                "give one value per image channel"
            )
        if not bool((std_t > 0).all()):
            raise ConfigError(f"std must be > 0 for every channel, got {std_t.tolist()}; fix the normalization std")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[B, C, H, W]`` with ``C == len(mean)``; returns the same shape."""
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


class ImageClassifier(nn.Module):
    """``normalize -> body -> head`` image classifier.

    Args:
        body: maps normalized images ``[B, C, H, W]`` to penultimate features ``[B, D]``.
        head: the final ``nn.Linear(D, K)``; ``K`` is the number of classes.
        mean, std: per-channel normalization (one value per channel), or both ``None``
            for no normalization (``normalize`` is then ``nn.Identity``).

    Attributes:
        config: the plain-JSON architecture dict set by
            :func:`fpenc.models.registry.build_model` (``None`` when built by hand).
    """

    def __init__(
        self,
        body: nn.Module,
        head: nn.Linear,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(head, nn.Linear):
            raise TypeError(f"head must be an nn.Linear, got {type(head).__name__}")
        if (mean is None) != (std is None):
            raise ConfigError("give both mean and std for normalization, or neither")
        self.normalize: nn.Module = nn.Identity() if mean is None else Normalize(mean, std)  # type: ignore[arg-type]
        self.body = body
        self.head = head
        self.config: dict | None = None

    @property
    def feature_dim(self) -> int:
        """``D``, the width of :meth:`features` (== ``head.in_features``)."""
        return self.head.in_features

    @property
    def num_classes(self) -> int:
        """``K``, the width of the logits (== ``head.out_features``)."""
        return self.head.out_features

    def features(self, x: Tensor) -> Tensor:
        """Images ``[B, C, H, W]`` in [0, 1] -> last-layer representation ``[B, D]``."""
        return self.body(self.normalize(x))

    def forward(self, x: Tensor) -> Tensor:
        """Images ``[B, C, H, W]`` in [0, 1] -> logits ``[B, K]``."""
        return self.head(self.features(x))


def module_device(net: nn.Module) -> torch.device:
    """The device of ``net``'s first parameter, else of its first buffer (a real INT8 model has no
    float parameters), else the CPU."""
    first = next(itertools.chain(net.parameters(), net.buffers()), None)
    return torch.device("cpu") if first is None else first.device
