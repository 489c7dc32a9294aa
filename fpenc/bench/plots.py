"""The benchmark's figures: AUC against queries for every method, and each model's score against
its accuracy (paper Fig. 8: copies stay close to the victim whatever their accuracy)."""

from __future__ import annotations

from pathlib import Path


def plot_auc_vs_queries(results: dict, path: str | Path) -> Path:
    """One line per method: AUC (test models) against the queries a verdict spends, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = plt.get_cmap("tab20").colors  # one colour per method, even past ten methods
    for i, (name, entry) in enumerate(results["methods"].items()):
        rows = sorted((r["queries"], r["auc"]) for r in entry["budgets"].values())
        style = "--" if not entry.get("black_box", True) else "-"
        ax.plot([q for q, _ in rows], [a for _, a in rows], style, marker="o", ms=3, label=name, color=colours[i % 20])
    ax.set_xscale("log")
    ax.set_xlabel("suspect queries per verdict")
    ax.set_ylabel("AUC (copies vs independent models)")
    ax.set_ylim(0.4, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title(f"{results['positives']} copies, {results['negatives']} independents (dashed: white box)", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_score_vs_accuracy(results: dict, accuracy: dict[str, float], method: str, budget: int, path) -> Path:
    """Each test model's score under ``method`` at ``budget`` against its test accuracy; copies by
    attack family, independents in grey; the reference models' highest score as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    row = results["methods"][method]["budgets"][str(budget)]
    kinds = {m["id"]: (m["positive"], m["kind"]) for m in results["models"]}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    families = sorted({k.split("-")[0] for pos, k in kinds.values() if pos})
    colors = dict(zip(families, plt.cm.tab10.colors))
    for fam in families:
        ids = [i for i, (pos, k) in kinds.items() if pos and k.split("-")[0] == fam and i in accuracy]
        ax.scatter([accuracy[i] for i in ids], [row["scores"][i][0] for i in ids], s=14, color=colors[fam], label=fam)
    ids = [i for i, (pos, _) in kinds.items() if not pos and i in accuracy]
    ax.scatter(
        [accuracy[i] for i in ids],
        [row["scores"][i][0] for i in ids],
        s=14,
        marker="x",
        color="grey",
        label="independent",
    )
    ax.axhline(max(row["reference_scores"]), color="k", lw=0.8, ls=":", label="reference max")
    ax.set_xlabel("test accuracy")
    ax.set_ylabel(f"{method} score at {row['queries']} queries")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
