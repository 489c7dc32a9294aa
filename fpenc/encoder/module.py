"""LightningModule that trains the fingerprint encoder with the supervised contrastive loss and
scores suspects (paper §4.3, §5.1, §5.2).

* fit: SupCon on fingerprint views (label 0 victim/piracy, 1 homologous); validation logs the
  separation of the validation models' pair similarities (Cohen's d of piracy vs homologous)
  and their AUC; the best epoch by separation is checkpointed to ``runs/<name>/encoder/best.ckpt``.
* test: pair similarities of every validation and test model to the victim, the report
  (``fpenc.report``) in ``runs/<name>/`` and, with ``export_dir``, the verification bundle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from fpenc.encoder.loss import SupConLoss
from fpenc.encoder.network import FingerprintEncoder
from fpenc.scoring import REFERENCE_TESTS, pair_similarities


def encoder_checkpoints(folder: str | Path) -> list:
    """``best.ckpt`` (the epoch of the highest ``val/separation``) and ``last.ckpt`` (rewritten every
    epoch) in ``folder``. Two callbacks: with ``save_last=True`` Lightning 2.6 rewrites last.ckpt
    only when best.ckpt improves, so "last" would silently be the best epoch."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    return [ModelCheckpoint(dirpath=folder, filename="best", monitor="val/separation", mode="max",
                            enable_version_counter=False),
            ModelCheckpoint(dirpath=folder, filename="last", monitor=None, save_top_k=1, every_n_epochs=1,
                            enable_version_counter=False)]


class EncoderModule(pl.LightningModule):
    """Args:
        input_dim: fingerprint width 2NK (linked from the datamodule by ``fpenc fit``).
        hidden_dim, embed_dim, proj_dim, dropout, input_transform: the :class:`FingerprintEncoder`.
        temperature: SupCon temperature.
        lr, weight_decay: AdamW.
        num_fingerprints, repeats, alpha: the test protocol (20 fingerprints, 30 draws, 0.05).
        reference_test: "population" (default): is the suspect more similar than a new independently
            trained model would be, given the reference models' similarities; "pooled": than the
            reference similarities pooled (the paper's Welch test). See :mod:`fpenc.scoring`.
        export_dir: where ``test`` writes the verification bundle (None: no export).
    """

    def __init__(self, input_dim: int = 2000, hidden_dim: int = 512, embed_dim: int = 128, proj_dim: int = 64,
                 dropout: float = 0.1, input_transform: str = "log", temperature: float = 0.1, lr: float = 1e-3, weight_decay: float = 1e-4,
                 num_fingerprints: int = 20, repeats: int = 30, alpha: float = 0.05, reference_test: str = "population",
                 export_dir: str | None = "checkpoints") -> None:
        super().__init__()
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"need lr > 0 and weight_decay >= 0, got {lr} and {weight_decay}")
        if reference_test not in REFERENCE_TESTS:
            raise ValueError(f"reference_test must be one of {REFERENCE_TESTS}, got {reference_test!r}")
        self.save_hyperparameters()
        self.encoder = FingerprintEncoder(input_dim, hidden_dim, embed_dim, proj_dim, dropout, input_transform)
        self.criterion = SupConLoss(temperature)
        self._outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.test_report: dict | None = None

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "reference_models") or self.hparams.reference_test != "population":
            return
        if len(dm.reference_models()) < 2:
            from fpenc.errors import ConfigError

            raise ConfigError(
                f"model.reference_test 'population' needs >= 2 reference homologous models (the validation "
                f"homologous models of the training architectures), but there are {len(dm.reference_models())}: "
                "add seeds to those grids, lower data.train_models_per_role, or set model.reference_test: pooled")

    # -- training -----------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, label, _, _ = batch
        loss = self.criterion(self.encoder(x), label)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(x))
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def configure_callbacks(self):
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "run_dir"):
            return []
        return encoder_checkpoints(Path(dm.run_dir) / "encoder")

    # -- collecting representations -----------------------------------------------------------------
    def _collect(self, batch) -> None:
        x, _, model, pair = batch
        self._outputs.append((self.encoder.encode(x).detach().float().cpu(), model.cpu(), pair.cpu()))

    def _similarities(self) -> dict[int, np.ndarray]:
        """``{model index: pair similarities [P]}`` against the victim, from the collected outputs."""
        h, model, pair = (torch.cat(t) for t in zip(*self._outputs))
        self._outputs.clear()
        dm = self.trainer.datamodule
        by_model = {}
        for idx in model.unique().tolist():
            sel = model == idx
            order = torch.argsort(pair[sel])
            by_model[idx] = h[sel][order]
        victim = by_model.pop(dm.victim.index)
        return {idx: pair_similarities(hm, victim).numpy() for idx, hm in by_model.items()}

    # -- validation ---------------------------------------------------------------------------------
    def validation_step(self, batch, batch_idx):
        x, label, _, _ = batch
        self.log("val/loss", self.criterion(self.encoder(x), label), on_epoch=True, batch_size=len(x))
        self._collect(batch)

    def on_validation_epoch_end(self) -> None:
        if not self._outputs:
            return
        from fpenc.report import roc_metrics

        sims = self._similarities()
        records = {m.index: m for m in self.trainer.datamodule.models}
        pos = np.concatenate([s for i, s in sims.items() if records[i].role == "piracy"])
        neg = np.concatenate([s for i, s in sims.items() if records[i].role == "homologous"])
        pooled = np.sqrt((pos.var() + neg.var()) / 2) + 1e-8
        metrics = roc_metrics(np.concatenate([pos, neg]), np.r_[np.ones(len(pos)), np.zeros(len(neg))])
        self.log_dict({"val/separation": float((pos.mean() - neg.mean()) / pooled), "val/auc": metrics["auc"],
                       "val/sim_piracy": float(pos.mean()), "val/sim_homologous": float(neg.mean())}, prog_bar=True)

    # -- test ---------------------------------------------------------------------------------------
    def test_step(self, batch, batch_idx):
        self._collect(batch)

    def on_test_epoch_end(self) -> None:
        from fpenc.report import build_report, write_report

        dm = self.trainer.datamodule
        sims = self._similarities()
        records = {m.index: m for m in dm.models}
        models = [{"id": records[i].id, "role": records[i].role, "architecture": records[i].architecture,
                   "optimizer": records[i].optimizer, "split": records[i].split, "similarities": s}
                  for i, s in sorted(sims.items())]
        reference_ids = {m.index for m in dm.reference_models()}
        hp = self.hparams
        reference = np.stack([sims[i] for i in sorted(reference_ids)])  # [G, P]: one row per reference model
        report = build_report(models, reference, alpha=hp.alpha, num_fingerprints=hp.num_fingerprints,
                              repeats=hp.repeats, seed=dm.cfg.seed, test=hp.reference_test,
                              meta={"name": dm.cfg.name, "api": dm.api, "reference_test": hp.reference_test,
                                    "reference_models": [  # in the order of the reference rows
                                  records[i].id for i in sorted(reference_ids)]})
        if hp.export_dir:
            from fpenc.encoder.export import export_from_run

            report["bundle"] = str(export_from_run(self.encoder, dm, reference, report, hp.export_dir))
        self.test_report = report
        paths = write_report(dm.run_dir, report, models, reference)
        self.log_dict({"test/auc": report["auc"], "test/tpr_at_1pct_fpr": report["tpr_at_1pct_fpr"],
                       "test/tpr_at_5pct_fpr": report["tpr_at_5pct_fpr"], "test/auc_models": report["auc_models"]})
        self._log_to_wandb(report, models, reference, paths)

    def _log_to_wandb(self, report: dict, models: list[dict], reference: np.ndarray, paths: dict) -> None:
        from pytorch_lightning.loggers import WandbLogger

        for logger in self.loggers:
            if not isinstance(logger, WandbLogger):
                continue
            import wandb

            columns = ["id", "split", "role", "architecture", "optimizer", "similarity", "p_value", "verdict"]
            table = wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in report["models"]])
            hist = {f"test/similarity_{role}": wandb.Histogram(np.concatenate(
                [m["similarities"] for m in models if m["role"] == role and m["split"] == "test"]))
                for role in ("piracy", "homologous")}
            logger.experiment.log({"test/results": table, "test/similarity_cdf": wandb.Image(str(paths["cdf"])),
                                   "test/reference_similarity": wandb.Histogram(np.ravel(reference)), **hist})
