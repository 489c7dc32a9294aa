"""Figure 2 of the subspace analysis (:mod:`fpenc.uap.subspace`) and its text summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fpenc.io import save_figure


def plot_subspace(
    profiles: dict[str, np.ndarray], rows: list[dict], path: str | Path, top: int = 50, reading: str = "profile_l1"
) -> Path:
    """Figure 2: (a) the energy profile over the victim's first ``top`` principal directions,
    per model; (b) the inconsistency D per model, coloured by role."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"victim": "tab:gray", "piracy": "tab:red", "homologous": "tab:blue"}
    role_of = {r["id"]: r["role"] for r in rows}
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    for name, p in profiles.items():
        role = role_of.get(name, "victim")
        k = min(top, len(p))
        ax.plot(
            np.arange(1, k + 1),
            p[:k],
            color=colors[role],
            alpha=0.9 if role == "victim" else 0.6,
            lw=2 if name == "victim (reference set)" else 1,
            label=name if role == "victim" else None,
        )
    for role in ("piracy", "homologous"):
        ax.plot([], [], color=colors[role], label=role)
    ax.set_yscale("log")
    ax.set_xlabel("victim principal direction (by singular value)")
    ax.set_ylabel("share of UAP energy")
    ax.set_title("(a) projections on the victim's UAP basis")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    bx.bar(range(len(rows)), [r["D"] for r in rows], color=[colors[r["role"]] for r in rows])
    bx.set_xticks(
        range(len(rows)),
        [r["id"].replace("homologous", "hom").replace("piracy", "pir") for r in rows],
        rotation=60,
        ha="right",
        fontsize=7,
    )
    bx.set_ylabel(f"inconsistency D (eq. 5 read as {reading})")
    bx.set_title("(b) inconsistency with the victim")
    bx.grid(alpha=0.3, axis="y")
    return save_figure(fig, path, dpi=110)


def format_subspace(result: dict) -> str:
    s = result["settings"]
    names = list(result["ratios"])
    lines = [f"{'model':<32} {'role':<11} " + " ".join(f"{n:>18}" for n in names) + "  seconds"]
    lines += [
        f"{r['id']:<32} {r['role']:<11} "
        + " ".join(f"{r['readings'][n]:>18.4f}" for n in names)
        + f"  {r['seconds']:.1f}"
        for r in result["rows"]
    ]
    if result["ratio_homologous_to_piracy"] is not None:
        lines.append(
            f"{'homologous / piracy':<44} "
            + " ".join(f"{result['ratios'][n]:>18.2f}" for n in names)
            + "  (paper, FMNIST: about 3)"
        )
    lines.append(
        f"({s['num_uaps']} {s['norm']} UAPs of eps {s['eps']} per model, {s['steps']} steps of "
        f"{s['batch_size']} images; victim subspace rank {result['rank']}, k = {result['subspace_dimension']} "
        f"directions hold {result['energy_share']:.0%} of its energy; {result['seconds']:.0f} s on "
        f"{result['device']})"
    )
    if "paths" in result:
        lines.append(f"wrote {result['paths']['json']} and {result['paths']['png']}")
    return "\n".join(lines)
