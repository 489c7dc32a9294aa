"""The pipeline end to end on a GPU, on tiny data: zoo, UAPs, key and fingerprints (Lightning's
``accelerator: auto``), the encoder's ``fpenc fit`` and ``fpenc test`` with ``accelerator: gpu``,
then ``verify`` of a model that lives on the GPU (Python API) and of a TorchScript file (the CLI).

    python benchmarks/gpu_smoke.py benchmarks/results/gpu_smoke.json

The tiny data and zoo are the test suite's (``tests/conftest.py``, ``tests/test_encoder_cli.py``:
seed 0), the encoder trained 20 epochs. ``SMOKE_DEVICE=cpu`` runs the same on the CPU.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path.cwd()
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

import torch  # noqa: E402
from test_encoder_cli import encoder_config  # noqa: E402

from conftest import make_fmnist_files  # noqa: E402
from fpenc.cli import main  # noqa: E402

DEV = os.environ.get("SMOKE_DEVICE", "cuda")
out = {
    "torch": torch.__version__,
    "cuda": torch.cuda.is_available(),
    "device": torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu",
}
tmp = Path(os.environ.get("SMOKE_TMP", "/tmp/gpu_smoke"))
tmp.mkdir(exist_ok=True)
data = make_fmnist_files(tmp / "fmnist")
cfg = encoder_config(tmp, data)
accelerator = "accelerator: gpu" if DEV == "cuda" else "accelerator: cpu"
cfg.write_text(cfg.read_text().replace("accelerator: cpu", accelerator).replace("max_epochs: 3", "max_epochs: 20"))
t = time.perf_counter()
rc = main(["fit", "--config", str(cfg)])
out["fit_rc"], out["fit_s"] = rc, round(time.perf_counter() - t, 1)
buf = io.StringIO()
t = time.perf_counter()
with contextlib.redirect_stdout(buf):
    rc = main(["test", "--config", str(cfg), "--ckpt_path", "best"])
out["test_rc"], out["test_s"] = rc, round(time.perf_counter() - t, 1)
print(buf.getvalue()[-1500:])
bundle = next((tmp / "checkpoints").glob("*.fpenc.safetensors"))

from fpenc.bundle import load_bundle  # noqa: E402
from fpenc.rundir import RunDir  # noqa: E402
from fpenc.verdict_api import verify  # noqa: E402

run = RunDir(tmp / "runs/tinyenc")
man = run.load_manifest()
victim = run.load_model(next(m for m in man["models"] if m["role"] == "victim")).to(DEV)
v = verify(load_bundle(bundle), victim)
out["verify_cuda_victim"] = {"outcome": v.outcome, "p": v.p_value, "agreement": v.agreement}
ts = tmp / "victim_ts.pt"
torch.jit.save(torch.jit.trace(victim.cpu().eval(), torch.rand(2, 1, 28, 28)), ts)
cli = [sys.executable, "-m", "fpenc.cli", "verify", "--bundle", str(bundle), "--suspect", str(ts), "--json"]
r = subprocess.run(cli, capture_output=True, text=True)
out["verify_cli_rc"] = r.returncode
out["verify_cli_tail"] = (r.stdout + r.stderr)[-600:]
out["max_mem_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1) if DEV == "cuda" else None
print(json.dumps(out, indent=1))
json.dump(out, open(sys.argv[1], "w"), indent=1)
