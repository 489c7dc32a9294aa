"""Build a zoo from a pipeline config: plan the models, train what is missing, write the manifest.

Resumable at model granularity: each model's weights are written atomically, then its manifest
entry (also atomically). A rerun skips every model whose entry, spec and weights hash match, so
a run killed at any point (even SIGKILL) finishes without retraining finished models and never
leaves a truncated file behind. A piracy model is rebuilt when its victim changed.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from fpenc.config import PipelineConfig, to_dict
from fpenc.errors import WeightsFileError
from fpenc.io import load_weights, save_weights
from fpenc.rundir import SPLITS, RunDir
from fpenc.zoo.manifest import FORMAT, entries_by_id, format_table, load_manifest, save_manifest
from fpenc.zoo.plan import SPEC_DEFAULTS, ModelSpec, model_id, plan_zoo  # noqa: F401 (re-exported)
from fpenc.zoo.sets import assign_sets, reference_ids  # noqa: F401 (re-exported)
from fpenc.zoo.training import fit_module, quiet_lightning


def _channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of uint8 images ``[N, C, H, W]`` in [0, 1] units."""
    x = images.float().div_(255.0)
    return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()


class ZooBuilder:
    """Trains the models of :func:`plan_zoo` that are not complete yet and records them."""

    def __init__(self, cfg: PipelineConfig, progress: bool = True, log=print):
        self.cfg = cfg
        self.run_dir = RunDir(cfg.run_dir)
        self.manifest_path = self.run_dir.manifest
        self.progress = progress
        self.log = log

    # -- data ----------------------------------------------------------------------------------
    def _load_data(self):
        from fpenc.data.datasets import load_data
        from fpenc.data.splits import load_splits, make_splits, read_indices, save_splits
        from fpenc.io import sha256_file

        d = self.cfg.data
        arrays = load_data(d)
        meta = {
            "dataset": d.dataset,
            "n_train": int(len(arrays.train_y)),
            "seed": d.split_seed,
            "homologous_overlap": d.homologous_overlap,
        }
        victim = None
        if d.victim_indices is not None:  # the owner's declared subset (by content: a changed file re-splits)
            victim = read_indices(d.victim_indices, meta["n_train"])
            meta["victim_indices_sha256"] = sha256_file(d.victim_indices)
        path = self.run_dir.splits
        splits = None
        if path.exists():
            splits, saved_meta = load_splits(path)
            if saved_meta != meta:
                self.log(f"splits in {path} were made for {saved_meta}; recomputing for {meta}")
                splits = None
        if splits is None:
            splits = make_splits(meta["n_train"], d.split_seed, d.homologous_overlap, victim)
            save_splits(path, splits, meta)
        return arrays, splits

    def _attacker_pool(self, splits: dict, fraction: float) -> dict:
        """``splits`` with the attacker's half cut to the share of it an extraction queries (seeded)."""
        if fraction >= 1.0:
            return splits
        rng = np.random.default_rng(self.cfg.data.split_seed + 1)
        pool = splits["attacker"]
        return dict(splits, attacker=np.sort(rng.permutation(pool)[: max(1, int(fraction * len(pool)))]))

    # -- one model -----------------------------------------------------------------------------
    def _train(self, spec: ModelSpec, arrays, splits, parent_net) -> tuple[torch.nn.Module, dict]:
        """``(net, info)`` of one model; ``parent_net``: the model a copy is made from (the victim, or
        the ``parent`` of a homologous grid of copies)."""
        from fpenc.data.images import train_loader
        from fpenc.models import build_model
        from fpenc.zoo.classifier import ClassifierModule
        from fpenc.zoo.extraction import ExtractionModule

        torch.manual_seed(spec.seed)
        if spec.weights_sha256 is not None:  # the owner's own victim: loaded, never trained
            return self._owner_victim(spec, arrays), {"train_seconds": 0.0}
        if spec.attack:  # a copy made from the parent's weights (fine-tuned, pruned, quantized, ...)
            from fpenc.config.attack_spec import parse_attacks
            from fpenc.zoo.attacks import apply_attack

            steps, net, info = parse_attacks(spec.attack), parent_net, {"train_seconds": 0.0}
            if steps[0].kind == "extract":  # a composite on an extracted copy: extract it first
                net, info = self._train(replace(spec, attack=None), arrays, splits, parent_net)
                steps, splits = steps[1:], self._attacker_pool(splits, spec.extraction.get("pool_fraction", 1.0))
            reads = any(a.reads_data for a in steps)
            loader = train_loader(arrays, splits, spec.split, spec.batch_size, spec.seed) if reads else None
            start = time.perf_counter()
            for attack in steps:
                net = apply_attack(net, attack, loader, spec.optimizer, spec.lr, spec.epochs)
            return net.cpu().eval(), info | {
                "train_seconds": info["train_seconds"] + round(time.perf_counter() - start, 2)
            }
        if spec.extraction is not None:
            splits = self._attacker_pool(splits, spec.extraction.get("pool_fraction", 1.0))
        from fpenc.models.user_model import is_class_path

        split_images = arrays.train_x[torch.as_tensor(splits[spec.split])]
        # a user's class normalises inside itself; fpenc's architectures take the split's statistics
        mean, std = (None, None) if is_class_path(spec.architecture) else _channel_stats(split_images)
        net = build_model(
            spec.architecture,
            num_classes=arrays.num_classes,
            input_shape=tuple(arrays.input_shape),
            mean=mean,
            std=std,
            **spec.options,
        )
        loader = train_loader(arrays, splits, spec.split, spec.batch_size, spec.seed)
        if spec.extraction is not None:
            ex = spec.extraction
            module = ExtractionModule(
                net,
                parent_net,
                api=ex.get("api", "probs"),
                optimizer=spec.optimizer,
                lr=spec.lr,
                adversarial_queries=ex.get("adversarial_queries", 0),
                adversarial_eps=ex.get("adversarial_eps", 0.1),
            )
        else:
            from fpenc.config.recipe_spec import Recipe

            module = ClassifierModule(net, optimizer=spec.optimizer, lr=spec.lr, recipe=Recipe.from_dict(spec.training))
        seconds = fit_module(module, loader, spec.epochs, spec.id, self.progress)
        info = {"train_seconds": round(seconds, 2)}
        if spec.extraction is not None:
            info["queries"] = module.queries
        return net.cpu().eval(), info

    def _owner_victim(self, spec: ModelSpec, arrays) -> torch.nn.Module:
        """The owner's model from ``zoo.victim.weights`` (a plain state dict of its class)."""
        from fpenc.errors import ConfigError
        from fpenc.io import sha256_file
        from fpenc.models import build_model
        from fpenc.models.user_model import load_user_state_dict

        path = self.cfg.zoo.victim.weights
        if sha256_file(path) != spec.weights_sha256:
            raise ConfigError(f"{path} changed while the zoo was planned; rerun the command")
        net = build_model(spec.architecture, arrays.num_classes, tuple(arrays.input_shape), **spec.options)
        load_user_state_dict(net, path)
        self.log(f"[load] victim: the owner's {spec.architecture} from {path} (not trained)")
        return net

    def _is_complete(self, entry: dict | None, spec: ModelSpec, parent_sha: str | None) -> bool:
        if not entry or {**SPEC_DEFAULTS, **entry.get("spec", {})} != asdict(spec):  # (older specs: fewer fields)
            return False
        try:
            load_weights(self.run_dir.weights(entry), expected_sha256=entry.get("sha256"))
        except WeightsFileError:
            return False
        return spec.parent is None or entry.get("parent_sha256") == parent_sha

    # -- the zoo -------------------------------------------------------------------------------
    def build(self) -> dict:
        from fpenc.zoo.evaluate import accuracy, agreement, predict_probs

        quiet_lightning()
        specs = plan_zoo(self.cfg)
        sets = assign_sets(self.cfg, complete=False)  # the split policy, decided before anything trains
        for stale in self.run_dir.path.rglob(".*.tmp"):  # left by a run killed mid-write
            stale.unlink()
        arrays, splits = self._load_data()
        try:
            old = entries_by_id(load_manifest(self.manifest_path))
        except WeightsFileError as err:
            self.log(f"warning: {err}; starting a new manifest")
            old = {}
        manifest = {
            "format": FORMAT,
            "name": self.cfg.name,
            "dataset": arrays.name,
            "data_source": arrays.source,
            "input_shape": list(arrays.input_shape),
            "num_classes": arrays.num_classes,
            "splits": SPLITS,
            "config": to_dict(self.cfg),
            "models": [],
        }
        victim_probs, victim_acc = None, None
        built: dict[str, dict] = {}  # id -> entry of every model so far (parents of later copies)
        parents: dict[str, torch.nn.Module] = {}  # id -> loaded net of a parent (the victim at least)

        def parent_of(spec: ModelSpec) -> tuple[torch.nn.Module | None, str | None]:
            if spec.parent is None:
                return None, None
            if spec.parent not in parents:
                parents[spec.parent] = self.run_dir.load_model(built[spec.parent])
            return parents[spec.parent], built[spec.parent]["sha256"]

        bar = tqdm(specs, desc="zoo", unit="model", disable=not self.progress, dynamic_ncols=True)
        for spec in bar:
            entry = old.get(spec.id)
            parent_net, parent_sha = parent_of(spec)
            if self._is_complete(entry, spec, parent_sha):
                self.log(f"[skip] {spec.id}: complete (test acc {entry['test_accuracy']:.4f})")
                net = self.run_dir.load_model(entry) if spec.role == "victim" else None
            else:
                bar.set_postfix_str(spec.id)
                net, info = self._train(spec, arrays, splits, parent_net)
                weights_rel = self.run_dir.model_weights(spec.id)
                sha = save_weights(
                    self.run_dir / weights_rel, state_of(net), _arch_config(net), model_id=spec.id, role=spec.role
                )
                probs = predict_probs(net, arrays.test_x)
                acc = accuracy(probs, arrays.test_y)
                entry = {
                    "id": spec.id,
                    "role": spec.role,
                    "architecture": spec.architecture,
                    "optimizer": spec.optimizer,
                    "seed": spec.seed,
                    "batch_size": spec.batch_size,
                    "epochs": spec.epochs,
                    "split": spec.split,
                    "parent": spec.parent,
                    "test_accuracy": round(acc, 4),
                    "agreement": None if victim_probs is None else round(agreement(probs, victim_probs), 4),
                    "recovery_rate": round(acc / victim_acc, 4) if spec.role == "piracy" else None,
                    "queries": info.get("queries"),
                    "train_seconds": info["train_seconds"],
                    "weights": weights_rel,
                    "sha256": sha,
                    "parent_sha256": parent_sha,
                    "spec": asdict(spec),
                }
                if spec.role == "victim":
                    entry["agreement"] = 1.0
                tqdm.write(f"[done] {spec.id}: test acc {acc:.4f} in {info['train_seconds']:.1f}s", file=sys.stderr)
                if acc < 1.5 / arrays.num_classes:
                    tqdm.write(
                        f"warning: {spec.id} did not learn (test acc {acc:.4f}, chance "
                        f"{1 / arrays.num_classes:.2f}); try another lr or optimizer for it",
                        file=sys.stderr,
                    )
            if spec.role == "victim":
                parents["victim"] = net
                victim_probs = predict_probs(net, arrays.test_x)
                victim_acc = accuracy(victim_probs, arrays.test_y)
            entry = {**entry, "set": sets[spec.id]}  # not part of the spec: a changed policy retrains nothing
            built[spec.id] = entry
            manifest["models"] = [m for m in manifest["models"] if m["id"] != spec.id] + [entry]
            save_manifest(self.manifest_path, manifest)  # after every model: resumable at any point
        bar.close()
        return manifest


def state_of(net: torch.nn.Module) -> dict:
    """What a zoo weights file stores of ``net``: its state dict, as plain tensors for a real INT8 model."""
    from fpenc.models.quantized import QUANTIZED, plain_state_dict

    return plain_state_dict(net) if getattr(net, "config", {}).get(QUANTIZED) else net.state_dict()


def _arch_config(net: torch.nn.Module) -> dict:
    from fpenc.models import arch_config

    return arch_config(net)


def build_zoo(cfg: PipelineConfig, progress: bool = True) -> dict:
    """Build (or finish) the zoo of ``cfg`` and return its manifest."""
    from fpenc.io import lock_run_dir

    lock_run_dir(cfg.run_dir)
    manifest = ZooBuilder(cfg, progress=progress).build()
    return manifest


__all__ = ["ModelSpec", "plan_zoo", "build_zoo", "ZooBuilder", "format_table"]
