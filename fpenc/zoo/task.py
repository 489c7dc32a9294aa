"""One zoo model, trained from its spec: the unit of work the zoo hands to an executor
(:mod:`fpenc.executor`) — in this process, or as a Ray task on another core or machine.

A task reads the dataset itself (once per worker process), trains, and *returns* the weights and
the test-set probabilities; it writes nothing. The driver (:class:`fpenc.zoo.builder.ZooBuilder`)
alone writes weights files and the manifest, so a killed task or driver never leaves a half-written
file or a manifest entry without its weights.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import numpy as np
import torch

from fpenc.config import PipelineConfig
from fpenc.errors import FpencError
from fpenc.zoo.plan import ModelSpec

_DATA: dict = {}  # repr(DataConfig) -> ImageArrays, per worker process


def load_arrays(cfg: PipelineConfig):
    """The dataset of ``cfg.data``, read once per process."""
    from fpenc.data.datasets import load_data

    key = repr(cfg.data)
    if key not in _DATA:
        _DATA.clear()  # one dataset per worker at a time
        _DATA[key] = load_data(cfg.data)
    return _DATA[key]


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of uint8 images ``[N, C, H, W]`` in [0, 1] units."""
    x = images.float().div_(255.0)
    return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()


def attacker_pool(splits: dict, fraction: float, split_seed: int) -> dict:
    """``splits`` with the attacker's half cut to the share of it an extraction queries (seeded)."""
    if fraction >= 1.0:
        return splits
    rng = np.random.default_rng(split_seed + 1)
    pool = splits["attacker"]
    return dict(splits, attacker=np.sort(rng.permutation(pool)[: max(1, int(fraction * len(pool)))]))


def owner_victim(cfg: PipelineConfig, spec: ModelSpec, arrays) -> torch.nn.Module:
    """The owner's model from ``zoo.victim.weights`` (a plain state dict of its class)."""
    from fpenc.errors import ConfigError
    from fpenc.io import sha256_file
    from fpenc.models import build_model
    from fpenc.models.user_model import load_user_state_dict

    path = cfg.zoo.victim.weights
    if sha256_file(path) != spec.weights_sha256:
        raise ConfigError(f"{path} changed while the zoo was planned; rerun the command")
    net = build_model(spec.architecture, arrays.num_classes, tuple(arrays.input_shape), **spec.options)
    load_user_state_dict(net, path)
    print(f"[load] victim: the owner's {spec.architecture} from {path} (not trained)", file=sys.stderr)
    return net


def train_net(
    cfg: PipelineConfig, spec: ModelSpec, arrays, splits: dict, parent_net, progress: bool
) -> tuple[torch.nn.Module, dict]:
    """``(net, info)`` of one model; ``parent_net``: the model a copy is made from (the victim, or
    the ``parent`` of a homologous grid of copies)."""
    from fpenc.data.images import train_loader
    from fpenc.models import build_model
    from fpenc.zoo.classifier import ClassifierModule
    from fpenc.zoo.extraction import ExtractionModule
    from fpenc.zoo.training import fit_module

    torch.manual_seed(spec.seed)
    pool_fraction = (spec.extraction or {}).get("pool_fraction", 1.0)
    if spec.weights_sha256 is not None:  # the owner's own victim: loaded, never trained
        return owner_victim(cfg, spec, arrays), {"train_seconds": 0.0}
    if spec.attack:  # a copy made from the parent's weights (fine-tuned, pruned, quantized, ...)
        from fpenc.config.attack_spec import parse_attacks
        from fpenc.zoo.attacks import apply_attack

        steps, net, info = parse_attacks(spec.attack), parent_net, {"train_seconds": 0.0}
        if steps[0].kind == "extract":  # a composite on an extracted copy: extract it first
            net, info = train_net(cfg, replace(spec, attack=None), arrays, splits, parent_net, progress)
            steps, splits = steps[1:], attacker_pool(splits, pool_fraction, cfg.data.split_seed)
        reads = any(a.reads_data for a in steps)
        loader = train_loader(arrays, splits, spec.split, spec.batch_size, spec.seed) if reads else None
        start = time.perf_counter()
        for attack in steps:
            net = apply_attack(net, attack, loader, spec.optimizer, spec.lr, spec.epochs)
        return net.cpu().eval(), info | {"train_seconds": info["train_seconds"] + round(time.perf_counter() - start, 2)}
    if spec.extraction is not None:
        splits = attacker_pool(splits, pool_fraction, cfg.data.split_seed)
    from fpenc.data.splits import overlap_split, parse_overlap
    from fpenc.models.user_model import is_class_path

    if (fraction := parse_overlap(spec.split)) is not None:  # data: overlap:F
        splits = {**splits, spec.split: overlap_split(splits, fraction, cfg.data.split_seed)}
    split_images = arrays.train_x[torch.as_tensor(splits[spec.split])]
    # a user's class normalises inside itself; fpenc's architectures take the split's statistics
    mean, std = (None, None) if is_class_path(spec.architecture) else channel_stats(split_images)
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
    seconds = fit_module(module, loader, spec.epochs, spec.id, progress)
    info = {"train_seconds": round(seconds, 2)}
    if spec.extraction is not None:
        info["queries"] = module.queries
    return net.cpu().eval(), info


def train_task(cfg: PipelineConfig, spec: ModelSpec, splits: dict, parent_net, progress: bool) -> dict:
    """Train one model: ``{"state": state dict, "arch": its build config, "probs": [n_test, classes]
    test-set probabilities, "info": {"train_seconds", "queries"?}}`` (what the driver records)."""
    from fpenc.models import arch_config
    from fpenc.models.quantized import QUANTIZED, plain_state_dict
    from fpenc.zoo.evaluate import predict_probs
    from fpenc.zoo.training import quiet_lightning

    quiet_lightning()
    arrays = load_arrays(cfg)
    splits = {k: np.array(v) for k, v in splits.items()}  # writable copies (Ray's shared arrays are read-only)
    net, info = train_net(cfg, spec, arrays, splits, parent_net, progress)
    state = plain_state_dict(net) if getattr(net, "config", {}).get(QUANTIZED) else net.state_dict()
    probs = predict_probs(net, arrays.test_x)
    if not torch.isfinite(probs).all():  # a diverged model is no model: never record it
        raise FpencError(
            f"zoo model {spec.id}: its training diverged (NaN or inf outputs after {spec.epochs} epoch(s), "
            f"{spec.optimizer} at lr {spec.lr:g}); give its grid a smaller lr (grid key lr:) or another "
            "optimizer, and run the command again: the models already built are kept"
        )
    return {"state": state, "arch": arch_config(net), "probs": probs, "info": info}
