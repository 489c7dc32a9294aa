"""The pipeline end to end on a GPU, on tiny data: zoo, UAPs, key and fingerprints (Lightning's
``accelerator: auto``), the encoder's ``fpenc fit`` and ``fpenc test`` with ``accelerator: gpu``,
then ``verify`` of a model that lives on the GPU (Python API) and of a TorchScript file (the CLI).

    python benchmarks/gpu_smoke.py benchmarks/results/gpu_smoke.json

The tiny data and zoo are the test suite's (``tests/conftest.py``, ``tests/test_encoder_cli.py``:
seed 0), the encoder trained 20 epochs. ``--device cpu`` runs the same on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the results JSON")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--tmp", type=Path, default=Path("/tmp/gpu_smoke"), help="where the tiny run is made")
    args = ap.parse_args(argv)
    sys.path[:0] = [str(REPO / "tests"), str(REPO)]
    import torch
    from test_encoder_cli import encoder_config

    from conftest import make_fmnist_files
    from fpenc.bundle import load_bundle
    from fpenc.cli import main as fpenc_main
    from fpenc.rundir import RunDir
    from fpenc.verdict_api import verify

    dev = args.device
    out = {
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
    }
    tmp = args.tmp
    tmp.mkdir(exist_ok=True)
    cfg = encoder_config(tmp, make_fmnist_files(tmp / "fmnist"))
    accelerator = "accelerator: gpu" if dev == "cuda" else "accelerator: cpu"
    cfg.write_text(cfg.read_text().replace("accelerator: cpu", accelerator).replace("max_epochs: 3", "max_epochs: 20"))
    t = time.perf_counter()
    rc = fpenc_main(["fit", "--config", str(cfg)])
    out["fit_rc"], out["fit_s"] = rc, round(time.perf_counter() - t, 1)
    buf = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        rc = fpenc_main(["test", "--config", str(cfg), "--ckpt_path", "best"])
    out["test_rc"], out["test_s"] = rc, round(time.perf_counter() - t, 1)
    print(buf.getvalue()[-1500:])
    bundle = next((tmp / "checkpoints").glob("*.fpenc.safetensors"))
    run = RunDir(tmp / "runs/tinyenc")
    victim = run.load_model(next(m for m in run.load_manifest()["models"] if m["role"] == "victim")).to(dev)
    v = verify(load_bundle(bundle), victim)
    out["verify_cuda_victim"] = {"outcome": v.outcome, "p": v.p_value, "agreement": v.agreement}
    ts = tmp / "victim_ts.pt"
    torch.jit.save(torch.jit.trace(victim.cpu().eval(), torch.rand(2, 1, 28, 28)), ts)
    cli = [sys.executable, "-m", "fpenc.cli", "verify", "--bundle", str(bundle), "--suspect", str(ts), "--json"]
    r = subprocess.run(cli, capture_output=True, text=True, cwd=REPO)
    out["verify_cli_rc"] = r.returncode
    out["verify_cli_tail"] = (r.stdout + r.stderr)[-600:]
    out["max_mem_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1) if dev == "cuda" else None
    print(json.dumps(out, indent=1))
    args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
