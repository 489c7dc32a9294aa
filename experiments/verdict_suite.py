"""The verdict on suspects it must never accuse, and on copies it must still catch, against one bundle.

Suspect files (ONNX, the format recommended for untrusted suspects) are written to
``runs/<name>/verdict_suite/`` in three groups and each is verified as ``fpenc verify`` would:

* ``gates``: models that are not working models of the task: constant models (every class),
  pseudo-random-label models, untrained networks of the victim's architecture (3 seeds), the
  victim and an independent model without their input normalisation, and the victim with its
  classes permuted. None may be ``derived``.
* ``negatives``: the independent models of ``--negatives-config`` (built with ``fpenc zoo``; 21
  of varied recipes, among them the victim's architecture and recipe on the victim's own data).
  None may be ``derived``; their p-values give the calibration plot (nominal alpha vs observed
  false-accusation rate, Clopper-Pearson 95% interval).
* ``positives``: the run's piracy test models, and copies of the victim pruned (30%, 60%),
  INT8-quantized, and fine-tuned on the attacker's half at lr 1e-4 (and, for information, 1e-3).

Every file is judged with every fingerprint pair (the default, no random draw) and with 20
pairs drawn with seeds 0..4, at alpha 0.05 and 0.01. Writes
``experiments/results/verdict_suite_<name>.json`` and ``docs/figures/calibration_<name>.png``.

    python experiments/verdict_suite.py -c configs/fmnist_demo.yaml \\
        --negatives-config experiments/configs/negatives_fmnist.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, load_run, write_results
from fpenc.executor import add_executor_flags, executor_options

ALPHAS = (0.05, 0.01)
SETTINGS = [("all pairs", None, 0)] + [(f"20 pairs, seed {s}", 20, s) for s in range(5)]


def positive_models(victim, run_dir: Path, manifest: dict, arrays, splits, seed: int) -> dict:
    from fpenc.rundir import load_zoo_model
    from fpenc.zoo.modifications import fine_tuned_copy, int8_copy, pruned_copy

    train_arch = manifest["config"]["zoo"]["victim"]["architecture"]
    out = {
        m["id"]: load_zoo_model(m, run_dir)
        for m in manifest["models"]
        if m["role"] == "piracy" and m["architecture"] != train_arch
    }  # the test set's copies
    out["victim_pruned30"] = pruned_copy(victim, 0.3)
    out["victim_pruned60"] = pruned_copy(victim, 0.6)
    out["victim_int8"] = int8_copy(victim)
    out["victim_finetuned_lr1e-4"] = fine_tuned_copy(victim, arrays, splits, lr=1e-4, epochs=2, seed=seed)
    out["victim_finetuned_lr1e-3"] = fine_tuned_copy(victim, arrays, splits, lr=1e-3, epochs=2, seed=seed)
    return out


def same_weights(a: Path, b: Path) -> bool:
    """Whether two weights files hold identical weights (by content: their file bytes may differ)."""
    from fpenc.io import load_weights, weights_sha256

    pa, pb = load_weights(a), load_weights(b)
    return weights_sha256(pa["state_dict"], pa["config"]) == weights_sha256(pb["state_dict"], pb["config"])


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (results files name no machine's folders)."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


def judge(bundle, path: Path) -> dict:
    """Verify ``path`` under every setting; the p-value does not depend on alpha."""
    from fpenc.suspects import from_file
    from fpenc.verdict import DERIVED, NOT_ASSESSABLE
    from fpenc.verification import verify_suspect

    runs = []
    for label, f, seed in SETTINGS:
        r = verify_suspect(
            bundle, from_file(path, api="probs", num_classes=bundle.num_classes), f, alpha=0.5, seed=seed
        )
        assessable = r["verdict"] != NOT_ASSESSABLE
        runs.append(
            {
                "setting": label,
                "p_value": r["p_value"],
                "assessable": assessable,
                **{
                    f"verdict_at_{a:g}": (DERIVED if r["p_value"] < a else "not shown")
                    if assessable
                    else NOT_ASSESSABLE
                    for a in ALPHAS
                },
                "agreement": round(r["agreement"], 6),
                "similarity": round(r["similarity"], 6),
                "accuracy": r["sanity"]["accuracy"],
                "ood_distance": round(r["ood_distance"], 6),
                "reasons": r["reasons"] if not assessable else [],
            }
        )
    return {"file": path.name, "runs": runs}


def summarise(rows: list[dict]) -> dict:
    out = {}
    for a in ALPHAS:
        for label, _, _ in SETTINGS:
            key = f"derived_at_{a:g} ({label})"
            out[key] = (
                f"{sum(r['verdict_at_' + format(a, 'g')] == 'derived' for x in rows for r in x['runs'] if r['setting'] == label)}/{len(rows)}"
            )
    out["not_assessable (all pairs)"] = f"{sum(not x['runs'][0]['assessable'] for x in rows)}/{len(rows)}"
    return out


def markdown(result: dict) -> str:
    """The per-file tables of a result, for docs/verdict.md."""
    lines = []
    for group, rows in result["results"].items():
        lines += [
            f"**{group}**",
            "",
            "| suspect | accuracy | agreement | similarity | p (all pairs) | at 0.05 | at 0.01 | derived in 20-pair draws (0.05 / 0.01) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for x in rows:
            r, draws = x["runs"][0], x["runs"][1:]
            d05 = sum(d["verdict_at_0.05"] == "derived" for d in draws)
            d01 = sum(d["verdict_at_0.01"] == "derived" for d in draws)
            lines.append(
                f"| {Path(x['file']).stem} | {r['accuracy']:.3f} | {r['agreement']:.3f} | {r['similarity']:.3f} | "
                f"{r['p_value']:.2g} | {r['verdict_at_0.05']} | {r['verdict_at_0.01']} | "
                f"{d05}/{len(draws)} / {d01}/{len(draws)} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap)
    ap.add_argument("--negatives-config", required=True)
    ap.add_argument("--bundle", default=None, help="default: checkpoints/<name>.fpenc.safetensors")
    ap.add_argument(
        "--out",
        default=None,
        help="results JSON (default experiments/results/verdict_suite_<name>.json; with --out, the tables and the calibration plot go next to it)",
    )
    add_executor_flags(ap)  # the extra zoos: one model after another here, or Ray tasks
    args = ap.parse_args(argv)
    from fpenc.bundle import load_bundle
    from fpenc.calibration import calibrate, format_calibration, plot_calibration
    from fpenc.data.datasets import load_data
    from fpenc.data.splits import load_splits
    from fpenc.encoder.export import bundle_path
    from fpenc.suspect_export import export_model
    from fpenc.zoo.builder import build_zoo
    from fpenc.zoo.negatives import broken_models

    t0 = time.time()
    cfg, run_dir = load_run(args.config)
    neg_cfg, neg_run = load_run([*args.config, args.negatives_config])
    neg_manifest = build_zoo(neg_cfg, progress=False, executor=executor_options(args))
    manifest = run_dir.load_manifest()
    bundle = load_bundle(args.bundle or bundle_path(REPO / "checkpoints", cfg.name))
    victim = run_dir.load_model(run_dir.victim_entry())
    neg_victim = neg_run.victim_entry()
    arrays = load_data(cfg.data)
    splits, _ = load_splits(run_dir.splits)
    shape, k = tuple(manifest["input_shape"]), int(manifest["num_classes"])
    negatives = {m["id"]: neg_run.load_model(m) for m in neg_manifest["models"] if m["role"] == "homologous"}
    groups = {
        "gates": broken_models(victim, next(iter(negatives.values())), shape, k),
        "negatives": negatives,
        "positives": positive_models(victim, run_dir, manifest, arrays, splits, cfg.seed),
    }
    folder = run_dir.verdict_suite_dir
    results, files = {}, {}
    for group, models in groups.items():
        files[group] = [export_model(net, shape, folder / group / f"{name}.onnx") for name, net in models.items()]
        results[group] = []
        for path in files[group]:
            results[group].append(judge(bundle, path))
            r = results[group][-1]["runs"][0]
            print(
                f"{group:9s} {path.stem:40s} acc {r['accuracy']:.3f} agree {r['agreement']:.3f} sim "
                f"{r['similarity']:.3f} p {r['p_value']:.2e} {r['verdict_at_0.05']}",
                flush=True,
            )
    calib = calibrate(bundle, files["negatives"], api="probs", progress=False)
    calib["bundle"] = _shown(bundle.path)
    print(format_calibration(calib))
    name = cfg.name
    out = Path(args.out).resolve() if args.out else REPO / "experiments" / "results" / f"verdict_suite_{name}.json"
    plot = plot_calibration(  # the docs' figure; next to --out for another bundle or layout
        calib,
        out.with_suffix(".png") if args.out else REPO / "docs" / "figures" / f"calibration_{name}.png",
        title=f"{name}: {calib['negatives']} independent models",
    )
    result = {
        "experiment": "verdict_suite",
        "seed": cfg.seed,
        "bundle": _shown(bundle.path),
        "bundle_sha256": bundle.sha256,
        "p_value_floor": calib["p_value_floor"],
        "reference_models": bundle.meta.get("reference_models"),
        "gates": bundle.meta.get("gates"),
        "negatives_victim_weights_identical": same_weights(
            neg_run.weights(neg_victim), run_dir.weights(run_dir.victim_entry())
        ),
        "summary": {group: summarise(rows) for group, rows in results.items()},
        "calibration": {k: v for k, v in calib.items() if k != "models"},
        "calibration_plot": _shown(plot),
        "results": results,
        "seconds": round(time.time() - t0, 1),
    }
    write_results(out, result, seed=cfg.seed, argv=argv)
    out.with_suffix(".md").write_text(markdown(result))
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {out} and {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
