"""Which test images carry the piracy signal? Clean agreement with the victim on candidate key pools.

For a zoo run, each suspect's agreement with the victim's predicted class is measured on four
pools of test images: all of them, the victim's errors, the images on which the reference
models (independently trained: pass the encoder's training homologous models; every one, or the
share ``--quorum``) predict another class than the victim, and the intersection of the two (``key.selection: idiosyncratic``).
"AUC" ranks piracy above homologous suspects of the architectures not excluded. No UAPs and no
encoder: this is the signal a key drawn from that pool offers at best.

    python experiments/key_signal.py runs/converged --exclude fmnist_b \
        --reference homologous-fmnist_b-adam-s0 homologous-fmnist_b-adam-s1 homologous-fmnist_b-adam-s2 \
                    homologous-fmnist_b-sgd-s0 homologous-fmnist_b-sgd-s1 \
        --out experiments/results/key_signal_converged.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import write_results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a zoo run dir (runs/<name>)")
    ap.add_argument("--reference", nargs="+", required=True, help="ids of independent (homologous) reference models")
    ap.add_argument("--exclude", nargs="*", default=[], help="architectures to leave out of the ranking")
    ap.add_argument(
        "--quorum",
        type=float,
        default=1.0,
        help="share of reference models that must disagree with the victim (key.reference_quorum)",
    )
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from fpenc.data.datasets import load_dataset
    from fpenc.fingerprint.key import references_disagree, victim_errors
    from fpenc.report import roc_metrics
    from fpenc.rundir import RunDir
    from fpenc.zoo.evaluate import predict_probs
    from fpenc.zoo.manifest import entries_by_id

    run = RunDir(args.run)
    entries = entries_by_id(run.load_manifest())
    arrays = load_dataset(args.dataset)
    x, y = arrays.test_x, arrays.test_y.numpy()

    def predict(mid: str):
        return predict_probs(run.load_model(entries[mid]), x).argmax(1).numpy()

    victim = predict("victim")
    refs = [predict(r) for r in args.reference]
    disagree = references_disagree(victim, refs, args.quorum)
    pools = {
        "all": np.ones_like(disagree),
        "victim_errors": victim_errors(victim, y),
        "references_disagree": disagree,
        "idiosyncratic": victim_errors(victim, y, refs, args.quorum),
    }
    rows = []
    for mid, e in sorted(entries.items()):
        if e["role"] not in ("piracy", "homologous") or e["architecture"] in args.exclude or mid in args.reference:
            continue
        pred = predict(mid)
        rows.append(
            {
                "id": mid,
                "role": e["role"],
                "architecture": e["architecture"],
                **{k: round(float((pred == victim)[m].mean()), 4) for k, m in pools.items()},
            }
        )

    def auc(pool: str) -> float:
        return round(roc_metrics([r[pool] for r in rows], [r["role"] == "piracy" for r in rows])["auc"], 3)

    result = {
        "run": str(run),
        "reference": args.reference,
        "quorum": args.quorum,
        "excluded": args.exclude,
        "pool_sizes": {k: int(m.sum()) for k, m in pools.items()},
        "auc": {k: auc(k) for k in pools},
        "models": rows,
    }
    print(f"{'model':30s} " + " ".join(f"{k:>20s}" for k in pools))
    for r in rows:
        print(f"{r['id']:30s} " + " ".join(f"{r[k]:20.4f}" for k in pools))
    print(f"{'pool size':30s} " + " ".join(f"{result['pool_sizes'][k]:20d}" for k in pools))
    print(f"{'AUC (piracy > homologous)':30s} " + " ".join(f"{result['auc'][k]:20.3f}" for k in pools))
    if args.out:
        write_results(args.out, result, seed=None, argv=argv)  # deterministic: no random draw


if __name__ == "__main__":
    main()
