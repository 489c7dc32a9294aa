"""The verification report at the end of ``fpenc test``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl

from fpenc.errors import FpencError

TEST_METRICS = ("auc", "tpr_at_1pct_fpr", "tpr_at_5pct_fpr", "auc_models", "auc_models_verdict")


class ReportCallback(pl.Callback):
    """On the test epoch's end, verifies every validation, reference and test model of the zoo
    against the bundle just exported (by the :class:`~fpenc.callbacks.bundle_export.BundleExportCallback`
    listed before it) exactly as ``fpenc verify`` verifies a file, writes ``report.json``,
    ``report.md`` and ``similarity_cdf.png`` in the run directory (:mod:`fpenc.report`) and logs
    ``test/<metric>`` for :data:`TEST_METRICS`. Afterwards :attr:`report` is the report, :attr:`rows`
    the verify results per model (with their pair similarities), :attr:`reference` the bundle's
    reference models' pair similarities and :attr:`paths` the files. Under DDP only the first
    process (global rank 0) does this; the others' attributes stay None."""

    def __init__(self) -> None:
        self.report: dict | None = None
        self.rows: list[dict] | None = None
        self.reference: np.ndarray | None = None
        self.paths: dict[str, Path] | None = None

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.report = self.rows = self.reference = self.paths = None

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from fpenc.bundle import load_bundle
        from fpenc.callbacks.bundle_export import BundleExportCallback
        from fpenc.callbacks.defaults import find_callback
        from fpenc.report import build_report, evaluate_models, write_report
        from fpenc.rundir import victim_entry

        if not trainer.is_global_zero:
            return  # under DDP the first process verifies and writes the report
        export = find_callback(trainer, BundleExportCallback)
        if export is None or export.path is None:
            raise FpencError(
                "the report verifies against the exported bundle: add a BundleExportCallback before "
                "the ReportCallback in trainer.callbacks"
            )
        dm, opts = trainer.datamodule, pl_module.verdict_options
        bundle = load_bundle(export.path)
        rows = evaluate_models(
            bundle,
            dm.run_dir,
            dm.verified_entries(),
            alpha=opts.alpha,
            num_fingerprints=opts.num_fingerprints,
            progress=dm.progress,
        )
        report = build_report(
            rows,
            meta={
                "name": dm.name,
                "api": dm.api,
                "bundle": str(export.path),
                "bundle_sha256": bundle.sha256,
                "reference_models": list(bundle.meta["reference_models"]),
                "victim_architecture": victim_entry(dm.run_dir)["architecture"],
                "gates": bundle.meta["gates"],
            },
        )
        reference = bundle.reference_similarities.numpy()
        self.paths = write_report(dm.run_dir, report, rows, reference)
        self.report, self.rows, self.reference = report, rows, reference
        pl_module.log_dict({f"test/{k}": report[k] for k in TEST_METRICS})
