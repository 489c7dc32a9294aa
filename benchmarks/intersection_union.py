"""Two keys that must both agree: an intersection-union test from committed benchmark results.

A suspect is accused only when *both* methods' calibrated tests accuse it; the combined p-value
is the larger of the two (``max(p_a, p_b)``), a test of level alpha whenever either one is. At a
total budget of ``B`` queries each method spends ``B / 2`` (so the comparison with single keys is
at an equal query budget); ``--full`` instead gives each method the whole ``B`` (up to ``2 B``
distinct queries: an upper bound on what the pair could reach). Reads only scores and p-values
already in the results files (no model is queried again):

    python benchmarks/intersection_union.py \\
        --a benchmarks/results/bench_fmnist_val.json:no_uap \\
        --b benchmarks/results/bench_fmnist_val_owner_copies.json:fpenc_ranked_clean \\
        --out benchmarks/results/bench_fmnist_val_intersection_union.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository: fpenc


def load_method(spec: str) -> tuple[dict, str, dict]:
    """``results.json:method`` -> (results, method name, the method's entry)."""
    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise SystemExit(f"expected RESULTS.json:METHOD, got '{spec}'")
    results = json.loads(Path(path).read_text())
    if name not in results["methods"]:
        raise SystemExit(f"{path} has no method '{name}'; it has {', '.join(results['methods'])}")
    return results, name, results["methods"][name]


def combine(a: dict, b: dict, models: list[dict], budget_a: int, budget_b: int, alpha: float) -> dict:
    """Metrics of ``max(p_a, p_b)`` (its ``-log10`` the score, for AUC) over ``models``."""
    from fpenc.bench.metrics import method_metrics

    sa, sb = a["budgets"][str(budget_a)]["scores"], b["budgets"][str(budget_b)]["scores"]
    ids = [m["id"] for m in models]
    p = [max(sa[i][1], sb[i][1]) for i in ids]
    scores = [-math.log10(max(x, 1e-300)) for x in p]
    out = method_metrics(scores, p, [m["positive"] for m in models], [m["kind"] for m in models], alpha)
    out["queries"] = a["budgets"][str(budget_a)]["queries"] + b["budgets"][str(budget_b)]["queries"]
    out["scores"] = {i: [round(s, 5), float(f"{pv:.4g}")] for i, s, pv in zip(ids, scores, p)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, metavar="RESULTS:METHOD")
    ap.add_argument("--b", required=True, metavar="RESULTS:METHOD")
    ap.add_argument("--full", action="store_true", help="each method spends the whole budget (upper bound)")
    ap.add_argument("--out", default=None, help="write the combined results here (JSON)")
    args = ap.parse_args(argv)
    ra, na, a = load_method(args.a)
    rb, nb, b = load_method(args.b)
    if [m["id"] for m in ra["models"]] != [m["id"] for m in rb["models"]]:
        raise SystemExit("the two results files score different test models")
    alpha = float(ra["alpha"])
    budgets = {}
    lines = [f"{na} AND {nb} ({'each the whole budget' if args.full else 'half the budget each'})"]
    lines.append("| queries | AUC | TPR@1%FPR | detected | accused |")
    lines.append("|---|---|---|---|---|")
    for total in ra["budgets"]:
        half = total if args.full else total // 2
        if str(half) not in a["budgets"] or str(half) not in b["budgets"]:
            continue
        r = combine(a, b, ra["models"], half, half, alpha)
        budgets[str(total)] = r
        lines.append(
            f"| {total} ({r['queries']} spent) | {r['auc']:.3f} | {r['tpr_at_1pct_fpr']:.2f} | {r['detected']:.2f} | "
            f"{r['false_accusations']}/{r['negatives']} |"
        )
    print("\n".join(lines))
    if args.out:
        payload = {"a": args.a, "b": args.b, "full": args.full, "alpha": alpha, "budgets": budgets}
        Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
