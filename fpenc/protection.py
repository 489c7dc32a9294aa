"""Protect your own model in one step: the owner's classifier in, a verification bundle out.

``fpenc protect --model mine.pt --class-path mypkg.nets.MyNet`` (or :func:`protect` from Python)
stacks a small overlay on a base config (by default the shipped ``fmnist_demo``): the victim is the
owner's class with her weights (``zoo.victim: {class_path, init_args, weights}``, never trained),
every zoo model of the base victim's architecture is of her class instead (copies made from her
weights, the encoder's models, the reference models on her data), and then it runs the pipeline: zoo -> UAPs -> key -> fingerprints -> encoder (``fit``), report and
bundle (``test --ckpt_path best``). Every stage resumes where it stopped when run again.

The overlay is written to the run's folder (``runs/<name>/protect.yaml``), so the same run can be
continued or re-tested with the ordinary commands: ``fpenc test -c <base> -c runs/<name>/protect.yaml
--ckpt_path best``.
"""

from __future__ import annotations

import json
from pathlib import Path

from fpenc.errors import ConfigError, WeightsFileError

DEFAULT_BASE = "fmnist_demo"


def overlay(
    base: list[str],
    *,
    class_path: str,
    weights: str | Path,
    init_args: dict | None = None,
    name: str,
    dataset: str | None = None,
    data_root: str | None = None,
) -> dict:
    """The ``pipeline`` overlay that puts the owner's model in place of the base configs' victim.

    Every zoo grid of the victim's architecture becomes a grid of the owner's class (its
    ``init_args`` as the options): the copies made from the victim's weights, and — what keeps the
    verdict honest — the independent models of the victim's own architecture that train the encoder,
    choose the key and calibrate the verdict, so that an independent model of her class is judged
    against models of her class. ``sets.train_architectures`` and ``key.reference`` follow."""
    from fpenc.config import load_pipeline_data
    from fpenc.config.schema import GridConfig, TrainConfig
    from fpenc.models import canonical_arch

    data = load_pipeline_data(base)
    victim_arch = canonical_arch(
        (data.get("zoo", {}).get("victim") or {}).get("architecture", TrainConfig.architecture)
    )

    def swap(archs: list[str]) -> list[str]:
        return [class_path if canonical_arch(a) == victim_arch else a for a in archs]

    grids = []
    for grid in data.get("zoo", {}).get("grids", []):
        archs = grid.get("architectures", GridConfig().architectures)
        if swap(archs) == list(archs):
            continue
        if not grid.get("name"):
            raise ConfigError(
                f"a grid of the base config trains the victim's architecture ({victim_arch}) but has no name, so "
                "protect cannot point it at your class: give it a name"
            )
        if len(archs) > 1 and grid.get("options"):
            raise ConfigError(
                f"grid {grid['name']} mixes the victim's architecture with others and sets options: split it in two"
            )
        entry = {"name": grid["name"], "architectures": swap(archs)}
        if len(archs) == 1:
            entry["options"] = dict(init_args or {})
        grids.append(entry)
    pipeline_extra: dict = {}
    train_archs = (data.get("sets") or {}).get("train_architectures")
    if train_archs:
        pipeline_extra["sets"] = {"train_architectures": swap(train_archs)}
    reference = (data.get("key") or {}).get("reference")
    if reference:  # ids of the base's models of the victim's architecture name the class now
        pipeline_extra["key"] = {"reference": [r.replace(f"-{victim_arch}-", f"-{class_path}-") for r in reference]}
    pipeline: dict = {
        "name": name,
        "zoo": {
            "victim": {
                "class_path": class_path,
                "init_args": dict(init_args or {}),
                "weights": str(Path(weights).resolve()),
            },
        },
    }
    if grids:
        pipeline["zoo"]["grids"] = grids
    pipeline.update(pipeline_extra)
    if dataset is not None or data_root is not None:
        root = None if data_root is None else str(Path(data_root).resolve())
        pipeline["data"] = {k: v for k, v in (("dataset", dataset), ("root", root)) if v is not None}
    return {"pipeline": pipeline}


def write_overlay(base: list[str], runs_dir: str | Path | None = None, **kwargs) -> Path:
    """:func:`overlay` written (atomically) to ``<runs_dir>/<name>/protect.yaml``; returns its path."""
    import yaml

    from fpenc.config import load_pipeline_data
    from fpenc.io import atomic_path
    from fpenc.rundir import RunDir

    data = overlay(base, **kwargs)
    runs = runs_dir or load_pipeline_data(base).get("runs_dir") or "runs"
    if runs_dir is not None:
        data["pipeline"]["runs_dir"] = str(runs_dir)
    path = RunDir(Path(runs) / kwargs["name"]).protect_config
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def describe_plan(configs: list[str]) -> str:
    """What the pipeline will train for ``configs`` (the zoo's models not built yet) and roughly how
    long that takes on this machine (:mod:`fpenc.zoo.estimate`)."""
    from fpenc.config import load_pipeline_config
    from fpenc.data.datasets import load_data
    from fpenc.rundir import RunDir
    from fpenc.zoo.estimate import plan_seconds
    from fpenc.zoo.manifest import entries_by_id, load_manifest
    from fpenc.zoo.plan import plan_zoo

    cfg = load_pipeline_config(configs)
    specs = plan_zoo(cfg)
    try:
        built = set(entries_by_id(load_manifest(RunDir(cfg.run_dir).manifest)))
    except (
        WeightsFileError,
        OSError,
    ):  # an unreadable manifest (a missing one reads as empty): the zoo stage reports it
        built = set()
    todo = [s for s in specs if s.id not in built and s.weights_sha256 is None]
    epochs = sum(s.epochs for s in todo)
    head = (
        f"fpenc protect: {cfg.name}: the victim is {cfg.zoo.victim.architecture} from {cfg.zoo.victim.weights} "
        "(loaded, never trained); "
    )
    if not todo:  # nothing to estimate: the dataset is not read here (the stages read it)
        return head + f"all {len(specs) - 1} zoo models are built; next the UAPs, the key and the encoder"
    d = cfg.data
    arrays = load_data(d)
    seconds = plan_seconds(todo, len(arrays.train_y), arrays.num_classes, tuple(arrays.input_shape))
    return head + (
        f"{len(todo)} of {len(specs) - 1} zoo models still to train ({epochs} epochs in all) on {d.dataset}: "
        f"roughly {max(1, round(seconds / 60))} min of training on this machine ({torch_threads()} threads), "
        "then the UAPs, the key and the encoder; progress bars show the time left"
    )


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def run_protect(configs: list[str], extra_args: list[str] = ()) -> Path:
    """Run ``fit`` then ``test --ckpt_path best`` on ``configs``; returns the bundle's path. When the
    run's folder holds an encoder checkpoint and the zoo it was trained on is the one the config
    plans (:func:`zoo_unchanged`: the same victim weights, the same models), ``fit`` goes on from its
    last epoch (a finished fit ends at once) instead of training the encoder again."""
    from fpenc.config import load_pipeline_config
    from fpenc.lightning_cli import run
    from fpenc.rundir import RunDir

    flags = [a for c in configs for a in ("--config", str(c))]
    cfg = load_pipeline_config(configs)
    run_dir = RunDir(cfg.run_dir)
    again = run_dir.checkpoint("last").is_file() and "--ckpt_path" not in extra_args and zoo_unchanged(cfg)
    run(["fit", *flags, *extra_args, *(["--ckpt_path", "last"] if again else [])])
    run(["test", *flags, *extra_args, "--ckpt_path", "best"])
    report = run_dir.report_json
    bundle = json.loads(Path(report).read_text()).get("bundle")
    if not bundle:
        raise ConfigError(f"the test stage wrote no bundle (see {report}); is model.export_dir set to null?")
    return Path(bundle)


def protect(
    model=None,
    *,
    init_args: dict | None = None,
    class_path: str | None = None,
    weights: str | Path | None = None,
    config: str | list[str] = DEFAULT_BASE,
    name: str | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
    runs_dir: str | Path | None = None,
    trainer_args: list[str] = (),
    log=print,
):
    """Protect the owner's model; returns its :class:`fpenc.bundle.Bundle`.

    Args:
        model: the trained ``nn.Module`` (images ``[B, C, H, W]`` in [0, 1] -> logits), whose class is
            importable (``type(model).__module__``); its weights are saved to the run's folder. Or give
            ``class_path`` and ``weights`` (a state_dict file) instead.
        init_args: the keyword arguments that rebuild ``model``'s class.
        config: the base config(s), a shipped name or paths (default ``fmnist_demo``).
        name: the run's name (``runs/<name>/``, the bundle ``<name>.fpenc.safetensors``); default:
            the class's name in lower case.
        dataset, data_root: the task's dataset (default: the base config's).
        trainer_args: more LightningCLI flags for ``fit`` and ``test`` (e.g. ``["--trainer.max_epochs=50"]``).

    Raises:
        ConfigError: neither a model nor class_path + weights, an unimportable class, weights that do
            not fit it.
    """
    from fpenc.bundle import load_bundle

    base = [config] if isinstance(config, (str, Path)) else list(config)
    if model is not None:
        cls = type(model)
        class_path = class_path or f"{cls.__module__}.{cls.__qualname__}"
    if class_path is None or (model is None and weights is None):
        raise ConfigError("protect needs the model (or class_path and weights: a state_dict file of that class)")
    name = name or class_path.rsplit(".", 1)[-1].lower()
    kwargs = dict(class_path=class_path, init_args=init_args, name=name, dataset=dataset, data_root=data_root)
    if model is not None:  # her live model: its state dict goes to the run's folder first
        import torch

        from fpenc.config import load_pipeline_data
        from fpenc.io import atomic_path
        from fpenc.rundir import RunDir

        runs = runs_dir or load_pipeline_data(base).get("runs_dir") or "runs"
        weights = RunDir(Path(runs) / name).owner_weights
        weights.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if not weights.is_file() or not _same_state(weights, state):
            with atomic_path(weights) as tmp:
                torch.save(state, tmp)
    configs = [*base, str(write_overlay(base, runs_dir=runs_dir, weights=weights, **kwargs))]
    log(describe_plan(configs))
    return load_bundle(run_protect(configs, list(trainer_args)))


def zoo_unchanged(cfg) -> bool:
    """Whether every model ``cfg`` plans is recorded in its run's manifest with the same spec (the
    owner's weights by content among them): the zoo stage will rebuild nothing."""
    from fpenc.rundir import RunDir
    from fpenc.zoo.manifest import entries_by_id, load_manifest
    from fpenc.zoo.plan import plan_zoo, recorded_as

    try:
        built = entries_by_id(load_manifest(RunDir(cfg.run_dir).manifest))
    except (
        WeightsFileError,
        OSError,
    ):  # an unreadable manifest (a missing one reads as empty): the zoo stage reports it
        return False
    return all(recorded_as(built.get(s.id), s) for s in plan_zoo(cfg))


def _same_state(path: Path, state: dict) -> bool:
    import torch

    old = torch.load(path, map_location="cpu", weights_only=True)
    return old.keys() == state.keys() and all(torch.equal(old[k], state[k]) for k in state)
