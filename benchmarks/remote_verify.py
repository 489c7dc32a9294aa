"""Remote verification against the file: every test model of a run exported to ONNX, judged from the
file, then served by ``fpenc serve``'s app on 127.0.0.1 and judged over each protocol (Open Inference
Protocol v2, plain JSON). Records per suspect and path the verdict, p-value, queries and seconds.

    python benchmarks/remote_verify.py -c configs/fmnist_demo.yaml --out benchmarks/results/remote_verify.json

Run ``fpenc zoo``, ``fpenc fit`` and ``fpenc test --ckpt_path best`` on the config first (the bundle).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, configs, load_run, run_bundle, write_results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap, required=False, default=["configs/fmnist_demo.yaml"])
    ap.add_argument("--out", default="benchmarks/results/remote_verify.json")
    args = ap.parse_args(argv)
    from fpenc.remote_client import from_url
    from fpenc.serve import BackgroundServer, make_app
    from fpenc.suspect_export import export_model
    from fpenc.suspects import from_file, load_model_file
    from fpenc.verification import verify_suspect

    cfg, run = load_run(configs(args))
    bundle, entries = run_bundle(run)
    alpha = float(bundle.meta.get("alpha", 0.01))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for entry in entries:
            net = run.load_model(entry)
            if (net.config or {}).get("quantized"):
                rows[entry["id"]] = {"skipped": "a real INT8 model: torch cannot export its kernels to ONNX"}
                continue
            path = export_model(net.eval(), tuple(bundle.input_shape), Path(tmp) / f"{entry['id']}.onnx")
            row = {}
            t0 = time.perf_counter()
            suspect = from_file(path, api=bundle.meta.get("api", "probs"), num_classes=bundle.num_classes)
            r = verify_suspect(bundle, suspect, alpha=alpha)
            row["file"] = {"verdict": r["verdict"], "p_value": r["p_value"], "queries": r["queries"],
                           "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
            server = BackgroundServer(make_app(load_model_file(path), model_name=entry["id"]))
            try:
                for protocol, url in (("v2", server.url), ("json", f"{server.url}/predict")):
                    t0 = time.perf_counter()
                    s = from_url(url, api=bundle.meta.get("api", "probs"), num_classes=bundle.num_classes)
                    r = verify_suspect(bundle, s, alpha=alpha)
                    row[protocol] = {"verdict": r["verdict"], "p_value": r["p_value"], "queries": s.remote.spent,
                                     "seconds": round(time.perf_counter() - t0, 2), "protocol": s.remote.protocol}  # fmt: skip
            finally:
                server.stop()
            row["same_verdict_and_p"] = all(
                row[p]["verdict"] == row["file"]["verdict"] and row[p]["p_value"] == row["file"]["p_value"]
                for p in ("v2", "json")
            )
            rows[entry["id"]] = row
            print(f"{entry['id']:48s} {row['file']['verdict']:15s} same over v2 and json: {row['same_verdict_and_p']}")
    judged = [r for r in rows.values() if "file" in r]
    result = {
        "benchmark": "remote_verify",
        "bundle": str(bundle.path),
        "models": rows,
        "all_same": all(r["same_verdict_and_p"] for r in judged),
        "judged": len(judged),
    }
    write_results(args.out, result, seed=cfg.seed, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
