"""The verification report of a test run (paper §5.1 metrics, §5.2 Table 2, Figure 5).

From each model's pair similarities (cosine similarity of encoder representations of its
fingerprints and the victim's, one per (UAP, view) pair) and the reference homologous
similarities: per-model similarity, mean p-value of the repeated t-test against the reference
models (:mod:`fpenc.scoring`) and verdict; AUC and TPR at 1% / 5% FPR over the test models
(piracy = positive); ``report.json``, ``report.md`` and a CDF plot.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from fpenc.io import atomic_path, save_figure, write_json
from fpenc.scoring import PIRATED, repeated_test, verdict

FORMAT = "fpenc-report/1"


def roc_metrics(scores, positive) -> dict:
    """AUC and TPR at 1% / 5% FPR of ``scores [M]`` for binary ``positive [M]`` (torchmetrics)."""
    from torchmetrics.functional.classification import binary_auroc, binary_roc

    s = torch.as_tensor(np.asarray(scores), dtype=torch.float32)
    t = torch.as_tensor(np.asarray(positive), dtype=torch.long)
    if t.numel() == 0 or t.min() == t.max():
        raise ValueError("ROC metrics need both positive and negative samples")
    fpr, tpr, _ = binary_roc(s, t)

    def tpr_at(max_fpr: float) -> float:
        ok = fpr <= max_fpr + 1e-12
        return float(tpr[ok].max()) if ok.any() else 0.0

    return {"auc": float(binary_auroc(s, t)), "tpr_at_1pct_fpr": tpr_at(0.01), "tpr_at_5pct_fpr": tpr_at(0.05)}


def build_report(models: list[dict], reference: np.ndarray, *, alpha: float = 0.05, num_fingerprints: int = 20,
                 repeats: int = 30, seed: int = 0, test: str = "population", meta: dict | None = None) -> dict:
    """``models``: dicts with id, role, architecture, optimizer, split and ``similarities [P]``;
    ``reference [G, P]``: the reference homologous models' similarities; ``test``: how a suspect is
    tested against them (:func:`fpenc.scoring.reference_pvalue`).

    Every model gets similarity, std, p_value (mean over ``repeats`` tests of ``num_fingerprints``
    pairs) and verdict; the metrics are over the test-split models, at model level (mean
    similarity) and at fingerprint level (each pair similarity a score).
    """
    rows = []
    for m in models:
        sims = np.asarray(m["similarities"], dtype=np.float64)
        result = repeated_test(sims, reference, num_fingerprints, repeats, seed, test)
        rows.append({k: m[k] for k in ("id", "role", "architecture", "optimizer", "split")} | {
            "similarity": round(float(sims.mean()), 6), "std": round(float(sims.std()), 6),
            "p_value": result["p_value"], "verdict": verdict(result["p_value"], alpha),
        })
    test_models = [(m, r) for m, r in zip(models, rows) if m["split"] == "test"]
    positive = [m["role"] == "piracy" for m, _ in test_models]
    fp_scores = np.concatenate([np.asarray(m["similarities"]) for m, _ in test_models])
    fp_positive = np.concatenate([np.full(len(m["similarities"]), m["role"] == "piracy") for m, _ in test_models])
    fp_metrics = roc_metrics(fp_scores, fp_positive)
    model_metrics = roc_metrics([r["similarity"] for _, r in test_models], positive)
    piracy = [r for _, r in test_models if r["role"] == "piracy"]
    homologous = [r for _, r in test_models if r["role"] == "homologous"]
    return {
        "format": FORMAT,
        **fp_metrics,
        "auc_models": model_metrics["auc"],
        "piracy_detected": f"{sum(r['verdict'] == PIRATED for r in piracy)}/{len(piracy)}",
        "homologous_accused": f"{sum(r['verdict'] == PIRATED for r in homologous)}/{len(homologous)}",
        "alpha": alpha, "num_fingerprints": num_fingerprints, "repeats": repeats, "seed": seed, "reference_test": test,
        "reference": {"count": int(np.size(reference)), "mean": float(np.mean(reference)), "std": float(np.std(reference)),
                      "model_means": [round(float(r.mean()), 6) for r in np.atleast_2d(reference)]},
        **(meta or {}),
        "models": rows,
    }


def _fmt_p(p: float) -> str:
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def _reference_line(report: dict) -> str:
    ref, ids = report.get("reference", {}), report.get("reference_models", [])
    means = ", ".join(f"{i} {m:.3f}" for i, m in zip(ids, ref.get("model_means", [])))
    how = {"population": "one-sided prediction t-test against the population of", "pooled":
           "one-sided Welch t-test (the paper's) against the pooled similarities of"}[report.get("reference_test", "pooled")]
    return f"Reference ({how} the homologous models the encoder never trained on): {means}."


def format_markdown(report: dict) -> str:
    """Table 2 of the paper for the test models: architecture x optimizer, per type mean, std, p-value."""
    cells: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in report["models"]:
        if r["split"] == "test":
            cells[(r["architecture"], r["optimizer"])][r["role"]].append(r)
    lines = [
        f"# Verification report: {report.get('name', '')}",
        "",
        f"Test models (architectures the encoder never trained on): AUC {report['auc']:.4f} "
        f"(fingerprint level), {report['auc_models']:.4f} (model level); TPR at 1% FPR "
        f"{report['tpr_at_1pct_fpr']:.3f}, at 5% FPR {report['tpr_at_5pct_fpr']:.3f}.",
        f"Verdicts at alpha {report['alpha']} ({report['num_fingerprints']} fingerprints, mean p over "
        f"{report['repeats']} draws): piracy detected {report['piracy_detected']}, homologous accused "
        f"{report['homologous_accused']}.",
        _reference_line(report),
        "",
        "| architecture | optimizer | piracy mean | piracy std | piracy p-value | homologous mean | homologous std | homologous p-value |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (arch, opt), by_role in sorted(cells.items()):
        row = [arch, opt]
        for role in ("piracy", "homologous"):
            rs = by_role.get(role, [])
            if rs:
                row += [f"{np.mean([r['similarity'] for r in rs]):.3f}", f"{np.mean([r['std'] for r in rs]):.3f}",
                        _fmt_p(float(np.mean([r["p_value"] for r in rs])))]
            else:
                row += ["-", "-", "-"]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| model | split | role | similarity | p-value | verdict |", "|---|---|---|---|---|---|"]
    for r in report["models"]:
        lines.append(f"| {r['id']} | {r['split']} | {r['role']} | {r['similarity']:.3f} | {_fmt_p(r['p_value'])} | {r['verdict']} |")
    return "\n".join(lines) + "\n"


def plot_cdf(models: list[dict], reference: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Figure 5 of the paper: CDFs of the pair similarities of piracy and homologous test models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    groups = {
        "piracy (test)": [m for m in models if m["split"] == "test" and m["role"] == "piracy"],
        "homologous (test)": [m for m in models if m["split"] == "test" and m["role"] == "homologous"],
    }
    for (label, ms), color in zip(groups.items(), ("tab:red", "tab:blue")):
        if ms:
            s = np.sort(np.concatenate([np.asarray(m["similarities"]) for m in ms]))
            ax.plot(s, np.arange(1, len(s) + 1) / len(s), color=color, label=label)
    r = np.sort(np.asarray(reference).reshape(-1))
    ax.plot(r, np.arange(1, len(r) + 1) / len(r), color="tab:gray", linestyle="--", label="reference homologous (val)")
    ax.set_xlabel("cosine similarity to the victim's fingerprints")
    ax.set_ylabel("CDF")
    ax.set_title(title or "Fingerprint similarity CDF")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def write_report(run_dir: str | Path, report: dict, models: list[dict], reference: np.ndarray) -> dict[str, Path]:
    """``report.json``, ``report.md`` and ``similarity_cdf.png`` in ``run_dir`` (atomically)."""
    run_dir = Path(run_dir)
    paths = {"json": run_dir / "report.json", "md": run_dir / "report.md", "cdf": run_dir / "similarity_cdf.png"}
    write_json(paths["json"], report)
    with atomic_path(paths["md"]) as tmp:
        Path(tmp).write_text(format_markdown(report))
    plot_cdf(models, reference, paths["cdf"], title=f"{report.get('name', '')}: test models")
    return paths
