"""Encoder transfer (Peng et al., CVPR 2022, App. E): one victim's encoder protects another victim.

For each target victim V2 (a stack of configs), ``fpenc test`` judges V2's validation, reference
and test models twice — with V2's own encoder (``--ckpt_path best``; ``fpenc fit`` first if V2 has
none) and with the source bundle's encoder (``--model.init_from``, no training on V2) — and the
two reports are compared: the encoder's AUC on V2's test models (fingerprint pairs and models),
the similarity gap (mean similarity of V2's test copies minus that of its independent test
models), and the verdicts. Bundles go to ``<--export-dir>/<target>/{own,transfer}``; the
target's run directory keeps its own encoder's report. Writes the results JSON and a figure.

    python experiments/encoder_transfer.py --source checkpoints/fmnist_demo.fpenc.safetensors \\
        --target own_model=configs/fmnist_demo.yaml,runs/own_model/protect.yaml \\
        --target split1=configs/fmnist_demo.yaml,experiments/configs/victim_split1.yaml \\
        --out experiments/results/encoder_transfer.json --plot experiments/results/encoder_transfer.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import report_summary, run_fpenc, save_figure, write_results


def run_target(name: str, configs: list[str], source: Path, export_dir: Path) -> dict:
    from fpenc.config import load_pipeline_config
    from fpenc.rundir import RunDir

    cfg = load_pipeline_config(configs)
    run = RunDir(cfg.run_dir)
    out_dir = export_dir / name
    stack = [a for c in configs for a in ("-c", c)]
    quiet = ["--trainer.logger", "false"]
    t0 = time.perf_counter()
    if not run.checkpoint("best").is_file():
        run_fpenc("fit", *stack, *quiet)
    fit_s = time.perf_counter() - t0
    result = {"configs": configs, "victim_architecture": None, "fit_seconds": round(fit_s, 1)}
    for mode, extra in (
        ("transfer", ["--model.init_from", str(source)]),
        ("own", ["--ckpt_path", "best"]),  # last, so that the run directory keeps its own report
    ):
        t0 = time.perf_counter()
        run_fpenc("test", *stack, *quiet, *extra, "--model.export_dir", str(out_dir / mode))
        report = json.loads(run.report_json.read_text())
        result[mode] = {**report_summary(report), "test_seconds": round(time.perf_counter() - t0, 1)}
        result["victim_architecture"] = report.get("victim_architecture")
    return result


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(results["targets"])
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.6), squeeze=False)
    for ax, name in zip(axes[0], targets):
        r = results["targets"][name]
        for x, mode in enumerate(("own", "transfer")):
            for m in r[mode]["models"].values():
                copy = m["role"] == "piracy"
                ax.scatter(x + (0.08 if copy else -0.08), m["similarity"], c="tab:red" if copy else "tab:blue", s=18)
        ax.set_xticks([0, 1], ["V2's own encoder", "transferred encoder"])
        ax.set_title(f"{name} (victim {r['victim_architecture']})", fontsize=9)
        ax.set_ylabel("similarity to the victim")
        ax.grid(alpha=0.3)
    axes[0][0].scatter([], [], c="tab:red", label="copies (test)")
    axes[0][0].scatter([], [], c="tab:blue", label="independent (test)")
    axes[0][0].legend(fontsize=8)
    save_figure(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, required=True, help="the bundle whose encoder is transferred")
    ap.add_argument("--target", action="append", required=True, metavar="NAME=CFG[,CFG...]", help="a victim V2")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument(
        "--export-dir", type=Path, default=Path("runs/encoder_transfer"), help="where the two bundles of each target go"
    )
    args = ap.parse_args(argv)
    if not args.source.is_file():
        raise SystemExit(f"--source {args.source} does not exist; run `make demo` to export the demo's bundle")
    from fpenc.bundle import load_bundle

    src = load_bundle(args.source)
    results = {
        "source": {
            "bundle": str(args.source),
            "sha256": src.sha256,
            **{k: src.meta.get(k) for k in ("name", "victim_architecture")},
        },
        "targets": {},
    }
    for spec in args.target:
        name, _, cfgs = spec.partition("=")
        if not name or not cfgs:
            raise SystemExit(f"--target must be NAME=CFG[,CFG...], got '{spec}'")
        results["targets"][name] = run_target(name, cfgs.split(","), args.source, args.export_dir)
    write_results(args.out, results, seed=0, argv=argv)
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
