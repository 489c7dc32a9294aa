"""The encoder's checkpoints: ``best.ckpt`` and ``last.ckpt`` in the run's ``encoder/`` folder."""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.callbacks import ModelCheckpoint

MIN_DELTA = 0.05
"""How much ``val/separation`` (a Cohen's d: the piracy and homologous validation similarities'
difference over their pooled spread) must exceed the kept epoch's for a later epoch to replace it.
Epochs within this of each other are a tie, and the earlier one is kept, so a rounding difference
between two machines cannot pick another checkpoint (it could only if some epoch sat within a
float's noise of ``best + MIN_DELTA``, not of ``best``)."""


class TolerantCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` for one best model (``save_top_k=1``) that replaces it only on an
    improvement of more than ``min_delta`` (mode ``max``: ``current > best + min_delta``)."""

    def __init__(self, *args, min_delta: float = MIN_DELTA, **kwargs):
        super().__init__(*args, **kwargs)
        if self.save_top_k != 1 or self.mode != "max":
            raise ValueError("TolerantCheckpoint keeps one best model of a monitor to maximise")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.min_delta = float(min_delta)

    def check_monitor_top_k(self, trainer, current=None) -> bool:
        if current is None:
            return False
        if not self.best_k_models:
            return True
        better = bool(current > self.best_k_models[self.kth_best_model_path] + self.min_delta)
        return trainer.strategy.reduce_boolean_decision(better)


def encoder_checkpoints(folder: str | Path, min_delta: float = MIN_DELTA) -> list:
    """``best.ckpt`` (the earliest epoch whose ``val/separation`` no later epoch beats by more than
    ``min_delta``) and ``last.ckpt`` (rewritten every epoch) in ``folder``. Two callbacks: with
    ``save_last=True`` Lightning 2.6 rewrites last.ckpt only when best.ckpt improves, so "last" would
    silently be the best epoch."""
    return [
        TolerantCheckpoint(
            dirpath=folder,
            filename="best",
            monitor="val/separation",
            mode="max",
            enable_version_counter=False,
            min_delta=min_delta,
        ),
        ModelCheckpoint(
            dirpath=folder, filename="last", monitor=None, save_top_k=1, every_n_epochs=1, enable_version_counter=False
        ),
    ]
