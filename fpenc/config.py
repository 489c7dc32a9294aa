"""The pipeline config: dataclasses that describe every stage, read strictly from YAML.

A config file holds a ``pipeline:`` section (read here, by the stage commands) beside the
LightningCLI sections (``trainer``, ``model``, ``data``, ...) used by ``fpenc fit``/``test``.
Several files stack (``--config base.yaml --config overlay.yaml``): mappings merge key by key,
later files win. Unknown keys are errors with a "did you mean" hint, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fpenc.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "rmsprop")
ROLES = ("piracy", "homologous")
GRID_DATA = ("default", "victim", "attacker", "homologous")
GRID_SPLITS = ("auto", "reference")
LIGHTNING_SECTIONS = ("trainer", "model", "data", "seed_everything", "ckpt_path", "optimizer", "lr_scheduler")


@dataclass
class DataConfig:
    """Which dataset and how its training set is split (paper §5.1, DESIGN.md stage 1)."""

    dataset: str = "fashion_mnist"
    root: str | None = None
    download: bool = False
    split_seed: int = 0
    homologous_overlap: float = 0.5


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
    seeds: list[int] = field(default_factory=lambda: [0])
    epochs: int = 3
    batch_sizes: list[int] = field(default_factory=lambda: [128])  # one drawn per model (Table 1)
    lr: float | None = None
    options: dict = field(default_factory=dict)  # architecture options, e.g. {channels: [8, 16, 16, 16]}
    data: str = "default"  # training data: default (piracy: the attacker's half; homologous: the homologous split),
    # victim (the victim's own half: the hardest independent models), attacker (disjoint from the victim's)
    split: str = "auto"  # auto: the encoder's DataModule assigns train/val/test; reference: the verdict's reference
    # population (independent models that neither train the encoder nor pick its checkpoint nor choose the key)


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
    reference: list[str] = field(default_factory=list)  # zoo ids of independent models (the encoder's training
    # homologous models only: a validation or test model here would bias the evaluation)
    reference_quorum: float = 1.0  # idiosyncratic: share of `reference` models that must predict another class
    # than the victim (1.0: every one; 0.8 of 5: any 4), lower it when too few images pass


@dataclass
class PipelineConfig:
    name: str | None = None  # outputs go to <runs_dir>/<name>/; default: the last config file's stem
    seed: int = 0
    runs_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    zoo: ZooConfig = field(default_factory=ZooConfig)
    uap: UAPConfig = field(default_factory=UAPConfig)
    key: KeyConfig = field(default_factory=KeyConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / str(self.name)


# ----------------------------------------------------------------------------------------------
def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _unknown(key: str, known: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"{where}: unknown key '{key}'{hint}; known keys: {', '.join(known)}")


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            value = [value]
        return [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is dict:
        if value is None:
            return {}
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return dict(value)
        raise ConfigError(f"{where}: expected a mapping of names to values, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def from_dict(cls: type, data: Any, where: str = "pipeline") -> Any:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown(str(key), list(fields), where)
        kwargs[key] = _convert(value, hints[key], f"{where}.{key}")
    return cls(**kwargs)


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def _check_numbers(obj: Any, where: str) -> None:
    """Every float of a config tree is finite, every seed and count a non-negative whole number."""
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            _check_numbers(getattr(obj, f.name), f"{where}.{f.name}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_numbers(v, f"{where}[{i}]")
    elif isinstance(obj, float) and not math.isfinite(obj):
        raise ConfigError(f"{where} must be a finite number, got {obj}")
    elif isinstance(obj, int) and not isinstance(obj, bool) and obj < 0 and where.rsplit(".", 1)[-1].split("[")[0] in (
            "seed", "seeds", "split_seed", "epochs", "batch_size", "batch_sizes", "num_uaps", "steps", "holdout",
            "num_datapoints", "num_views", "neighbours", "kmeans_iters", "adversarial_queries"):
        raise ConfigError(f"{where} must be >= 0, got {obj}")


NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"


def validate(cfg: PipelineConfig) -> PipelineConfig:
    """Check values that types alone cannot (names, ranges). Raises ConfigError."""
    import re

    from fpenc.models import resolve_architecture

    if cfg.name is not None and not re.fullmatch(NAME_PATTERN, str(cfg.name)):
        raise ConfigError(f"pipeline.name {cfg.name!r} must be one folder name (letters, digits, '.', '_', '-'; no "
                          "'/' or '..'): outputs go to <runs_dir>/<name>/")
    _check_numbers(cfg, "pipeline")
    if Path(cfg.runs_dir).exists() and not Path(cfg.runs_dir).is_dir():
        raise ConfigError(f"pipeline.runs_dir {cfg.runs_dir} is a file, not a folder; point it at a folder")
    for where, lr in [("pipeline.zoo.victim.lr", cfg.zoo.victim.lr), ("pipeline.uap.lr", cfg.uap.lr)]:
        if lr is not None and lr <= 0:
            raise ConfigError(f"{where} must be > 0, got {lr}")
    def check_arch(name: str, where: str) -> str:
        try:
            return resolve_architecture(name)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None

    def check_opt(name: str, where: str) -> str:
        if name.lower() not in OPTIMIZERS:
            raise ConfigError(f"{where}: unknown optimizer '{name}'; known: {', '.join(OPTIMIZERS)}")
        return name.lower()

    def check_options(arch: str, options: dict, where: str) -> None:
        from fpenc.models.registry import ARCHITECTURES

        known = ARCHITECTURES[arch].option_defaults()
        for key in options:
            if key not in known:
                raise _unknown(key, list(known) or ["(none: this architecture takes no options)"],
                               f"{where} (options of {arch})")

    z = cfg.zoo
    z.victim.architecture = check_arch(z.victim.architecture, "pipeline.zoo.victim.architecture")
    check_options(z.victim.architecture, z.victim.options, "pipeline.zoo.victim.options")
    z.victim.optimizer = check_opt(z.victim.optimizer, "pipeline.zoo.victim.optimizer")
    if not 0.0 <= cfg.data.homologous_overlap <= 1.0:
        raise ConfigError("pipeline.data.homologous_overlap must be in [0, 1]")
    if not 0.0 < z.extraction.pool_fraction <= 1.0:
        raise ConfigError("pipeline.zoo.extraction.pool_fraction must be in (0, 1]")
    from fpenc.api import parse_api

    parse_api(z.extraction.api)
    for i, g in enumerate(z.grids):
        where = f"pipeline.zoo.grids[{i}]"
        if g.role not in ROLES:
            raise ConfigError(f"{where}.role: unknown role '{g.role}'; known: {', '.join(ROLES)}")
        g.architectures = [check_arch(a, f"{where}.architectures") for a in g.architectures]
        g.optimizers = [check_opt(o, f"{where}.optimizers") for o in g.optimizers]
        for a in g.architectures:
            check_options(a, g.options, f"{where}.options")
        if g.data not in GRID_DATA:
            raise ConfigError(f"{where}.data: unknown training data '{g.data}'; known: {', '.join(GRID_DATA)}")
        if g.split not in GRID_SPLITS:
            raise ConfigError(f"{where}.split: unknown split '{g.split}'; known: {', '.join(GRID_SPLITS)}")
        if g.split == "reference" and g.role != "homologous":
            raise ConfigError(f"{where}: reference models (split: reference) must be independent: role homologous")
        if g.role == "piracy" and g.data not in ("default", "attacker"):
            raise ConfigError(f"{where}.data: piracy models are extracted on the attacker's data (default)")
        if g.lr is not None and not (math.isfinite(g.lr) and g.lr > 0):
            raise ConfigError(f"{where}.lr must be a finite number > 0, got {g.lr}")
        if not g.seeds or not g.batch_sizes or g.epochs < 1 or any(b < 1 for b in g.batch_sizes):
            raise ConfigError(f"{where}: seeds and batch_sizes must be non-empty, epochs and batch sizes >= 1")
    if z.victim.epochs < 1 or z.victim.batch_size < 1:
        raise ConfigError("pipeline.zoo.victim: epochs and batch_size must be >= 1")
    u = cfg.uap
    if u.method not in ("sgd", "deepfool"):
        raise ConfigError(f"pipeline.uap.method: unknown method '{u.method}'; known: sgd, deepfool")
    if u.norm not in ("linf", "l2"):
        raise ConfigError(f"pipeline.uap.norm: unknown norm '{u.norm}'; known: linf, l2")
    if u.eps <= 0 or u.num_uaps < 1 or u.steps < 1 or u.batch_size < 1 or u.holdout < 1:
        raise ConfigError("pipeline.uap: eps must be > 0 and num_uaps, steps, batch_size, holdout >= 1")
    k = cfg.key
    layers = ("features", "logits", "probs")
    if k.selection_layer not in layers or k.view_layer not in layers:
        raise ConfigError(f"pipeline.key: selection_layer and view_layer must be one of {', '.join(layers)}")
    if k.pool not in ("victim", "test"):
        raise ConfigError(f"pipeline.key.pool: unknown pool '{k.pool}'; known: victim, test")
    if k.selection not in ("kmeans", "errors", "idiosyncratic"):
        raise ConfigError(f"pipeline.key.selection: unknown selection '{k.selection}'; "
                          "known: kmeans, errors, idiosyncratic")
    if (k.selection == "idiosyncratic") != bool(k.reference):
        raise ConfigError("pipeline.key: selection 'idiosyncratic' needs reference (zoo ids of the encoder's training "
                          "homologous models), and reference is used by no other selection")
    if not 0.0 < k.reference_quorum <= 1.0:
        raise ConfigError(f"pipeline.key.reference_quorum must be in (0, 1] (the share of reference models that must "
                          f"disagree with the victim), got {k.reference_quorum}")
    if k.num_datapoints < 1 or k.num_views < 1 or k.neighbours < k.num_views:
        raise ConfigError("pipeline.key: need num_datapoints >= 1, num_views >= 1 and neighbours >= num_views")
    return cfg


def load_yaml(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (the shipped ones are in configs/)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save the config as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_pipeline_config(paths: list[str | Path], overrides: dict | None = None) -> PipelineConfig:
    """Read, stack and validate the ``pipeline`` sections of ``paths`` (later files win)."""
    if not paths:
        raise ConfigError("no config given: pass --config configs/fmnist_demo.yaml (see configs/)")
    merged: dict = {}
    for path in paths:
        data = load_yaml(path)
        for key in data:
            if key != "pipeline" and key not in LIGHTNING_SECTIONS:
                raise _unknown(key, ["pipeline", *LIGHTNING_SECTIONS], str(path))
        merged = _merge(merged, data.get("pipeline") or {})
    if overrides:
        merged = _merge(merged, overrides)
    cfg = from_dict(PipelineConfig, merged, "pipeline")
    if cfg.name is None:
        cfg.name = Path(paths[-1]).stem
    return validate(cfg)
