"""`make demo` from nothing: a fresh clone of the repository, timed stage by stage.

Clones the repository's HEAD into a temporary folder (no venv, no runs, no bundle), then runs
what `make demo` runs, one command at a time: ``make setup data`` (venv, packages, data),
``fpenc zoo``, ``fpenc fit`` and ``fpenc test --ckpt_path best``. Writes the seconds of each,
the sum of the zoo models' training seconds, the commit, the machine, and the demo's report
compared with a committed one (``--compare``: which fields differ, if any).

    python benchmarks/demo_time.py --out benchmarks/results/demo_time.json \\
        --compare experiments/results/report_fmnist_demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import load_run, write_results

CONFIG = "configs/fmnist_demo.yaml"


def run(cmd: list[str], cwd: Path, log) -> float:
    start = time.perf_counter()
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(
        cmd, cwd=cwd, check=True, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "WANDB_MODE": "offline"}
    )
    return round(time.perf_counter() - start, 1)


def differences(a, b, where: str = "") -> list[str]:
    """Paths at which two JSON values differ (floats compared exactly: the same machine, the same digits)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [where or "."]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/demo_time.json")
    ap.add_argument("--compare", type=Path, default=None, help="a committed report to compare with (JSON)")
    ap.add_argument("--keep", type=Path, default=None, help="clone here and keep it (default: a temporary folder)")
    args = ap.parse_args(argv)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="fpenc-demo-")
    clone = args.keep or Path(tmp.name) / "fpenc"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    seconds = {}
    with open(clone.parent / "demo.log", "w") as log:
        seconds["setup (venv, packages, data)"] = run(["make", "setup", "data"], clone, log)
        fpenc = str(clone / ".venv/bin/fpenc")
        seconds["fpenc zoo"] = run([fpenc, "zoo", "--config", CONFIG], clone, log)
        seconds["fpenc fit"] = run([fpenc, "fit", "--config", CONFIG], clone, log)
        seconds["fpenc test"] = run([fpenc, "test", "--config", CONFIG, "--ckpt_path", "best"], clone, log)
    from fpenc.rundir import RunDir

    cfg, _ = load_run([clone / CONFIG])
    run_dir = RunDir(clone / cfg.run_dir)  # the config's run dir is relative to the clone
    manifest = run_dir.load_manifest()
    report = json.loads(run_dir.report_json.read_text())
    result = {
        "benchmark": "demo_time",
        "commit": commit,
        "config": CONFIG,
        "seconds": seconds,
        "total_seconds": round(sum(seconds.values()), 1),
        "zoo_models": len(manifest["models"]),
        "zoo_train_seconds": round(sum(m["train_seconds"] for m in manifest["models"]), 1),
        "report": {
            k: report.get(k)
            for k in ("auc", "auc_models", "piracy_derived", "homologous_derived", "p_value_floor", "bundle_sha256")
        },
    }
    if args.compare:
        reference = json.loads(args.compare.read_text())
        result["compared_with"] = str(args.compare)
        result["report_fields_that_differ"] = differences(reference, report)
    write_results(args.out, result, seed=cfg.seed, argv=argv)
    print(json.dumps({k: result[k] for k in ("seconds", "total_seconds", "zoo_train_seconds")}, indent=1))
    if tmp:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
