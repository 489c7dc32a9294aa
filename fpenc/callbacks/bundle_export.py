"""Export the trained encoder as the verification bundle at the end of ``fpenc test``."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl


class BundleExportCallback(pl.Callback):
    """On the test epoch's end, writes ``<export_dir>/<run name>.fpenc.safetensors``
    (:func:`fpenc.encoder.export.export_from_run`) from the module's test representations; its
    path is :attr:`path` afterwards. The settings (``export_dir`` — None: the run directory —,
    alpha, statistic, gates) are the module's :attr:`~fpenc.encoder.module.EncoderModule.verdict_options`
    (the ``model:`` options of the config). At setup (fit and test) it refuses a zoo with fewer
    than 2 reference models: the verdict could not be calibrated. Under DDP only the first process
    (global rank 0) writes; the others' :attr:`path` stays None."""

    def __init__(self) -> None:
        self.path: Path | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "planned_ids") or stage not in ("test", "fit"):
            return
        count = len(dm.planned_ids("reference"))  # from the plan: fit never reads the reference models
        if count < 2:
            from fpenc.errors import ConfigError

            raise ConfigError(
                f"the verdict needs >= 2 reference models (independent models of the zoo grids marked "
                f"'split: reference'), but there are {count}: add such a grid to pipeline.zoo.grids "
                "(e.g. the victim's architecture on the victim's own data, data: victim, and other architectures)"
            )

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.path = None

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from fpenc.encoder.export import export_from_run

        representations = pl_module.test_representations()  # under DDP a collective: every process
        if not trainer.is_global_zero:
            return  # one process writes the bundle
        dm, opts = trainer.datamodule, pl_module.verdict_options
        self.path = export_from_run(
            pl_module.encoder,
            dm,
            representations,
            opts.export_dir or dm.run_dir,
            alpha=opts.alpha,
            statistic=opts.verdict_statistic,
            accuracy_share=opts.accuracy_share,
            entropy_share=opts.entropy_share,
            ood_margin=opts.ood_margin,
            sanity_images=opts.sanity_images,
        )
