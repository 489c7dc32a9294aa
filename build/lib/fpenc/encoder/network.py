"""SimCLR-style fingerprint encoder (Chen et al. 2020; Peng et al. CVPR 2022 §4.3).

A fingerprint ``[2 N K]`` (suspect outputs on N datapoints with and without a UAP) goes through
an MLP encoder ``f`` to a representation ``h [embed_dim]``, then a projection head ``g`` to
``z [proj_dim]`` on which the contrastive loss is computed. Similarities for verification are
cosine similarities of ``h`` (SimCLR keeps the representation before the head).
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_TRANSFORMS = ("log", "none")


class FingerprintEncoder(nn.Module):
    """Args: input_dim (2NK), hidden_dim, embed_dim (h), proj_dim (z), dropout, and
    input_transform: "log" (log of the probabilities, clamped at 1e-6; the default: on the demo
    zoo it separated unseen architectures better than raw probabilities) or "none"."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int = 512,
        embed_dim: int = 128,
        proj_dim: int = 64,
        dropout: float = 0.1,
        input_transform: str = "log",
    ) -> None:
        super().__init__()
        for name, value in (
            ("input_dim", input_dim),
            ("hidden_dim", hidden_dim),
            ("embed_dim", embed_dim),
            ("proj_dim", proj_dim),
        ):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if input_transform not in INPUT_TRANSFORMS:
            raise ValueError(f"input_transform must be one of {INPUT_TRANSFORMS}, got {input_transform!r}")
        self.input_transform = input_transform
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_dim, self.hidden_dim, self.embed_dim, self.proj_dim, self.dropout = (
            int(input_dim),
            int(hidden_dim),
            int(embed_dim),
            int(proj_dim),
            float(dropout),
        )
        self.encoder = nn.Sequential(
            nn.Linear(self.input_dim, self.hidden_dim),
            nn.BatchNorm1d(self.hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(self.dropout),
            nn.Linear(self.hidden_dim, self.hidden_dim),
            nn.BatchNorm1d(self.hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(self.hidden_dim, self.embed_dim),
        )
        self.head = nn.Sequential(
            nn.Linear(self.embed_dim, self.embed_dim), nn.ReLU(inplace=True), nn.Linear(self.embed_dim, self.proj_dim)
        )

    def config(self) -> dict:
        """The constructor arguments: ``FingerprintEncoder(**enc.config())`` rebuilds it."""
        return {
            "input_dim": self.input_dim,
            "hidden_dim": self.hidden_dim,
            "embed_dim": self.embed_dim,
            "proj_dim": self.proj_dim,
            "dropout": self.dropout,
            "input_transform": self.input_transform,
        }

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"fingerprints must be [B, {self.input_dim}], got shape {tuple(x.shape)}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Representations ``h [B, embed_dim]`` of fingerprints ``x [B, input_dim]``."""
        self._check(x)
        if self.input_transform == "log":  # log-probabilities: the small ones carry the model's identity
            x = torch.log(x.clamp_min(1e-6))
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projections ``z [B, proj_dim]`` (unnormalised) for the contrastive loss."""
        return self.head(self.encode(x))
