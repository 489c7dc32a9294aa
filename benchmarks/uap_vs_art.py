"""Benchmark: our batched SGD-UAP vs ART's UniversalPerturbation (DeepFool attacker) on the same
victim, norm and epsilon. Writes benchmarks/results/uap_vs_art.json.

    pip install -e '.[bench]'                                      # ART's own dependencies
    pip install --no-deps adversarial-robustness-toolbox==1.20.1   # ART itself: never its torch
    python benchmarks/uap_vs_art.py --config configs/fmnist_demo.yaml --art-budget 300

ART gets a time budget: it runs single passes (max_iter=1) over growing image subsets until the
budget is spent, and its last complete result is kept. Reported: the fooling rate of each at
equal time, and our time to reach ART's fooling rate. Run `fpenc zoo` on the config first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, configs, load_run, write_results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap, required=False, default=["configs/fmnist_demo.yaml"])
    ap.add_argument("--art-budget", type=float, default=300.0, help="seconds ART may use")
    ap.add_argument("--norm", default="linf", choices=["linf", "l2"])
    ap.add_argument("--eps", type=float, default=None, help="default: the config's uap.eps")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/uap_vs_art.json")
    args = ap.parse_args(argv)

    from art.attacks.evasion import UniversalPerturbation
    from art.estimators.classification import PyTorchClassifier

    from datamodules.image import ImageDataModule
    from fpenc.data.datasets import load_dataset
    from fpenc.data.splits import load_splits
    from fpenc.uap.bank import compute_uap, fooling_rate, holdout_images
    from fpenc.zoo.training import quiet_lightning

    quiet_lightning()
    torch.manual_seed(args.seed)
    cfg, run_dir = load_run(
        configs(args), {"uap": {"norm": args.norm, **({"eps": args.eps} if args.eps else {}), "steps": args.steps}}
    )
    eps, norm = cfg.uap.eps, cfg.uap.norm
    victim = run_dir.load_model(run_dir.victim_entry())
    arrays = load_dataset(cfg.data.dataset, root=cfg.data.root)
    splits, _ = load_splits(run_dir.splits)
    holdout = holdout_images(arrays, cfg.uap.holdout, cfg.seed)

    # ours
    dm = ImageDataModule(arrays=arrays, split="victim", splits=splits, batch_size=cfg.uap.batch_size, seed=args.seed)
    ours = compute_uap(victim, dm, holdout, tuple(arrays.input_shape), cfg.uap, seed=args.seed, progress=False)
    hist = ours["history"]

    # ART, under a time budget
    clf = PyTorchClassifier(
        model=victim,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(arrays.input_shape),
        nb_classes=arrays.num_classes,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    pool = arrays.train_x[torch.as_tensor(splits["victim"])]
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(pool))
    art_runs, spent, n = [], 0.0, 64
    while spent < args.art_budget and n <= len(pool):
        x = (pool[torch.as_tensor(order[:n])].float() / 255).numpy()
        attack = UniversalPerturbation(
            clf,
            attacker="deepfool",
            attacker_params={"verbose": False},
            delta=0.2,
            max_iter=1,
            eps=eps,
            norm=np.inf if norm == "linf" else 2,
            batch_size=64,
            verbose=False,
        )
        t0 = time.perf_counter()
        attack.generate(x)
        dt = time.perf_counter() - t0
        spent += dt
        v = torch.from_numpy(np.asarray(attack.noise)[0]).float()
        art_runs.append(
            {"images": n, "seconds": round(dt, 2), "fooling_rate": round(fooling_rate(victim, v, holdout), 4)}
        )
        print("ART", art_runs[-1], flush=True)
        n *= 2
        if spent + 2 * dt > args.art_budget:  # the next run (twice the images) would overrun the budget
            break
    art = max(art_runs, key=lambda r: r["fooling_rate"])

    def ours_at(seconds: float) -> float:
        before = [h for h in hist if h["seconds"] <= seconds]
        return before[-1]["fooling_rate"] if before else 0.0

    def art_at(seconds: float) -> float:  # each ART run starts afresh: the best one that fits in `seconds`
        fits = [r["fooling_rate"] for r in art_runs if r["seconds"] <= seconds]
        return max(fits) if fits else 0.0

    ours_to_art = next((h["seconds"] for h in hist if h["fooling_rate"] >= art["fooling_rate"]), None)
    result = {
        "victim": "runs/" + str(cfg.name) + "/victim",
        "norm": norm,
        "eps": eps,
        "holdout_images": len(holdout),
        "seed": args.seed,
        "machine": {"device": "cpu"},
        "ours": {
            "method": "SGD-UAP (Adam on v, projected)",
            "steps": cfg.uap.steps,
            "batch_size": cfg.uap.batch_size,
            "seconds": ours["seconds"],
            "fooling_rate": round(ours["fooling_rate"], 4),
            "history": hist,
        },
        "art": {
            "method": "art.attacks.evasion.UniversalPerturbation(attacker='deepfool', max_iter=1)",
            "budget_seconds": args.art_budget,
            "runs": art_runs,
            "best": art,
        },
        "comparison": {
            "art_seconds": art["seconds"],
            "art_fooling_rate": art["fooling_rate"],
            "ours_fooling_rate_at_art_seconds": ours_at(art["seconds"]),
            "ours_seconds": ours["seconds"],
            "ours_fooling_rate": round(ours["fooling_rate"], 4),
            "art_fooling_rate_at_ours_seconds": art_at(ours["seconds"]),
            "ours_seconds_to_art_fooling_rate": ours_to_art,
            "speedup_to_equal_fooling": None if not ours_to_art else round(art["seconds"] / ours_to_art, 1),
        },
    }
    print(json.dumps(result["comparison"], indent=2))
    write_results(args.out, result, seed=args.seed, argv=argv)


if __name__ == "__main__":
    main()
