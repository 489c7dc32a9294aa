"""The pipeline config's typed schema: one dataclass per stage of the ``pipeline:`` YAML section.

Reading, merging and strict conversion of YAML into these classes is :mod:`fpenc.config.parse` and
:mod:`fpenc.config.loader`; checks beyond types are :mod:`fpenc.config.validation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

OPTIMIZERS = ("sgd", "adam", "rmsprop")
ROLES = ("piracy", "homologous")
GRID_DATA = ("default", "victim", "attacker", "homologous")
GRID_SPLITS = ("auto", "train", "val", "reference", "test")


@dataclass
class DataConfig:
    """Which dataset and how its training set is split (paper §5.1, DESIGN.md stage 1)."""

    dataset: str = "fashion_mnist"
    root: str | None = None
    download: bool = False
    split_seed: int = 0
    homologous_overlap: float = 0.5
    init_args: dict = field(default_factory=dict)  # dataset: a LightningDataModule's class path -> its keyword args
    victim_indices: str | None = None  # the owner's model's real training subset: a .npy array (or a text
    # file, one per line) of training-set indices; None: a seeded random half (experiments). Relative: from the config


@dataclass
class TrainConfig:
    """How one model is trained (Table 1: optimizer, batch size; epochs and lr are ours)."""

    architecture: str = "fmnist_a"
    optimizer: str = "adam"
    lr: float | None = None  # None: a per-optimizer default (see fpenc.zoo.classifier.DEFAULT_LR)
    batch_size: int = 128
    epochs: int = 5
    weight_decay: float = 0.0
    options: dict = field(default_factory=dict)  # architecture options, e.g. {channels: [8, 16, 16, 16]}
    # the owner's own victim: its class (any nn.Module taking images in [0, 1], normalisation inside,
    # returning logits), the class's keyword arguments and its trained weights (a plain state_dict file:
    # torch.save(model.state_dict(), path), or .safetensors). With weights, the victim is never trained.
    class_path: str | None = None  # same as architecture: mypkg.nets.MyNet
    init_args: dict = field(default_factory=dict)  # same as options
    weights: str | None = None  # relative paths: from the config file that sets it


@dataclass
class ExtractionConfig:
    """How piracy models are extracted from the victim (CloudLeak-style, paper §5.1)."""

    api: str = "probs"  # probs | topk:K | label
    adversarial_queries: int = 0  # extra queries crafted around the pool (FGSM on the student)
    adversarial_eps: float = 0.1  # L-inf step of those queries, in [0, 1] pixel space
    pool_fraction: float = 1.0  # share of the attacker split the attacker actually queries


@dataclass
class GridConfig:
    """A grid of suspect models: architectures x optimizers x seeds, all of one role."""

    role: str = "piracy"
    architectures: list[str] = field(default_factory=lambda: ["fmnist_b"])
    optimizers: list[str] = field(default_factory=lambda: ["adam"])
    seeds: list[int] = field(default_factory=lambda: [0])  # [] turns the grid off (an overlay's way to drop one)
    epochs: int = 3
    batch_sizes: list[int] = field(default_factory=lambda: [128])  # one drawn per model (Table 1)
    lr: float | None = None
    options: dict = field(default_factory=dict)  # architecture options, e.g. {channels: [8, 16, 16, 16]}
    data: str = "default"  # training data: default (piracy: the attacker's half; homologous: the homologous split),
    # victim (the victim's own half: the hardest independent models), attacker (disjoint from the victim's)
    split: str = "auto"  # the set its models belong to (pipeline.sets): auto (the policy decides: train / val / test),
    # train (the encoder's training models), val (checkpoint selection only), reference (the verdict's reference
    # population: independent models that neither train the encoder nor pick its checkpoint nor choose the key), test
    name: str | None = None  # overlays that list only named grids update these grids by name instead of replacing all
    attacks: list[str] = field(default_factory=lambda: ["extract"])  # piracy: how each copy is made from the victim
    # (fpenc/zoo/attacks.py): extract (through its API, zoo.extraction), or from its weights: finetune:FTAL,
    # prune:0.5, fineprune:0.5, int8, fp16, advtrain:0.03, uat:0.1 (those need architectures: [the victim's])
    extraction: dict = field(default_factory=dict)  # this grid's changes to zoo.extraction, e.g. {api: label}
    training: dict = field(default_factory=dict)  # independent models' recipe (fpenc/zoo/recipe.py), e.g.
    # {augment: true, label_smoothing: 0.1, adversarial_eps: 0.1}
    parent: str | None = None  # homologous grids with attacks: the id of the zoo model they copy (a victim
    # other than ours: copies stolen, but not from us); it must come from an earlier grid


@dataclass
class SetsConfig:
    """The split policy: which zoo models train the encoder, pick its checkpoint (val), calibrate the
    verdict (reference) and test it, decided once at zoo-plan time (:mod:`fpenc.zoo.sets`). Grids with
    ``split: auto``: within ``train_architectures`` the first ``train_models_per_role`` piracy and
    homologous models (by seed, then optimizer) train and the others validate; the rest are test models."""

    train_architectures: list[str] | None = None  # None: the victim's architecture
    train_models_per_role: int = 5  # the paper's 5 piracy + 5 homologous models


@dataclass
class ZooConfig:
    victim: TrainConfig = field(default_factory=TrainConfig)
    grids: list[GridConfig] = field(default_factory=list)
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)


@dataclass
class UAPConfig:
    """The victim's bank of universal adversarial perturbations (paper §3.3; DESIGN.md stage 3)."""

    method: str = "sgd"  # sgd (SGD-UAP, Shafahi et al. 2020) | deepfool (Moosavi-Dezfooli et al. 2017)
    norm: str = "linf"  # linf | l2, in [0, 1] pixel space
    eps: float = 0.25
    num_uaps: int = 5  # bank size; member i is seeded with seed + i
    steps: int = 100  # optimisation steps (batches) per UAP
    batch_size: int = 256
    lr: float = 0.01  # sgd method: Adam step on v
    holdout: int = 2000  # test images on which the fooling rate is measured


@dataclass
class KeyConfig:
    """The fingerprint key: datapoints and their views (paper §4.2, §4.3)."""

    num_datapoints: int = 100  # N: k-means clusters on the victim's last-layer representation
    num_views: int = 10  # V: view sets X^(1..V)
    neighbours: int = 10  # K >= V nearest neighbours (victim output space) each view is sampled from
    selection_layer: str = "features"  # features (penultimate) | logits | probs
    view_layer: str = "probs"  # output space for the view neighbours: probs | logits | features
    kmeans_iters: int = 25
    pool: str = "victim"  # where datapoints come from: victim (its training split, as the paper) | test (held out)
    selection: str = "kmeans"  # kmeans (paper §4.2) | errors (k-means among the pool images the victim gets wrong)
    # | idiosyncratic (errors on which every `reference` model predicts another class than the victim)
    reference: list[str] = field(default_factory=list)  # idiosyncratic: zoo ids of independent models, by default
    # (empty) the homologous models of the encoder's training set; only training models are allowed (a validation,
    # reference or test model here would bias the evaluation)
    reference_quorum: float = 1.0  # idiosyncratic: share of `reference` models that must predict another class
    # than the victim (1.0: every one; 0.8 of 5: any 4), lower it when too few images pass
    # conferrable (experimental, not for verdicts: it accused an independent model on the demo, docs/results.md):
    # conferrable adversarial examples (Lukas et al., ICLR 2021) of `candidates` random pool images,
    # crafted with the training copies and `reference` models; kept where the victim, a `reference_quorum` share
    # of the copies and at most 1 - reference_quorum of the references answer the target class
    conferrable_eps: float = 0.1  # L-inf budget of the conferrable perturbation (images in [0, 1])
    conferrable_steps: int = 40  # PGD sign steps of conferrable_eps / 8
    candidates: int = 1000  # pool images crafted (conferrable)


@dataclass
class PipelineConfig:
    name: str | None = None  # outputs go to <runs_dir>/<name>/; default: the last config file's stem
    seed: int = 0
    runs_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    zoo: ZooConfig = field(default_factory=ZooConfig)
    sets: SetsConfig = field(default_factory=SetsConfig)
    uap: UAPConfig = field(default_factory=UAPConfig)
    key: KeyConfig = field(default_factory=KeyConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / str(self.name)
