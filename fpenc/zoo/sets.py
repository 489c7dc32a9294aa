"""The split policy: every zoo model's set, decided once from the config, at plan time.

Four disjoint sets (plus the victim), each with one use:

* ``train``: the models the encoder trains on (and, for ``key.selection: idiosyncratic`` or ``conferrable``, the
  independent models that choose the key);
* ``val``: checkpoint selection only;
* ``reference``: the verdict's reference population (calibration only);
* ``test``: the models the encoder and the verdict are evaluated on.

A grid's ``split`` puts its models in a set; ``split: auto`` leaves it to ``pipeline.sets``: within
``train_architectures`` the first ``train_models_per_role`` piracy and homologous models by
(seed, optimizer, architecture) train and the others validate (so with 2 optimizers x 3 seeds both
optimizers train and validate); models of other architectures are test models. A model that two
grids would place in different sets is refused.
"""

from __future__ import annotations

from fpenc.config import PipelineConfig
from fpenc.errors import ConfigError

SETS = ("train", "val", "reference", "test")
VICTIM = "victim"


def _grid_sets(cfg: PipelineConfig) -> dict[str, str]:
    """``{model id: the split its grid declares}`` (``auto`` included); a model declared twice
    with different splits is refused."""
    from fpenc.zoo.plan import grid_models

    declared: dict[str, tuple[str, int]] = {}
    for i, grid in enumerate(cfg.zoo.grids):
        for mid, *_ in grid_models(grid):
            if mid in declared and declared[mid][0] != grid.split:
                raise ConfigError(
                    f"model {mid} is in two sets: split '{declared[mid][0]}' (pipeline.zoo.grids"
                    f"[{declared[mid][1]}]) and '{grid.split}' (grids[{i}]); a model may train, "
                    "validate, calibrate or test, never two of these: change a seed or a split"
                )
            declared.setdefault(mid, (grid.split, i))
    return {mid: split for mid, (split, _) in declared.items()}


def assign_sets(cfg: PipelineConfig, complete: bool = True) -> dict[str, str]:
    """``{model id: set}`` for every model of :func:`fpenc.zoo.plan.plan_zoo` (the victim: ``"victim"``).

    ``complete=False`` (a zoo built for the stages alone, e.g. ``fpenc zoo``): sets as far as the
    zoo allows, without requiring a train, val and test set.

    Raises:
        ConfigError: a model in two sets; with ``complete``, also too few models to train and
        validate on, or no test model.
    """
    from fpenc.zoo.plan import plan_zoo

    specs = plan_zoo(cfg)
    declared = _grid_sets(cfg)
    out = {s.id: (VICTIM if s.role == "victim" else declared[s.id]) for s in specs}
    train_archs = cfg.sets.train_architectures or [cfg.zoo.victim.architecture]
    per_role = cfg.sets.train_models_per_role
    # copies made from weights, and copies of other models than the victim: test
    auto = [s for s in specs if out[s.id] == "auto" and s.attack is None and s.parent in (None, "victim")]
    known = sorted({s.architecture for s in auto})
    unknown = [a for a in train_archs if a not in known]
    if complete and unknown and not any(out[s.id] == "train" for s in specs):
        raise ConfigError(
            f"pipeline.sets.train_architectures {train_archs} name no model of the zoo's auto grids "
            f"({', '.join(known) or 'none'}): add grids of them, or mark grids split: train"
        )
    for role in ("piracy", "homologous"):
        pick = sorted(
            (s for s in auto if s.role == role and s.architecture in train_archs),
            key=lambda s: (s.seed, s.optimizer, s.architecture, s.id),
        )
        if complete and pick and len(pick) < per_role + 1:
            raise ConfigError(
                f"the training architectures {train_archs} have {len(pick)} {role} models; the encoder "
                f"needs {per_role} to train on and at least 1 more for validation: add seeds or optimizers "
                "to the zoo grid, or lower pipeline.sets.train_models_per_role"
            )
        out.update({s.id: ("train" if i < per_role else "val") for i, s in enumerate(pick)})
    out.update({mid: "test" for mid, s in out.items() if s == "auto"})
    for needed in ("train", "val", "test") if complete else ():
        if specs[1:] and not any(s == needed for s in out.values()):
            raise ConfigError(
                f"the zoo has no {needed} models: add grids (split: auto within pipeline.sets.train_architectures "
                f"trains and validates, other architectures test), or mark a grid split: {needed}"
            )
    return out


def ids_in(sets: dict[str, str], name: str) -> list[str]:
    """The ids of set ``name``, in plan order."""
    return [mid for mid, s in sets.items() if s == name]


def reference_ids(cfg: PipelineConfig) -> list[str]:
    """Ids of the verdict's reference models (the grids with ``split: reference``)."""
    return ids_in(_grid_sets(cfg), "reference")


def key_reference_ids(cfg: PipelineConfig, sets: dict[str, str] | None = None) -> list[str]:
    """The independent models that choose an idiosyncratic key: ``key.reference`` if set, else the
    homologous models of the training set. When the zoo has a training set, only its models are
    allowed (a key chosen where validation, reference or test models disagree with the victim biases
    their scores).

    Raises:
        ConfigError: a listed model that is not a training model, or no training model to default to.
    """
    if sets is None:
        try:
            sets = assign_sets(cfg)
        except ConfigError:
            sets = assign_sets(cfg, complete=False)  # a zoo for the stages alone: no encoder sets to protect
    if cfg.key.reference and not ids_in(sets, "train"):
        return list(cfg.key.reference)
    if cfg.key.reference:
        leaked = [i for i in cfg.key.reference if sets.get(i) != "train"]
        if leaked:
            raise ConfigError(
                f"pipeline.key.reference: {', '.join(leaked)} are not models the encoder trains on; "
                "choosing the key with validation, reference or test models biases the evaluation. "
                f"Use training models ({', '.join(ids_in(sets, 'train'))}), or leave it empty for the "
                "training homologous models"
            )
        return list(cfg.key.reference)
    from fpenc.zoo.plan import plan_zoo

    homologous = {s.id for s in plan_zoo(cfg) if s.role == "homologous"}
    found = sorted(mid for mid in ids_in(sets, "train") if mid in homologous)
    if not found:
        raise ConfigError(
            f"pipeline.key: selection '{cfg.key.selection}' needs independent models to choose the key with: the "
            "training set has no homologous models; list them in key.reference, or add homologous grids of "
            "pipeline.sets.train_architectures"
        )
    return found


def key_surrogate_ids(cfg: PipelineConfig, sets: dict[str, str] | None = None) -> list[str]:
    """The copies that craft a conferrable key (``key.selection: conferrable``): the piracy models of
    the training set, in plan order; a zoo without a training set (built for the stages alone): its
    copies extracted from the victim.

    Raises:
        ConfigError: the training set has no piracy model.
    """
    from fpenc.zoo.plan import plan_zoo

    sets = assign_sets(cfg, complete=False) if sets is None else sets
    specs = plan_zoo(cfg)
    train = ids_in(sets, "train")
    piracy = {s.id for s in specs if s.role == "piracy"}
    extracted = [s.id for s in specs if s.role == "piracy" and s.attack is None and s.parent in (None, "victim")]
    found = [mid for mid in train if mid in piracy] if train else extracted
    if not found:
        raise ConfigError(
            "pipeline.key: selection 'conferrable' needs copies of the victim to craft the key with: the "
            "training set has no piracy models; add piracy grids of pipeline.sets.train_architectures"
        )
    return found
