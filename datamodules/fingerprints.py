"""The fingerprints of a zoo as a LightningDataModule for the contrastive encoder (paper §4.3, §5.1).

Each sample is one fingerprint ``[2 N K]`` of one model for one (UAP, view) pair, with label 0
for the victim and piracy models and 1 for homologous models. Splits are by *model*, never by
view, as in the paper. Which models train the encoder (plus the victim), pick its checkpoint
(val), are the verdict's reference population and are tested is the config's split policy,
decided once at zoo-plan time (:mod:`fpenc.zoo.sets`); this module only serves them.

The earlier stages (zoo, UAP bank, key, fingerprints) are run by ``fpenc fit`` / ``test`` before
Lightning starts (:func:`fpenc.pipeline.run_stages`); ``prepare_data`` only checks they have.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from fpenc.config import PipelineConfig, from_dict, validate
from fpenc.data.datasets import num_classes_of
from fpenc.errors import ConfigError
from fpenc.zoo.sets import SETS as SPLITS

LABEL_DERIVED, LABEL_INDEPENDENT = 0, 1


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


class FingerprintDataModule(pl.LightningDataModule):
    """Serves fingerprint views by split.

    Args:
        pipeline: the ``pipeline:`` section of the run's config (``fpenc fit`` passes the merged one);
            which models train, validate, calibrate and test is its ``sets`` policy
            (:func:`fpenc.zoo.sets.assign_sets`), decided at zoo-plan time.
        batch_size: fingerprints per batch (per process under DDP); contrastive training wants large batches.
        api: what the zoo's suspects reveal when fingerprinted (probs, topk:K, label).
        progress: progress bars while running earlier stages.
    """

    def __init__(
        self,
        pipeline: PipelineConfig | None = None,
        batch_size: int = 1024,
        api: str = "probs",
        num_workers: int = 0,
        progress: bool = True,
    ) -> None:
        super().__init__()
        if pipeline is None:
            raise ConfigError("FingerprintDataModule needs the pipeline config: pass --config configs/<name>.yaml")
        # validated here, once: fpenc fit builds the config from the stacked files (and command-line overrides)
        self.cfg = validate(from_dict(PipelineConfig, pipeline) if isinstance(pipeline, dict) else pipeline)
        if self.cfg.name is None:
            raise ConfigError("pipeline.name is not set")
        if batch_size < 2 or num_workers < 0:
            raise ConfigError("data: batch_size >= 2 and num_workers >= 0 are required")
        from fpenc.api import parse_api

        self.api = str(parse_api(api))
        self.batch_size, self.num_workers, self.progress = batch_size, num_workers, progress
        self.models: list[ModelRecord] = []
        self.loaded_sets: tuple[str, ...] | None = None  # the sets setup() loaded (None: every one)
        self.save_hyperparameters(ignore=["progress", "num_workers"])

    # -- facts known before any data is read -----------------------------------------------------
    @property
    def run_dir(self):
        return self.cfg.run_dir

    @property
    def num_classes(self) -> int:
        return num_classes_of(self.cfg.data.dataset, self.cfg.data.root, self.cfg.data.init_args)

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
        """Load the fingerprints: for ``fit`` and ``validate`` only the victim's and the training and
        validation models' (:data:`fpenc.pipeline.FIT_SETS`: the reference and test models stay
        sealed); for ``test`` every model's."""
        from fpenc.pipeline import FIT_SETS

        sets = FIT_SETS if stage in ("fit", "validate") else None
        if self.models and (self.loaded_sets is None or sets == self.loaded_sets):
            return
        self.models, self.loaded_sets = [], sets
        from fpenc.fingerprint.zoo import fingerprint_zoo
        from fpenc.rundir import RunDir
        from fpenc.zoo.sets import assign_sets, key_reference_ids

        manifest = RunDir(self.run_dir).load_manifest()
        splits = assign_sets(self.cfg)
        ids = None if sets is None else [i for i, s in splits.items() if s in sets]
        fps = fingerprint_zoo(self.cfg, api=self.api, log=lambda *_: None, ids=ids)  # cached by the pipeline
        key_reference_ids(self.cfg, splits)  # a key chosen with non-training models is refused
        missing = [mid for mid in splits if mid not in {m["id"] for m in manifest["models"]}]
        if missing:
            raise ConfigError(
                f"models {', '.join(missing[:5])} of the config are not in the zoo: run `fpenc zoo` first"
            )
        for i, m in enumerate(manifest["models"]):
            if m["id"] not in fps:
                continue  # sealed while fitting (reference, test), or no longer planned
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
        if self.loaded_sets is not None and name not in self.loaded_sets:
            raise ConfigError(f"the {name} models are sealed while the encoder fits: only `fpenc test` reads them")
        return [m for m in self.models if m.split == name]

    def planned_ids(self, name: str) -> list[str]:
        """The ids of set ``name`` as the config plans them (reads no model: allowed while fitting)."""
        from fpenc.zoo.sets import assign_sets, ids_in

        return ids_in(assign_sets(self.cfg), name)

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
        """A plain DataLoader: under DDP Lightning swaps its sampler for a ``DistributedSampler`` (each
        process a distinct share, padded to equal sizes). ``batch_size`` is per process, at most its
        share: a full-batch config stays full-batch (the loss gathers the processes' batches)."""
        ds = self._dataset(models)
        processes = self.trainer.world_size if self.trainer is not None else 1
        return DataLoader(
            ds,
            batch_size=min(self.batch_size, -(-len(ds) // processes)),
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
