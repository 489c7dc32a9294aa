"""The zoo's plan: which models a pipeline config asks for (:func:`plan_zoo`), each as a
:class:`ModelSpec` (everything that determines its weights). Which set each model belongs to
(train / val / reference / test) is :mod:`fpenc.zoo.sets`."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

from fpenc.config import PipelineConfig
from fpenc.errors import ConfigError


@dataclass
class ModelSpec:
    """Everything that determines one model's weights."""

    id: str
    role: str  # victim | piracy | homologous
    architecture: str
    optimizer: str
    seed: int
    batch_size: int
    epochs: int
    lr: float | None
    split: str  # victim | attacker | homologous
    parent: str | None = None
    extraction: dict | None = None
    options: dict = field(default_factory=dict)  # architecture options (build_model keywords)
    attack: str | None = None  # piracy: the attack (fpenc.zoo.attacks), composites too; None: plain extraction
    training: dict = field(default_factory=dict)  # independent models: the recipe (fpenc.config.recipe_spec)
    weights_sha256: str | None = None  # the victim: the owner's own weights file (never trained), by content


SPEC_DEFAULTS = {"options": {}, "attack": None, "training": {}, "weights_sha256": None}
"""Fields added to :class:`ModelSpec` after the first manifests: their values in older entries."""


def recorded_as(entry: dict | None, spec: ModelSpec) -> bool:
    """Whether a manifest ``entry`` records a model made from ``spec`` (older entries: fewer fields)."""
    return bool(entry) and {**SPEC_DEFAULTS, **entry.get("spec", {})} == asdict(spec)


def model_id(role: str, architecture: str, optimizer: str, seed: int, data: str = "default") -> str:
    """A zoo model's id, e.g. ``homologous-fmnist_a-adam-s3`` (``-victimdata`` etc. for non-default data)."""
    return f"{role}-{architecture}-{optimizer}-s{seed}" + ("" if data == "default" else f"-{_slug(data)}data")


def _slug(value) -> str:
    """A config value in a model id: ``0.5`` -> ``0p5``, ``topk:3`` -> ``topk3``."""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return "".join(c for c in text if c.isalnum() or c in "_.").replace(".", "p")


def grid_models(grid) -> list[tuple[str, str, str, int, str | None]]:
    """``(id, architecture, optimizer, seed, attack)`` of every model of a zoo grid, in order.

    Ids: :func:`model_id`, then ``-<attack>`` for attacks on the victim's weights (``-prune0p5``, with
    ``-lr<lr>`` when the grid sets the learning rate of a training attack), ``-<key><value>`` for
    each of the grid's extraction changes (``-apilabel``) and training-recipe options
    (``-label_smoothing0p1``, ``-augment``), and ``-of-<parent>`` for copies of another model."""
    from fpenc.config.attack_spec import composite_slug, parse_attacks

    extra = "".join(f"-{k}{_slug(v)}" for k, v in sorted(grid.extraction.items()))
    extra += "".join(f"-{k}" if v is True else f"-{k}{_slug(v)}" for k, v in sorted(grid.training.items()) if v)
    out = []
    for attack in grid.attacks:
        steps = parse_attacks(attack)
        plain = steps == parse_attacks("extract")
        suffix = ("" if plain else f"-{composite_slug(steps)}") + extra
        if any(a.trains for a in steps) and grid.lr is not None:
            suffix += f"-lr{_slug(float(grid.lr))}"
        if grid.parent is not None:
            suffix += f"-of-{grid.parent}"
        for arch in grid.architectures:
            for opt in grid.optimizers:
                for seed in grid.seeds:
                    mid = model_id(grid.role, arch, opt, seed, grid.data) + suffix
                    out.append((mid, arch, opt, seed, None if plain else attack))
    return out


def plan_zoo(cfg: PipelineConfig) -> list[ModelSpec]:
    """The victim first, then every grid's architectures x optimizers x seeds.

    Each model's batch size is drawn, seeded by its id, from its grid's ``batch_sizes``
    (Table 1: "attributes without numbers are randomly selected during each training process").
    """
    from fpenc.io import sha256_file
    from fpenc.zoo.optim import DEFAULT_LR

    def lr_of(opt: str, lr: float | None) -> float:  # resolved, so a changed default rebuilds
        return DEFAULT_LR[opt] if lr is None else lr

    v = cfg.zoo.victim
    if v.weights is None:
        victim = ModelSpec(
            "victim",
            "victim",
            v.architecture,
            v.optimizer,
            cfg.seed,
            v.batch_size,
            v.epochs,
            lr_of(v.optimizer, v.lr),
            "victim",
            options=dict(v.options),
        )
    else:  # the owner's weights, loaded as they are: no training setting applies (changing one changes nothing)
        victim = ModelSpec(
            "victim", "victim", v.architecture, "none", 0, 0, 0, None, "victim", options=dict(v.options),
            weights_sha256=sha256_file(v.weights),
        )  # fmt: skip
    specs = [victim]
    seen = {"victim": specs[0]}
    for grid in cfg.zoo.grids:
        parent = seen.get(grid.parent or "victim")
        if parent is None:
            raise ConfigError(
                f"pipeline.zoo.grids ({grid.name or grid.role}): parent '{grid.parent}' is no model of an earlier "
                f"grid; name one of: {', '.join(seen)}"
            )
        for mid, arch, opt, seed, attack in grid_models(grid):
            if mid in seen:
                continue
            if attack is not None and not attack.startswith("extract") and arch != parent.architecture:
                raise ConfigError(
                    f"{mid}: attacks on {parent.id}'s weights keep its architecture: set architectures: "
                    f"[{parent.architecture}]"
                )
            bs = random.Random(mid).choice(grid.batch_sizes)
            piracy = grid.role == "piracy"
            copies = piracy or grid.parent is not None
            extracts = copies and (attack is None or attack.startswith("extract"))
            gentle = attack is not None and not extracts  # fine-tuning the victim's weights: a tenth of the rate
            lr = grid.lr if grid.lr is not None or not gentle else lr_of(opt, None) / 10
            seen[mid] = ModelSpec(
                mid,
                grid.role,
                arch,
                opt,
                seed,
                bs,
                grid.epochs,
                lr_of(opt, lr),
                split=("attacker" if piracy else "homologous") if grid.data == "default" else grid.data,
                parent=parent.id if copies else None,
                extraction={**asdict(cfg.zoo.extraction), **grid.extraction} if extracts else None,
                options=dict(grid.options),
                attack=attack,
                training=dict(grid.training),
            )
            specs.append(seen[mid])
    return specs
