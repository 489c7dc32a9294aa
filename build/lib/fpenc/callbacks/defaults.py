"""The callbacks ``fpenc fit`` / ``fpenc test`` attach by default, and how callbacks find each other."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def find_callback(trainer, cls: type[T]) -> T | None:
    """The trainer's first callback of class ``cls`` (or a subclass), None if it has none."""
    return next((c for c in trainer.callbacks if isinstance(c, cls)), None)


def default_callbacks(run_dir: str | Path, present: list | tuple = (), checkpoints: bool = True) -> list:
    """The encoder's checkpoints (in ``run_dir``'s ``encoder/``; always, unless ``checkpoints`` is
    False: ``--ckpt_path best|last`` names them), then bundle export, report and W&B dashboard, in
    that order (the report verifies against the exported bundle); an export, report or dashboard
    callback whose class is already among ``present`` (the config's ``trainer.callbacks``) is left out."""
    from fpenc.callbacks.bundle_export import BundleExportCallback
    from fpenc.callbacks.checkpoints import encoder_checkpoints
    from fpenc.callbacks.report import ReportCallback
    from fpenc.callbacks.wandb_dashboard import WandbDashboardCallback
    from fpenc.rundir import RunDir

    out = encoder_checkpoints(RunDir(run_dir).encoder_dir) if checkpoints else []
    for cls in (BundleExportCallback, ReportCallback, WandbDashboardCallback):
        if not any(isinstance(c, cls) for c in present):
            out.append(cls())
    return out
