"""Run an untrusted TorchScript suspect in a child process that cannot write files or open TCP
connections, under time and memory limits, with only arrays crossing the boundary.

A TorchScript file is a program: ``__setstate__`` runs at load time and ops such as ``aten::save``
or ``torch.from_file`` read and write files while it answers. So fpenc never loads one in its own
process. The child (``python -m fpenc.sandbox FILE``):

* is started with an empty environment and an empty temporary working directory;
* moves its own stdout to a pipe the parent drains (a suspect's ``print`` never reaches fpenc's
  output) and keeps a private duplicate of the original stdout for answers;
* after importing torch and before opening the suspect, sets ``RLIMIT_FSIZE`` to 0 (no byte can
  be written to any file), ``RLIMIT_CORE`` to 0, ``RLIMIT_AS`` to the memory limit, and, where the
  kernel has Landlock (Linux >= 5.13), forbids every file-system write (creating, removing,
  renaming, truncating) and TCP bind/connect (Landlock ABI >= 4) for itself and its children;
* answers requests: images in, scores out, as ``.npy`` arrays (``allow_pickle=False`` both ways).

The parent enforces a time limit per call and in total, checks every answer's shape and dtype
before reading it, and kills the child (its whole process group) on any breach. Each breach is a
one-line :class:`SandboxError` naming the limit.
"""

from __future__ import annotations

import io
import os
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from fpenc.errors import FpencError
from fpenc.landlock import landlock_deny_writes

CALL_SECONDS = 120.0
TOTAL_SECONDS = 1800.0
MEMORY_BYTES = 8 << 30
MAX_ANSWER_CLASSES = 100_000


class SandboxError(FpencError):
    """The sandboxed suspect broke a limit, crashed, or answered something malformed."""


def read_npy(read, max_elements: int = 1 << 31) -> np.ndarray:
    """A float32 C-order ``.npy`` array from ``read(n) -> exactly n bytes``, header checked before any
    data is read (no pickle, no object dtype, at most ``max_elements`` elements). ValueError otherwise."""
    import ast

    magic = read(8)
    if magic[:6] != b"\x93NUMPY" or magic[6] not in (1, 2, 3):
        raise ValueError("not an .npy array")
    size_len = 2 if magic[6] == 1 else 4
    (hlen,) = struct.unpack("<H" if size_len == 2 else "<I", read(size_len))
    if hlen > 4096:
        raise ValueError("oversized .npy header")
    try:
        meta = ast.literal_eval(read(hlen).decode("latin1").strip())
        shape, dtype, fortran = (
            tuple(int(d) for d in meta["shape"]),
            np.dtype(meta["descr"]),
            bool(meta["fortran_order"]),
        )
    except (ValueError, SyntaxError, KeyError, TypeError) as err:
        raise ValueError(f"bad .npy header ({err})") from None
    if dtype != np.dtype("<f4") or fortran or any(d < 0 for d in shape) or int(np.prod(shape)) > max_elements:
        raise ValueError(f"an array of shape {shape} and type {dtype}; expected float32")
    return np.frombuffer(read(int(np.prod(shape)) * 4), dtype="<f4").reshape(shape).copy()


def write_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array, dtype="<f4"), allow_pickle=False)
    return buf.getvalue()


# -- child side --------------------------------------------------------------------------------
def _child(path: str, memory: int) -> None:
    answers = os.fdopen(os.dup(1), "wb", buffering=0)  # the private answer channel
    os.dup2(2, 1)  # the suspect's prints go to the drained stderr pipe
    requests = os.fdopen(0, "rb", buffering=0)
    import torch

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past RLIMIT_FSIZE fails instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    abi = landlock_deny_writes()

    def send_error(msg: str) -> None:
        data = msg.encode("utf-8", "replace")[:2000]
        answers.write(b"E" + struct.pack("<I", len(data)) + data)

    try:
        model = torch.jit.load(path, map_location="cpu").eval()
    except BaseException as err:  # noqa: BLE001 - everything the suspect raises is reported, not raised
        send_error(f"cannot load TorchScript file: {_first_line(err)}")
        return
    answers.write(b"R" + struct.pack("<I", abi))
    while True:
        head = requests.read(1)
        if not head:
            return
        try:
            x = read_npy(lambda n: _read_all(requests, n))
            with torch.inference_mode():
                out = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
            if isinstance(out, (tuple, list)):
                out = out[0]
            y = np.ascontiguousarray(torch.as_tensor(out).detach().float().cpu().numpy())
        except MemoryError:
            send_error("memory limit exceeded")
            continue
        except BaseException as err:  # noqa: BLE001
            send_error(_first_line(err))
            continue
        answers.write(b"O" + write_npy(y))


def _read_all(stream, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = stream.read(n - len(out))
        if not chunk:
            raise EOFError("the request stream ended")
        out += chunk
    return bytes(out)


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()] or [type(err).__name__]
    text = " ".join(lines) if len(lines) <= 4 else lines[-1]
    return f"{type(err).__name__}: {text[:300]}"


# -- parent side -------------------------------------------------------------------------------
class SandboxedTorchScript:
    """A TorchScript file answered by a sandboxed child process; call it with float images ``[B, C, H, W]``.

    Args:
        path: the TorchScript file.
        call_seconds, total_seconds: time limits per call and over the model's life (load included).
        memory_bytes: the child's address-space limit (0: none).
    """

    def __init__(
        self,
        path,
        call_seconds: float = CALL_SECONDS,
        total_seconds: float = TOTAL_SECONDS,
        memory_bytes: int = MEMORY_BYTES,
    ):
        self.path = os.fspath(path)
        self.call_seconds, self.total_seconds = call_seconds, total_seconds
        self.started = time.monotonic()
        self.tmp = tempfile.mkdtemp(prefix="fpenc-sandbox-")
        self.output = bytearray()  # what the suspect printed (last 64 KiB)
        env = {
            "PATH": os.defpath,
            "HOME": self.tmp,
            "TMPDIR": self.tmp,
            "PYTHONNOUSERSITE": "1",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1)),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fpenc.sandbox", os.path.abspath(self.path), str(int(memory_bytes))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.tmp,
            env=env,
            start_new_session=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        status = self._read_exact(1, "loading the model")
        if status == b"E":
            self._raise_child_error("loading")
        if status != b"R":
            self._fail(f"the sandboxed suspect sent {status!r} instead of a ready signal")
        self.landlock_abi = struct.unpack("<I", self._read_exact(4, "loading the model"))[0]

    def _drain(self) -> None:
        for chunk in iter(lambda: self.proc.stderr.read1(65536), b""):
            self.output += chunk
            del self.output[:-65536]

    def _deadline(self, what: str) -> float:
        now = time.monotonic()
        total_left = self.total_seconds - (now - self.started)
        if total_left <= 0:
            self._fail(f"the suspect used up its total time limit of {self.total_seconds:g} s ({what})")
        return now + min(self.call_seconds, total_left)

    def _read_exact(self, n: int, what: str) -> bytes:
        deadline, out, fd = self._deadline(what), bytearray(), self.proc.stdout.fileno()
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                limit = min(self.call_seconds, self.total_seconds)
                self._fail(
                    f"the suspect did not answer within its time limit ({limit:g} s per call, "
                    f"{self.total_seconds:g} s in all) while {what}"
                )
            chunk = os.read(fd, n - len(out))
            if not chunk:
                self.proc.wait(timeout=5)
                self._fail(f"the sandboxed suspect exited (code {self.proc.returncode}) while {what}" + self._printed())
            out += chunk
        return bytes(out)

    def _printed(self) -> str:
        text = bytes(self.output).decode("utf-8", "replace").strip().splitlines()
        return f"; its last output: {text[-1][:200]}" if text else ""

    def _raise_child_error(self, what: str):
        (n,) = struct.unpack("<I", self._read_exact(4, what))
        msg = self._read_exact(n, what).decode("utf-8", "replace")
        if "memory limit" in msg or "MemoryError" in msg or "std::bad_alloc" in msg or "alloc" in msg.lower():
            msg += " (memory limit: FPENC_SANDBOX_MEMORY_BYTES)"
        raise SandboxError(f"the suspect failed while {what}: {msg}")

    def _fail(self, msg: str):
        self.close()
        raise SandboxError(msg)

    def __call__(self, x) -> np.ndarray:
        import torch

        x = torch.as_tensor(x).detach().float().cpu().numpy()
        try:
            self.proc.stdin.write(b"Q" + write_npy(x))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._fail("the sandboxed suspect is gone (it exited or was stopped)" + self._printed())
        status = self._read_exact(1, "answering")
        if status == b"E":
            self._raise_child_error("answering")
        if status != b"O":
            self._fail(f"the sandboxed suspect sent a malformed answer (status {status!r})")
        return self._read_answer(len(x))

    def _read_answer(self, rows: int) -> np.ndarray:
        try:
            y = read_npy(lambda n: self._read_exact(n, "answering"), max_elements=rows * MAX_ANSWER_CLASSES)
        except ValueError as err:
            self._fail(f"the suspect answered {err} for {rows} images; expected float32 [images, classes]")
        if y.ndim != 2 or len(y) != rows:
            self._fail(
                f"the suspect answered an array of shape {tuple(y.shape)} for {rows} images; expected [images, classes]"
            )
        return y

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]))
