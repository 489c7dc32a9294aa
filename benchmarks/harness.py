"""What every script of benchmarks/ and experiments/ repeats: its arguments, its run, its results file.

    import sys; from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
    from benchmarks.harness import config_args, load_run, write_results

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap)                                   # -c/--config, stackable
    args = ap.parse_args(argv)
    cfg, run = load_run(args.config)                  # PipelineConfig, its fpenc.rundir.RunDir
    write_results(out, result, seed=cfg.seed, argv=argv)

Nothing heavy is imported here at import time (``--help`` stays fast); fpenc and torch are
imported when used.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def config_args(ap: argparse.ArgumentParser, required: bool = True, default: list[str] | None = None) -> None:
    """Add ``-c/--config`` (repeatable: stacked in order, as in ``fpenc fit``)."""
    ap.add_argument(
        "-c",
        "--config",
        action="append",
        required=required,
        default=None,
        help="pipeline config file(s), stacked in order" + (f" (default: {' '.join(default)})" if default else ""),
    )
    if default:
        ap.set_defaults(config_default=list(default))


def configs(args: argparse.Namespace) -> list[str]:
    """The ``-c`` files given, else the default of :func:`config_args`."""
    return args.config or getattr(args, "config_default", None) or []


def load_run(paths: list[str], overrides: dict | None = None):
    """``(PipelineConfig, RunDir)`` of stacked config files."""
    from fpenc.config import load_pipeline_config
    from fpenc.rundir import RunDir

    cfg = load_pipeline_config(list(paths), overrides)
    return cfg, RunDir(cfg.run_dir)


def run_bundle(run) -> tuple:
    """``(bundle, test entries)`` of a run (a :class:`fpenc.rundir.RunDir`): the bundle its last
    ``fpenc test`` exported (named in its report) and the manifest entries of its test models."""
    import json

    from fpenc.bundle import load_bundle

    bundle = load_bundle(json.loads(run.report_json.read_text())["bundle"])
    return bundle, [m for m in run.load_manifest()["models"] if m.get("set") == "test"]


def overlay_args(ap: argparse.ArgumentParser) -> None:
    """The flags of a script that judges an overlay zoo with a bundle (:func:`overlay_verdicts`):
    ``--bundle``, ``--out``, ``--plot`` and the executor's."""
    from fpenc.executor import add_executor_flags

    ap.add_argument("--bundle", default=None, help="default: checkpoints/<first config's name>.fpenc.safetensors")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--plot", type=Path, default=None)
    add_executor_flags(ap)


def overlay_verdicts(configs_: list[str], bundle_file, keep, executor=None, base_run=None):
    """Train the models of an overlay zoo on the first config's zoo (shared: only the overlay's new
    models train) and judge those that ``keep(entry)`` selects with a bundle, as ``fpenc verify``
    judges a file. Returns ``(cfg, bundle, [(entry, verify result)])``.

    ``configs_``: the base config, then the overlay; ``bundle_file``: default
    ``checkpoints/<base name>.fpenc.safetensors``; ``base_run``: the run whose zoo to share."""
    from fpenc.bundle import load_bundle
    from fpenc.encoder.export import bundle_path
    from fpenc.suspects import from_module
    from fpenc.verification import verify_suspect
    from fpenc.zoo.builder import build_zoo

    base_cfg, base = load_run(configs_[:1])
    cfg, run = load_run(configs_)
    run.share_zoo_of(base_run or base)
    manifest = build_zoo(cfg, progress=False, executor=executor)
    bundle = load_bundle(bundle_file or bundle_path(Path(__file__).resolve().parents[1] / "checkpoints", base_cfg.name))
    judged = [
        (m, verify_suspect(bundle, from_module(run.load_model(m), num_classes=bundle.num_classes)))
        for m in manifest["models"]
        if keep(m)
    ]
    return cfg, bundle, judged


def run_fpenc(*args: str) -> None:
    """``fpenc <args>`` in a child process (its own Lightning state), output passed through."""
    cmd = [sys.executable, "-m", "fpenc.cli", *args]
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit(f"failed: fpenc {' '.join(args)}")


def report_summary(report: dict) -> dict:
    """What comparisons read of a run's report (``fpenc test``): the encoder's AUCs, the similarity
    gap (mean similarity of the test copies minus that of the independent test models) and the
    verdicts of the test models."""
    test = [m for m in report["models"] if m.get("split") == "test"]
    copies = [m["similarity"] for m in test if m["role"] == "piracy"]
    independent = [m["similarity"] for m in test if m["role"] == "homologous"]
    return {
        "auc_pairs": report["auc"],
        "auc_models": report["auc_models"],
        "auc_models_agreement": report["auc_models_agreement"],
        "similarity_copies": sum(copies) / len(copies),
        "similarity_independent": sum(independent) / len(independent),
        "similarity_gap": sum(copies) / len(copies) - sum(independent) / len(independent),
        "piracy_derived": report["piracy_derived"],
        "homologous_derived": report["homologous_derived"],
        "models": {m["id"]: {"role": m["role"], "similarity": m["similarity"], "verdict": m["verdict"]} for m in test},
    }


def save_figure(fig, path: str | os.PathLike) -> Path:
    """:func:`fpenc.io.save_figure` (tight layout, 120 dpi, atomic, closed) into a folder made if
    missing; says where."""
    from fpenc.io import save_figure as save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save(fig, path)
    print(f"wrote {path}")
    return path


def command_line(argv: list[str] | None = None) -> str:
    """``python <script relative to the repository> <arguments>`` of this process (or of ``argv``)."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else Path(sys.argv[0])
    return shlex.join(["python", str(shown), *(sys.argv[1:] if argv is None else argv)])


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Versions (python, torch, numpy, fpenc), machine, commit and UTC time of this process."""
    import numpy
    import torch

    import fpenc

    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "fpenc": _version("fpenc") or fpenc.__version__,
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "commit": commit,
        "timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_results(path: str | os.PathLike, result: dict, *, seed: int | None, argv: list[str] | None = None) -> Path:
    """Write ``result`` as JSON atomically (fpenc.io.write_json), with ``command``, ``seed`` and
    :func:`environment` added: ``command`` is always this process's; a dict ``result`` already has
    (``machine``, ``versions``) gains the missing fields; other keys of ``result`` are kept."""
    from fpenc.io import write_json

    path = Path(path)
    out = {**result, "command": command_line(argv), "seed": result.get("seed", seed)}
    for key, value in environment().items():
        mine = out.get(key)
        out[key] = {**value, **mine} if isinstance(mine, dict) and isinstance(value, dict) else out.get(key, value)
    write_json(path, out)
    print(f"wrote {path}")
    return path
