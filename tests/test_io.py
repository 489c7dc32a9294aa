import os

import pytest
import torch

from fpenc.errors import WeightsFileError
from fpenc.io import atomic_path, load_weights, save_weights, sha256_file


def test_weights_roundtrip_and_hash(tmp_path):
    sd = {"w": torch.randn(3, 4), "b": torch.zeros(3)}
    path = tmp_path / "m.pt"
    sha = save_weights(path, sd, {"arch": "x", "input_shape": [1, 28, 28]}, model_id="m")
    payload = load_weights(path, expected_sha256=sha)
    assert payload["config"]["arch"] == "x" and payload["model_id"] == "m"
    assert torch.equal(payload["state_dict"]["w"], sd["w"])


def test_truncated_and_garbage_files_are_clear_errors(tmp_path):
    path = tmp_path / "m.pt"
    save_weights(path, {"w": torch.randn(100, 100)}, {"arch": "x"})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFileError, match="truncated, corrupt"):
        load_weights(path)
    path.write_bytes(b"not a weights file at all")
    with pytest.raises(WeightsFileError, match="truncated, corrupt"):
        load_weights(path)
    with pytest.raises(WeightsFileError, match="does not exist"):
        load_weights(tmp_path / "missing.pt")


def test_identical_weights_hash_the_same_across_saves(tmp_path):
    """By content: two saves of the same weights (whose torch.save files differ byte-wise) hash alike,
    a changed value or config does not, and a manifest's older file hash is still accepted."""
    sd, cfg = {"w": torch.randn(3, 4), "b": torch.zeros(3)}, {"arch": "x"}
    a, b = save_weights(tmp_path / "a.pt", sd, cfg), save_weights(tmp_path / "sub" / "b.pt", sd, cfg)
    assert a == b and sha256_file(tmp_path / "a.pt") != sha256_file(tmp_path / "sub" / "b.pt")
    assert save_weights(tmp_path / "c.pt", {**sd, "b": torch.ones(3)}, cfg) != a
    assert save_weights(tmp_path / "d.pt", sd, {"arch": "y"}) != a
    load_weights(tmp_path / "a.pt", expected_sha256=sha256_file(tmp_path / "a.pt"))  # legacy file hash


def test_hash_mismatch_is_reported(tmp_path):
    path = tmp_path / "m.pt"
    save_weights(path, {"w": torch.ones(2)}, {"arch": "x"})
    with pytest.raises(WeightsFileError, match="corrupt or was changed"):
        load_weights(path, expected_sha256="0" * 64)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "fpenc-weights/1", "state_dict": {}, "x": Evil()}, path)
    with pytest.raises(WeightsFileError):
        load_weights(path)


def test_atomic_path_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_run_dir_lock_refuses_a_second_process(tmp_path):
    import subprocess
    import sys

    from fpenc.io import lock_run_dir

    lock_run_dir(tmp_path / "run")
    lock_run_dir(tmp_path / "run")  # reentrant in one process
    code = (
        "import sys; from fpenc.io import lock_run_dir; from fpenc.errors import FpencError\n"
        f"try:\n    lock_run_dir({str(tmp_path / 'run')!r})\nexcept FpencError as e:\n    print(e); sys.exit(2)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2 and "another fpenc process" in proc.stdout and "resumes" in proc.stdout
    other = subprocess.run(
        [sys.executable, "-c", code.replace("'run'", "'run2'").replace(str(tmp_path / "run"), str(tmp_path / "run2"))],
        capture_output=True,
        text=True,
    )
    assert other.returncode == 0, other.stdout


def test_a_flipped_byte_in_an_artifact_is_refused(tmp_path):
    """save_tensors records the SHA-256 of the content inside the file; load_tensors checks it, so a
    damaged UAP bank, key or fingerprint file is refused instead of being exported silently."""
    from fpenc.io import load_tensors, save_tensors

    path = tmp_path / "fps.pt"
    fps = torch.arange(4096, dtype=torch.float32)
    save_tensors(path, {"fingerprints": fps, "api": "label"}, "fpenc-test/1")
    assert torch.equal(load_tensors(path, "fpenc-test/1")["fingerprints"], fps)
    raw = bytearray(path.read_bytes())
    at = raw.find(fps[1000:1004].numpy().tobytes())  # inside the tensor's data
    assert at > 0
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(WeightsFileError, match="damaged: its content does not match"):
        load_tensors(path, "fpenc-test/1")
