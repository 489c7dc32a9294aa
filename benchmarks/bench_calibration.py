"""Calibration of every method's verdict over a benchmark's negatives: nominal alpha against the
observed false-accusation rate (with its Clopper-Pearson 95% interval), from the p-values the
committed results already hold (no model is queried again).

    python benchmarks/bench_calibration.py --results benchmarks/results/bench_fmnist.json --budget 200 \\
        --out benchmarks/results/bench_fmnist_calibration.json --plot docs/figures/bench_fmnist_calibration.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import write_results

ALPHAS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


def calibration(results: dict, budget: int, methods: list[str] | None = None) -> dict:
    """``{method: false_accusation_table}`` over the negatives at ``budget`` queries."""
    from fpenc.calibration import false_accusation_table

    negatives = [m["id"] for m in results["models"] if not m["positive"]]
    out = {}
    for name in methods or list(results["methods"]):
        scores = results["methods"][name]["budgets"][str(budget)]["scores"]
        p = [scores[i][1] for i in negatives]
        out[name] = false_accusation_table(p, [True] * len(p), ALPHAS)
    return out


def plot(tables: dict, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fpenc.io import save_figure

    fig, ax = plt.subplots(figsize=(6, 4.4))
    a = list(ALPHAS)
    ax.plot(a, a, color="gray", ls="--", label="nominal (observed = alpha)")
    for name, t in tables.items():
        line = ax.plot(a, [r["rate"] for r in t], "o-", ms=3, label=name)[0]
        if name == "fpenc":
            ax.fill_between(
                a, [r["ci95_low"] for r in t], [r["ci95_high"] for r in t], color=line.get_color(), alpha=0.15
            )
    ax.set_xscale("log")
    ax.set_xlabel("nominal alpha")
    ax.set_ylabel("share of negatives accused")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True)
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--methods", nargs="+", default=None, help="default: every method of the results")
    ap.add_argument("--out", required=True)
    ap.add_argument("--plot", default=None)
    args = ap.parse_args(argv)
    results = json.loads(Path(args.results).read_text())
    tables = calibration(results, args.budget, args.methods)
    n = tables[next(iter(tables))][0]["negatives"]
    for name, t in tables.items():
        cells = " ".join(f"{r['alpha']:g}:{r['derived']}" for r in t)
        print(f"{name:24s} accused at alpha  {cells}")
    write_results(
        args.out,
        {
            "benchmark": "bench_calibration",
            "results": args.results,
            "budget": args.budget,
            "negatives": n,
            "methods": tables,
        },
        seed=None,
        argv=argv,
    )
    if args.plot:
        title = f"{Path(args.results).stem}: {n} negatives, {args.budget} queries (band: fpenc's 95% interval)"
        print(f"wrote {plot(tables, Path(args.plot), title)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
