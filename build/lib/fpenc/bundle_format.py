"""The bundle format's constants, its error, the content hashes it records and the checks that its
tensor parts agree with one another; shared by :mod:`fpenc.bundle_export` (writing) and
:mod:`fpenc.bundle` (loading). The layout itself is described in :mod:`fpenc.bundle`.

A part's SHA-256 is that of its raw (C-contiguous, little-endian) tensor bytes; the encoder's is
one hash over its tensors in sorted key order (each key's UTF-8 name, then its bytes).

Light imports only (torch): no Lightning.
"""

from __future__ import annotations

import hashlib

import torch

from fpenc.errors import WeightsFileError

FORMAT = "fpenc-bundle/2"
OLD_FORMATS = ("fpenc-bundle/1",)
ENCODER_PREFIX = "encoder."
PARTS = (
    "uaps",
    "view_images",
    "datapoints",
    "views",
    "victim_fingerprints",
    "reference_similarities",
    "reference_agreement",
    "sanity_images",
    "sanity_labels",
    "zoo_embeddings",
)
"""The tensor parts besides the encoder, in file order."""

REMEDY = "re-export it from the run that built it"


class BundleError(WeightsFileError):
    """A bundle file is missing, unreadable, of another format, incomplete or corrupted."""


def tensor_sha256(t: torch.Tensor, h=None) -> str:
    """SHA-256 of a tensor's raw C-contiguous bytes (dtype and shape are recorded separately)."""
    h = hashlib.sha256() if h is None else h
    h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """One SHA-256 over a state_dict: for each key in sorted order, its UTF-8 name then its bytes."""
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode("utf-8"))
        tensor_sha256(state[key], h)
    return h.hexdigest()


def part_record(t: torch.Tensor) -> dict:
    """The header record of one part: its SHA-256, shape and dtype."""
    return {"sha256": tensor_sha256(t), "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}


def check_shapes(t: dict[str, torch.Tensor], encoder_input_dim: int) -> tuple[int, int, int, int]:
    """Check the parts agree with one another; returns ``(U, V, N, K)``. Raises ValueError."""
    uaps, vi, dp, views, vf, ref, agree, simg, slab, zoo_h = (t[p] for p in PARTS)
    if uaps.ndim != 4 or not uaps.is_floating_point():
        raise ValueError(f"uaps must be a float [U, C, H, W] tensor, got {uaps.dtype} {tuple(uaps.shape)}")
    if vi.ndim != 5 or vi.dtype != torch.uint8 or tuple(vi.shape[2:]) != tuple(uaps.shape[1:]):
        raise ValueError(
            f"view_images must be uint8 [V, N, {', '.join(map(str, uaps.shape[1:]))}], got {vi.dtype} {tuple(vi.shape)}"
        )
    u, (v, n) = uaps.shape[0], vi.shape[:2]
    if dp.shape != (n,) or dp.dtype != torch.int64:
        raise ValueError(f"datapoints must be int64 [{n}], got {dp.dtype} {tuple(dp.shape)}")
    if views.shape != (v, n) or views.dtype != torch.int64:
        raise ValueError(f"views must be int64 [{v}, {n}], got {views.dtype} {tuple(views.shape)}")
    if vf.ndim != 3 or vf.shape[:2] != (u, v) or vf.shape[2] % (2 * n) or not vf.is_floating_point():
        raise ValueError(f"victim_fingerprints must be float [{u}, {v}, 2*{n}*K], got {vf.dtype} {tuple(vf.shape)}")
    k = vf.shape[2] // (2 * n)
    if k < 1 or vf.shape[2] != encoder_input_dim:
        raise ValueError(f"victim fingerprints have length {vf.shape[2]} but the encoder takes {encoder_input_dim}")
    if ref.ndim != 2 or ref.shape[0] < 2 or ref.shape[1] != u * v or not ref.is_floating_point():
        raise ValueError(
            f"reference_similarities must be a float [G, {u * v}] tensor (G >= 2 reference models, "
            f"one value per (UAP, view) pair), got {ref.dtype} {tuple(ref.shape)}"
        )
    if agree.shape != ref.shape or not agree.is_floating_point():
        raise ValueError(
            f"reference_agreement must be float {list(ref.shape)} like reference_similarities, "
            f"got {agree.dtype} {tuple(agree.shape)}"
        )
    if simg.ndim != 4 or simg.dtype != torch.uint8 or tuple(simg.shape[1:]) != tuple(uaps.shape[1:]) or len(simg) < 1:
        raise ValueError(
            f"sanity_images must be uint8 [S, {', '.join(map(str, uaps.shape[1:]))}], "
            f"got {simg.dtype} {tuple(simg.shape)}"
        )
    if slab.shape != (len(simg),) or slab.dtype != torch.int64 or int(slab.min()) < 0 or int(slab.max()) >= k:
        raise ValueError(f"sanity_labels must be int64 [{len(simg)}] in [0, {k}), got {slab.dtype} {tuple(slab.shape)}")
    if zoo_h.ndim != 3 or zoo_h.shape[1] != u * v or len(zoo_h) < 1 or not zoo_h.is_floating_point():
        raise ValueError(f"zoo_embeddings must be float [M, {u * v}, D], got {zoo_h.dtype} {tuple(zoo_h.shape)}")
    return u, v, n, k
