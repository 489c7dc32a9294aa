"""What a model's prediction API reveals: full probabilities, top-k, or the label only.

Used twice: by the attacker who extracts a piracy model through the victim's API, and by the
defender who fingerprints a suspect served behind such an API (paper §5.3, "Top-K").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fpenc.errors import ConfigError


@dataclass(frozen=True)
class ApiSpec:
    """``mode`` is "probs", "topk" or "label"; ``k`` is used by "topk"."""

    mode: str = "probs"
    k: int = 0

    def __str__(self) -> str:
        return f"topk:{self.k}" if self.mode == "topk" else self.mode


def parse_api(text: str | ApiSpec) -> ApiSpec:
    """Parse ``"probs"``, ``"topk:K"`` (K >= 1) or ``"label"``."""
    if isinstance(text, ApiSpec):
        return text
    raw = str(text).strip().lower()
    if raw in ("probs", "probabilities", "prob"):
        return ApiSpec("probs")
    if raw in ("label", "labels", "hard", "label-only"):
        return ApiSpec("label")
    if raw.startswith("topk:") or raw.startswith("top-k:") or raw.startswith("top"):
        num = raw.split(":", 1)[1] if ":" in raw else raw[3:]
        if num.isdigit() and int(num) >= 1:
            return ApiSpec("topk", int(num))
    raise ConfigError(f"unknown API '{text}'; use probs, topk:K (K >= 1, e.g. topk:3) or label")


def apply_api(probs: torch.Tensor, api: ApiSpec | str) -> torch.Tensor:
    """Restrict class probabilities ``[B, K]`` to what the API returns, still ``[B, K]``.

    topk keeps the k largest probabilities and zeroes the rest (not renormalised: that is what
    such an API returns); label returns the one-hot vector of the arg-max class.
    """
    api = parse_api(api)
    if probs.dim() != 2:
        raise ValueError(f"expected probabilities of shape [B, K], got {tuple(probs.shape)}")
    if api.mode == "probs":
        return probs
    if api.mode == "label":
        return torch.nn.functional.one_hot(probs.argmax(1), probs.shape[1]).to(probs.dtype)
    k = min(api.k, probs.shape[1])
    values, idx = probs.topk(k, dim=1)
    return torch.zeros_like(probs).scatter_(1, idx, values)


def reveals(api: ApiSpec | str, wanted: ApiSpec | str) -> bool:
    """Whether answers of ``api`` can be reduced to what ``wanted`` returns (probabilities give
    everything; top-k gives top-j for j <= k and the label; the label gives only the label)."""
    api, wanted = parse_api(api), parse_api(wanted)
    if api.mode == "probs" or wanted.mode == "label":
        return True
    return api.mode == "topk" and wanted.mode == "topk" and wanted.k <= api.k
