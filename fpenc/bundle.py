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

Light imports only (torch, safetensors, numpy): no Lightning.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fpenc.errors import WeightsFileError
from fpenc.io import atomic_path, sha256_file

FORMAT = "fpenc-bundle/2"
OLD_FORMATS = ("fpenc-bundle/1",)
ENCODER_PREFIX = "encoder."
PARTS = ("uaps", "view_images", "datapoints", "views", "victim_fingerprints", "reference_similarities",
         "reference_agreement", "sanity_images", "sanity_labels", "zoo_embeddings")
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


def _part_record(t: torch.Tensor) -> dict:
    return {"sha256": tensor_sha256(t), "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}


def _versions() -> dict:
    import numpy
    import safetensors

    from fpenc import __version__

    return {"fpenc": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "safetensors": safetensors.__version__, "python": platform.python_version()}


def _check_shapes(t: dict[str, torch.Tensor], encoder_input_dim: int) -> tuple[int, int, int, int]:
    """Check the parts agree with one another; returns ``(U, V, N, K)``. Raises ValueError."""
    uaps, vi, dp, views, vf, ref, agree, simg, slab, zoo_h = (t[p] for p in PARTS)
    if uaps.ndim != 4 or not uaps.is_floating_point():
        raise ValueError(f"uaps must be a float [U, C, H, W] tensor, got {uaps.dtype} {tuple(uaps.shape)}")
    if vi.ndim != 5 or vi.dtype != torch.uint8 or tuple(vi.shape[2:]) != tuple(uaps.shape[1:]):
        raise ValueError(f"view_images must be uint8 [V, N, {', '.join(map(str, uaps.shape[1:]))}], "
                         f"got {vi.dtype} {tuple(vi.shape)}")
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
        raise ValueError(f"reference_similarities must be a float [G, {u * v}] tensor (G >= 2 reference models, "
                         f"one value per (UAP, view) pair), got {ref.dtype} {tuple(ref.shape)}")
    if agree.shape != ref.shape or not agree.is_floating_point():
        raise ValueError(f"reference_agreement must be float {list(ref.shape)} like reference_similarities, "
                         f"got {agree.dtype} {tuple(agree.shape)}")
    if simg.ndim != 4 or simg.dtype != torch.uint8 or tuple(simg.shape[1:]) != tuple(uaps.shape[1:]) or len(simg) < 1:
        raise ValueError(f"sanity_images must be uint8 [S, {', '.join(map(str, uaps.shape[1:]))}], "
                         f"got {simg.dtype} {tuple(simg.shape)}")
    if slab.shape != (len(simg),) or slab.dtype != torch.int64 or int(slab.min()) < 0 or int(slab.max()) >= k:
        raise ValueError(f"sanity_labels must be int64 [{len(simg)}] in [0, {k}), got {slab.dtype} {tuple(slab.shape)}")
    if zoo_h.ndim != 3 or zoo_h.shape[1] != u * v or len(zoo_h) < 1 or not zoo_h.is_floating_point():
        raise ValueError(f"zoo_embeddings must be float [M, {u * v}, D], got {zoo_h.dtype} {tuple(zoo_h.shape)}")
    return u, v, n, k


def export_bundle(path, *, encoder, uaps: torch.Tensor, view_images: torch.Tensor, datapoints: torch.Tensor,
                  views: torch.Tensor, victim_fingerprints: torch.Tensor, reference_similarities: torch.Tensor,
                  reference_agreement: torch.Tensor, sanity_images: torch.Tensor, sanity_labels: torch.Tensor,
                  zoo_embeddings: torch.Tensor, meta: dict | None = None) -> str:
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
    parts = {"uaps": uaps, "view_images": view_images, "datapoints": datapoints, "views": views,
             "victim_fingerprints": victim_fingerprints, "reference_similarities": reference_similarities,
             "reference_agreement": reference_agreement, "sanity_images": sanity_images, "sanity_labels": sanity_labels,
             "zoo_embeddings": zoo_embeddings}
    parts = {k: torch.as_tensor(v).detach().cpu().clone().contiguous() for k, v in parts.items()}
    for name in ("datapoints", "views", "sanity_labels"):  # any integer index dtype is stored as int64
        if not parts[name].is_floating_point() and parts[name].dtype != torch.bool:
            parts[name] = parts[name].long()
    _, _, _, k = _check_shapes(parts, int(config["input_dim"]))
    input_shape = list(parts["uaps"].shape[1:])
    if meta.setdefault("num_classes", k) != k:
        raise ValueError(f"meta num_classes {meta['num_classes']} disagrees with the fingerprints' {k} classes")
    if list(meta.setdefault("input_shape", input_shape)) != input_shape:
        raise ValueError(f"meta input_shape {meta['input_shape']} disagrees with the UAPs' {input_shape}")
    records = {name: _part_record(t) for name, t in parts.items()}
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
            return Gates(float(g["min_accuracy"]), float(g["min_label_entropy"]),
                         None if g.get("ood_threshold") is None else float(g["ood_threshold"]))
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
                raise BundleError(f"bundle {self.path}: its encoder does not match its recorded config ({first}); "
                                  f"{REMEDY}") from err
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
        raise BundleError(f"cannot read bundle {path}: not a safetensors file, or truncated ({first}); {REMEDY}") from err
    if raw_meta.get("format") in OLD_FORMATS:
        raise BundleError(f"{path} is a bundle of the older format {raw_meta['format']!r}, which carries no reference "
                          f"agreement, labelled images or zoo embeddings for the verdict's gates; re-export it with "
                          f"`fpenc test` on the run that built it (format '{FORMAT}')")
    if raw_meta.get("format") != FORMAT:
        found = raw_meta.get("format")
        raise BundleError(f"{path} is not an fpenc bundle (format {found!r}, expected '{FORMAT}'); "
                          "pass a bundle exported by fpenc")
    try:
        header = json.loads(raw_meta["fpenc"])
        missing = [key for key in ("parts", "encoder_config", "meta") if key not in header]
        if missing:
            raise KeyError(", ".join(missing))
        records = header["parts"]
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise BundleError(f"bundle {path} has a damaged header ({type(err).__name__}: {err}); {REMEDY}") from err
    if header.get("format") != FORMAT:
        raise BundleError(f"{path} is not an fpenc bundle (header format {header.get('format')!r}); "
                          "pass a bundle exported by fpenc")
    for name in PARTS:
        if name not in tensors:
            raise BundleError(f"bundle {path} is incomplete: part '{name}' is missing; {REMEDY}")
        t, rec = tensors[name], records.get(name, {})
        if list(t.shape) != rec.get("shape") or str(t.dtype).removeprefix("torch.") != rec.get("dtype"):
            raise BundleError(f"bundle {path} is corrupted: part '{name}' has shape {list(t.shape)} {t.dtype}, "
                              f"recorded {rec.get('shape')} {rec.get('dtype')}; {REMEDY}")
        if tensor_sha256(t) != rec.get("sha256"):
            raise BundleError(f"bundle {path} is corrupted: part '{name}' does not match its SHA-256; {REMEDY}")
    state = {k[len(ENCODER_PREFIX):]: v for k, v in tensors.items() if k.startswith(ENCODER_PREFIX)}
    enc_rec = records.get("encoder", {})
    missing = sorted(set(enc_rec.get("keys", [])) - set(state))
    if not state or missing:
        raise BundleError(f"bundle {path} is incomplete: part 'encoder' is missing "
                          f"{', '.join(missing[:3]) or 'all its tensors'}; {REMEDY}")
    if state_dict_sha256(state) != enc_rec.get("sha256"):
        raise BundleError(f"bundle {path} is corrupted: part 'encoder' does not match its SHA-256; {REMEDY}")
    try:
        _check_shapes(tensors, int(header["encoder_config"]["input_dim"]))
    except (ValueError, KeyError, TypeError) as err:
        raise BundleError(f"bundle {path} is inconsistent: {err}; {REMEDY}") from err
    return Bundle(path=path, sha256=sha256_file(path), metadata=header, encoder_state=state,
                  **{name: tensors[name] for name in PARTS})
