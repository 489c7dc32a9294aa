"""Benchmark: throughput of batch verification (`fpenc verify --suspects LIST --bundle A [--bundle B] --out`).

Suspects are made cheaply from a run's zoo and written as ONNX files with fpenc's exporter
(fpenc.suspect_export), under runs/ (not committed; reused when present): magnitude-pruned and
weight-noised copies of the victim and of random zoo models (piracy and independent models of every
set), and small randomly initialised models of the zoo's architectures. The first n of them are
judged against the run's bundle, then against it and a second bundle of another victim, by the
whole command in a fresh process (start-up, imports, bundles, Ray's start when used), with the
local executor and with Ray on 2 workers, for each n of --sizes. Records wall time, suspects and
(suspect, bundle) pairs per second, and a linear fit of wall time over n per setting: its
intercept is the fixed cost, its slope the cost per suspect. For the smallest n it also times plain
`fpenc verify` (each suspect asked again for each bundle) and checks that the batch's lines hold
the plain command's results.

    python benchmarks/batch_verify.py --sizes 10 100 1000 --seed 0 --out benchmarks/results/batch_verify.json

Run `make demo` first (the run's zoo and bundle); the second bundle defaults to
checkpoints/own_model.fpenc.safetensors.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import ROOT, config_args, configs, load_run, run_bundle, write_results

KINDS = ("victim-prune", "victim-noise", "zoo-prune", "zoo-noise", "independent")
BATCH_ONLY = {"schema", "bundle", "bundle_commitment", "images_asked", "suspect_seconds", "seconds"}


def make_suspects(run, bundle, folder: Path, count: int, seed: int) -> list[dict]:
    """``count`` suspect files in ``folder`` (made once per seed; existing files are kept): ``[{file, kind, base}]``."""
    import numpy as np
    import torch

    from fpenc.models import build_model
    from fpenc.suspect_export import export_model
    from fpenc.zoo.modifications import pruned_copy

    rng = np.random.default_rng(seed)
    entries = [
        e for e in run.load_manifest()["models"] if not (e.get("spec", {}).get("attack") or "").startswith("int8")
    ]
    victim = next(e for e in entries if e["role"] == "victim")
    others = [e for e in entries if e["role"] != "victim"]
    shape, nets, out = tuple(bundle.input_shape), {}, []
    for i in range(count):
        kind = KINDS[int(rng.integers(len(KINDS)))]
        base = victim if kind.startswith("victim") else others[int(rng.integers(len(others)))]
        amount, noise, init_seed = (
            float(rng.uniform(0.1, 0.6)),
            float(rng.uniform(0.01, 0.2)),
            int(rng.integers(1 << 30)),
        )
        path = folder / f"{i:04d}-{kind}.onnx"
        row = {"file": str(path), "kind": kind, "base": base["id"] if kind != "independent" else base["architecture"]}
        out.append(row)
        if path.is_file():
            continue
        if kind == "independent":  # a fresh model of a zoo architecture: another initialisation, untrained
            torch.manual_seed(init_seed)
            net = build_model(base["architecture"], bundle.num_classes, shape)
        else:
            if base["id"] not in nets:
                nets[base["id"]] = run.load_model(base).eval()
            net = nets[base["id"]]
            if kind.endswith("prune"):
                net = pruned_copy(net, amount)
            else:
                net = _noised(net, noise, init_seed)
        export_model(net.eval(), shape, path)
    return out


def _noised(net, scale: float, seed: int):
    """A copy with Gaussian noise of ``scale`` times each weight tensor's standard deviation."""
    import copy

    import torch

    g = torch.Generator().manual_seed(seed)
    out = copy.deepcopy(net).eval()
    with torch.no_grad():
        for p in out.parameters():
            if p.dim() > 1:
                p.add_(torch.randn(p.shape, generator=g) * p.std() * scale)
    return out


def _fpenc(args: list[str]) -> tuple[float, int, str]:
    env = {**os.environ, "WANDB_MODE": "offline", "RAY_USAGE_STATS_ENABLED": "0"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-W", "ignore", "-m", "fpenc.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env)  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 10, 11):
        raise SystemExit(f"fpenc {' '.join(args[:6])} ... exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return wall, proc.returncode, proc.stdout


def run_batch(listing: Path, bundles: list[str], executor: str, workers: int, tmp: Path) -> tuple[dict, list[dict]]:
    out = tmp / f"{listing.stem}-{len(bundles)}-{executor}.jsonl"
    args = ["verify", "--suspects", str(listing), "--out", str(out), *(a for b in bundles for a in ("--bundle", b))]
    if executor == "ray":
        args += ["--executor", "ray", "--max-workers", str(workers)]
    wall, rc, _ = _fpenc(args)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    suspects = len({r["suspect"] for r in lines})
    verdicts: dict[str, int] = {}
    for r in lines:
        verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
    per = sorted(r["suspect_seconds"] for r in lines[:: len(bundles)])
    row = {
        "suspects": suspects,
        "bundles": len(bundles),
        "executor": executor,
        "workers": workers if executor == "ray" else 1,
        "wall_s": round(wall, 2),
        "suspects_per_s": round(suspects / wall, 3),
        "pairs_per_s": round(len(lines) / wall, 3),
        "median_suspect_s": round(per[len(per) // 2], 3),
        "images_asked_per_suspect": sorted(r["images_asked"] for r in lines)[len(lines) // 2],
        "queries_read_per_suspect": sum(r.get("queries", 0) for r in lines) // max(1, suspects),
        "verdicts": verdicts,
        "exit_code": rc,
        "load_average_1min_after": round(os.getloadavg()[0], 2),
    }
    print(
        f"{suspects:5d} suspects x {len(bundles)} bundle(s), {executor:5s}: {wall:8.1f} s, {row['suspects_per_s']:.2f} "
        f"suspects/s, {row['pairs_per_s']:.2f} pairs/s  {verdicts}",
        flush=True,
    )
    return row, lines


def run_plain(files: list[str], bundles: list[str]) -> tuple[dict, dict]:
    """Plain `fpenc verify --json` of ``files``, one command per bundle: its time and results by pair."""
    wall, results = 0.0, {}
    for b in bundles:
        w, _, text = _fpenc(["verify", "--bundle", b, *files, "--json"])
        wall += w
        results.update({(r["suspect"], b): r for r in json.loads(text)["results"]})
    row = {"suspects": len(files), "bundles": len(bundles), "wall_s": round(wall, 2),
           "suspects_per_s": round(len(files) / wall, 3), "pairs_per_s": round(len(results) / wall, 3)}  # fmt: skip
    print(f"{len(files):5d} suspects x {len(bundles)} bundle(s), plain: {wall:8.1f} s", flush=True)
    return row, results


def linear_fit(rows: list[dict]) -> list[dict]:
    """Per (executor, bundles): wall = fixed + per_suspect * n, least squares over the sizes measured."""
    import numpy as np

    fits = []
    for key in sorted({(r["executor"], r["bundles"]) for r in rows}):
        pts = sorted((r["suspects"], r["wall_s"]) for r in rows if (r["executor"], r["bundles"]) == key)
        if len(pts) < 2:
            continue
        n, t = np.array(pts, dtype=float).T
        slope, intercept = np.polyfit(n, t, 1)
        pred = intercept + slope * n
        r2 = 1 - ((t - pred) ** 2).sum() / max(((t - t.mean()) ** 2).sum(), 1e-12)
        fits.append({"executor": key[0], "bundles": key[1], "fixed_s": round(float(intercept), 2),
                     "per_suspect_s": round(float(slope), 4), "suspects_per_s_asymptotic": round(1 / float(slope), 3),
                     "r2": round(float(r2), 4), "sizes": [int(x) for x in n]})  # fmt: skip
    return fits


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    path = path if path.is_absolute() else ROOT / path
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap, required=False, default=["configs/fmnist_demo.yaml"])
    ap.add_argument("--other-bundle", default="checkpoints/own_model.fpenc.safetensors", help="the second bundle")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000], help="suspects per batch")
    ap.add_argument("--workers", type=int, default=2, help="Ray workers (default 2)")
    ap.add_argument("--executors", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    ap.add_argument(
        "--suspects-dir", default=None, help="where the suspects go (default runs/batch_verify_suspects/s<seed>)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/batch_verify.json")
    args = ap.parse_args(argv)

    load_before = [round(x, 2) for x in os.getloadavg()]
    cfg, run = load_run(configs(args))
    bundle, _ = run_bundle(run)
    bundles = [_shown(Path(bundle.path)), args.other_bundle]
    folder = Path(args.suspects_dir or ROOT / "runs" / "batch_verify_suspects" / f"s{args.seed}")
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    made = make_suspects(run, bundle, folder, max(args.sizes), args.seed)
    made_s = time.perf_counter() - t0
    print(f"{len(made)} suspects in {folder} ({made_s:.0f} s)", flush=True)
    rows, plain, same = [], [], None
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for n in sorted(args.sizes):
            listing = tmp / f"suspects-{n}.txt"
            listing.write_text("".join(m["file"] + "\n" for m in made[:n]))
            for k in (1, 2):
                for executor in args.executors:
                    row, lines = run_batch(listing, bundles[:k], executor, args.workers, tmp)
                    rows.append(row)
                    if n == min(args.sizes) and k == 2 and executor == "local":
                        prow, results = run_plain([m["file"] for m in made[:n]], bundles)
                        plain.append(prow)
                        same = all(
                            {a: v for a, v in r.items() if a not in BATCH_ONLY}
                            == {a: v for a, v in results[(r["suspect"], r["bundle"])].items() if a not in BATCH_ONLY}
                            for r in lines
                        )
                        print(f"batch lines hold the plain command's results: {same}", flush=True)
    kinds: dict[str, int] = {}
    for m in made:
        kinds[m["kind"]] = kinds.get(m["kind"], 0) + 1
    result = {
        "benchmark": "batch_verify",
        "bundles": bundles,
        "suspects": {
            "folder": _shown(folder),
            "format": "onnx",
            "kinds": kinds,
            "made_s": round(made_s, 1),
        },  # fmt: skip
        "runs": rows,
        "fits": linear_fit(rows),
        "plain_verify": plain,
        "batch_equals_plain": same,
        "load_average_1_5_15": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
        "note": "wall time of the whole command in a fresh process (start-up, imports, bundle loading, Ray's start); "
        "plain_verify: one `fpenc verify --json` per bundle over the same files (each suspect asked once per bundle)",
    }
    write_results(args.out, result, seed=args.seed, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
