"""Lightning callbacks of ``fpenc fit`` / ``fpenc test`` (one concept per module), attached by
:mod:`fpenc.lightning_cli` unless the config already has one of the same class:

* :func:`~fpenc.callbacks.checkpoints.encoder_checkpoints`: ``encoder/best.ckpt`` and ``last.ckpt``;
* :class:`~fpenc.callbacks.bundle_export.BundleExportCallback`: the verification bundle (test);
* :class:`~fpenc.callbacks.report.ReportCallback`: verifies every validation, reference and test
  model as ``fpenc verify`` would and writes the report (test);
* :class:`~fpenc.callbacks.wandb_dashboard.WandbDashboardCallback`: the zoo, UAP and result tables,
  the CDF plot, the report's numbers and the bundle, only when the trainer logs to W&B.

Imported lazily: ``from fpenc.callbacks import ReportCallback`` loads only that module.
"""

from __future__ import annotations

_WHERE = {
    "encoder_checkpoints": "checkpoints",
    "BundleExportCallback": "bundle_export",
    "ReportCallback": "report",
    "WandbDashboardCallback": "wandb_dashboard",
    "default_callbacks": "defaults",
    "find_callback": "defaults",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"fpenc.callbacks.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'fpenc.callbacks' has no attribute {name!r}")
