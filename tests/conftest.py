"""Shared fixtures: tiny datasets written as real files, tiny pipeline configs."""

from __future__ import annotations

import gzip
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("WANDB_MODE", "offline")
REPO = Path(__file__).resolve().parents[1]


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """IDX3 (magic 2051) uint8 images [N, H, W], gzipped if the name ends in .gz."""
    n, h, w = images.shape
    data = struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """IDX1 (magic 2049) uint8 labels [N]."""
    data = struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def make_fmnist_files(root: Path, n_train: int = 400, n_test: int = 100, seed: int = 0) -> Path:
    """A tiny, learnable Fashion-MNIST look-alike in the Debian/official gzipped IDX layout.

    Class c images are noise plus a bright horizontal band at rows 2c..2c+3, so small CNNs
    can learn it in an epoch.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 * c + 2 : 2 * c + 6, 4:24] = 230
        write_idx_images(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx_labels(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture
def tiny_fmnist(tmp_path) -> Path:
    return make_fmnist_files(tmp_path / "fmnist")


TINY_GRID = "{{role: {role}, architectures: [{archs}], optimizers: [{opts}], seeds: [{seeds}], epochs: 1, batch_sizes: [64]{more}}}"


def tiny_grid(role: str, archs: str, opts: str = "adam", seeds: str = "0", more: str = "") -> str:
    """One zoo grid of 1-epoch, batch-64 models, as a YAML flow mapping."""
    return TINY_GRID.format(role=role, archs=archs, opts=opts, seeds=seeds, more=f", {more}" if more else "")


def tiny_config(
    tmp_path: Path, data_root: Path, name: str, grids: list[str], pipeline_extra: str = "", extra: str = ""
) -> Path:
    """``<name>.yaml``: an arc-A victim (2 epochs) and ``grids`` on tiny data; ``pipeline_extra``
    lines go inside ``pipeline:``, ``extra`` (top-level sections) after it."""
    lines = [
        "pipeline:",
        f"  name: {name}",
        f"  runs_dir: {tmp_path / 'runs'}",
        f"  data: {{dataset: fashion_mnist, root: {data_root}}}",
        "  zoo:",
        "    victim: {architecture: fmnist_a, optimizer: adam, batch_size: 64, epochs: 2}",
        "    grids:",
        *(f"      - {g}" for g in grids),
        *(f"  {line}" for line in textwrap.dedent(pipeline_extra).strip().splitlines()),
    ]
    path = tmp_path / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n" + textwrap.dedent(extra))
    return path


def tiny_zoo_config(tmp_path: Path, data_root: Path, extra: str = "") -> Path:
    """A 5-model zoo (victim + 2 piracy + 2 homologous) on tiny data, 1 epoch each."""
    grids = [
        tiny_grid("piracy", "fmnist_b, fmnist_c"),
        tiny_grid("homologous", "fmnist_c", opts="sgd, adam", more="options: {channels: [8, 8]}"),
    ]
    return tiny_config(tmp_path, data_root, "tiny", grids, extra=extra)


def run_cli_without_lightning(args: list[str], timeout: float = 120, env: dict | None = None):
    """``fpenc <args>`` in a fresh process that fails if it imports Lightning (verify must not)."""
    code = (
        "import sys, fpenc.cli\n"
        f"rc = fpenc.cli.main({args!r})\n"
        "assert 'pytorch_lightning' not in sys.modules and 'lightning' not in sys.modules, 'Lightning was imported'\n"
        "sys.exit(rc)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=timeout, env=env
    )


def sigkill_once_recorded(args: list[str], manifest: Path, count: int = 2, timeout: float = 240) -> None:
    """Start ``args``, SIGKILL it as soon as ``manifest`` lists ``count`` models; fails the test if
    the process ends first or nothing is recorded in ``timeout`` seconds."""
    import json

    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if manifest.exists() and len(json.loads(manifest.read_text())["models"]) >= count:
            break
        if proc.poll() is not None:
            pytest.fail(f"{' '.join(map(str, args[2:4]))} ended before it could be killed")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
