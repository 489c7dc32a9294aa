"""Safe, atomic artifact files.

Every artifact fpenc writes goes to a temporary file in the target directory, is fsynced, then
``os.replace``-d over the final name: a run killed at any instant leaves either the old file or
the new one, never a truncated one. Weights are ``state_dict`` + a plain config dict saved with
``torch.save`` and read back only with ``torch.load(..., weights_only=True)``, which cannot run
code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fpenc.errors import WeightsFileError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it over ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise WeightsFileError(f"{path} is not valid JSON ({err}); delete it to recompute it") from err


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


CONTENT_KEY = "content_sha256"


def payload_sha256(payload: Any) -> str:
    """SHA-256 of a tree of dicts, lists, tensors and JSON values by content (tensors: dtype, shape,
    raw bytes; dict keys sorted; the ``content_sha256`` key itself left out)."""
    import torch

    h = hashlib.sha256()

    def walk(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{list(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, dict):
            h.update(b"{")
            for k in sorted(x, key=str):
                if k != CONTENT_KEY:
                    h.update(json.dumps(str(k)).encode() + b":")
                    walk(x[k])
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                walk(v)
            h.update(b"]")
        else:
            h.update(json.dumps(x, sort_keys=True).encode())

    walk(payload)
    return h.hexdigest()


def save_tensors(path: str | os.PathLike, payload: dict, fmt: str) -> str:
    """Save a dict of tensors and plain values (no custom classes) atomically, with the SHA-256 of
    its content inside (checked by :func:`load_tensors`); returns the file's SHA-256."""
    import torch

    payload = {"format": fmt, **payload}
    payload[CONTENT_KEY] = payload_sha256(payload)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return sha256_file(path)


def load_tensors(
    path: str | os.PathLike, fmt: str, what: str = "artifact", remedy: str = "delete it to recompute it"
) -> dict:
    """Load a file of :func:`save_tensors` with ``weights_only=True``; clear errors for bad files."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{what} {path} does not exist; {remedy}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsFileError(
            f"cannot read {what} {path}: truncated, corrupt or unsafe ({first[:160]}); {remedy}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise WeightsFileError(f"{path} is not an fpenc {what} (expected format '{fmt}'); {remedy}")
    if CONTENT_KEY in payload and payload_sha256(payload) != payload[CONTENT_KEY]:
        raise WeightsFileError(
            f"{what} {path} is damaged: its content does not match the SHA-256 recorded in it; {remedy}"
        )
    return payload


def weights_sha256(state_dict: dict, config: dict) -> str:
    """SHA-256 of a model's weights by content (:func:`payload_sha256` of its format, architecture
    config and tensors). Identical weights hash the same however and wherever they were saved (a
    ``torch.save`` file's bytes do not)."""
    return payload_sha256({"format": "fpenc-weights/1", "config": config, "state_dict": state_dict})


def save_weights(path: str | os.PathLike, state_dict: dict, config: dict, **extra: Any) -> str:
    """Save ``{"format": "fpenc-weights/1", "config": config, "state_dict": ..., **extra}``.

    Tensors are moved to CPU. Returns :func:`weights_sha256` (by content, not by file bytes).
    """
    import torch

    payload = {
        "format": "fpenc-weights/1",
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return weights_sha256(payload["state_dict"], config)


def load_weights(path: str | os.PathLike, expected_sha256: str | None = None) -> dict:
    """Load a file written by :func:`save_weights` without unpickling arbitrary objects.

    Raises :class:`WeightsFileError` for a missing, truncated, corrupt or foreign file, or one
    whose :func:`weights_sha256` differs from ``expected_sha256`` (a manifest written before
    weights were hashed by content recorded the file's SHA-256: that is accepted too).
    """
    path = Path(path)
    remedy = "rebuild it with `fpenc zoo --config ...` (delete a damaged file first)"
    payload = load_tensors(path, "fpenc-weights/1", what="weights file", remedy=remedy)
    if "state_dict" not in payload or "config" not in payload:
        raise WeightsFileError(f"{path} is an fpenc weights file without 'state_dict' or 'config'; {remedy}")
    if expected_sha256 is not None:
        actual = weights_sha256(payload["state_dict"], payload["config"])
        if actual != expected_sha256 and sha256_file(path) != expected_sha256:
            raise WeightsFileError(
                f"weights file {path} is corrupt or was changed (sha256 {actual[:12]}... != recorded "
                f"{expected_sha256[:12]}...); {remedy}"
            )
    return payload


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Lay out a matplotlib figure, write it as PNG atomically, close it; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path


_LOCKS: dict[str, int] = {}


def lock_run_dir(run_dir: str | os.PathLike) -> None:
    """Hold ``<run_dir>/.lock`` for the rest of this process: one fpenc process at a time per run
    directory. Reentrant within a process; released when the process exits (even on SIGKILL).
    The other processes of a multi-device run (``fpenc fit --trainer.strategy ddp``), which
    Lightning starts with ``LOCAL_RANK`` > 0 from the process holding the lock, share it.

    Raises:
        FpencError: another process holds it (says which, and what to do).
    """
    import fcntl

    from fpenc.errors import FpencError

    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if key in _LOCKS:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        if os.environ.get("LOCAL_RANK", "0") != "0" and holder == str(os.getppid()):
            _LOCKS[key] = -1  # a DDP worker of the process that holds it (Lightning's launcher: rank 0)
            return
        raise FpencError(
            f"another fpenc process (pid {holder}) is working in {run_dir}; wait for it to finish "
            "(or stop it), then rerun: it resumes where that one stopped"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _LOCKS[key] = fd
