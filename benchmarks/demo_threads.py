"""Do two runs of `make demo` give the same verdicts? Compares the reports of runs made with
different torch thread counts (or on two machines): every model's verdict, and how far each
verdict is from flipping (its margin), since the zoo itself retrains differently when the float
reduction order changes.

    OMP_NUM_THREADS=1 python benchmarks/demo_time.py --keep /tmp/demo1 --out /tmp/t1.json
    python benchmarks/demo_time.py --keep /tmp/demo2 --out /tmp/t2.json
    python benchmarks/demo_threads.py --reports /tmp/demo1/runs/fmnist_demo/report.json \\
        /tmp/demo2/runs/fmnist_demo/report.json --labels "1 thread" "2 threads" \\
        --out benchmarks/results/demo_threads.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import write_results


def compare(reports: list[dict], labels: list[str]) -> dict:
    """Per model: verdict, p-value, agreement and margin in each run; whether the verdicts agree."""
    by_run = [{m["id"]: m for m in r["models"]} for r in reports]
    ids = [i for i in by_run[0] if all(i in b for b in by_run[1:])]
    models = []
    for i in ids:
        rows = [b[i] for b in by_run]
        models.append(
            {
                "id": i,
                "split": rows[0]["split"],
                "role": rows[0]["role"],
                "same_verdict": len({r["verdict"] for r in rows}) == 1,
                **{
                    label: {k: r[k] for k in ("verdict", "p_value", "agreement", "margin") if k in r}
                    for label, r in zip(labels, rows)
                },
            }
        )
    margins = [abs(m[label]["margin"]) for m in models for label in labels if "margin" in m[label]]
    return {
        "runs": labels,
        "alpha": [r["alpha"] for r in reports],
        "bundle_sha256": [r.get("bundle_sha256") for r in reports],
        "models_compared": len(models),
        "only_in_some_runs": sorted({i for b in by_run for i in b} - set(ids)),
        "same_verdicts": all(m["same_verdict"] for m in models),
        "verdicts_that_differ": [m["id"] for m in models if not m["same_verdict"]],
        "smallest_abs_margin": min(margins) if margins else None,
        "summary": {
            label: {"piracy_derived": r["piracy_derived"], "homologous_derived": r["homologous_derived"]}
            for label, r in zip(labels, reports)
        },
        "models": models,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=Path, nargs="+", required=True, help="the report (JSON) of each run")
    ap.add_argument("--labels", nargs="+", required=True, help="one name per report")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/demo_threads.json")
    args = ap.parse_args(argv)
    if len(args.labels) != len(args.reports) or len(args.reports) < 2:
        ap.error("give >= 2 reports and one label per report")
    result = compare([json.loads(p.read_text()) for p in args.reports], args.labels)
    write_results(args.out, {"benchmark": "demo_threads", **result}, seed=0, argv=argv)
    print(
        f"same verdicts: {result['same_verdicts']} over {result['models_compared']} models; smallest |margin| "
        f"{result['smallest_abs_margin']:.4f}; differ: {', '.join(result['verdicts_that_differ']) or 'none'}"
    )
    return 0 if result["same_verdicts"] else 1


if __name__ == "__main__":
    sys.exit(main())
