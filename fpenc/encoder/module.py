"""LightningModule that trains the fingerprint encoder with the supervised contrastive loss
(paper §4.3, §5.1): the network, the loss, the steps, the optimizer and the metrics it logs.

* fit: SupCon on fingerprint views (label 0 victim/piracy, 1 homologous); validation logs the
  separation of the validation models' pair similarities (Cohen's d of piracy vs homologous)
  and their AUC.
* test: collects the encoder's representations of every model (:meth:`test_representations`).
* several processes (``--trainer.strategy ddp``): the loss sees the global batch, the validation
  metrics and test representations every process's samples (:mod:`fpenc.encoder.distributed`).

What ``fpenc test`` does with them — export the verification bundle, verify the zoo's models,
write the report, fill a W&B dashboard — and the checkpoints of ``fpenc fit`` are Lightning
callbacks (:mod:`fpenc.callbacks`) that ``fpenc.lightning_cli`` attaches.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch

from fpenc.callbacks.checkpoints import encoder_checkpoints  # noqa: F401  (its former home; re-exported)
from fpenc.encoder.distributed import gather_batch, unique_samples, world_size
from fpenc.encoder.loss import SupConLoss
from fpenc.encoder.network import FingerprintEncoder
from fpenc.encoder.options import VerdictOptions, check_args
from fpenc.errors import ConfigError
from fpenc.verdict import DEFAULT_ALPHA, DEFAULT_STATISTIC, pair_similarities


class EncoderModule(pl.LightningModule):
    """Args:
        input_dim: fingerprint width 2NK (linked from the datamodule by ``fpenc fit``).
        hidden_dim, embed_dim, proj_dim, dropout, input_transform: the :class:`FingerprintEncoder`.
        temperature: SupCon temperature.
        lr, weight_decay: AdamW.
        alpha: the verdict's significance level (default 0.01; :mod:`fpenc.verdict`).
        verdict_statistic: what the verdict tests against the reference models: "agreement" (the
            share of the key's labels that are the victim's; default), "agreement+similarity" (both it
            and the encoder's similarity, an intersection-union test) or "agreement-or-similarity"
            (either, each at alpha / 2, the similarity only above the references' mean agreement;
            experimental: it accused an independent model of the demo). See :mod:`fpenc.verdict`.
        num_fingerprints: fingerprint pairs per verdict (None: every pair of the bundle, no random draw).
        accuracy_share, entropy_share: the sanity gates: a suspect needs an accuracy of at least chance
            + ``accuracy_share`` x the victim's margin over chance, and a label entropy of at least
            ``entropy_share`` x the victim's, on the bundle's ``sanity_images`` labelled test images.
        ood_margin: the out-of-distribution gate's limit is ``ood_margin`` x the largest distance of a
            validation or reference model to the encoder's training models (0: no gate).
        export_dir: where ``test`` writes the verification bundle (None: the run directory).
        init_from: an exported bundle whose encoder (network and weights) this module starts from:
            encoder transfer (Peng et al. App. E; :mod:`fpenc.encoder.transfer`). ``test`` then needs
            no checkpoint; ``fit`` fine-tunes it. Its network options must equal the ones above.
        net: the encoder network, injected (None: a :class:`FingerprintEncoder` of the options above).

    The verdict and export options (alpha ... export_dir) are checked here and carried, as
    :attr:`verdict_options`, to the test callbacks; the module itself does not use them.
    """

    def __init__(
        self,
        input_dim: int = 2000,
        hidden_dim: int = 512,
        embed_dim: int = 128,
        proj_dim: int = 64,
        dropout: float = 0.1,
        input_transform: str = "log",
        temperature: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        alpha: float = DEFAULT_ALPHA,
        verdict_statistic: str = DEFAULT_STATISTIC,
        num_fingerprints: int | None = None,
        accuracy_share: float = 0.5,
        entropy_share: float = 0.5,
        ood_margin: float = 1.5,
        sanity_images: int = 200,
        export_dir: str | None = "checkpoints",
        init_from: str | None = None,
        net: torch.nn.Module | None = None,
    ) -> None:
        super().__init__()
        check_args(
            lr=lr,
            weight_decay=weight_decay,
            alpha=alpha,
            temperature=temperature,
            dropout=dropout,
            accuracy_share=accuracy_share,
            entropy_share=entropy_share,
            ood_margin=ood_margin,
            sanity_images=sanity_images,
            num_fingerprints=num_fingerprints,
            verdict_statistic=verdict_statistic,
            dims=(input_dim, hidden_dim, embed_dim, proj_dim),
        )
        self.save_hyperparameters(ignore=["net"])
        if init_from is not None:
            from fpenc.encoder.transfer import encoder_from_bundle

            if net is not None:
                raise ConfigError("model.init_from and model.net both give the encoder network; pass one of them")
            wanted = {"input_dim": input_dim, "hidden_dim": hidden_dim, "embed_dim": embed_dim, "proj_dim": proj_dim}
            net = encoder_from_bundle(init_from, {**wanted, "input_transform": input_transform})
        self.encoder = (
            net
            if net is not None
            else FingerprintEncoder(input_dim, hidden_dim, embed_dim, proj_dim, dropout, input_transform)
        )
        self.criterion = SupConLoss(temperature)
        self.verdict_options = VerdictOptions.from_hparams(self.hparams)
        self._outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._test_representations: dict[int, torch.Tensor] | None = None

    # -- training -----------------------------------------------------------------------------------
    def contrastive_loss(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """SupCon of fingerprints ``x [B, input_dim]`` with labels ``label [B]``, on the global batch:
        under DDP the projections ``z [B, proj_dim]`` (with their gradients) and labels of every
        process, ``[W * B, ...]`` (:mod:`fpenc.encoder.distributed`); with one process this batch."""
        z = gather_batch(self.encoder(x), sync_grads=True)
        return self.criterion(z, gather_batch(label))

    def training_step(self, batch, batch_idx):
        x, label, _, _ = batch
        loss = self.contrastive_loss(x, label)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(x), sync_dist=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    # -- collecting representations -----------------------------------------------------------------
    def _collect(self, batch) -> None:
        x, _, model, pair = batch
        self._outputs.append((self.encoder.encode(x).detach().float().cpu(), model.cpu(), pair.cpu()))

    def _representations(self) -> dict[int, torch.Tensor]:
        """``{model index: representations h [P, D]}`` in pair order, from the collected outputs (of
        every process under DDP: a collective call, which every process must make)."""
        h, model, pair = (torch.cat(t) for t in zip(*self._outputs))
        self._outputs.clear()
        if world_size() > 1:  # every process's share, then each sample once (DistributedSampler pads)
            h, model, pair = (gather_batch(t.to(self.device)).cpu() for t in (h, model, pair))
            keep = unique_samples(model, pair)
            h, model, pair = h[keep], model[keep], pair[keep]
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
        self.log("val/loss", self.contrastive_loss(x, label), on_epoch=True, batch_size=len(x), sync_dist=True)
        self._collect(batch)

    def on_validation_epoch_end(self) -> None:
        if not self._outputs:
            return
        from fpenc.report import roc_metrics

        sims = self._similarities()
        roles = self.trainer.datamodule.roles()
        pos = np.concatenate([s for i, s in sims.items() if roles[i] == "piracy"])
        neg = np.concatenate([s for i, s in sims.items() if roles[i] == "homologous"])
        pooled = np.sqrt((pos.var() + neg.var()) / 2) + 1e-8
        metrics = roc_metrics(np.concatenate([pos, neg]), np.r_[np.ones(len(pos)), np.zeros(len(neg))])
        self.log_dict(
            {
                "val/separation": float((pos.mean() - neg.mean()) / pooled),
                "val/auc": metrics["auc"],
                "val/sim_piracy": float(pos.mean()),
                "val/sim_homologous": float(neg.mean()),
            },
            prog_bar=True,
            sync_dist=True,  # equal on every process (from every process's representations): a no-op mean
        )

    # -- test ---------------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self._outputs.clear()
        self._test_representations = None

    def test_step(self, batch, batch_idx):
        self._collect(batch)

    def test_representations(self) -> dict[int, torch.Tensor]:
        """``{model index: representations h [P, D]}`` (pair order) of every model of this test epoch,
        for the callbacks' ``on_test_epoch_end`` (which Lightning runs before the module's)."""
        if self._test_representations is None:
            self._test_representations = self._representations() if self._outputs else {}
        return self._test_representations

    def on_test_epoch_end(self) -> None:
        self._outputs.clear()
        self._test_representations = None
