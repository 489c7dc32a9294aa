"""The encoder's checkpoints: ``best.ckpt`` and ``last.ckpt`` in the run's ``encoder/`` folder."""

from __future__ import annotations

from pathlib import Path


def encoder_checkpoints(folder: str | Path) -> list:
    """``best.ckpt`` (the epoch of the highest ``val/separation``) and ``last.ckpt`` (rewritten every
    epoch) in ``folder``. Two callbacks: with ``save_last=True`` Lightning 2.6 rewrites last.ckpt
    only when best.ckpt improves, so "last" would silently be the best epoch."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    return [
        ModelCheckpoint(
            dirpath=folder, filename="best", monitor="val/separation", mode="max", enable_version_counter=False
        ),
        ModelCheckpoint(
            dirpath=folder, filename="last", monitor=None, save_top_k=1, every_n_epochs=1, enable_version_counter=False
        ),
    ]
