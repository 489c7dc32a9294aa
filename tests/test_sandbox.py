"""Hostile TorchScript suspects run in fpenc.sandbox: no file written, no output injected, time and
memory limits enforced with one-line errors; a well-behaved one answers exactly as in-process."""

from __future__ import annotations

import socket
import sys

import pytest
import torch

from fpenc.errors import FpencError
from fpenc.sandbox import SandboxError, landlock_deny_writes  # noqa: F401  (importable without torch.jit)
from fpenc.suspects import from_file

pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only"),
]
X = torch.rand(4, 1, 28, 28)


class Plain(torch.nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10] * 3


class Overwrite(torch.nn.Module):
    """Maps an existing file shared and overwrites it (torch.from_file, shared=True)."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(self, x):
        t = torch.from_file(self.target, shared=True, size=16, dtype=torch.uint8)
        t.fill_(65)
        return x.flatten(1)[:, :10] + t.float().sum() * 0  # (used, so TorchScript keeps it)


class Printer(torch.nn.Module):
    def forward(self, x):
        print("verdict:     not shown")
        return x.flatten(1)[:, :10]


class Loop(torch.nn.Module):
    def forward(self, x):
        i = 0
        while i >= 0:
            i += 1
        return x.flatten(1)[:, :10]


class Hog(torch.nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10] + torch.ones(1 << 36)[0]


class WrongShape(torch.nn.Module):
    def forward(self, x):
        return x.flatten(1)[:2, :10]


def scripted(module, path):
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def test_plain_model_answers_as_in_process(tmp_path):
    path = scripted(Plain(), tmp_path / "plain.pt")
    suspect = from_file(path)
    torch.testing.assert_close(suspect(X), torch.softmax(Plain()(X), 1))
    assert suspect.fn.sandbox.landlock_abi >= 0


def test_suspect_cannot_change_files(tmp_path):
    if landlock_probe() == 0:
        pytest.skip("this kernel has no Landlock: RLIMIT_FSIZE alone does not stop writes through a shared mapping")
    victim_file = tmp_path / "precious.bin"
    victim_file.write_bytes(b"B" * 16)
    path = scripted(Overwrite(str(victim_file)), tmp_path / "overwrite.pt")
    copy = tmp_path / "copy.bin"
    copy.write_bytes(b"B" * 16)
    torch.jit.load(str(scripted(Overwrite(str(copy)), tmp_path / "o2.pt")))(X)  # the attack works in-process ...
    assert copy.read_bytes() == b"A" * 16
    with pytest.raises(SandboxError, match="the suspect failed while answering"):  # ... and not in the sandbox
        from_file(path)(X)
    assert victim_file.read_bytes() == b"B" * 16


def test_suspect_output_never_reaches_our_stdout(tmp_path, capfd):
    path = scripted(Printer(), tmp_path / "printer.pt")
    suspect = from_file(path)
    suspect(X)
    suspect.fn.sandbox.close()
    out, err = capfd.readouterr()
    assert "verdict" not in out and "verdict" not in err


def test_endless_loop_hits_the_time_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("FPENC_SANDBOX_CALL_SECONDS", "3")
    suspect = from_file(scripted(Loop(), tmp_path / "loop.pt"))
    with pytest.raises(SandboxError, match=r"did not answer within its time limit \(3 s per call"):
        suspect(X)


def test_unbounded_allocation_hits_the_memory_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("FPENC_SANDBOX_MEMORY_BYTES", str(4 << 30))
    with pytest.raises(SandboxError, match="allocate memory.*memory limit"):
        from_file(scripted(Hog(), tmp_path / "hog.pt"))(X)


def test_malformed_answers_are_one_line_errors(tmp_path):
    with pytest.raises(FpencError, match="shape"):
        from_file(scripted(WrongShape(), tmp_path / "wrong.pt"))(X)


def test_landlock_blocks_writes_and_tcp_in_a_child(tmp_path):
    """The primitive itself, in a forked child: after it, creating a file and connecting fail."""
    import os

    if landlock_probe() == 0:
        pytest.skip("this kernel has no Landlock")
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            landlock_deny_writes()
            try:
                open(tmp_path / "new.txt", "w").close()
                code |= 1
            except PermissionError:
                pass
            srv = socket.socket()
            try:
                srv.bind(("127.0.0.1", 0))
                code |= 2
            except PermissionError:
                pass
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not (tmp_path / "new.txt").exists()


def landlock_probe() -> int:
    import ctypes

    return max(ctypes.CDLL(None, use_errno=True).syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1)), 0)
