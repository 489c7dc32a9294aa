"""The zoo's plan: which models a pipeline config asks for (:func:`plan_zoo`), each as a
:class:`ModelSpec` (everything that determines its weights). Which set each model belongs to
(train / val / reference / test) is :mod:`fpenc.zoo.sets`."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

from fpenc.config import PipelineConfig


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


def model_id(role: str, architecture: str, optimizer: str, seed: int, data: str = "default") -> str:
    """A zoo model's id, e.g. ``homologous-fmnist_a-adam-s3`` (``-victimdata`` etc. for non-default data)."""
    return f"{role}-{architecture}-{optimizer}-s{seed}" + ("" if data == "default" else f"-{data}data")


def plan_zoo(cfg: PipelineConfig) -> list[ModelSpec]:
    """The victim first, then every grid's architectures x optimizers x seeds.

    Each model's batch size is drawn, seeded by its id, from its grid's ``batch_sizes``
    (Table 1: "attributes without numbers are randomly selected during each training process").
    """
    from fpenc.zoo.optim import DEFAULT_LR

    def lr_of(opt: str, lr: float | None) -> float:  # resolved, so a changed default rebuilds
        return DEFAULT_LR[opt] if lr is None else lr

    v = cfg.zoo.victim
    specs = [
        ModelSpec(
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
    ]
    seen = {"victim"}
    for grid in cfg.zoo.grids:
        for arch in grid.architectures:
            for opt in grid.optimizers:
                for seed in grid.seeds:
                    mid = model_id(grid.role, arch, opt, seed, grid.data)
                    if mid in seen:
                        continue
                    seen.add(mid)
                    bs = random.Random(mid).choice(grid.batch_sizes)
                    piracy = grid.role == "piracy"
                    specs.append(
                        ModelSpec(
                            mid,
                            grid.role,
                            arch,
                            opt,
                            seed,
                            bs,
                            grid.epochs,
                            lr_of(opt, grid.lr),
                            split=("attacker" if piracy else "homologous") if grid.data == "default" else grid.data,
                            parent="victim" if piracy else None,
                            extraction=asdict(cfg.zoo.extraction) if piracy else None,
                            options=dict(grid.options),
                        )
                    )
    return specs
