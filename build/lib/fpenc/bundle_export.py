"""Writing a verification bundle (:func:`export_bundle`); the format is described in :mod:`fpenc.bundle`.

Light imports only (torch, safetensors, numpy): no Lightning.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform

import torch

from fpenc.bundle_format import ENCODER_PREFIX, FORMAT, check_shapes, part_record, state_dict_sha256
from fpenc.io import atomic_path, sha256_file


def _versions() -> dict:
    import numpy
    import safetensors

    from fpenc import __version__

    return {
        "fpenc": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def export_bundle(
    path,
    *,
    encoder,
    uaps: torch.Tensor,
    view_images: torch.Tensor,
    datapoints: torch.Tensor,
    views: torch.Tensor,
    victim_fingerprints: torch.Tensor,
    reference_similarities: torch.Tensor,
    reference_agreement: torch.Tensor,
    sanity_images: torch.Tensor,
    sanity_labels: torch.Tensor,
    zoo_embeddings: torch.Tensor,
    meta: dict | None = None,
) -> str:
    """Write one self-contained bundle file atomically; returns the file's SHA-256.

    Args:
        path: the ``.safetensors`` file to write (its directory is created).
        encoder: a trained :class:`~fpenc.encoder.network.FingerprintEncoder` with ``input_dim = 2*N*K``.
        uaps: ``[U, C, H, W]`` float. view_images: ``[V, N, C, H, W]`` uint8.
        datapoints: ``[N]`` and views: ``[V, N]``, integer (stored as int64).
        victim_fingerprints: ``[U, V, 2*N*K]`` float. reference_similarities, reference_agreement:
            ``[G, P]`` float (one row per reference model, G >= 2, P = U*V pairs in row-major (u, v) order).
        sanity_images: ``[S, C, H, W]`` uint8 and sanity_labels: ``[S]`` int: labelled images for the gates.
        zoo_embeddings: ``[M, P, D]`` float: representations of the encoder's training models.
        meta: JSON-serialisable facts about the victim and defaults (victim_id, victim_sha256,
            dataset, api, alpha, num_fingerprints, repeats, config, eps, norm, ...).
            ``num_classes`` and ``input_shape`` are filled in from the tensors (and checked if given).

    Raises:
        ValueError: tensors of inconsistent shapes or dtypes, or ``meta`` not JSON-serialisable.
    """
    from safetensors.torch import save_file

    meta = dict(meta or {})
    config = encoder.config()
    state = {k: v.detach().cpu().clone().contiguous() for k, v in encoder.state_dict().items()}
    parts = {
        "uaps": uaps,
        "view_images": view_images,
        "datapoints": datapoints,
        "views": views,
        "victim_fingerprints": victim_fingerprints,
        "reference_similarities": reference_similarities,
        "reference_agreement": reference_agreement,
        "sanity_images": sanity_images,
        "sanity_labels": sanity_labels,
        "zoo_embeddings": zoo_embeddings,
    }
    parts = {k: torch.as_tensor(v).detach().cpu().clone().contiguous() for k, v in parts.items()}
    for name in ("datapoints", "views", "sanity_labels"):  # any integer index dtype is stored as int64
        if not parts[name].is_floating_point() and parts[name].dtype != torch.bool:
            parts[name] = parts[name].long()
    _, _, _, k = check_shapes(parts, int(config["input_dim"]))
    input_shape = list(parts["uaps"].shape[1:])
    if meta.setdefault("num_classes", k) != k:
        raise ValueError(f"meta num_classes {meta['num_classes']} disagrees with the fingerprints' {k} classes")
    if list(meta.setdefault("input_shape", input_shape)) != input_shape:
        raise ValueError(f"meta input_shape {meta['input_shape']} disagrees with the UAPs' {input_shape}")
    records = {name: part_record(t) for name, t in parts.items()}
    records["encoder"] = {"sha256": state_dict_sha256(state), "keys": sorted(state)}
    header = {
        "format": FORMAT,
        "encoder_config": config,
        "meta": meta,
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parts": records,
    }
    try:
        header_json = json.dumps(header, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"bundle meta must be JSON-serialisable: {err}") from err
    tensors = {f"{ENCODER_PREFIX}{k}": v for k, v in state.items()} | parts
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "fpenc": header_json})
    return sha256_file(path)
