"""Run every method of :mod:`fpenc.baselines` on a set of models at query budgets.

Each model is queried once per method, on the method's longest query list; the score at a budget
``b`` uses the first ``b`` answers (:class:`fpenc.baselines.base.Method`). Every method's verdict
is the same calibrated test as fpenc's: a one-sided prediction t-test of the suspect's score
against the scores of the reference models (independent models apart from the test set) on the
same queries, ``derived`` when ``p < alpha`` (:func:`fpenc.verdict.prediction_pvalue`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from fpenc.baselines import METHODS, Defender
from fpenc.bench.metrics import method_metrics
from fpenc.errors import ConfigError

DEFAULT_BUDGETS = (20, 50, 100, 200, 500, 1000, 2000, 4000)
FORMAT = "fpenc-bench/1"


@dataclass
class BenchModel:
    """A model of the benchmark: ``positive`` when derived from the victim; ``kind`` its attack kind
    (positives) or its kind of independence (negatives)."""

    id: str
    net: torch.nn.Module
    positive: bool
    kind: str


def check_methods(names) -> list[str]:
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    return list(names)


def run_bench(
    defender: Defender,
    models: list[BenchModel],
    reference: list[BenchModel],
    methods=tuple(METHODS),
    budgets=DEFAULT_BUDGETS,
    alpha: float = 0.01,
    progress: bool = True,
) -> dict:
    """The benchmark's results (see ``benchmarks/results/bench_*.json`` for the layout).

    Raises:
        ConfigError: unknown methods, no positive or no negative model, or fewer than 2 reference models.
    """
    methods, budgets = check_methods(methods), sorted({int(b) for b in budgets})
    if not any(m.positive for m in models) or all(m.positive for m in models):
        raise ConfigError("the benchmark needs derived (positive) and independent (negative) test models")
    if len(reference) < 2:
        raise ConfigError("the benchmark needs >= 2 reference models to calibrate every method's verdict")
    if any(b < 1 for b in budgets):
        raise ConfigError(f"query budgets must be >= 1, got {budgets}")
    from fpenc.verdict import prediction_pvalue

    positive = [m.positive for m in models]
    kinds = [m.kind for m in models]
    out = {
        "format": FORMAT,
        "positives": sum(positive),
        "negatives": len(models) - sum(positive),
        "reference_models": [r.id for r in reference],
        "attack_kinds": sorted({m.kind for m in models if m.positive}),
        "negative_kinds": sorted({m.kind for m in models if not m.positive}),
        "alpha": alpha,
        "budgets": budgets,
        "models": [{"id": m.id, "positive": m.positive, "kind": m.kind} for m in models],
        "methods": {},
    }
    bar = tqdm(total=len(methods) * (len(models) + len(reference)), desc="bench", unit="model", disable=not progress)
    for name in methods:
        t0 = time.perf_counter()
        method = METHODS[name](max_queries=max(budgets)).prepare(defender)
        answers = {}
        for m in [*reference, *models]:
            answers[m.id] = method.observe(m.net)[0]
            bar.update(1)
        entry = {"black_box": method.black_box, "available_queries": method.available, "budgets": {}}
        for b in budgets:
            if method.spent(b) < 1:  # a budget the method cannot spend (e.g. below one fingerprint pair)
                continue
            ref = [method.score(answers[r.id], b) for r in reference]
            scores = [method.score(answers[m.id], b) for m in models]
            p = [prediction_pvalue(s, ref) for s in scores]
            entry["budgets"][str(b)] = {
                "queries": method.spent(b),
                **method_metrics(scores, p, positive, kinds, alpha),
                "scores": {m.id: [round(s, 5), float(f"{pv:.4g}")] for m, s, pv in zip(models, scores, p)},
                "reference_scores": [round(s, 5) for s in ref],
            }
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        out["methods"][name] = entry
    bar.close()
    return out


def format_table(results: dict) -> str:
    """A Markdown table: method x budget -> AUC, TPR at 1% FPR, detected and false accusations at alpha."""
    lines = [
        f"| method | queries | AUC | TPR@1%FPR | TPR@5%FPR | detected (alpha {results['alpha']}) | false accusations |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in results["methods"].items():
        for b, r in entry["budgets"].items():
            spent = r["queries"] if r["queries"] == int(b) else f"{r['queries']} (of {b})"
            lines.append(
                f"| {name} | {spent} | {r['auc']:.3f} | {r['tpr_at_1pct_fpr']:.2f} | {r['tpr_at_5pct_fpr']:.2f} | "
                f"{r['detected']:.2f} | {r['false_accusations']}/{r['negatives']} (<= {r['false_accusation_upper95']:.2f}) |"
            )
    return "\n".join(lines)


def format_attack_table(results: dict, budget: int) -> str:
    """A Markdown table at one budget: attack kind x method -> AUC (detected share)."""
    names = list(results["methods"])
    lines = ["| kind | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for kind in results["attack_kinds"] + results["negative_kinds"]:
        cells = []
        for n in names:
            r = results["methods"][n]["budgets"].get(str(budget))
            a = r["per_attack"].get(kind) if r else None
            if a is None:
                cells.append("-")
            elif a["positive"]:
                cells.append(f"{a['auc']:.2f} ({a['detected']:.2f})")
            else:
                cells.append(f"accused {a['accused']:.2f}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
