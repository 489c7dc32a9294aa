"""Evasion: every test model of a run served behind each server-side defence at two strengths
(`fpenc serve`'s app on 127.0.0.1, Open Inference Protocol), judged by `fpenc verify`: is a copy
still shown, is an independent model ever accused, and what the defence costs the server in
accuracy (on the bundle's labelled images).

    python benchmarks/remote_evasion.py -c configs/fmnist_demo.yaml --out benchmarks/results/remote_evasion.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, configs, load_run, run_bundle, write_results

SETTINGS = {
    "none": {},
    "round:1": {"round_to": 1},
    "prob_noise:0.05": {"prob_noise": 0.05},
    "prob_noise:0.2": {"prob_noise": 0.2},
    "input_noise:0.05": {"input_noise": 0.05},
    "input_noise:0.15": {"input_noise": 0.15},
    "jpeg:75": {"jpeg": 75},
    "jpeg:30": {"jpeg": 30},
    "median:3": {"median": 3},
    "median:5": {"median": 5},
    "detector:40": {"detector": 40},
    "detector:25": {"detector": 25},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap, required=False, default=["configs/fmnist_demo.yaml"])
    ap.add_argument("--out", default="benchmarks/results/remote_evasion.json")
    args = ap.parse_args(argv)
    from fpenc.remote_client import from_url
    from fpenc.serve import BackgroundServer, make_app
    from fpenc.serve_defences import Defences
    from fpenc.suspect_export import export_model
    from fpenc.suspects import load_model_file
    from fpenc.verification import verify_suspect

    cfg, run = load_run(configs(args))
    bundle, entries = run_bundle(run)
    alpha, api = float(bundle.meta.get("alpha", 0.01)), bundle.meta.get("api", "probs")
    rows: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for entry in entries:
            net = run.load_model(entry)
            fn = load_model_file(export_model(net.eval(), tuple(bundle.input_shape), Path(tmp) / f"{entry['id']}.onnx"))
            rows[entry["id"]] = {"role": entry["role"], "settings": {}}
            for name, setting in SETTINGS.items():
                round_to = setting.get("round_to")
                guard = Defences(**{k: v for k, v in setting.items() if k != "round_to"})
                server = BackgroundServer(make_app(fn, model_name="m", round_to=round_to, defences=guard))
                try:
                    r = verify_suspect(
                        bundle, from_url(server.url, api=api, num_classes=bundle.num_classes), alpha=alpha
                    )
                finally:
                    server.stop()
                rows[entry["id"]]["settings"][name] = {
                    "verdict": r["verdict"], "p_value": r["p_value"], "accuracy": r["sanity"]["accuracy"],
                    "agreement": r["agreement"],
                }  # fmt: skip
            print(entry["id"], {k: v["verdict"] for k, v in rows[entry["id"]]["settings"].items()}, flush=True)
    summary = {}
    for name in SETTINGS:
        copies = [r["settings"][name] for r in rows.values() if r["role"] == "piracy"]
        negatives = [r["settings"][name] for r in rows.values() if r["role"] != "piracy"]
        summary[name] = {
            "copies_derived": sum(s["verdict"] == "derived" for s in copies),
            "copies": len(copies),
            "negatives_accused": sum(s["verdict"] == "derived" for s in negatives),
            "negatives": len(negatives),
            "not_assessable": sum(s["verdict"] == "not assessable" for s in copies + negatives),
            "mean_accuracy": round(sum(s["accuracy"] for s in copies + negatives) / len(copies + negatives), 4),
        }
    write_results(
        args.out, {"benchmark": "remote_evasion", "summary": summary, "models": rows}, seed=cfg.seed, argv=argv
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
