"""LightningModule that trains a classifier on true labels: the victim and homologous models."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from fpenc.config.recipe_spec import Recipe
from fpenc.zoo.optim import cosine_schedule, make_optimizer
from fpenc.zoo.recipe import recipe_loss


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of an injected ``nn.Module`` (images ``[B, C, H, W]`` in [0, 1]),
    with the training :class:`~fpenc.config.recipe_spec.Recipe` (augmentation, label smoothing,
    adversarial training; default: none).

    Batches are ``(x, y, idx)`` as served by :func:`fpenc.data.images.train_loader`.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        optimizer: str = "adam",
        lr: float | None = None,
        weight_decay: float = 0.0,
        recipe: Recipe | None = None,
    ):
        super().__init__()
        self.net = net
        self.recipe = recipe or Recipe()
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        loss, logits = recipe_loss(self.recipe, self.net, x, y)
        if self.trainer.loggers:  # (the zoo trains without one: logging every step would cost ~6% for nothing)
            self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
            self.log("train/acc", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        logits = self.net(x)
        self.log("val/loss", F.cross_entropy(logits, y), prog_bar=True)
        self.log("val/acc", (logits.argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        opt = make_optimizer(self.optimizer_name, self.net.parameters(), self.lr, self.weight_decay)
        return {"optimizer": opt, "lr_scheduler": cosine_schedule(opt, self.trainer.estimated_stepping_batches)}
