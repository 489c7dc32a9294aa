"""A suspect: "a model I can query". Images ``[B, C, H, W]`` in [0, 1] in, class probabilities
``[B, K]`` out, restricted to what its API reveals (probs, top-k, label).

Adapters: an ``nn.Module``; a zoo manifest entry; a TorchScript file (run in :mod:`fpenc.sandbox`:
a child process that cannot write files or open TCP connections, under time and memory limits);
an ONNX file (onnxruntime, the ``onnx`` extra: fixed operators, no file writes, the recommended
format for untrusted suspects); a ``torch.export`` (.pt2) file only when the user trusts it (its
loader unpickles). A suspect's file is untrusted: fpenc never unpickles it. A plain ``torch.save``
of a module (a pickle) is refused with a message saying how to export the model instead.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from fpenc.api import ApiSpec, apply_api, parse_api
from fpenc.errors import FpencError

PICKLE_REFUSAL = (
    "{path} is a pickled Python object (torch.save of a model): loading it could run arbitrary code, "
    "so fpenc refuses it; export the model with torch.jit.script/trace + torch.jit.save, torch.export.save "
    "(.pt2) or ONNX, and pass that file"
)


class Suspect:
    """Wraps a callable ``fn(x) -> logits or probabilities``; counts the queries it answers.

    Args:
        fn: maps float images ``[B, C, H, W]`` in [0, 1] to ``[B, K]`` scores.
        api: what the served model reveals: "probs", "topk:K" or "label".
        outputs: "logits", "probs" or "auto" (probabilities if rows are >= 0 and sum to 1).
        num_classes: expected K; a suspect that returns another K is an error.
        name: shown in messages.
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        api: str | ApiSpec = "probs",
        outputs: str = "auto",
        num_classes: int | None = None,
        name: str = "suspect",
    ):
        if outputs not in ("auto", "logits", "probs"):
            raise ValueError("outputs must be auto, logits or probs")
        self.fn, self.api, self.outputs, self.num_classes, self.name = fn, parse_api(api), outputs, num_classes, name
        self.queries = 0

    @classmethod
    def from_callable(
        cls,
        fn: Callable[[torch.Tensor], torch.Tensor],
        api: str | ApiSpec = "probs",
        outputs: str = "auto",
        num_classes: int | None = None,
        name: str | None = None,
    ) -> Suspect:
        """A model behind any API: ``fn`` takes float images ``[B, C, H, W]`` in [0, 1] (a torch tensor;
        convert it to what the service needs) and returns ``[B, K]`` scores (tensor, numpy array or
        nested lists); ``api`` says what the service reveals (its answers are reduced to that)."""
        return cls(fn, api, outputs, num_classes, name or getattr(fn, "__name__", "callable"))

    @classmethod
    def from_module(cls, net: torch.nn.Module, api: str | ApiSpec = "probs", num_classes: int | None = None) -> Suspect:
        """A live ``nn.Module`` (images in [0, 1] -> logits), queried in eval mode on its own device."""
        return from_module(net, api, num_classes, type(net).__name__)

    @classmethod
    def from_file(cls, path, api: str | ApiSpec = "probs", outputs: str = "auto", trusted: bool = False) -> Suspect:
        """A suspect's model file: ONNX, TorchScript (sandboxed), or .pt2 with ``trusted`` (never a pickle)."""
        return from_file(path, api, outputs, None, trusted)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fn(x.float())
        if isinstance(out, (tuple, list)):
            out = out[0]
        out = torch.as_tensor(np.asarray(out) if isinstance(out, list) else out).float().cpu()
        self.queries += len(x)
        if out.dim() != 2 or out.shape[0] != len(x):
            raise FpencError(
                f"{self.name} returned shape {tuple(out.shape)} for {len(x)} images; expected [B, classes]"
            )
        if self.num_classes is not None and out.shape[1] != self.num_classes:
            raise FpencError(
                f"{self.name} returned {out.shape[1]} classes, but the victim has {self.num_classes}; "
                "is it a model of the same task?"
            )
        bad = (~torch.isfinite(out)).any(1)
        if bad.any():
            raise FpencError(
                f"{self.name} returned NaN or inf for {int(bad.sum())} of {len(x)} inputs; "
                "its answers cannot be fingerprinted"
            )
        if self.outputs == "probs":  # declared probabilities: hold the suspect to it
            if bool((out < -1e-6).any()):
                raise FpencError(
                    f"{self.name} returned negative 'probabilities' (min {float(out.min()):.3g}); "
                    "if it answers logits or scores, use --outputs logits (or auto)"
                )
            sums = out.sum(1)
            if self.api.mode == "probs" and bool(((sums - 1).abs() > 0.05).any()):
                worst = float(sums[(sums - 1).abs().argmax()])
                raise FpencError(
                    f"{self.name} returned 'probabilities' whose rows do not sum to 1 (one sums to {worst:.3g}); "
                    "if it answers scores, use --outputs logits (or auto)"
                )
        is_probs = self.outputs == "probs" or (
            self.outputs == "auto"
            and bool((out >= 0).all())
            and torch.allclose(out.sum(1), torch.ones(len(out)), atol=1e-3)
        )
        probs = out if is_probs else torch.softmax(out, 1)
        return apply_api(probs, self.api)


def _module_fn(net: torch.nn.Module, batch_size: int = 1000):
    net.eval()

    def fn(x):
        device = next(iter(net.parameters()), torch.empty(0)).device
        return torch.cat([net(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])

    return fn


def from_module(net: torch.nn.Module, api="probs", num_classes=None, name="module") -> Suspect:
    return Suspect(_module_fn(net), api, "auto", num_classes, name)


def from_manifest_entry(entry: dict, run_dir, api="probs", num_classes=None) -> Suspect:
    from fpenc.rundir import load_zoo_model

    return Suspect(_module_fn(load_zoo_model(entry, run_dir)), api, "logits", num_classes, entry["id"])


MAX_FILE_BYTES = 4 << 30
"""Largest suspect file accepted (4 GiB); ``FPENC_MAX_SUSPECT_BYTES`` overrides it."""
MAX_UNZIPPED_BYTES = 8 << 30
"""Largest total uncompressed size of a zip-based suspect (TorchScript, .pt2): a zip bomb is refused
before anything is decompressed; ``FPENC_MAX_UNZIPPED_BYTES`` overrides it."""
PT2_REFUSAL = (
    "{path} is a torch.export (.pt2) file: loading one unpickles parts of it, which can run arbitrary code, so "
    "fpenc refuses it unless you trust the file (--trusted-suspect); for a file you do not trust, export the model "
    "to ONNX (torch.onnx.export), which fpenc runs without any file or code access"
)


def _limit(name: str, default: int) -> int:
    import os

    raw = os.environ.get(name)
    try:
        return int(raw) if raw else default
    except ValueError:
        raise FpencError(f"{name}={raw!r} is not a whole number of bytes") from None


def _zip_names(path: Path) -> list[str] | None:
    """Member names of a zip archive (read from its central directory only), or None if it is not
    one; refuses an archive whose members would decompress to more than the limit."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError):
        return None
    total, cap = sum(i.file_size for i in infos), _limit("FPENC_MAX_UNZIPPED_BYTES", MAX_UNZIPPED_BYTES)
    if total > cap:
        raise FpencError(
            f"{path} would decompress to {total / 2**30:.1f} GiB, over the {cap / 2**30:.1f} GiB limit "
            "(FPENC_MAX_UNZIPPED_BYTES): refused as a possible zip bomb"
        )
    return [i.filename for i in infos]


def load_model_file(path: str | Path, trusted: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable for a TorchScript, ``torch.export`` (.pt2) or ONNX file; never unpickles.

    Reads only the bytes needed to tell the format (the first 4 and a zip's central directory),
    refuses files over :data:`MAX_FILE_BYTES` and zips over :data:`MAX_UNZIPPED_BYTES`, and
    refuses ``.pt2`` files unless ``trusted`` (their loader unpickles).
    """
    path = Path(path)
    if not path.is_file():
        raise FpencError(f"suspect file {path} does not exist")
    size, cap = path.stat().st_size, _limit("FPENC_MAX_SUSPECT_BYTES", MAX_FILE_BYTES)
    if size > cap:
        raise FpencError(
            f"suspect file {path} is {size / 2**30:.1f} GiB, over the {cap / 2**30:.1f} GiB limit "
            "(FPENC_MAX_SUSPECT_BYTES); is it really a model file?"
        )
    with open(path, "rb") as fh:
        head = fh.read(4)
    names = _zip_names(path) if head[:2] == b"PK" else None
    if path.suffix.lower() == ".onnx" or (names is None and head[:1] == b"\x08"):
        return _onnx_fn(path)
    if names is None:
        if head[:1] == b"\x80":  # a raw pickle stream
            raise FpencError(PICKLE_REFUSAL.format(path=path))
        raise FpencError(f"{path} is not a TorchScript, torch.export (.pt2) or ONNX model file")
    if any(n.endswith("serialized_exported_program.json") or "/models/" in n and n.endswith(".json") for n in names):
        if not trusted:
            raise FpencError(PT2_REFUSAL.format(path=path))
        try:
            program = torch.export.load(str(path))
        except Exception as err:
            raise FpencError(f"cannot load torch.export file {path}: {str(err).splitlines()[0][:200]}") from err
        module = program.module()
        return lambda x: module(x)
    if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        return _sandboxed_fn(path)
    if any(n.endswith("data.pkl") for n in names):
        raise FpencError(PICKLE_REFUSAL.format(path=path))
    raise FpencError(f"{path} is a zip archive but not a TorchScript or torch.export model")


def _sandboxed_fn(path: Path):
    """A TorchScript file, run by :mod:`fpenc.sandbox` (no file writes, no TCP, time and memory limits)."""
    from fpenc.sandbox import CALL_SECONDS, MEMORY_BYTES, TOTAL_SECONDS, SandboxedTorchScript

    model = SandboxedTorchScript(
        path,
        call_seconds=_limit("FPENC_SANDBOX_CALL_SECONDS", int(CALL_SECONDS)),
        total_seconds=_limit("FPENC_SANDBOX_TOTAL_SECONDS", int(TOTAL_SECONDS)),
        memory_bytes=_limit("FPENC_SANDBOX_MEMORY_BYTES", MEMORY_BYTES),
    )

    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(model(x))

    fn.sandbox = model
    return fn


def _onnx_fn(path: Path):
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise FpencError("ONNX suspects need onnxruntime: pip install 'fpenc[onnx]'") from err
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:
        raise FpencError(f"cannot load ONNX file {path}: {str(err).splitlines()[0][:200]}") from err
    inp = sess.get_inputs()[0]
    name, batch = inp.name, inp.shape[0] if inp.shape else None
    fixed = batch if isinstance(batch, int) and batch >= 1 else None  # an export without a dynamic batch axis

    def fn(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().cpu().numpy().astype("float32")
        step = fixed or len(x)
        return torch.from_numpy(
            np.concatenate([sess.run(None, {name: x[i : i + step]})[0] for i in range(0, len(x), step)])
        )

    return fn


def from_file(path, api="probs", outputs="auto", num_classes=None, trusted: bool = False) -> Suspect:
    return Suspect(load_model_file(path, trusted), api, outputs, num_classes, Path(path).name)
