"""Calibration of a bundle's verdict on a user's own independent models (``fpenc calibrate``).

Every file in a folder of negatives (models the user knows are *not* derived from the victim:
TorchScript, ``.pt2`` or ONNX) is verified against the bundle; for each nominal ``alpha`` the
observed false-accusation rate is the share of negatives whose verdict would be ``derived``, with
its exact (Clopper-Pearson) two-sided 95% interval. A bundle whose observed rate stays at or below
alpha (within the interval) can be trusted at that level on models like these.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fpenc.errors import ConfigError
from fpenc.verdict import NOT_ASSESSABLE

SUSPECT_SUFFIXES = (".pt", ".pt2", ".onnx", ".ts", ".jit")
DEFAULT_ALPHAS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided ``confidence`` interval of a binomial proportion ``k / n`` (n >= 1)."""
    from scipy import stats

    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    a = 1.0 - confidence
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def suspect_files(folder) -> list[Path]:
    """The model files in ``folder`` (sorted; by suffix), or a clear error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(
            f"--negatives {folder} is not a folder; pass a folder of exported independent models "
            f"({', '.join(SUSPECT_SUFFIXES)})"
        )
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUSPECT_SUFFIXES)
    if not files:
        raise ConfigError(f"no model files ({', '.join(SUSPECT_SUFFIXES)}) in {folder}")
    return files


def false_accusation_table(p_values, assessable, alphas=DEFAULT_ALPHAS) -> list[dict]:
    """Per ``alpha``: negatives ``derived`` (assessable and p < alpha), their rate over all negatives
    and its Clopper-Pearson 95% interval. ``p_values [n]``, ``assessable [n]`` bool."""
    p, ok = np.asarray(p_values, dtype=np.float64), np.asarray(assessable, dtype=bool)
    rows = []
    for alpha in alphas:
        k = int(((p < alpha) & ok).sum())
        lo, hi = clopper_pearson(k, len(p))
        rows.append(
            {
                "alpha": float(alpha),
                "derived": k,
                "negatives": int(len(p)),
                "rate": k / len(p),
                "ci95_low": lo,
                "ci95_high": hi,
            }
        )
    return rows


def calibrate(
    bundle,
    files: list[Path],
    *,
    api: str | None = None,
    outputs: str = "auto",
    num_fingerprints: int | None = None,
    seed: int = 0,
    alphas=DEFAULT_ALPHAS,
    progress: bool = True,
) -> dict:
    """Verify each negative in ``files`` against ``bundle`` and tabulate the false accusations."""
    from tqdm.auto import tqdm

    from fpenc.suspects import from_file
    from fpenc.verification import bundle_pvalue_floor, verify_suspect

    floor = bundle_pvalue_floor(bundle)
    usable = [a for a in alphas if a > floor]
    api = api if api is not None else bundle.meta.get("api", "probs")
    results = []
    for path in tqdm(files, desc="negatives", unit="model", disable=not progress):
        suspect = from_file(path, api=api, outputs=outputs, num_classes=bundle.num_classes)
        r = verify_suspect(bundle, suspect, num_fingerprints, alpha=0.5, seed=seed)  # p does not depend on alpha
        results.append(
            {
                "file": path.name,
                "p_value": r["p_value"],
                "assessable": r["verdict"] != NOT_ASSESSABLE,
                "agreement": r["agreement"],
                "similarity": r["similarity"],
                "accuracy": r["sanity"]["accuracy"],
                "ood_distance": r["ood_distance"],
                "reasons": r["reasons"] if r["verdict"] == NOT_ASSESSABLE else [],
            }
        )
    table = false_accusation_table([r["p_value"] for r in results], [r["assessable"] for r in results], usable)
    return {
        "bundle": str(bundle.path),
        "bundle_sha256": bundle.sha256,
        "p_value_floor": floor,
        "num_fingerprints": num_fingerprints or bundle.num_pairs,
        "seed": seed,
        "negatives": len(results),
        "not_assessable": sum(not r["assessable"] for r in results),
        "alphas_below_floor": [a for a in alphas if a <= floor],
        "table": table,
        "models": results,
    }


def format_calibration(result: dict) -> str:
    lines = [
        f"{result['negatives']} negatives ({result['not_assessable']} not assessable); p-value floor "
        f"{result['p_value_floor']:.3g}",
        "",
        f"{'alpha':>8}  {'derived':>8}  {'observed rate':>13}  {'95% CI (Clopper-Pearson)':>24}",
    ]
    for r in result["table"]:
        flag = "" if r["ci95_low"] <= r["alpha"] else "   <- above nominal"
        lines.append(
            f"{r['alpha']:>8g}  {r['derived']:>4}/{r['negatives']:<3}  {r['rate']:>13.3f}  "
            f"{r['ci95_low']:>11.3f} - {r['ci95_high']:<10.3f}{flag}"
        )
    return "\n".join(lines)


def plot_calibration(result: dict, path, title: str = "") -> Path:
    """Nominal alpha vs the observed false-accusation rate, with its Clopper-Pearson band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fpenc.io import save_figure

    t = result["table"]
    a = np.array([r["alpha"] for r in t])
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.plot([a.min(), a.max()], [a.min(), a.max()], color="gray", linestyle="--", label="nominal (observed = alpha)")
    ax.fill_between(
        a,
        [r["ci95_low"] for r in t],
        [r["ci95_high"] for r in t],
        color="tab:blue",
        alpha=0.2,
        label="95% Clopper-Pearson interval",
    )
    ax.plot(a, [r["rate"] for r in t], "o-", color="tab:blue", label=f"observed ({result['negatives']} negatives)")
    ax.set_xscale("log")
    ax.set_xlabel("nominal alpha")
    ax.set_ylabel("false-accusation rate")
    ax.set_ylim(-0.01, max(0.3, max(r["ci95_high"] for r in t) + 0.02))
    ax.set_title(title or "Calibration of the verdict")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
