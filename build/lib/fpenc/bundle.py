"""The exported verification bundle: everything ``fpenc verify`` needs, in one ``.safetensors`` file.

A bundle holds the trained fingerprint encoder, the victim's UAPs, the fingerprint key (datapoints,
views and the view images themselves), the victim's fingerprints and the reference similarities of
homologous models. It is a safetensors file: loading it parses a JSON header and copies raw tensor
bytes, so it can never run code (no pickle). Tensors (named by part):

    encoder.<key>            the encoder's state_dict
    uaps                     [U, C, H, W] float, in [0, 1] pixel space
    view_images              [V, N, C, H, W] uint8
    datapoints               [N] int64 (indices into the victim's training set)
    views                    [V, N] int64
    victim_fingerprints      [U, V, 2*N*K] float
    reference_similarities   [G, P] float (pair similarities of the G reference models, one row each)
    reference_agreement      [G, P] float (per pair, their share of the victim's labels on the key)
    sanity_images            [S, C, H, W] uint8 (labelled test images, apart from the key: sanity gates)
    sanity_labels            [S] int64 (their true classes)
    zoo_embeddings           [M, P, D] float (encoder representations of the M models the encoder
                             trained on, victim first: the out-of-distribution gate)

The reference models are independently trained models that neither trained the encoder, nor
picked its checkpoint, nor chose the key: the population a suspect's verdict is tested against
(:mod:`fpenc.verdict`). The header's ``meta.gates`` holds the gates' thresholds.

The safetensors string metadata holds ``format`` ("fpenc-bundle/1") and ``fpenc``: a JSON object
with the format, the encoder config, the caller's ``meta`` (victim id and sha256, dataset,
num_classes, input_shape [C, H, W], api, default alpha/num_fingerprints/repeats, ...), library
versions, the creation time, and per part its SHA-256, shape and dtype. A part's SHA-256 is that
of its raw (C-contiguous, little-endian) tensor bytes; the encoder's is one hash over its
tensors in sorted key order (each key's UTF-8 name, then its bytes). :func:`load_bundle` checks
every one of them.

The format's constants, hashes and consistency checks are in :mod:`fpenc.bundle_format`, the
writer in :mod:`fpenc.bundle_export`; their public names are re-exported here.

Light imports only (torch, safetensors, numpy): no Lightning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fpenc.bundle_export import export_bundle
from fpenc.bundle_format import (
    ENCODER_PREFIX,
    FORMAT,
    OLD_FORMATS,
    PARTS,
    REMEDY,
    BundleError,
    check_shapes,
    state_dict_sha256,
    tensor_sha256,
)
from fpenc.io import sha256_file

__all__ = [
    "ENCODER_PREFIX",
    "FORMAT",
    "OLD_FORMATS",
    "PARTS",
    "REMEDY",
    "Bundle",
    "BundleError",
    "export_bundle",
    "load_bundle",
    "state_dict_sha256",
    "tensor_sha256",
]


@dataclass
class Bundle:
    """A loaded, verified bundle. Tensors as in the module docstring; ``metadata`` is the header
    JSON (format, encoder_config, meta, versions, created, parts)."""

    path: Path
    sha256: str
    metadata: dict
    encoder_state: dict[str, torch.Tensor]
    uaps: torch.Tensor
    view_images: torch.Tensor
    datapoints: torch.Tensor
    views: torch.Tensor
    victim_fingerprints: torch.Tensor
    reference_similarities: torch.Tensor
    reference_agreement: torch.Tensor
    sanity_images: torch.Tensor
    sanity_labels: torch.Tensor
    zoo_embeddings: torch.Tensor
    _encoder: object = field(default=None, repr=False, compare=False)

    @property
    def meta(self) -> dict:
        return self.metadata["meta"]

    @property
    def num_uaps(self) -> int:
        return self.uaps.shape[0]

    @property
    def num_views(self) -> int:
        return self.view_images.shape[0]

    @property
    def num_datapoints(self) -> int:
        return self.view_images.shape[1]

    @property
    def num_classes(self) -> int:
        return self.victim_fingerprints.shape[2] // (2 * self.num_datapoints)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images a suspect must accept."""
        return tuple(self.uaps.shape[1:])

    @property
    def commitment(self) -> str:
        """SHA-256 commitment to every header value and (through their recorded hashes) every tensor
        (:func:`fpenc.signing.commitment`): publish or sign it to fix the claim in time."""
        from fpenc.signing import commitment

        return commitment(self.metadata)

    @property
    def num_pairs(self) -> int:
        return self.num_uaps * self.num_views

    def gates(self):
        """The :class:`fpenc.verdict.Gates` recorded at export (``meta.gates``)."""
        from fpenc.verdict import Gates

        g = self.meta.get("gates") or {}
        try:
            return Gates(
                float(g["min_accuracy"]),
                float(g["min_label_entropy"]),
                None if g.get("ood_threshold") is None else float(g["ood_threshold"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(f"bundle {self.path} has no valid gate thresholds (meta.gates: {g!r}); {REMEDY}") from err

    def encoder(self):
        """The fingerprint encoder, eval mode, weights loaded with ``strict=True`` (built once, cached)."""
        if self._encoder is None:
            from fpenc.encoder.network import FingerprintEncoder

            try:
                enc = FingerprintEncoder(**self.metadata["encoder_config"])
                enc.load_state_dict(self.encoder_state, strict=True)
            except (TypeError, ValueError, RuntimeError) as err:
                first = str(err).strip().splitlines()[0][:200]
                raise BundleError(
                    f"bundle {self.path}: its encoder does not match its recorded config ({first}); {REMEDY}"
                ) from err
            self._encoder = enc.eval()
        return self._encoder


def load_bundle(path) -> Bundle:
    """Load and verify a bundle written by :func:`export_bundle` (never unpickles).

    Raises :class:`BundleError` (a :class:`~fpenc.errors.WeightsFileError`) for a missing file, a
    file that is not safetensors or is truncated, another format, a missing part, or a part whose
    SHA-256, shape or dtype differs from the recorded one.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a bundle file" if path.is_dir() else "does not exist"
        raise BundleError(f"bundle {path} {what}; export one with the run that built the encoder")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw_meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for bad headers and short files
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise BundleError(
            f"cannot read bundle {path}: not a safetensors file, or truncated ({first}); {REMEDY}"
        ) from err
    if raw_meta.get("format") in OLD_FORMATS:
        raise BundleError(
            f"{path} is a bundle of the older format {raw_meta['format']!r}, which carries no reference "
            f"agreement, labelled images or zoo embeddings for the verdict's gates; re-export it with "
            f"`fpenc test` on the run that built it (format '{FORMAT}')"
        )
    if raw_meta.get("format") != FORMAT:
        found = raw_meta.get("format")
        raise BundleError(
            f"{path} is not an fpenc bundle (format {found!r}, expected '{FORMAT}'); pass a bundle exported by fpenc"
        )
    try:
        header = json.loads(raw_meta["fpenc"])
        missing = [key for key in ("parts", "encoder_config", "meta") if key not in header]
        if missing:
            raise KeyError(", ".join(missing))
        records = header["parts"]
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise BundleError(f"bundle {path} has a damaged header ({type(err).__name__}: {err}); {REMEDY}") from err
    if header.get("format") != FORMAT:
        raise BundleError(
            f"{path} is not an fpenc bundle (header format {header.get('format')!r}); pass a bundle exported by fpenc"
        )
    for name in PARTS:
        if name not in tensors:
            raise BundleError(f"bundle {path} is incomplete: part '{name}' is missing; {REMEDY}")
        t, rec = tensors[name], records.get(name, {})
        if list(t.shape) != rec.get("shape") or str(t.dtype).removeprefix("torch.") != rec.get("dtype"):
            raise BundleError(
                f"bundle {path} is corrupted: part '{name}' has shape {list(t.shape)} {t.dtype}, "
                f"recorded {rec.get('shape')} {rec.get('dtype')}; {REMEDY}"
            )
        if tensor_sha256(t) != rec.get("sha256"):
            raise BundleError(f"bundle {path} is corrupted: part '{name}' does not match its SHA-256; {REMEDY}")
    state = {k[len(ENCODER_PREFIX) :]: v for k, v in tensors.items() if k.startswith(ENCODER_PREFIX)}
    enc_rec = records.get("encoder", {})
    missing = sorted(set(enc_rec.get("keys", [])) - set(state))
    if not state or missing:
        raise BundleError(
            f"bundle {path} is incomplete: part 'encoder' is missing "
            f"{', '.join(missing[:3]) or 'all its tensors'}; {REMEDY}"
        )
    if state_dict_sha256(state) != enc_rec.get("sha256"):
        raise BundleError(f"bundle {path} is corrupted: part 'encoder' does not match its SHA-256; {REMEDY}")
    try:
        check_shapes(tensors, int(header["encoder_config"]["input_dim"]))
    except (ValueError, KeyError, TypeError) as err:
        raise BundleError(f"bundle {path} is inconsistent: {err}; {REMEDY}") from err
    return Bundle(
        path=path,
        sha256=sha256_file(path),
        metadata=header,
        encoder_state=state,
        **{name: tensors[name] for name in PARTS},
    )
