"""Benchmark: fpenc's two UAP methods on the same victim, norm and epsilon — SGD-UAP (Shafahi et al.
2020, the default) and DeepFool-UAP (Moosavi-Dezfooli et al. 2017, the paper's choice,
``uap.method: deepfool``) — their fooling rate on held-out test images and their time, one UAP per
seed (the seeds of a bank's members: the start of ``v`` and the order of the batches).

    python benchmarks/uap_methods.py -c configs/fmnist_demo.yaml --seeds 0 1 2 3 4 \
        --out benchmarks/results/uap_methods.json

Run ``fpenc zoo`` on the config first (it needs the victim).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, configs, load_run, write_results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap, required=False, default=["configs/fmnist_demo.yaml"])
    ap.add_argument("--steps", type=int, default=None, help="steps per UAP (default: the config's uap.steps)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--out", default="benchmarks/results/uap_methods.json")
    args = ap.parse_args(argv)

    from datamodules.image import ImageDataModule
    from fpenc.data.datasets import load_data
    from fpenc.data.splits import load_splits
    from fpenc.uap.bank import compute_uap, holdout_images, selection_images
    from fpenc.zoo.training import quiet_lightning

    quiet_lightning()
    cfg, run = load_run(configs(args))
    victim = run.load_model(run.victim_entry())
    arrays = load_data(cfg.data)
    splits, _ = load_splits(run.splits)
    holdout = holdout_images(arrays, cfg.uap.holdout, cfg.seed)
    out = {"benchmark": "uap_methods", "config": configs(args), "norm": cfg.uap.norm, "eps": cfg.uap.eps, "methods": {}}
    for method in ("sgd", "deepfool"):
        ucfg = replace(cfg.uap, method=method, steps=args.steps or cfg.uap.steps)
        runs = []
        for seed in args.seeds:
            dm = ImageDataModule(arrays=arrays, split="victim", splits=splits, batch_size=ucfg.batch_size, seed=seed)
            selection = selection_images(arrays, splits, "victim", seed=seed)
            r = compute_uap(victim, dm, holdout, tuple(arrays.input_shape), ucfg, seed, False, method, selection)
            norm = float(r["uap"].abs().max() if ucfg.norm == "linf" else r["uap"].norm())
            runs.append(
                {
                    "seed": seed,
                    "seconds": r["seconds"],
                    "fooling_rate": round(r["fooling_rate"], 4),
                    "perturbation_norm": round(norm, 4),
                    "history": r["history"],
                }
            )
            print(
                f"{method:9s} seed {seed}: fooling {r['fooling_rate']:.3f} on {len(holdout)} held-out images "
                f"in {r['seconds']:.1f} s",
                flush=True,
            )
        rates = [r["fooling_rate"] for r in runs]
        out["methods"][method] = {
            "steps": ucfg.steps,
            "batch_size": ucfg.batch_size,
            "fooling_rate_min": min(rates),
            "fooling_rate_mean": round(sum(rates) / len(rates), 4),
            "seconds_mean": round(sum(r["seconds"] for r in runs) / len(runs), 2),
            "runs": runs,
        }
    write_results(args.out, out, seed=args.seeds[0], argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
