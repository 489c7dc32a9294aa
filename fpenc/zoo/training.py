"""Fitting one network with Lightning, as the zoo, the UAP bank and the fine-tuned copies do:
quiet Lightning's logs and warnings, a progress bar over the steps, channels-last training."""

from __future__ import annotations

import logging
import sys
import time
import warnings

import torch
from tqdm.auto import tqdm


def quiet_lightning() -> None:
    import pytorch_lightning  # noqa: F401  (its import sets its loggers to INFO: import first, then quiet)

    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*Total length of .* across ranks is zero.*")
    warnings.filterwarnings("ignore", ".*but have no `validation_step`.*")
    warnings.filterwarnings("ignore", ".*but have no `val_dataloader`.*")  # the zoo trains without validation
    warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")  # the frozen victim


def _make_bar_callback(desc: str, enabled: bool):
    import pytorch_lightning as pl

    class StepBar(pl.Callback):
        """A tqdm bar over the optimisation steps of one model, with its running loss."""

        def on_train_start(self, trainer, pl_module):
            self.bar = tqdm(
                total=int(trainer.estimated_stepping_batches),
                desc=desc,
                unit="step",
                leave=False,
                disable=not enabled,
                dynamic_ncols=True,
                mininterval=0.5 if sys.stderr.isatty() else 15,
            )

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.bar.update(1)
            if batch_idx % 25 == 0 and outputs is not None:
                loss = outputs["loss"] if isinstance(outputs, dict) else outputs
                self.bar.set_postfix(epoch=trainer.current_epoch + 1, loss=f"{float(loss):.3f}", refresh=False)

        def on_train_end(self, trainer, pl_module):
            self.bar.close()

    return StepBar()


def quiet_trainer(**kwargs):
    """A ``pl.Trainer`` on one device without logger, checkpoints, progress bar, summary or sanity
    check (fpenc's inner training loops: zoo models, UAPs), with ``kwargs`` on top."""
    import pytorch_lightning as pl

    defaults = dict(
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return pl.Trainer(**{**defaults, **kwargs})


def fit_module(module, data, epochs: int, desc: str, progress: bool) -> float:
    """Train ``module`` for ``epochs`` on ``data`` (a train DataLoader, or a LightningDataModule);
    returns the seconds it took."""
    trainer = quiet_trainer(max_epochs=epochs, callbacks=[_make_bar_callback(desc, progress)])
    start = time.perf_counter()
    module.to(memory_format=torch.channels_last)  # NHWC convolutions: ~20% faster on CPU (benchmarks/zoo_speed.py)
    try:
        trainer.fit(module, data)  # a DataLoader or a LightningDataModule, as Trainer.fit takes either
    finally:
        module.to(memory_format=torch.contiguous_format)  # weights are saved, hashed and served in NCHW
    return time.perf_counter() - start
