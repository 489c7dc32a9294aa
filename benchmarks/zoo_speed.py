"""Seconds per training epoch of the demo's zoo architectures, NCHW against channels-last.

The zoo trains its models with channels-last (NHWC) weights (``fpenc.zoo.builder.fit_module``):
on CPU, oneDNN's NHWC convolutions are faster for these small CNNs. This measures one
optimisation step (Adam, forward + backward on random images ``[B, 1, 28, 28]``) of each
architecture both ways, and reports it as seconds per epoch of 30,000 images (a demo split).

    .venv/bin/python benchmarks/zoo_speed.py --out benchmarks/results/zoo_speed.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import write_results

ARCHS = [
    ("fmnist_a", {"channels": [8, 16, 16, 16]}),
    ("fmnist_a", {}),
    ("fmnist_b", {}),
    ("fmnist_c", {}),
    ("fmnist_d", {}),
    ("fmnist_e", {}),
]


def step_seconds(arch: str, options: dict, batch_size: int, channels_last: bool, steps: int) -> float:
    from fpenc.models import build_model

    torch.manual_seed(0)
    net = build_model(arch, num_classes=10, input_shape=(1, 28, 28), mean=[0.3], std=[0.35], **options)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x, y = torch.rand(batch_size, 1, 28, 28), torch.randint(0, 10, (batch_size,))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    for _ in range(5):  # warm-up: oneDNN picks its kernels
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--images", type=int, default=30000, help="images per epoch (a demo split)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    from fpenc.allocator import tune_allocator

    tune_allocator()
    rows = []
    for arch, options in ARCHS:
        row = {"architecture": arch, "options": options}
        for name, cl in (("nchw", False), ("channels_last", True)):
            s = step_seconds(arch, options, args.batch_size, cl, args.steps)
            row[f"{name}_s_per_epoch"] = round(s * args.images / args.batch_size, 2)
        row["speedup"] = round(row["nchw_s_per_epoch"] / row["channels_last_s_per_epoch"], 3)
        print(
            f"{arch:9s} {str(options.get('channels', 'default')):16s} NCHW {row['nchw_s_per_epoch']:6.2f} s/epoch  "
            f"channels-last {row['channels_last_s_per_epoch']:6.2f} s/epoch  x{row['speedup']:.2f}",
            flush=True,
        )
        rows.append(row)
    result = {
        "benchmark": "zoo_speed",
        "batch_size": args.batch_size,
        "steps": args.steps,
        "images_per_epoch": args.images,
        "rows": rows,
    }
    if args.out:
        write_results(args.out, result, seed=0, argv=argv)  # torch.manual_seed(0) in step_seconds
    return result


if __name__ == "__main__":
    main()
