"""Choose the key on validation models: each bundle judges the same validation copies and
independent models, and the verdicts, p-values and agreements are compared.

The validation models are the base run's ``val`` set and the models of ``--val-config`` zoos
(stacked on the base config: the same data split and victim; e.g.
``experiments/configs/conferrable_val_fmnist.yaml``: copies extracted into arcs B and D and
independent arc-B/D models trained on the victim's own data). None of them trains an encoder,
chooses a key, calibrates a verdict or is a test model of the base run. Each model is judged the
way ``fpenc verify`` judges a suspect (the Python API on the module, every fingerprint pair).

    python experiments/key_design.py -c configs/fmnist_demo.yaml \\
        --val-config experiments/configs/conferrable_val_fmnist.yaml \\
        --bundle idiosyncratic=checkpoints/fmnist_demo.fpenc.safetensors \\
        --bundle conferrable=runs/fmnist_demo-key_conferrable-.../fmnist_demo-key_conferrable-....fpenc.safetensors \\
        --out experiments/results/key_design_fmnist_demo.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, configs, load_run, write_results
from fpenc.executor import add_executor_flags, executor_options


def auc(pos, neg) -> float:
    """P(a copy's value above an independent's), ties counting half."""
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def validation_models(args) -> list[tuple[dict, object]]:
    """``[(manifest entry, network)]``: the base run's val set, then every non-victim model of the
    ``--val-config`` zoos (built if missing; their victim must be the base run's)."""
    from fpenc.rundir import load_zoo_model
    from fpenc.zoo.builder import build_zoo
    from fpenc.zoo.sets import assign_sets

    cfg, run_dir = load_run(configs(args))
    manifest = run_dir.load_manifest()
    sets = assign_sets(cfg)
    victim = next(m for m in manifest["models"] if m["role"] == "victim")["sha256"]
    out = [(m, run_dir) for m in manifest["models"] if sets.get(m["id"]) == "val"]
    for extra in args.val_config:
        ecfg, erun = load_run([*configs(args), extra])
        zman = build_zoo(ecfg, executor=executor_options(args))
        if next(m for m in zman["models"] if m["role"] == "victim")["sha256"] != victim:
            raise SystemExit(f"{extra}: its victim is not the base run's; stack it on the same config")
        out += [(m, erun) for m in zman["models"] if m["role"] != "victim"]
    return [(m, load_zoo_model(m, run)) for m, run in out]


def judge(bundle_path: str, models, alpha: float | None) -> dict:
    from fpenc.bundle import load_bundle
    from fpenc.verdict_api import verify

    bundle = load_bundle(bundle_path)
    rows = []
    for entry, net in models:
        v = verify(bundle, net, alpha=alpha)
        rows.append(
            {
                "id": entry["id"],
                "role": entry["role"],
                "architecture": entry["architecture"],
                "outcome": v.outcome,
                "p_value": v.p_value,
                "agreement": round(v.agreement, 4),
                "margin": None if v.margin is None else round(v.margin, 4),
                "similarity": round(v.similarity, 4),
            }
        )
    copies = [r for r in rows if r["role"] == "piracy"]
    independent = [r for r in rows if r["role"] == "homologous"]
    return {
        "bundle": bundle_path,
        "alpha": v.alpha,
        "p_value_floor": v.details.get("p_value_floor"),
        "derived_copies": sum(r["outcome"] == "derived" for r in copies),
        "derived_independent": sum(r["outcome"] == "derived" for r in independent),
        "copies": len(copies),
        "independent": len(independent),
        "auc_agreement": round(auc([r["agreement"] for r in copies], [r["agreement"] for r in independent]), 3),
        "auc_similarity": round(auc([r["similarity"] for r in copies], [r["similarity"] for r in independent]), 3),
        "models": rows,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap)
    ap.add_argument("--val-config", action="append", default=[], help="a validation zoo stacked on --config")
    ap.add_argument("--bundle", action="append", required=True, metavar="NAME=PATH", help="a bundle to compare")
    ap.add_argument("--alpha", type=float, default=None, help="default: each bundle's")
    ap.add_argument("--out", type=Path, required=True)
    add_executor_flags(ap)
    args = ap.parse_args(argv)
    models = validation_models(args)
    result = {"bundles": {}}
    for spec in args.bundle:
        name, _, path = spec.partition("=")
        r = result["bundles"][name] = judge(path, models, args.alpha)
        print(
            f"{name}: derived {r['derived_copies']}/{r['copies']} copies, {r['derived_independent']}/"
            f"{r['independent']} independent; AUC agreement {r['auc_agreement']}, similarity {r['auc_similarity']}"
        )
        for m in r["models"]:
            print(f"  {m['id']:<44} {m['outcome']:<15} p {m['p_value']}  agreement {m['agreement']}")
    write_results(args.out, result, seed=0, argv=argv)
    return result


if __name__ == "__main__":
    main()
