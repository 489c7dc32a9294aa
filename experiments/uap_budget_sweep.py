"""How victim UAPs at several budgets transfer to a zoo, by architecture and role.

For each budget (``norm:eps``), computes 3 SGD-UAPs of the victim (seed 0, 100 steps of 256 of
its training images, started near 0) and, on 2,000 held-out test images, every model's
``fooling`` rate and how often it ``follows`` the victim (predicts the victim's new class where
the UAP fools the victim; fpenc.uap.report). ``--piracy-runs`` adds the piracy models of other
zoos built on the same victim and splits (e.g. CloudLeak extraction) as extra groups.

    fpenc zoo -c configs/fmnist_demo.yaml -c experiments/configs/cloudleak.yaml   # optional
    .venv/bin/python experiments/uap_budget_sweep.py -c configs/fmnist_demo.yaml \
        --budgets linf:0.25 linf:0.1 l2:3 --piracy-runs runs/demo_cloudleak \
        --out experiments/results/uap_budget_sweep.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, load_run, write_results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap)
    ap.add_argument("--budgets", nargs="+", default=["linf:0.25", "linf:0.1", "l2:3"], help="norm:eps ...")
    ap.add_argument("--piracy-runs", nargs="*", default=[], help="other run dirs whose piracy models to add")
    ap.add_argument("--out", help="write the results here (JSON)")
    args = ap.parse_args(argv)
    from fpenc.data.datasets import load_data
    from fpenc.data.splits import load_splits
    from fpenc.rundir import RunDir
    from fpenc.uap.bank import holdout_images
    from fpenc.uap.report import predictions, transfer
    from fpenc.uap.subspace import batched_sgd_uaps

    torch.manual_seed(0)
    cfg, run_dir = load_run(args.config)
    groups = {"": run_dir, **{Path(r).name: RunDir(r) for r in args.piracy_runs}}
    models = {}  # (group, id) -> (entry, net): every model of the config's zoo, the piracy models of the others
    victim_sha = None
    for group, run in groups.items():
        for m in run.load_manifest()["models"]:
            victim_sha = victim_sha or (m["sha256"] if m["role"] == "victim" else None)
            if m["role"] == "victim" and m["sha256"] != victim_sha:
                raise SystemExit(f"{run} has another victim than {cfg.run_dir}: compare zoos of one victim")
            if group == "" or m["role"] == "piracy":
                models[(group, m["id"])] = (m, run.load_model(m))
    arrays = load_data(cfg.data)
    splits, _ = load_splits(run_dir.splits)
    train = arrays.train_x[torch.as_tensor(splits["victim"])]
    holdout = holdout_images(arrays, 2000, cfg.seed)
    victim = models[("", "victim")][1]
    clean = {key: predictions(net, holdout) for key, (m, net) in models.items()}

    results = []
    for budget in args.budgets:
        norm, eps = budget.split(":")
        eps = float(eps)
        t0 = time.perf_counter()
        uaps = batched_sgd_uaps(
            victim, train, 3, eps, norm, steps=100, batch_size=256, lr=0.01 if norm == "linf" else 0.1, seed=0
        )
        seconds = time.perf_counter() - t0
        per_model = {}
        for v in uaps:
            v_adv = predictions(victim, holdout, v)
            for key, (_, net) in models.items():
                per_model.setdefault(key, []).append(
                    transfer(clean[("", "victim")], v_adv, clean[key], predictions(net, holdout, v))
                )
        rows = {}
        for (g, mid), ts in per_model.items():
            m = models[(g, mid)][0]
            label = f"piracy ({g})" if g else m["role"]
            r = rows.setdefault((m["architecture"], label), {"fooling": [], "follows": []})
            r["fooling"].append(np.mean([t["fooling"] for t in ts]))
            r["follows"].append(np.nanmean([t["follows"] for t in ts]))
        summary = [
            {
                "architecture": a,
                "group": label,
                "models": len(r["fooling"]),
                "fooling": round(float(np.mean(r["fooling"])), 4),
                "follows": round(float(np.mean(r["follows"])), 4),
            }
            for (a, label), r in sorted(rows.items())
        ]
        vf = float(np.mean([t["fooling"] for t in per_model[("", "victim")]]))
        results.append(
            {
                "norm": norm,
                "eps": eps,
                "seconds": round(seconds, 1),
                "victim_fooling": round(vf, 4),
                "groups": [s for s in summary if s["group"] != "victim"],
            }
        )
        print(f"== {norm} eps {eps}: {seconds:.1f}s, victim fooling {vf:.3f}")
        for s in results[-1]["groups"]:
            print(
                f"   {s['architecture']:<10} {s['group']:<28} n={s['models']}  fooling {s['fooling']:.3f}  "
                f"follows {s['follows']:.3f}"
            )
    if args.out:
        write_results(
            args.out,
            {
                "configs": args.config,
                "piracy_runs": args.piracy_runs,
                "holdout": 2000,
                "victim_sha256": victim_sha,
                "results": results,
            },
            seed=0,
            argv=argv,
        )


if __name__ == "__main__":
    main()
