"""End to end: the exported bundle in `fpenc verify`, on every test model of a run saved as a file.

Each test (and validation) model of ``runs/<name>/`` is written the way a suspect would reach a
defender: TorchScript and ONNX (if onnxruntime is installed), both returning logits; each file
is verified through the ``fpenc verify --json`` command (in-process, the CLI's own code path)
with ``--api probs`` (the bundle reduces the answers to its own API) and every fingerprint
pair, and the verdict is compared with the run's report. Writes
experiments/results/verify_zoo_<name>.json.

    python experiments/verify_zoo.py runs/fmnist_demo --bundle checkpoints/fmnist_demo.fpenc.safetensors
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import write_results


def export_files(net: torch.nn.Module, shape: tuple[int, ...], folder: Path, stem: str) -> dict[str, Path]:
    """``net`` saved as TorchScript (.pt) and, with onnxruntime, ONNX (.onnx)."""
    from fpenc.suspect_export import export_model

    out = {"torchscript": export_model(net, shape, folder / f"{stem}.pt")}
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return out
    out["onnx"] = export_model(net, shape, folder / f"{stem}.onnx")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a run dir (runs/<name>) with its report (fpenc test)")
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from fpenc.cli import main as fpenc_main
    from fpenc.rundir import RunDir
    from fpenc.zoo.manifest import entries_by_id

    run = RunDir(args.run)
    report = json.loads(run.report_json.read_text())
    manifest = run.load_manifest()
    entries = entries_by_id(manifest)
    shape = tuple(manifest["input_shape"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in report["models"]:
            files = export_files(run.load_model(entries[r["id"]]), shape, Path(tmp), r["id"])
            for kind, path in files.items():
                buf = io.StringIO()
                with contextlib.redirect_stdout(buf), warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation
                    rc = fpenc_main(
                        ["verify", "--bundle", args.bundle, "--suspect", str(path), "--api", "probs", "--json"]
                    )
                if rc not in (0, 10, 11):  # the verdict's exit codes
                    print(f"fpenc verify failed on {r['id']} ({kind}), exit {rc}", file=sys.stderr)
                    return 1
                (got,) = json.loads(buf.getvalue())["results"]  # one suspect: one result
                rows.append(
                    {
                        "id": r["id"],
                        "split": r["split"],
                        "role": r["role"],
                        "file": kind,
                        "similarity": round(got["similarity"], 4),
                        "agreement": round(got["agreement"], 4),
                        "p_value": got["p_value"],
                        "margin": None if got.get("margin") is None else round(got["margin"], 4),
                        "margin_answers": got.get("margin_answers"),
                        "verdict": got["verdict"],
                        "report_verdict": r["verdict"],
                        "queries": got["queries"],
                        "seconds": round(got["seconds"], 3),
                    }
                )
                print(
                    f"{r['id']:30s} {kind:11s} {got['similarity']:.3f} p {got['p_value']:.4f} "
                    f"{got['verdict']:9s} (report: {r['verdict']}) {got['queries']} queries {got['seconds']:.2f}s"
                )
    agree = sum(x["verdict"] == x["report_verdict"] for x in rows)
    test = [x for x in rows if x["split"] == "test"]
    result = {
        "benchmark": "verify_zoo",
        "run": str(run),
        "bundle": args.bundle,
        "verdicts_agreeing_with_report": f"{agree}/{len(rows)}",
        "test_piracy_files_derived": f"{sum(x['verdict'] == 'derived' for x in test if x['role'] == 'piracy')}/"
        f"{sum(x['role'] == 'piracy' for x in test)}",
        "test_homologous_files_derived": f"{sum(x['verdict'] == 'derived' for x in test if x['role'] == 'homologous')}/"
        f"{sum(x['role'] == 'homologous' for x in test)}",
        "models": rows,
    }
    print(
        {
            k: result[k]
            for k in ("verdicts_agreeing_with_report", "test_piracy_files_derived", "test_homologous_files_derived")
        }
    )
    # fpenc verify's default seed (every fingerprint pair: no draw)
    write_results(
        args.out or Path(__file__).parent / "results" / f"verify_zoo_{run.path.name}.json", result, seed=0, argv=argv
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
