"""The fingerprints of a zoo as a LightningDataModule for the contrastive encoder (paper §4.3, §5.1).

Each sample is one fingerprint ``[2 N K]`` of one model for one (UAP, view) pair, with label 0
for the victim and piracy models and 1 for homologous models. Splits are by *model*, never by
view, as in the paper: the encoder trains on ``train_models_per_role`` piracy and as many
homologous models of ``train_architectures`` (plus the victim); the other models of those
architectures are validation (they pick the encoder's checkpoint); the models of the zoo grids
marked ``split: reference`` are the verdict's reference population (independent models that
neither train the encoder, nor pick its checkpoint, nor choose the key); models of all other
architectures are the test set.

The earlier stages (zoo, UAP bank, key, fingerprints) are run by ``fpenc fit`` / ``test`` before
Lightning starts (:func:`fpenc.pipeline.run_stages`); ``prepare_data`` only checks they have.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from fpenc.config import PipelineConfig, from_dict, validate
from fpenc.data.datasets import NUM_CLASSES
from fpenc.errors import ConfigError

LABEL_DERIVED, LABEL_INDEPENDENT = 0, 1
SPLITS = ("train", "val", "reference", "test")


@dataclass
class ModelRecord:
    """A zoo model as the encoder sees it: ``fingerprints [P, 2NK]`` with P = U * V pairs."""

    index: int
    id: str
    role: str
    architecture: str
    optimizer: str
    split: str  # train | val | reference | test (the victim: "victim")
    fingerprints: torch.Tensor

    @property
    def label(self) -> int:
        return LABEL_INDEPENDENT if self.role == "homologous" else LABEL_DERIVED


def assign_splits(
    models: list[dict], train_architectures: list[str], per_role: int, reference: list[str] | tuple = ()
) -> dict[str, str]:
    """``{model id: split}`` for manifest entries (the victim gets "victim", the ids in ``reference``
    "reference"). Deterministic: within the training architectures the first ``per_role`` models of
    each role by (seed, optimizer, architecture) train, so that with 2 optimizers x 3 seeds both
    optimizers train and validate."""
    reference = set(reference)
    missing = sorted(reference - {m["id"] for m in models})
    if missing:
        raise ConfigError(f"the reference grids' models {', '.join(missing)} are not in the zoo: run `fpenc zoo` first")
    out = {m["id"]: "reference" for m in models if m["id"] in reference}
    models = [m for m in models if m["id"] not in reference]
    known = sorted({m["architecture"] for m in models if m["role"] != "victim"})
    unknown = [a for a in train_architectures if a not in known]
    if not train_architectures or unknown:
        raise ConfigError(
            f"data.train_architectures must name architectures of the zoo ({', '.join(known)}); got {train_architectures}"
        )
    for role in ("piracy", "homologous"):
        pick = [m for m in models if m["role"] == role and m["architecture"] in train_architectures]
        # seed-major order, so the optimizers alternate: training and validation both get each optimizer
        ids = [
            m["id"]
            for m in sorted(pick, key=lambda m: (m.get("seed", 0), m.get("optimizer", ""), m["architecture"], m["id"]))
        ]
        if len(ids) < per_role + 1:
            raise ConfigError(
                f"the training architectures {train_architectures} have {len(ids)} {role} models; the encoder "
                f"needs {per_role} to train on and at least 1 more for validation: add seeds or optimizers "
                f"to the zoo grid, or lower data.train_models_per_role"
            )
        out.update({mid: ("train" if i < per_role else "val") for i, mid in enumerate(ids)})
    for m in models:
        out.setdefault(m["id"], "victim" if m["role"] == "victim" else "test")
    if not any(s == "test" for s in out.values()):
        raise ConfigError("no test models: the zoo has no architecture outside data.train_architectures")
    return out


def check_key_reference(reference: list[str], splits: dict[str, str]) -> None:
    """The key's reference models (``key.selection: idiosyncratic``) must be encoder-training models:
    a key chosen where validation or test models disagree with the victim biases their scores."""
    leaked = [i for i in reference if splits.get(i) != "train"]
    if leaked:
        raise ConfigError(
            f"pipeline.key.reference: {', '.join(leaked)} are not models the encoder trains on; "
            "choosing the key with validation or test models biases the evaluation. "
            f"Use training models: {', '.join(i for i, s in sorted(splits.items()) if s == 'train')}"
        )


class FingerprintDataModule(pl.LightningDataModule):
    """Serves fingerprint views by split.

    Args:
        pipeline: the ``pipeline:`` section of the run's config (``fpenc fit`` passes the merged,
            validated one).
        train_architectures: architectures whose models the encoder trains on.
        train_models_per_role: piracy (and homologous) models trained on; the paper uses 5.
        batch_size: fingerprints per batch; contrastive training wants large batches.
        api: what the zoo's suspects reveal when fingerprinted (probs, topk:K, label).
        progress: progress bars while running earlier stages.
    """

    def __init__(
        self,
        pipeline: dict | None = None,
        train_architectures: list[str] | None = None,
        train_models_per_role: int = 5,
        batch_size: int = 1024,
        api: str = "probs",
        num_workers: int = 0,
        progress: bool = True,
    ) -> None:
        super().__init__()
        if pipeline is None:
            raise ConfigError("FingerprintDataModule needs the pipeline config: pass --config configs/<name>.yaml")
        self.cfg = validate(from_dict(PipelineConfig, pipeline)) if isinstance(pipeline, dict) else pipeline
        if self.cfg.name is None:
            raise ConfigError("pipeline.name is not set")
        if train_models_per_role < 1 or batch_size < 2 or num_workers < 0:
            raise ConfigError("data: train_models_per_role >= 1, batch_size >= 2 and num_workers >= 0 are required")
        from fpenc.api import parse_api

        self.api = str(parse_api(api))
        self.train_architectures = list(train_architectures or [])
        self.train_models_per_role = train_models_per_role
        self.batch_size, self.num_workers, self.progress = batch_size, num_workers, progress
        self.models: list[ModelRecord] = []
        self.save_hyperparameters(ignore=["progress", "num_workers"])

    # -- facts known before any data is read -----------------------------------------------------
    @property
    def run_dir(self):
        return self.cfg.run_dir

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.cfg.data.dataset]

    @property
    def input_dim(self) -> int:
        """Fingerprint width ``2 N K``."""
        return 2 * self.cfg.key.num_datapoints * self.num_classes

    # -- Lightning hooks ----------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Check that the pipeline's earlier stages have run (this module reads artifacts, it does not
        make them: ``fpenc fit`` runs them first, as :func:`fpenc.pipeline.run_stages` does)."""
        from fpenc.errors import FpencError
        from fpenc.rundir import RunDir

        rd = RunDir(self.run_dir)
        missing = [p.name for p in (rd.manifest, rd.uaps, rd.key) if not p.is_file()]
        if missing:
            raise FpencError(
                f"{', '.join(missing)} missing in {rd}: run `fpenc fit --config ...` (it runs the earlier stages "
                "first), or fpenc.pipeline.run_stages(cfg, api=...) before using this datamodule"
            )

    def setup(self, stage: str | None = None) -> None:
        if self.models:
            return
        from fpenc.fingerprint.zoo import fingerprint_zoo
        from fpenc.rundir import RunDir

        manifest = RunDir(self.run_dir).load_manifest()
        fps = fingerprint_zoo(self.cfg, api=self.api, log=lambda *_: None)  # cached by the pipeline's last stage
        from fpenc.zoo.plan import reference_ids

        splits = assign_splits(
            manifest["models"], self.train_architectures, self.train_models_per_role, reference_ids(self.cfg)
        )
        check_key_reference(self.cfg.key.reference, splits)
        for i, m in enumerate(manifest["models"]):
            f = fps[m["id"]]
            if f.shape[-1] != self.input_dim:
                raise ConfigError(f"fingerprints of {m['id']} have width {f.shape[-1]}, expected {self.input_dim}")
            self.models.append(
                ModelRecord(
                    i,
                    m["id"],
                    m["role"],
                    m["architecture"],
                    m.get("optimizer", ""),
                    splits[m["id"]],
                    f.reshape(-1, f.shape[-1]).float(),
                )
            )

    # -- data ---------------------------------------------------------------------------------------
    @property
    def victim(self) -> ModelRecord:
        return next(m for m in self.models if m.role == "victim")

    def split(self, name: str) -> list[ModelRecord]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; use one of {SPLITS}")
        return [m for m in self.models if m.split == name]

    def reference_models(self) -> list[ModelRecord]:
        """The verdict's reference population: the models of the ``split: reference`` grids."""
        return self.split("reference")

    # -- what the test callbacks (fpenc.callbacks) read -----------------------------------------------
    @property
    def name(self) -> str:
        """The run's name (``pipeline.name``)."""
        return self.cfg.name

    def roles(self) -> dict[int, str]:
        """``{model index: role}`` (victim, piracy, homologous) of every model."""
        return {m.index: m.role for m in self.models}

    def encoder_splits(self) -> dict[str, str]:
        """``{model id: split}``: how the encoder uses each zoo model (train, val, reference, test, victim)."""
        return {m.id: m.split for m in self.models}

    def verified_entries(self) -> list[dict]:
        """The manifest entries (plus ``split``) of the models ``fpenc test`` verifies: every
        validation, reference and test model, in zoo order."""
        from fpenc.rundir import RunDir
        from fpenc.zoo.manifest import entries_by_id

        entries = entries_by_id(RunDir(self.run_dir).load_manifest())
        return [entries[m.id] | {"split": m.split} for m in self.models if m.split in ("val", "reference", "test")]

    def _dataset(self, models: list[ModelRecord]) -> TensorDataset:
        x = torch.cat([m.fingerprints for m in models])
        label = torch.cat([torch.full((len(m.fingerprints),), m.label) for m in models])
        model = torch.cat([torch.full((len(m.fingerprints),), m.index) for m in models])
        pair = torch.cat([torch.arange(len(m.fingerprints)) for m in models])
        return TensorDataset(x, label, model, pair)

    def _loader(self, models: list[ModelRecord], shuffle: bool) -> DataLoader:
        ds = self._dataset(models)
        return DataLoader(
            ds,
            batch_size=min(self.batch_size, len(ds)),
            shuffle=shuffle,
            drop_last=shuffle,
            num_workers=self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader([self.victim, *self.split("train")], shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader([self.victim, *self.split("val")], shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(
            [self.victim, *self.split("train"), *self.split("val"), *self.split("reference"), *self.split("test")],
            shuffle=False,
        )
