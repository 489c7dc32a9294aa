"""Benchmark: how long `fpenc fit` trains the fingerprint encoder on CPU (target < 2 min).

The earlier stages (zoo, UAPs, key) are built first and not timed; then `fpenc fit`
runs in this process (Lightning imported beforehand, so its ~9 s import is not counted) with
`--trainer.logger false`, and a callback times `trainer.fit` from the start of training to its
end (every epoch, every validation, the checkpoints). The whole `fit` call (which also
fingerprints the zoo if that is not cached) is timed too. It
refits the run's encoder (`runs/<name>/encoder/`), with the config's seed.
Writes benchmarks/results/encoder_fit.json.

    python benchmarks/encoder_fit.py -c configs/fmnist_demo.yaml [-c overlay.yaml] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, load_run, write_results

RESULTS = Path(__file__).parent / "results" / "encoder_fit.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from fpenc.fingerprint.key import build_key
    from fpenc.uap.bank import build_uap_bank
    from fpenc.zoo.builder import build_zoo

    cfg, run_dir = load_run(args.config)
    t0 = time.perf_counter()
    build_zoo(cfg, progress=False)
    build_uap_bank(cfg, progress=False)
    build_key(cfg)
    stages_s = time.perf_counter() - t0

    import pytorch_lightning as pl

    from fpenc import lightning_cli

    span: dict[str, float] = {}

    class Timer(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            span["start"] = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            span["end"] = time.perf_counter()
            span["epochs"] = trainer.current_epoch
            span["steps"] = trainer.global_step
            span["best_separation"] = float(trainer.checkpoint_callback.best_model_score or float("nan"))

    fit_args = [
        "fit",
        *sum((["--config", c] for c in args.config), []),
        "--trainer.logger",
        "false",
        "--trainer.enable_progress_bar",
        "false",
    ]
    t0 = time.perf_counter()
    rc = lightning_cli.run(fit_args, callbacks=[Timer()])
    fit_call_s = time.perf_counter() - t0
    if rc != 0 or "end" not in span:
        print(f"fpenc fit failed (exit {rc})", file=sys.stderr)
        return 1
    models = len(run_dir.load_manifest()["models"])
    result = {
        "benchmark": "encoder_fit",
        "configs": args.config,
        "train_seconds": round(span["end"] - span["start"], 2),
        "fit_call_seconds": round(fit_call_s, 2),
        "earlier_stages_seconds_not_timed": round(stages_s, 2),
        "epochs": span["epochs"],
        "optimizer_steps": span["steps"],
        "best_val_separation": round(span["best_separation"], 4),
        "zoo_models": models,
        "target": "fpenc fit of the encoder < 120 s on CPU",
        "meets_target": span["end"] - span["start"] < 120,
        "machine": {"cuda": torch.cuda.is_available()},
        "versions": {"lightning": pl.__version__},
    }
    print(json.dumps({k: result[k] for k in ("train_seconds", "fit_call_seconds", "epochs", "meets_target")}))
    write_results(args.out, result, seed=cfg.seed, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
