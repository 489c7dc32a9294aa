"""Two ownership tests combined into one verdict, from committed benchmark results.

``--rule intersection-union``: a suspect is accused only when *both* methods' calibrated tests
accuse it; the combined p-value is the larger of the two (``max(p_a, p_b)``), a test of level
alpha whenever either one is. ``--rule zsum``: each method's score is standardised by its
reference models' scores (``z = (s - mean) / max(sd, 0.01)``), the two z are summed, and the sum
gets the benchmark's prediction t-test against the reference models' own sums (one statistic
that weighs both kinds of evidence). At a total budget of ``B`` queries each method spends
``B / 2`` (so the comparison with single keys is at an equal query budget); ``--full`` gives each
the whole ``B`` (an upper bound); ``--pairs 200:200 100:200`` names the two budgets instead. Reads
only scores and p-values already in the results files (no model is queried again):

    python benchmarks/combine_tests.py \\
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


def standardised(entry: dict, ids: list[str]) -> tuple[list[float], list[float]]:
    """The models' and the reference models' scores of one budget's ``entry`` as z against the references."""
    import numpy as np

    ref = np.asarray(entry["reference_scores"], dtype=np.float64)
    mean, sd = ref.mean(), max(float(ref.std(ddof=1)), 0.01)
    return [(entry["scores"][i][0] - mean) / sd for i in ids], ((ref - mean) / sd).tolist()


def combine(a: dict, b: dict, models: list[dict], budget_a: int, budget_b: int, alpha: float, rule: str) -> dict:
    """Metrics of the combined test over ``models``: ``max(p_a, p_b)`` (its ``-log10`` the score,
    for AUC) or the z-sum's prediction p-value."""
    from fpenc.bench.metrics import method_metrics
    from fpenc.verdict import prediction_pvalue

    ea, eb = a["budgets"][str(budget_a)], b["budgets"][str(budget_b)]
    sa, sb = ea["scores"], eb["scores"]
    ids = [m["id"] for m in models]
    if rule == "zsum":
        (za, ra), (zb, rb) = standardised(ea, ids), standardised(eb, ids)
        if len(ra) != len(rb):
            raise SystemExit("zsum needs both methods scored on the same reference models")
        scores, ref = [x + y for x, y in zip(za, zb)], [x + y for x, y in zip(ra, rb)]
        p = [prediction_pvalue(s, ref) for s in scores]
    else:
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
    ap.add_argument("--rule", choices=("intersection-union", "zsum"), default="intersection-union")
    ap.add_argument("--full", action="store_true", help="each method spends the whole budget (upper bound)")
    ap.add_argument("--pairs", nargs="+", default=None, metavar="A:B", help="budgets of a and b, e.g. 200:200")
    ap.add_argument("--out", default=None, help="write the combined results here (JSON)")
    args = ap.parse_args(argv)
    ra, na, a = load_method(args.a)
    rb, nb, b = load_method(args.b)
    if [m["id"] for m in ra["models"]] != [m["id"] for m in rb["models"]]:
        raise SystemExit("the two results files score different test models")
    alpha = float(ra["alpha"])
    budgets = {}
    if args.pairs:  # (label, budget of a, budget of b)
        pairs = [(p, *(int(x) for x in p.split(":"))) for p in args.pairs]
    else:
        pairs = [(str(t), t, t) if args.full else (str(t), t // 2, t // 2) for t in ra["budgets"]]
    lines = [f"{na} {'AND' if args.rule == 'intersection-union' else '+'} {nb} ({args.rule})"]
    lines.append("| queries | AUC | TPR@1%FPR | detected | accused |")
    lines.append("|---|---|---|---|---|")
    for label, ba, bb in pairs:
        if str(ba) not in a["budgets"] or str(bb) not in b["budgets"]:
            continue
        r = combine(a, b, ra["models"], ba, bb, alpha, args.rule)
        budgets[label] = r
        lines.append(
            f"| {label} ({r['queries']} spent) | {r['auc']:.3f} | {r['tpr_at_1pct_fpr']:.2f} | {r['detected']:.2f} | "
            f"{r['false_accusations']}/{r['negatives']} |"
        )
    print("\n".join(lines))
    if args.out:
        payload = {
            "a": args.a,
            "b": args.b,
            "rule": args.rule,
            "full": args.full,
            "alpha": alpha,
            "command": "python benchmarks/combine_tests.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "budgets": budgets,
        }
        Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
