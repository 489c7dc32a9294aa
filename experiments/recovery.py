"""Copies extracted with less effort (paper Fig. 6, "performance of model extraction"): how the
encoder's similarity, the agreement and the verdict of an extracted copy follow its recovery rate
(its test accuracy over the victim's), judged with the demo's bundle as ``fpenc verify`` judges a file.

    python experiments/recovery.py -c configs/fmnist_demo.yaml -c experiments/configs/recovery_fmnist.yaml \\
        --out experiments/results/recovery_fmnist_demo.json --plot experiments/results/recovery_fmnist_demo.png

The overlay's copies (arcs A and C, extracted through the victim's probability API from 0.3% to
100% of the attacker's pool, seeds no zoo model of the demo uses) are trained on the demo's zoo
(shared, not retrained: only the new copies train); the bundle is the demo's
(``checkpoints/fmnist_demo.fpenc.safetensors``, ``make demo``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, overlay_args, overlay_verdicts, save_figure, write_results
from fpenc.executor import executor_options


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for arch, marker in (("fmnist_a", "o"), ("fmnist_c", "s")):
        mine = sorted((r for r in rows if r["architecture"] == arch), key=lambda r: r["recovery_rate"])
        x = [r["recovery_rate"] for r in mine]
        a.plot(x, [r["similarity"] for r in mine], marker + "-", label=f"similarity, arc {arch[-1].upper()}")
        a.plot(x, [r["agreement"] for r in mine], marker + "--", label=f"agreement, arc {arch[-1].upper()}")
        b.plot(x, [max(r["p_value"], 1e-6) for r in mine], marker + "-", label=f"arc {arch[-1].upper()}")
    a.set_xlabel("recovery rate (copy's test accuracy / victim's)")
    a.set_ylabel("score against the victim")
    a.legend(fontsize=7)
    b.set_yscale("log")
    b.axhline(0.01, color="k", lw=0.8, ls=":", label="alpha 0.01")
    b.set_xlabel("recovery rate")
    b.set_ylabel("verdict p-value")
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap)
    ap.add_argument("--base-run", default=None, help="the run whose zoo to share (default: the first config's)")
    ap.add_argument("--seed", type=int, default=500, help="the overlay's copies: the seed of its grids (default 500)")
    overlay_args(ap)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    cfg, bundle, judged = overlay_verdicts(
        args.config,
        args.bundle,
        lambda m: m["role"] == "piracy" and m["seed"] == args.seed,
        executor_options(args),
        args.base_run,
    )
    rows = []
    for m, r in judged:
        rows.append(
            {
                "id": m["id"],
                "architecture": m["architecture"],
                "pool_fraction": m["spec"]["extraction"].get("pool_fraction", 1.0),
                "queries": m["queries"],
                "recovery_rate": m["recovery_rate"],
                "similarity": round(r["similarity"], 4),
                "agreement": round(r["agreement"], 4),
                "p_value": r["p_value"],
                "verdict": r["verdict"],
            }
        )
        print(
            f"{m['id']:45s} recovery {m['recovery_rate']:.3f} sim {r['similarity']:.3f} "
            f"agree {r['agreement']:.3f} p {r['p_value']:.2e} {r['verdict']}"
        )
    result = {
        "experiment": "recovery",
        "configs": args.config,
        "bundle": str(bundle.path),
        "alpha": bundle.meta.get("alpha"),
        "copies": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_results(args.out, result, seed=cfg.seed, argv=argv)
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
