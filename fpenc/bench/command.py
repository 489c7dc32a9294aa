"""``fpenc bench``: every method of :mod:`fpenc.baselines` on a run's sealed test models, calibrated
on its reference models, at query budgets; results as JSON and Markdown tables.

The run's zoo, UAP bank and key are built first when missing (cached). Only the run's test and
reference models are scored; the encoder's training models are the owner's design data (as they
are for fpenc's key: ``fpenc_ranked`` ranks its queries on them), its validation models never enter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fpenc.errors import ConfigError
from fpenc.executor import add_executor_flags, executor_options

if TYPE_CHECKING:
    import torch


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="every ownership test (fpenc, AKH, IPGuard, ...) on the run's test models at query budgets",
        description="Scores the sealed test models of a config's zoo with every method at each query "
        "budget, each method's verdict calibrated on the reference models (prediction t-test), and "
        "writes AUC, TPR at 1%%/5%% FPR, detection and false accusations at --alpha, per attack kind.",
    )
    p.add_argument("--config", "-c", action="append", required=True, help="config file(s), stacked in order")
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="default: every method but the dropped follows ones (those that need a bundle with --bundle)",
    )
    p.add_argument("--budgets", nargs="+", type=int, default=None, help="queries per verdict (default 20 .. 4000)")
    p.add_argument("--alpha", type=float, default=0.01, help="significance of every method's verdict (default 0.01)")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default: runs/<name>/bench.json)")
    p.add_argument("--plots", type=Path, default=None, metavar="DIR", help="also write the figures (PNG) here")
    p.add_argument(
        "--no-degenerate",
        action="store_true",
        help="leave out the degenerate negatives (constant, random-label, untrained, unnormalised models)",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the other methods of an existing --out file (same models and reference) and replace or add these",
    )
    p.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="fpenc's exported bundle of this victim (its encoder, key and UAPs), for the fpenc_encoder method",
    )
    p.add_argument("--no-progress", action="store_true")
    add_executor_flags(p)  # the zoo's models, when they are not built yet


def model_kind(entry: dict, victim_arch: str, overlap: float) -> str:
    """A zoo model's kind: its attack (derived models; ``other-victim-`` first for copies of another
    model than the victim; ``-pool<share>`` last for extractions that queried a share of the pool),
    or its kind of independence (with its training recipe, if any)."""
    spec = entry.get("spec") or {}
    arch = "same-arch" if entry["architecture"] == victim_arch else "other-arch"
    if entry.get("parent") is not None:
        if spec.get("attack"):
            from fpenc.config.attack_spec import composite_kind, parse_attacks

            kind = composite_kind(parse_attacks(spec["attack"]))
        else:
            ex = spec.get("extraction") or {}
            kind = f"extract-{ex.get('api', 'probs').replace(':', '')}-{arch}"
            if ex.get("pool_fraction", 1.0) < 1.0:  # the recovery axis: a share of the query pool
                kind += f"-pool{ex['pool_fraction']:g}"
        return kind if entry["role"] == "piracy" else f"other-victim-{kind}"
    recipe = "+".join(k for k, v in sorted((spec.get("training") or {}).items()) if v)
    if recipe:
        return f"independent-{recipe}-{arch}"
    data = {"victim": "same-data", "attacker": "disjoint-data", "homologous": f"overlap{overlap:g}"}
    return f"independent-{data.get(entry.get('split'), entry.get('split'))}-{arch}"


def paper_key_images(victim, arrays, pool: torch.Tensor, n: int, views: int, seed: int) -> torch.Tensor:
    """The paper's key (§4.2): ``n`` datapoints chosen by k-means on the victim's penultimate features
    over ``pool`` (its training data, uint8 ``[M, C, H, W]``), each with ``views`` of its nearest
    neighbours in the victim's probability space; uint8 ``[views, n, C, H, W]``."""
    from fpenc.fingerprint.selection import kmeans_select, representations, sample_views

    chosen = kmeans_select(representations(victim, pool, "features"), n, seed=seed)
    idx = sample_views(representations(victim, pool, "probs"), chosen, views, views, seed=seed)
    return pool[idx.reshape(-1)].reshape(*idx.shape, *pool.shape[1:])


DEGENERATE = {
    "constant_class": "degenerate-constant",
    "random_label": "degenerate-random-label",
    "untrained": "degenerate-untrained",
    "independent_without_normalisation": "degenerate-no-normalisation",
}
"""Name prefix in :func:`fpenc.zoo.negatives.broken_models` -> the benchmark's kind."""


def degenerate_models(victim, independent, input_shape, num_classes: int) -> list:
    """Negatives that are not working models of the task (:mod:`fpenc.zoo.negatives`): constant
    models (3 classes), random-label models and untrained networks of the victim's architecture
    (3 seeds each), and an independent model fed inputs without its normalisation. No method may
    accuse them. (The victim with permuted classes is left out: it *is* derived, yet not a model
    of the task.)"""
    from fpenc.bench.runner import BenchModel
    from fpenc.zoo.negatives import broken_models

    nets = broken_models(victim, independent, input_shape, num_classes, classes=(0, 3, 7))
    out = []
    for name, net in nets.items():
        kind = next((k for prefix, k in DEGENERATE.items() if name.startswith(prefix)), None)
        if kind is not None:
            out.append(BenchModel(f"degenerate-{name.replace('_', '-')}", net, False, kind))
    return out


def load_bench(cfg, degenerate: bool = True, bundle: Path | None = None) -> tuple:
    """``(defender, test models, reference models)`` of a built run; ``degenerate``: the test
    models include :func:`degenerate_models` (built here, deterministic); ``bundle``: fpenc's
    exported bundle of the run's victim, for methods that need its encoder.

    Raises:
        ConfigError: ``bundle`` was exported for another victim."""
    import torch

    from fpenc.baselines import Defender
    from fpenc.bench.runner import BenchModel
    from fpenc.data.datasets import load_data
    from fpenc.data.splits import load_splits
    from fpenc.fingerprint.key import load_key
    from fpenc.rundir import RunDir
    from fpenc.uap.bank import load_bank
    from fpenc.zoo.sets import assign_sets

    rd = RunDir(cfg.run_dir)
    manifest = rd.load_manifest()
    sets = assign_sets(cfg)
    arrays = load_data(cfg.data)
    victim_entry = rd.victim_entry()
    victim = rd.load_model(victim_entry)
    splits, _ = load_splits(rd.splits)
    pool = arrays.train_x[torch.as_tensor(splits["victim"])]
    defender = Defender(
        victim=victim,
        images=arrays.test_x,
        labels=arrays.test_y,
        num_classes=arrays.num_classes,
        key_images=load_key(rd.key)["view_images"],
        uaps=load_bank(rd.uaps)["uaps"],
        seed=cfg.seed,
        kmeans_images=paper_key_images(victim, arrays, pool, cfg.key.num_datapoints, cfg.key.num_views, cfg.seed),
    )
    models, reference, copies, independents = [], [], [], []
    for entry in manifest["models"]:
        s = sets.get(entry["id"])
        if s == "train":  # the owner's design data (as for fpenc's key), never scored
            (copies if entry["role"] == "piracy" else independents).append(rd.load_model(entry))
        if s not in ("test", "reference"):
            continue  # the encoder's training and validation models are never scored
        m = BenchModel(
            entry["id"],
            rd.load_model(entry),
            entry["role"] == "piracy",
            model_kind(entry, victim_entry["architecture"], cfg.data.homologous_overlap),
        )
        (models if s == "test" else reference).append(m)
    if degenerate:
        same_arch = [m for m in models if not m.positive and m.kind.endswith("-same-arch")]
        independent = (same_arch or [m for m in models if not m.positive] or reference)[0].net
        models += degenerate_models(victim, independent, tuple(arrays.test_x.shape[1:]), arrays.num_classes)
    defender.train_copies, defender.train_independents = tuple(copies), tuple(independents)
    if bundle is not None:
        from fpenc.bundle import load_bundle

        defender.bundle = load_bundle(bundle)
        if defender.bundle.meta.get("victim_sha256") != victim_entry["sha256"]:
            raise ConfigError(f"--bundle {bundle} was exported for another victim than this run's; export this run's")
    return defender, models, reference


def merge_results(old: dict, new: dict, path: Path) -> dict:
    """``new``'s methods added to (or replacing) those of ``old``, results of the same benchmark.

    Raises:
        ConfigError: ``old`` scored other models, another reference, alpha or budgets.
    """
    same = ("models", "reference_models", "alpha", "budgets")
    differ = [k for k in same if old.get(k) != new.get(k)]
    if differ:
        raise ConfigError(
            f"--merge: {path} holds another benchmark ({', '.join(differ)} differ); write to another --out"
        )
    methods = {**old["methods"], **new["methods"]}
    return {**new, "methods": methods, "command": f"{old.get('command', 'fpenc bench')} && {new['command']}"}


def cmd_bench(args) -> int:
    from fpenc.baselines import METHODS
    from fpenc.bench.runner import DEFAULT_BUDGETS, check_methods, format_attack_table, format_table, run_bench
    from fpenc.config import load_pipeline_config
    from fpenc.io import atomic_path
    from fpenc.pipeline import run_stages
    from fpenc.rundir import RunDir

    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha must be in (0, 1), got {args.alpha}")
    methods = check_methods(
        args.methods or [n for n, m in METHODS.items() if m.in_default and (args.bundle or not m.needs_bundle)]
    )
    cfg = load_pipeline_config(args.config)
    run_stages(cfg, until="key", progress=not args.no_progress, executor=executor_options(args))
    defender, models, reference = load_bench(cfg, degenerate=not args.no_degenerate, bundle=args.bundle)
    results = run_bench(
        defender,
        models,
        reference,
        methods,
        args.budgets or DEFAULT_BUDGETS,
        alpha=args.alpha,
        progress=not args.no_progress,
    )
    results["command"] = "fpenc bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "fpenc bench"
    results["seed"] = cfg.seed
    out = args.out or RunDir(cfg.run_dir).bench
    if args.merge and out.is_file():
        results = merge_results(json.loads(out.read_text()), results, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(results, indent=1) + "\n")
    if args.plots:
        from fpenc.bench.plots import plot_auc_vs_queries, plot_score_vs_accuracy

        name = out.stem
        accuracy = {m["id"]: m["test_accuracy"] for m in RunDir(cfg.run_dir).load_manifest()["models"]}
        plot_auc_vs_queries(results, args.plots / f"{name}_auc_vs_queries.png")
        budget = 200 if 200 in results["budgets"] else max(results["budgets"])
        for method in [m for m in ("fpenc", "akh_labels") if m in results["methods"]]:
            plot_score_vs_accuracy(results, accuracy, method, budget, args.plots / f"{name}_{method}_vs_accuracy.png")
    print(format_table(results))
    print()
    print(format_attack_table(results, max(results["budgets"])))
    print(f"\nresults: {out}")
    return 0
