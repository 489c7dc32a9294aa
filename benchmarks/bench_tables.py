"""Every table of a benchmark's results as Markdown: method x budget, then attack kind x method at
each budget (the layout `fpenc bench` prints), from the committed JSON, so the full grid can be
read without running anything.

    python benchmarks/bench_tables.py --results benchmarks/results/bench_fmnist.json \\
        --out benchmarks/results/bench_fmnist.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository: fpenc


def compact_table(results: dict) -> str:
    """Method x budget in one table: AUC / TPR at 1% FPR / share detected / negatives accused
    (``*``: the method has fewer distinct queries than the budget)."""
    budgets = [str(b) for b in results["budgets"]]
    lines = ["| method | " + " | ".join(budgets) + " |", "|---|" + "---|" * len(budgets)]
    for name, entry in results["methods"].items():
        cells = []
        for b in budgets:
            r = entry["budgets"].get(b)
            if r is None:  # the method cannot spend this budget
                cells.append("-")
                continue
            star = "*" if r["queries"] < int(b) else ""
            cells.append(
                f"{r['auc']:.3f}{star} / {r['tpr_at_1pct_fpr']:.2f} / {r['detected']:.2f} / {r['false_accusations']}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(results: dict, source: str) -> str:
    from fpenc.bench.runner import format_attack_table, format_table

    parts = [
        f"# {source}: every method at every budget",
        "",
        f"{results['positives']} copies over {len(results['attack_kinds'])} attack kinds, {results['negatives']} "
        f"negatives; every verdict at alpha {results['alpha']} against {len(results['reference_models'])} "
        f"reference models. Command: `{results.get('command', 'fpenc bench')}` (seed {results.get('seed')}).",
        "",
        "## Method x budget",
        "",
        format_table(results),
        "",
        "## Method x budget, compact: AUC / TPR at 1% FPR / detected / negatives accused",
        "",
        compact_table(results),
    ]
    for b in results["budgets"]:
        parts += ["", f"## Per attack kind at {b} queries: AUC (detected share); negatives: share accused", ""]
        parts.append(format_attack_table(results, b))
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, required=True, help="a results JSON written by fpenc bench")
    ap.add_argument("--out", type=Path, required=True, help="the Markdown file to write")
    args = ap.parse_args(argv)
    from fpenc.io import atomic_path

    results = json.loads(args.results.read_text())
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(render(results, args.results.name))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
