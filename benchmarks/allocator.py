"""What fpenc.allocator (glibc mmap/trim thresholds) saves on CPU, measured both ways.

Each workload runs in a fresh process, once with FPENC_MALLOC_TUNING=0 and once with it on:

* ``zoo``: `fpenc zoo` of a 2-model zoo on real Fashion-MNIST (the demo's arc-A victim, 1 epoch,
  and one narrow arc-A homologous model, 2 epochs);
* ``subspace``: 64 batched SGD-UAPs of the demo victim (20 steps of 32 images), as
  `fpenc subspace` computes them.

    .venv/bin/python benchmarks/allocator.py --out benchmarks/results/allocator.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import write_results

ZOO_OVERLAY = """pipeline:
  name: alloc_bench
  zoo:
    victim: {architecture: fmnist_a, optimizer: adam, batch_size: 128, epochs: 1}
    grids:
      - {role: homologous, architectures: [fmnist_a], optimizers: [sgd], seeds: [0], epochs: 2,
         options: {channels: [8, 16, 16, 16]}}
"""
SUBSPACE = """
import sys, time, torch
sys.path.insert(0, {root!r})
from fpenc.allocator import tune_allocator
tune_allocator()
from fpenc.data.datasets import load_dataset
from fpenc.models.registry import build_model
from fpenc.uap.subspace import batched_sgd_uaps
arr = load_dataset("fashion_mnist")
torch.manual_seed(0)
net = build_model("fmnist_a", num_classes=10, input_shape=(1, 28, 28))
batched_sgd_uaps(net, arr.train_x[:30000], 64, 0.25, "linf", steps=20, batch_size=32, seed=0)
"""


def timed(cmd: list[str], tuning: bool) -> dict:
    env = {**os.environ, "FPENC_MALLOC_TUNING": "1" if tuning else "0", "WANDB_MODE": "offline"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall_s": round(wall, 1),
        "user_s": round(after.ru_utime - before.ru_utime, 1),
        "sys_s": round(after.ru_stime - before.ru_stime, 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the results here (JSON)")
    args = ap.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        overlay = Path(tmp) / "alloc_bench.yaml"
        overlay.write_text(ZOO_OVERLAY)
        fpenc = str(Path(sys.executable).with_name("fpenc"))
        for tuning in (False, True):
            runs = Path(tmp) / f"runs_{int(tuning)}"
            zoo = [
                fpenc,
                "zoo",
                "-c",
                "configs/fmnist_demo.yaml",
                "-c",
                str(overlay),
                "--runs-dir",
                str(runs),
                "--no-progress",
            ]
            results.setdefault("zoo", {})["on" if tuning else "off"] = timed(zoo, tuning)
            sub = [sys.executable, "-c", SUBSPACE.format(root=str(ROOT))]
            results.setdefault("subspace", {})["on" if tuning else "off"] = timed(sub, tuning)
            print(json.dumps(results), flush=True)
    for r in results.values():
        r["speedup"] = round(r["off"]["wall_s"] / r["on"]["wall_s"], 2)
    out = {"benchmark": "allocator", "results": results, "libc": " ".join(platform.libc_ver())}
    print(json.dumps(out, indent=2))
    if args.out:
        write_results(args.out, out, seed=0, argv=argv)  # the subspace workload's seed


if __name__ == "__main__":
    main()
