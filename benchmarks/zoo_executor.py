"""The same zoo built by each executor: wall time of `fpenc zoo` from nothing, and whether the weights
are bit-identical (their content hashes) for the same seeds.

    python benchmarks/zoo_executor.py -c experiments/configs/zoo12.yaml \\
        --out benchmarks/results/zoo_executor.json

Variants (each in its own runs directory, built from nothing): the local executor with torch's
default threads (this process's cores), the local executor with 1 thread per model, and Ray with
1 CPU per task on a local Ray instance started by the command (its start-up included). Weights
depend on the thread count (the order of float reductions), so hashes are compared between runs
of the same thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, configs, load_run, write_results

VARIANTS = {
    "local": [],
    "local_1_thread": ["--cpus-per-task", "1"],
    "ray_1_cpu_per_task": ["--executor", "ray", "--cpus-per-task", "1"],
}


def build(config: list[str], runs: Path, flags: list[str]) -> tuple[float, list[dict]]:
    """Wall seconds of ``fpenc zoo`` from nothing in ``runs``, and its manifest's models."""
    shutil.rmtree(runs, ignore_errors=True)
    cmd = [sys.executable, "-m", "fpenc.cli", "zoo", *sum((["-c", c] for c in config), []), "--runs-dir", str(runs)]
    start = time.perf_counter()
    subprocess.run([*cmd, "--no-progress", *flags], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    return seconds, load_run(config, {"runs_dir": str(runs)})[1].load_manifest()["models"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap, required=False, default=["experiments/configs/zoo12.yaml"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "zoo_executor")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = ap.parse_args(argv)
    config = configs(args)
    cfg, _ = load_run(config)
    rows = {}
    for name in args.variants:
        seconds, models = build(config, args.runs_dir / name, VARIANTS[name])
        rows[name] = {
            "flags": " ".join(VARIANTS[name]) or "(none)",
            "wall_seconds": round(seconds, 1),
            "train_seconds_sum": round(sum(m["train_seconds"] for m in models), 1),
            "models": len(models),
            "sha256": {m["id"]: m["sha256"] for m in models},
            "load_average_1min_after": round(os.getloadavg()[0], 2),  # > ~2 on 2 cores: something else ran
        }
        print(f"{name}: {len(models)} models in {seconds:.1f} s", file=sys.stderr)
    result = {"benchmark": "zoo_executor", "run": cfg.name, "cpus": os.cpu_count(), "variants": rows}
    if {"local_1_thread", "ray_1_cpu_per_task"} <= set(rows):
        one, ray = rows["local_1_thread"], rows["ray_1_cpu_per_task"]
        result["bit_identical_ray_vs_local_1_thread"] = one["sha256"] == ray["sha256"]
        result["speedup_ray_vs_local_1_thread"] = round(one["wall_seconds"] / ray["wall_seconds"], 2)
    if {"local", "ray_1_cpu_per_task"} <= set(rows):
        local, ray = rows["local"], rows["ray_1_cpu_per_task"]
        result["bit_identical_ray_vs_local"] = local["sha256"] == ray["sha256"]
        result["speedup_ray_vs_local"] = round(local["wall_seconds"] / ray["wall_seconds"], 2)
    write_results(args.out, result, seed=cfg.seed, argv=argv)
    print(json.dumps({k: v for k, v in result.items() if k != "variants"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
