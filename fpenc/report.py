"""The verification report of a test run (paper §5.1 metrics, §5.2 Table 2, Figure 5).

Every validation, reference and test model of the zoo is verified against the exported bundle
exactly as ``fpenc verify`` verifies a file (:func:`evaluate_models`): its verdict, reasons,
p-value, encoder similarity and agreement with the victim. Over the test models (piracy =
positive): AUC and TPR at 1% / 5% FPR, the verdict counts; ``report.json``, ``report.md`` and a
CDF plot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fpenc.io import atomic_path, save_figure, write_json
from fpenc.verdict import DEFAULT_ALPHA, DERIVED, NEAR_TIE, NOT_ASSESSABLE

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


def evaluate_models(
    bundle,
    run_dir: str | Path,
    models: list[dict],
    *,
    alpha: float = DEFAULT_ALPHA,
    num_fingerprints: int | None = None,
    progress: bool = False,
) -> list[dict]:
    """Verify each zoo model of ``models`` (manifest entries plus ``split``) against ``bundle`` exactly
    as ``fpenc verify`` would a file; returns one row per model: its facts and the verify result."""
    from tqdm.auto import tqdm

    from fpenc.suspects import from_manifest_entry
    from fpenc.verification import verify_suspect

    rows = []
    for m in tqdm(models, desc="verdicts", unit="model", disable=not progress, leave=False):
        result = verify_suspect(bundle, from_manifest_entry(m, run_dir, api="probs"), num_fingerprints, alpha)
        rows.append({k: m.get(k, "") for k in ROW_KEYS} | result)
    return rows


ROW_KEYS = ("id", "role", "architecture", "optimizer", "split")


def _count(rows: list[dict], role: str, outcome: str) -> str:
    mine = [r for r in rows if r["role"] == role]
    return f"{sum(r['verdict'] == outcome for r in mine)}/{len(mine)}"


def build_report(rows: list[dict], *, meta: dict | None = None) -> dict:
    """The report of :func:`evaluate_models` rows: per model its verdict, p-value, similarity,
    agreement and gate values; over the test-split models, AUC and TPR at 1% / 5% FPR of the
    encoder similarity (fingerprint level: each pair a score; model level: the mean), model-level
    AUC of the agreement and of the verdict's p-value, and the verdict counts per role."""
    test = [r for r in rows if r["split"] == "test"]
    positive = [r["role"] == "piracy" for r in test]
    fp_scores = np.concatenate([np.asarray(r["similarities"]) for r in test])
    fp_positive = np.concatenate([np.full(len(r["similarities"]), r["role"] == "piracy") for r in test])
    keep = (
        "id",
        "role",
        "architecture",
        "optimizer",
        "split",
        "verdict",
        "p_value",
        "p_agreement",
        "p_similarity",
        "similarity",
        "agreement",
        "margin",
        "near_tie",
        "ood_distance",
        "reasons",
    )
    return {
        "format": FORMAT,
        **roc_metrics(fp_scores, fp_positive),
        "auc_models": roc_metrics([r["similarity"] for r in test], positive)["auc"],
        "auc_models_agreement": roc_metrics([r["agreement"] for r in test], positive)["auc"],
        "auc_models_verdict": roc_metrics([-np.log10(max(r["p_value"], 1e-300)) for r in test], positive)["auc"],
        "piracy_derived": _count(test, "piracy", DERIVED),
        "homologous_derived": _count(test, "homologous", DERIVED),
        "not_assessable": f"{sum(r['verdict'] == NOT_ASSESSABLE for r in test)}/{len(test)}",
        "near_ties": sorted(r["id"] for r in rows if r["near_tie"]),
        "alpha": rows[0]["alpha"] if rows else None,
        "p_value_floor": rows[0]["p_value_floor"] if rows else None,
        "num_fingerprints": rows[0]["num_fingerprints"] if rows else None,
        **(meta or {}),
        "models": [{k: r[k] for k in keep} | {"accuracy": r["sanity"]["accuracy"]} for r in rows],
    }


def _fmt_p(p: float) -> str:
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def trust_headline(report: dict) -> str:
    """One paragraph that answers "can this bundle be trusted?" from the test models: copies detected,
    independent models accused (with the Clopper-Pearson 95% upper bound), the p-value floor against alpha."""
    from fpenc.calibration import clopper_pearson

    test = [r for r in report["models"] if r["split"] == "test"]
    copies = [r for r in test if r["role"] == "piracy"]
    independents = [r for r in test if r["role"] == "homologous"]
    accused = sum(r["verdict"] == DERIVED for r in independents)
    detected = sum(r["verdict"] == DERIVED for r in copies)
    upper = clopper_pearson(accused, len(independents))[1] if independents else 1.0
    floor, alpha = report["p_value_floor"], report["alpha"]
    arch = report.get("victim_architecture")
    uncovered = arch is not None and not any(
        r["split"] == "reference" and r["architecture"] == arch for r in report["models"]
    )
    if accused:
        answer = (
            "**No: it accused an independent model**; do not use its verdicts until the reference population covers it"
        )
    elif not independents:
        answer = "**Untested**: the test set has no independent model"
    elif uncovered:
        answer = (
            f"**Not for models of the victim's own architecture ({arch})**: no reference model is one, and an "
            "independent model of it is the hardest innocent; add a reference grid of it (split: reference, data: victim)"
        )
    else:
        answer = "**Yes, within what was tested**: no independent test model accused"
    return (
        f"{answer}. Independent test models accused: {accused} of {len(independents)} (95% upper bound "
        f"{upper:.2f}); copies detected: {detected} of {len(copies)}; p-value floor {_fmt_p(floor)} "
        f"{'below' if floor < alpha else 'NOT below'} alpha {alpha} (the smallest p-value this bundle can give)."
    )


def format_markdown(report: dict) -> str:
    """The verdicts of the validation, reference and test models, and the test metrics."""
    from fpenc.rundir import VERDICT_MARGINS

    lines = [
        f"# Verification report: {report.get('name', '')}",
        "",
        f"Can this bundle be trusted? {trust_headline(report)}",
        "",
        f"![each model's margin above the decision threshold]({VERDICT_MARGINS})",
        "",
        f"Test models (architectures the encoder never trained on), at alpha {report['alpha']} on "
        f"{report['num_fingerprints']} fingerprint pairs (p-value floor {_fmt_p(report['p_value_floor'])}): "
        f"piracy derived {report['piracy_derived']}, homologous derived {report['homologous_derived']}, "
        f"not assessable {report['not_assessable']}.",
        f"Encoder similarity AUC {report['auc']:.4f} (fingerprint level), {report['auc_models']:.4f} (model level); "
        f"TPR at 1% FPR {report['tpr_at_1pct_fpr']:.3f}, at 5% FPR {report['tpr_at_5pct_fpr']:.3f}. Model-level AUC "
        f"of the agreement {report['auc_models_agreement']:.4f}, of the verdict's p-value "
        f"{report['auc_models_verdict']:.4f}.",
        f"Reference models (independent; the verdict's population): {', '.join(report.get('reference_models', []))}.",
        "",
        f"Near ties (|margin| < {NEAR_TIE}, or one changed answer would flip the test): "
        f"{', '.join(report.get('near_ties', [])) or 'none'}.",
        "",
        "| model | split | role | accuracy | agreement | margin | similarity | p-value | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["models"]:
        lines.append(
            f"| {r['id']} | {r['split']} | {r['role']} | {r['accuracy']:.3f} | {r['agreement']:.3f} | "
            f"{r['margin']:+.3f} | "
            f"{r['similarity']:.3f} | {_fmt_p(r['p_value'])} | {r['verdict']} |"
        )
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
    ax.plot(
        r, np.arange(1, len(r) + 1) / len(r), color="tab:gray", linestyle="--", label="reference (independent models)"
    )
    ax.set_xlabel("cosine similarity to the victim's fingerprints")
    ax.set_ylabel("CDF")
    ax.set_title(title or "Fingerprint similarity CDF")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_margins(report: dict, path: str | Path) -> Path:
    """Each model's margin (its agreement minus the agreement at which p = alpha) by split and role:
    right of the dashed line is ``derived``; hollow markers are ``not assessable``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [
        (f"{split} {role}", [r for r in report["models"] if r["split"] == split and r["role"] == role])
        for split in ("test", "reference", "val")
        for role in ("piracy", "homologous")
    ]
    groups = [(label, rows) for label, rows in groups if rows]
    fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.45 * max(len(groups), 1)))
    for y, (label, rows) in enumerate(groups):
        color = "tab:red" if label.endswith("piracy") else "tab:blue"
        for r in rows:
            hollow = r["verdict"] == NOT_ASSESSABLE
            ax.plot(r["margin"], y, "o", ms=6, mfc="none" if hollow else color, mec=color, alpha=0.8)
    ax.axvline(0.0, color="k", ls="--", lw=1)
    ax.set_yticks(range(len(groups)), [label for label, _ in groups])
    ax.set_xlabel(f"margin: agreement above the threshold at alpha {report['alpha']} (right: derived)")
    ax.set_title(f"{report.get('name', '')}: every model against the decision threshold", fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    return save_figure(fig, path)


def write_report(run_dir: str | Path, report: dict, models: list[dict], reference: np.ndarray) -> dict[str, Path]:
    """The report's JSON, Markdown, similarity CDF and margin plots in ``run_dir`` (atomically; see
    :mod:`fpenc.rundir`)."""
    from fpenc.rundir import RunDir

    run_dir = RunDir(run_dir)
    paths = {
        "json": run_dir.report_json,
        "md": run_dir.report_md,
        "cdf": run_dir.similarity_cdf,
        "margins": run_dir.verdict_margins,
    }
    write_json(paths["json"], report)
    with atomic_path(paths["md"]) as tmp:
        Path(tmp).write_text(format_markdown(report))
    plot_cdf(models, reference, paths["cdf"], title=f"{report.get('name', '')}: test models")
    plot_margins(report, paths["margins"])
    return paths
