"""What any black-box method can reach on a benchmark's test set: the copies that are not working
models of the task (test accuracy below fpenc's sanity gate, chance + half the victim's margin)
answer like the degenerate negatives, so no statistic can rank them above the independents.

For the committed results of ``fpenc bench`` and the run's manifest (each model's test accuracy),
writes those copies and the highest AUC a method could reach with them in the test set: every
working copy above every negative, the others tied with the negatives (``auc_ceiling_tied``) or
below them (``auc_ceiling_below``).

    python benchmarks/bench_ceiling.py -c configs/fmnist_demo.yaml -c configs/bench_fmnist.yaml \\
        -c configs/owner_copies.yaml --results benchmarks/results/bench_fmnist.json \\
        --out benchmarks/results/bench_fmnist_ceiling.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, load_run, write_results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap)
    ap.add_argument("--results", required=True, help="the benchmark's results (fpenc bench --out)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    from fpenc.verdict import Gates

    cfg, run = load_run(args.config)
    results = json.loads(Path(args.results).read_text())
    manifest = run.load_manifest()
    accuracy = {m["id"]: m["test_accuracy"] for m in manifest["models"]}
    gate = Gates.from_victim(accuracy["victim"], 1.0, manifest["num_classes"]).min_accuracy
    positives = [m for m in results["models"] if m["positive"]]
    negatives = len(results["models"]) - len(positives)
    below = [
        {"id": m["id"], "kind": m["kind"], "test_accuracy": accuracy[m["id"]]}
        for m in positives
        if accuracy[m["id"]] < gate
    ]
    share = len(below) / len(positives)
    result = {
        "benchmark": "bench_ceiling",
        "results": args.results,
        "victim_accuracy": accuracy["victim"],
        "sanity_gate_accuracy": gate,
        "positives": len(positives),
        "negatives": negatives,
        "copies_below_gate": below,
        "auc_ceiling_tied": round(1 - share / 2, 4),
        "auc_ceiling_below": round(1 - share, 4),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "copies_below_gate"}, indent=1))
    write_results(args.out, result, seed=cfg.seed, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
