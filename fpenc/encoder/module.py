"""LightningModule that trains the fingerprint encoder with the supervised contrastive loss and
scores suspects (paper §4.3, §5.1, §5.2).

* fit: SupCon on fingerprint views (label 0 victim/piracy, 1 homologous); validation logs the
  separation of the validation models' pair similarities (Cohen's d of piracy vs homologous)
  and their AUC; the best epoch by separation is checkpointed to ``runs/<name>/encoder/best.ckpt``.
* test: exports the verification bundle (``fpenc.encoder.export``), verifies every validation,
  reference and test model against it as ``fpenc verify`` would, and writes the report
  (``fpenc.report``) in ``runs/<name>/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from fpenc.encoder.loss import SupConLoss
from fpenc.encoder.network import FingerprintEncoder
from fpenc.verdict import pair_similarities


def encoder_checkpoints(folder: str | Path) -> list:
    """``best.ckpt`` (the epoch of the highest ``val/separation``) and ``last.ckpt`` (rewritten every
    epoch) in ``folder``. Two callbacks: with ``save_last=True`` Lightning 2.6 rewrites last.ckpt
    only when best.ckpt improves, so "last" would silently be the best epoch."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    return [ModelCheckpoint(dirpath=folder, filename="best", monitor="val/separation", mode="max",
                            enable_version_counter=False),
            ModelCheckpoint(dirpath=folder, filename="last", monitor=None, save_top_k=1, every_n_epochs=1,
                            enable_version_counter=False)]


def _check_args(*, lr, weight_decay, alpha, temperature, dropout, accuracy_share, entropy_share, ood_margin,
                sanity_images, num_fingerprints, verdict_statistic, dims) -> None:
    """The ``model:`` options, as one-line :class:`~fpenc.errors.ConfigError` s (never a traceback)."""
    import math

    from fpenc.errors import ConfigError
    from fpenc.verdict import STATISTICS

    floats = {"lr": lr, "weight_decay": weight_decay, "alpha": alpha, "temperature": temperature, "dropout": dropout,
              "accuracy_share": accuracy_share, "entropy_share": entropy_share, "ood_margin": ood_margin}
    for name, value in floats.items():
        if not math.isfinite(value):
            raise ConfigError(f"model.{name} must be a finite number, got {value}")
    checks = [(lr > 0, "model.lr must be > 0"), (weight_decay >= 0, "model.weight_decay must be >= 0"),
              (0 < alpha < 1, "model.alpha must be in (0, 1)"), (temperature > 0, "model.temperature must be > 0"),
              (0 <= dropout < 1, "model.dropout must be in [0, 1)"),
              (0 <= accuracy_share <= 1 and 0 <= entropy_share <= 1, "model.accuracy_share and entropy_share must be in [0, 1]"),
              (ood_margin >= 0, "model.ood_margin must be >= 0 (0: no out-of-distribution gate)"),
              (sanity_images >= 10, "model.sanity_images must be >= 10"),
              (num_fingerprints is None or num_fingerprints >= 2, "model.num_fingerprints must be >= 2 (or null: all)"),
              (verdict_statistic in STATISTICS, f"model.verdict_statistic must be one of {', '.join(STATISTICS)}"),
              (all(int(d) >= 1 for d in dims), "model.hidden_dim, embed_dim and proj_dim must be >= 1")]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{message}; got lr={lr}, weight_decay={weight_decay}, alpha={alpha}, temperature="
                              f"{temperature}, dropout={dropout}, accuracy_share={accuracy_share}, entropy_share="
                              f"{entropy_share}, ood_margin={ood_margin}, sanity_images={sanity_images}, "
                              f"num_fingerprints={num_fingerprints}, verdict_statistic={verdict_statistic!r}")


class EncoderModule(pl.LightningModule):
    """Args:
        input_dim: fingerprint width 2NK (linked from the datamodule by ``fpenc fit``).
        hidden_dim, embed_dim, proj_dim, dropout, input_transform: the :class:`FingerprintEncoder`.
        temperature: SupCon temperature.
        lr, weight_decay: AdamW.
        alpha: the verdict's significance level (default 0.05; :mod:`fpenc.verdict`).
        verdict_statistic: what the verdict tests against the reference models: "agreement" (the
            share of the key's labels that are the victim's; default) or "agreement+similarity" (both it
            and the encoder's similarity, an intersection-union test). See :mod:`fpenc.verdict`.
        num_fingerprints: fingerprint pairs per verdict (None: every pair of the bundle, no random draw).
        accuracy_share, entropy_share: the sanity gates: a suspect needs an accuracy of at least chance
            + ``accuracy_share`` x the victim's margin over chance, and a label entropy of at least
            ``entropy_share`` x the victim's, on the bundle's ``sanity_images`` labelled test images.
        ood_margin: the out-of-distribution gate's limit is ``ood_margin`` x the largest distance of a
            validation or reference model to the encoder's training models (0: no gate).
        export_dir: where ``test`` writes the verification bundle (None: the run directory).
    """

    def __init__(self, input_dim: int = 2000, hidden_dim: int = 512, embed_dim: int = 128, proj_dim: int = 64,
                 dropout: float = 0.1, input_transform: str = "log", temperature: float = 0.1, lr: float = 1e-3, weight_decay: float = 1e-4,
                 alpha: float = 0.05, verdict_statistic: str = "agreement", num_fingerprints: int | None = None,
                 accuracy_share: float = 0.5,
                 entropy_share: float = 0.5, ood_margin: float = 1.5, sanity_images: int = 200,
                 export_dir: str | None = "checkpoints") -> None:
        super().__init__()
        _check_args(lr=lr, weight_decay=weight_decay, alpha=alpha, temperature=temperature, dropout=dropout,
                    accuracy_share=accuracy_share, entropy_share=entropy_share, ood_margin=ood_margin,
                    sanity_images=sanity_images, num_fingerprints=num_fingerprints,
                    verdict_statistic=verdict_statistic, dims=(input_dim, hidden_dim, embed_dim, proj_dim))
        self.save_hyperparameters()
        self.encoder = FingerprintEncoder(input_dim, hidden_dim, embed_dim, proj_dim, dropout, input_transform)
        self.criterion = SupConLoss(temperature)
        self._outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.test_report: dict | None = None

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "reference_models") or stage not in ("test", "fit"):
            return
        if len(dm.reference_models()) < 2:
            from fpenc.errors import ConfigError

            raise ConfigError(
                f"the verdict needs >= 2 reference models (independent models of the zoo grids marked "
                f"'split: reference'), but there are {len(dm.reference_models())}: add such a grid to pipeline.zoo.grids "
                "(e.g. the victim's architecture on the victim's own data, data: victim, and other architectures)")

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
        from fpenc.rundir import RunDir

        return encoder_checkpoints(RunDir(dm.run_dir).encoder_dir)

    # -- collecting representations -----------------------------------------------------------------
    def _collect(self, batch) -> None:
        x, _, model, pair = batch
        self._outputs.append((self.encoder.encode(x).detach().float().cpu(), model.cpu(), pair.cpu()))

    def _representations(self) -> dict[int, torch.Tensor]:
        """``{model index: representations h [P, D]}`` in pair order, from the collected outputs."""
        h, model, pair = (torch.cat(t) for t in zip(*self._outputs))
        self._outputs.clear()
        by_model = {}
        for idx in model.unique().tolist():
            sel = model == idx
            by_model[idx] = h[sel][torch.argsort(pair[sel])]
        return by_model

    def _similarities(self) -> dict[int, np.ndarray]:
        """``{model index: pair similarities [P]}`` against the victim, from the collected outputs."""
        by_model = self._representations()
        victim = by_model.pop(self.trainer.datamodule.victim.index)
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
        """Export the bundle, then verify every validation, reference and test model against it
        exactly as ``fpenc verify`` would, and write the report."""
        from fpenc.bundle import load_bundle
        from fpenc.encoder.export import export_from_run
        from fpenc.report import build_report, evaluate_models, write_report
        from fpenc.rundir import RunDir
        from fpenc.zoo.manifest import entries_by_id

        dm, hp = self.trainer.datamodule, self.hparams
        reps = self._representations()
        path = export_from_run(self.encoder, dm, reps, hp.export_dir or dm.run_dir, alpha=hp.alpha,
                               statistic=hp.verdict_statistic,
                               accuracy_share=hp.accuracy_share, entropy_share=hp.entropy_share,
                               ood_margin=hp.ood_margin, sanity_images=hp.sanity_images)
        bundle = load_bundle(path)
        entries = entries_by_id(RunDir(dm.run_dir).load_manifest())
        models = [entries[m.id] | {"split": m.split} for m in dm.models if m.split in ("val", "reference", "test")]
        rows = evaluate_models(bundle, dm.run_dir, models, alpha=hp.alpha, num_fingerprints=hp.num_fingerprints,
                               progress=dm.progress)
        report = build_report(rows, meta={"name": dm.cfg.name, "api": dm.api, "bundle": str(path),
                                          "bundle_sha256": bundle.sha256,
                                          "reference_models": list(bundle.meta["reference_models"]),
                                          "gates": bundle.meta["gates"]})
        self.test_report = report
        reference = bundle.reference_similarities.numpy()
        paths = write_report(dm.run_dir, report, rows, reference)
        self.log_dict({"test/auc": report["auc"], "test/tpr_at_1pct_fpr": report["tpr_at_1pct_fpr"],
                       "test/tpr_at_5pct_fpr": report["tpr_at_5pct_fpr"], "test/auc_models": report["auc_models"],
                       "test/auc_models_verdict": report["auc_models_verdict"]})
        self._log_to_wandb(report, rows, reference, paths)

    def _log_to_wandb(self, report: dict, rows: list[dict], reference: np.ndarray, paths: dict) -> None:
        from pytorch_lightning.loggers import WandbLogger

        for logger in self.loggers:
            if not isinstance(logger, WandbLogger):
                continue
            import wandb

            columns = ["id", "split", "role", "architecture", "optimizer", "accuracy", "agreement", "similarity",
                       "p_value", "verdict"]
            table = wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in report["models"]])
            hist = {f"test/similarity_{role}": wandb.Histogram(np.concatenate(
                [r["similarities"] for r in rows if r["role"] == role and r["split"] == "test"]))
                for role in ("piracy", "homologous")}
            logger.experiment.log({"test/results": table, "test/similarity_cdf": wandb.Image(str(paths["cdf"])),
                                   "test/reference_similarity": wandb.Histogram(np.ravel(reference)), **hist})
