"""What a built zoo cost: the number of models and the sum of their training seconds (as each
model's manifest entry recorded it), per role and set, and the machine.

    python benchmarks/zoo_time.py -c configs/fmnist_demo.yaml -c configs/bench_fmnist.yaml \\
        --out benchmarks/results/bench_fmnist_zoo_time.json [--note "..."]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, configs, load_run, write_results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--note", default=None, help="how the zoo was built (e.g. what else shared the machine)")
    args = ap.parse_args(argv)
    cfg, rd = load_run(configs(args))
    models = rd.load_manifest()["models"]
    by = defaultdict(lambda: [0, 0.0])
    for m in models:
        key = f"{m['role']}/{m.get('set', '?')}"
        by[key][0] += 1
        by[key][1] += float(m.get("train_seconds", 0.0))
    result = {
        "benchmark": "zoo_time",
        "run": cfg.name,
        "models": len(models),
        "train_seconds": round(sum(s for _, s in by.values()), 1),
        "by_role_and_set": {k: {"models": n, "train_seconds": round(s, 1)} for k, (n, s) in sorted(by.items())},
        "note": args.note,
    }
    write_results(args.out, result, seed=cfg.seed, argv=argv)
    print(f"{result['models']} models, {result['train_seconds']:.0f} s of training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
