"""Independent models on data overlapping the victim's (paper App. C.2, Fig. 12: "the overlapping
rate does not undermine the performance of our verification"): the encoder's similarity, the
agreement and the verdict of homologous models trained on subsets sharing 0% to 100% of their
samples with the victim's training half, judged with the demo's bundle as ``fpenc verify`` judges
a file.

    python experiments/overlap.py -c configs/fmnist_demo.yaml -c experiments/configs/overlap_fmnist.yaml \\
        --out experiments/results/overlap_fmnist_demo.json --plot experiments/results/overlap_fmnist_demo.png

The overlay's 20 models (arc A, the victim's recipe, 4 per overlap rate; grid ``data: overlap:F``)
train on the demo's zoo (shared: only they train); the bundle is the demo's (``make demo``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, overlay_args, overlay_verdicts, save_figure, write_results
from fpenc.data.splits import parse_overlap
from fpenc.executor import executor_options


def plot(rows: list[dict], path: Path, alpha: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    x = [r["overlap"] for r in rows]
    a.plot(x, [r["similarity"] for r in rows], "o", label="similarity")
    a.plot(x, [r["agreement"] for r in rows], "s", label="agreement")
    a.set_ylabel("score against the victim")
    a.set_ylim(0, 1.02)
    a.legend(fontsize=8)
    b.semilogy(x, [max(r["p_value"] or 1.0, 1e-6) for r in rows], "o")
    b.axhline(alpha, ls="--", c="tab:red", label=f"alpha {alpha}")
    b.set_ylabel("p-value (derived below alpha)")
    b.legend(fontsize=8)
    for ax in (a, b):
        ax.set_xlabel("share of the training data shared with the victim")
        ax.grid(alpha=0.3)
    fig.suptitle("independent models (arc A) against the demo's bundle, by data overlap", fontsize=9)
    save_figure(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap)
    overlay_args(ap)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    cfg, bundle, judged = overlay_verdicts(
        args.config, args.bundle, lambda m: parse_overlap(m["spec"]["split"]) is not None, executor_options(args)
    )
    rows = []
    for m, r in judged:
        rows.append(
            {
                "id": m["id"],
                "overlap": parse_overlap(m["spec"]["split"]),
                "test_accuracy": m["test_accuracy"],
                "similarity": round(r["similarity"], 4),
                "agreement": round(r["agreement"], 4),
                "p_value": r["p_value"],
                "verdict": r["verdict"],
            }
        )
        print(f"{m['id']:48s} sim {r['similarity']:.3f} agree {r['agreement']:.3f} p {r['p_value']} {r['verdict']}")
    alpha = bundle.meta.get("alpha")
    result = {
        "experiment": "overlap",
        "configs": args.config,
        "bundle": str(bundle.path),
        "alpha": alpha,
        "derived": sum(r["verdict"] == "derived" for r in rows),
        "models": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_results(args.out, result, seed=cfg.seed, argv=argv)
    if args.plot:
        plot(rows, args.plot, float(alpha or 0.01))
    return 0


if __name__ == "__main__":
    sys.exit(main())
