"""Checks of a pipeline config that types alone cannot make (names, ranges, known choices)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fpenc.config.attack_spec import parse_attacks
from fpenc.config.parse import unknown_key
from fpenc.config.recipe_spec import Recipe
from fpenc.config.schema import GRID_DATA, GRID_SPLITS, OPTIMIZERS, ROLES, PipelineConfig
from fpenc.data.splits import parse_overlap
from fpenc.errors import ConfigError


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
    elif (
        isinstance(obj, int)
        and not isinstance(obj, bool)
        and obj < 0
        and where.rsplit(".", 1)[-1].split("[")[0]
        in (
            "seed",
            "seeds",
            "split_seed",
            "epochs",
            "batch_size",
            "batch_sizes",
            "num_uaps",
            "steps",
            "holdout",
            "num_datapoints",
            "num_views",
            "neighbours",
            "kmeans_iters",
            "adversarial_queries",
        )
    ):
        raise ConfigError(f"{where} must be >= 0, got {obj}")


NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"


def validate(cfg: PipelineConfig) -> PipelineConfig:
    """Check values that types alone cannot (names, ranges). Raises ConfigError."""
    import re

    from fpenc.models import resolve_architecture

    if cfg.name is not None and not re.fullmatch(NAME_PATTERN, str(cfg.name)):
        raise ConfigError(
            f"pipeline.name {cfg.name!r} must be one folder name (letters, digits, '.', '_', '-'; no "
            "'/' or '..'): outputs go to <runs_dir>/<name>/"
        )
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
        from fpenc.models.user_model import is_class_path

        if is_class_path(arch):  # a user's class: the options are its constructor's keyword arguments
            return
        known = ARCHITECTURES[arch].option_defaults()
        for key in options:
            if key not in known:
                raise unknown_key(
                    key, list(known) or ["(none: this architecture takes no options)"], f"{where} (options of {arch})"
                )

    z = cfg.zoo
    if z.victim.class_path is not None:  # the owner's own class: class_path / init_args name architecture / options
        z.victim.architecture, z.victim.options = z.victim.class_path, dict(z.victim.init_args or {})
    elif z.victim.init_args:
        raise ConfigError("pipeline.zoo.victim.init_args needs class_path (the class they are passed to)")
    z.victim.architecture = check_arch(z.victim.architecture, "pipeline.zoo.victim.architecture")
    if z.victim.weights is not None:
        from fpenc.models.user_model import is_class_path

        if not is_class_path(z.victim.architecture):
            raise ConfigError(
                "pipeline.zoo.victim.weights: give the class of your model too (class_path: mypkg.nets.MyNet, "
                "init_args: {...}): a state_dict alone does not say which network it belongs to"
            )
        if not Path(z.victim.weights).is_file():
            raise ConfigError(
                f"pipeline.zoo.victim.weights: {z.victim.weights} not found (relative paths start at the folder "
                "of the config file that sets them)"
            )
    check_options(z.victim.architecture, z.victim.options, "pipeline.zoo.victim.options")
    z.victim.optimizer = check_opt(z.victim.optimizer, "pipeline.zoo.victim.optimizer")
    if not 0.0 <= cfg.data.homologous_overlap <= 1.0:
        raise ConfigError("pipeline.data.homologous_overlap must be in [0, 1]")
    if not 0.0 < z.extraction.pool_fraction <= 1.0:
        raise ConfigError("pipeline.zoo.extraction.pool_fraction must be in (0, 1]")
    from fpenc.api import parse_api

    parse_api(z.extraction.api)
    names = [g.name for g in z.grids if g.name]
    if len(names) != len(set(names)):
        raise ConfigError(f"pipeline.zoo.grids: grid names must be unique, got {names}")
    z.victim.options = z.victim.options or {}
    for i, g in enumerate(z.grids):
        where = f"pipeline.zoo.grids[{i}]" + (f" ({g.name})" if g.name else "")
        g.options = g.options or {}
        if g.role not in ROLES:
            raise ConfigError(f"{where}.role: unknown role '{g.role}'; known: {', '.join(ROLES)}")
        g.architectures = [check_arch(a, f"{where}.architectures") for a in g.architectures]
        g.optimizers = [check_opt(o, f"{where}.optimizers") for o in g.optimizers]
        for a in g.architectures:
            check_options(a, g.options, f"{where}.options")
        if g.data not in GRID_DATA and parse_overlap(g.data) is None:
            raise ConfigError(
                f"{where}.data: unknown training data '{g.data}'; known: {', '.join(GRID_DATA)}, overlap:F (F in [0, 1])"
            )
        if parse_overlap(g.data) is not None and g.role != "homologous":
            raise ConfigError(f"{where}.data: '{g.data}' is for independent models (role: homologous)")
        if g.split not in GRID_SPLITS:
            raise ConfigError(f"{where}.split: unknown split '{g.split}'; known: {', '.join(GRID_SPLITS)}")
        if g.split == "reference" and g.role != "homologous":
            raise ConfigError(f"{where}: reference models (split: reference) must be independent: role homologous")
        attacks = [parse_attacks(a) for a in g.attacks]
        if not attacks:
            raise ConfigError(f"{where}.attacks must name at least one attack (extract is the default)")
        if g.role != "piracy" and (g.attacks != ["extract"] or g.extraction) and g.parent is None:
            raise ConfigError(
                f"{where}: attacks and extraction are for piracy grids, or for copies of another model "
                "(role homologous with parent: <zoo model id>); plain independent models have none"
            )
        if g.parent is not None and g.role != "homologous":
            raise ConfigError(
                f"{where}.parent: copies of the victim are piracy grids without parent; parent names another "
                "model whose copies are independent of ours (role: homologous)"
            )
        if g.training:
            Recipe.from_dict(g.training, f"{where}.training")
            if g.role == "piracy" or g.parent is not None:
                raise ConfigError(f"{where}.training: a training recipe is for independent models (role homologous)")
        # (a copy of another parent keeps that parent's architecture: checked when the zoo is planned)
        weight_attacks = any(steps[0].kind != "extract" for steps in attacks)
        if g.parent is None and weight_attacks and g.architectures != [z.victim.architecture]:
            raise ConfigError(
                f"{where}: attacks on the victim's weights ({', '.join(g.attacks)}) keep its architecture: "
                f"set architectures: [{z.victim.architecture}]"
            )
        if g.extraction:
            from fpenc.config.parse import from_dict

            ex = from_dict(type(z.extraction), {**asdict(z.extraction), **g.extraction}, f"{where}.extraction")
            parse_api(ex.api)
            if not 0.0 < ex.pool_fraction <= 1.0:
                raise ConfigError(f"{where}.extraction.pool_fraction must be in (0, 1]")
        if g.role == "piracy" and g.data not in ("default", "attacker"):
            if g.data != "victim" or any(steps[0].kind == "extract" for steps in attacks):
                raise ConfigError(
                    f"{where}.data: piracy models are extracted on the attacker's data (default); only copies "
                    "made from the victim's weights may train on the victim's own data (the owner's own copies)"
                )
        if g.lr is not None and not (math.isfinite(g.lr) and g.lr > 0):
            raise ConfigError(f"{where}.lr must be a finite number > 0, got {g.lr}")
        if not g.batch_sizes or g.epochs < 1 or any(b < 1 for b in g.batch_sizes):  # seeds: [] turns a grid off
            raise ConfigError(f"{where}: batch_sizes must be non-empty, epochs and batch sizes >= 1")
    sets = cfg.sets
    if sets.train_architectures is not None:
        sets.train_architectures = [
            check_arch(a, "pipeline.sets.train_architectures") for a in sets.train_architectures
        ]
    if sets.train_models_per_role < 1:
        raise ConfigError("pipeline.sets.train_models_per_role must be >= 1")
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
    if k.selection not in ("kmeans", "errors", "idiosyncratic", "conferrable"):
        raise ConfigError(
            f"pipeline.key.selection: unknown selection '{k.selection}'; known: kmeans, errors, idiosyncratic, "
            "conferrable"
        )
    if k.reference and k.selection not in ("idiosyncratic", "conferrable"):
        raise ConfigError(
            "pipeline.key: reference is used by no other selection than 'idiosyncratic' and 'conferrable'; remove it"
        )
    if not 0.0 < k.conferrable_eps <= 1.0 or k.conferrable_steps < 1 or k.candidates < 1:
        raise ConfigError(
            "pipeline.key: need 0 < conferrable_eps <= 1 (images in [0, 1]), conferrable_steps >= 1 and candidates >= 1"
        )
    if not 0.0 < k.reference_quorum <= 1.0:
        raise ConfigError(
            f"pipeline.key.reference_quorum must be in (0, 1] (the share of reference models that must "
            f"disagree with the victim), got {k.reference_quorum}"
        )
    if k.num_datapoints < 1 or k.num_views < 1 or k.neighbours < k.num_views:
        raise ConfigError("pipeline.key: need num_datapoints >= 1, num_views >= 1 and neighbours >= num_views")
    return cfg
