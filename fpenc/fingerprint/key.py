"""Build and cache the fingerprint key of a victim: selected datapoints and their view sets.

``runs/<name>/key.pt``: ``datapoints [N]`` and ``views [V, N]`` (indices into the training set,
or into the test set when ``key.pool`` is "test"), ``view_images [V, N, C, H, W]`` uint8 (so the
key is self-contained), the config and the victim's hash it was built for.

``key.selection: errors`` draws the datapoints (and their views) only from pool images the
victim misclassifies: its idiosyncrasies, which a copy inherits and an independently trained
model mostly does not (``experiments/role_signal.py``; an idea of ours, not the paper's).
``idiosyncratic`` keeps, of those, the images on which the ``key.reference`` models (the
defender's own independently trained models; every one of them, or the share
``key.reference_quorum``) predict another class than the victim: errors
that are the victim's own rather than the data's (in the spirit of Lukas et al.'s conferrable
examples, without crafting anything). ``conferrable`` crafts Lukas et al.'s conferrable adversarial
examples of ``key.candidates`` random pool images with the training copies and the ``key.reference``
models (:mod:`fpenc.fingerprint.conferrable`); the key's images are the crafted ones.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace

import numpy as np
import torch

from fpenc.config import PipelineConfig
from fpenc.errors import FpencError
from fpenc.fingerprint.selection import kmeans_select, representations, sample_views
from fpenc.io import load_tensors, save_tensors

FORMAT = "fpenc-key/1"


def load_key(path) -> dict:
    return load_tensors(path, FORMAT, what="fingerprint key", remedy="delete it and rerun `fpenc fingerprint`")


def references_disagree(predicted: np.ndarray, references: list[np.ndarray], quorum: float = 1.0) -> np.ndarray:
    """Mask ``[M]``: at least ``ceil(quorum * R)`` of the R reference models' predictions (each ``[M]``)
    differ from the victim's ``predicted [M]``. ``quorum`` 1.0: every reference model; 0.8 of 5: any 4."""
    if not 0.0 < quorum <= 1.0:
        raise ValueError(f"quorum must be in (0, 1], got {quorum}")
    predicted = np.asarray(predicted)
    if not len(references):
        return np.ones(predicted.shape, dtype=bool)
    disagree = np.sum([np.asarray(ref) != predicted for ref in references], axis=0)
    return disagree >= math.ceil(quorum * len(references) - 1e-9)


def victim_errors(
    predicted: np.ndarray, labels: np.ndarray, references: list[np.ndarray] = (), quorum: float = 1.0
) -> np.ndarray:
    """Mask ``[M]``: the victim's prediction ``predicted [M]`` is wrong (``!= labels [M]``) and, with
    reference models, :func:`references_disagree` with it (none: every error): errors of the victim's own."""
    return (np.asarray(predicted) != np.asarray(labels)) & references_disagree(predicted, references, quorum)


def _reference_models(run_dir, ids: list[str], role: str = "homologous") -> list:
    from fpenc.rundir import RunDir
    from fpenc.zoo.manifest import entries_by_id

    run_dir = RunDir(run_dir)
    entries = entries_by_id(run_dir.load_manifest())
    missing = [i for i in ids if i not in entries]
    if missing:
        raise FpencError(
            f"key.reference names models that are not in the zoo: {', '.join(missing)}; "
            f"known: {', '.join(sorted(entries))}"
        )
    if any(entries[i]["role"] != role for i in ids):
        raise FpencError(
            f"the key's models must be {role} models, not " + ", ".join(i for i in ids if entries[i]["role"] != role)
        )
    return [run_dir.load_model(entries[i]) for i in ids]


def _conferrable_pool(run_dir, victim, surrogates, k, images, labels, pool_idx, seed: int):
    """The crafted images that pass (``[M', C, H, W]`` uint8), their true labels and pool indices."""
    from fpenc.fingerprint.conferrable import conferrable_examples

    pick = np.sort(np.random.default_rng(seed).permutation(len(pool_idx))[: k.candidates])
    crafted = conferrable_examples(
        victim,
        _reference_models(run_dir, surrogates, role="piracy"),
        _reference_models(run_dir, k.reference),
        images[torch.as_tensor(pick)],
        k.conferrable_eps,
        k.conferrable_steps,
    )
    passed = (
        crafted["victim_hit"]
        & (crafted["surrogate_share"] >= k.reference_quorum - 1e-9)
        & (crafted["reference_share"] <= 1 - k.reference_quorum + 1e-9)
    ).numpy()
    keep = torch.as_tensor(np.flatnonzero(passed))
    if len(keep) < max(k.num_datapoints, k.neighbours):
        raise FpencError(
            f"only {len(keep)} of {len(pick)} conferrable examples pass (victim, copies and references); fewer "
            f"than key.num_datapoints ({k.num_datapoints}) / key.neighbours ({k.neighbours}): raise "
            "key.candidates or key.conferrable_eps, or lower key.reference_quorum"
        )
    return crafted["images"][keep], labels[torch.as_tensor(pick)][keep], pool_idx[pick][keep.numpy()]


def build_key(cfg: PipelineConfig, log=print) -> dict:
    """Select datapoints and views on the victim's training split or the test set (cached)."""
    from fpenc.io import lock_run_dir

    lock_run_dir(cfg.run_dir)
    from fpenc.data.datasets import load_data
    from fpenc.data.splits import load_splits
    from fpenc.rundir import RunDir

    run_dir = RunDir(cfg.run_dir)
    path = run_dir.key
    ve = run_dir.victim_entry()
    k = cfg.key
    surrogates = []
    if k.selection in ("idiosyncratic", "conferrable"):  # resolved (default: the training homologous models)
        from fpenc.zoo.sets import key_reference_ids, key_surrogate_ids

        k = replace(k, reference=key_reference_ids(cfg))
        surrogates = key_surrogate_ids(cfg) if k.selection == "conferrable" else []
    meta = {"victim_sha256": ve["sha256"], "config": asdict(k) | {"surrogates": surrogates}, "seed": cfg.seed}
    if path.exists():
        key = load_key(path)
        if {k: key.get(k) for k in meta} == meta:
            log(f"[skip] fingerprint key in {path}")
            return key
    t0 = time.perf_counter()
    victim = run_dir.load_model(ve)
    arrays = load_data(cfg.data)
    if k.pool == "victim":
        splits, _ = load_splits(run_dir.splits)
        pool_idx = np.asarray(splits["victim"])
        images, labels = arrays.train_x[torch.as_tensor(pool_idx)], arrays.train_y[torch.as_tensor(pool_idx)]
    else:
        pool_idx = np.arange(len(arrays.test_y))
        images, labels = arrays.test_x, arrays.test_y
    if k.selection == "conferrable":
        log(
            "[warn] key.selection 'conferrable' is experimental: on the demo's zoo an independent model of an "
            "architecture that conferrable examples transfer to was judged derived (docs/results.md); keep "
            "the bundle for research, do not accuse with it"
        )
        images, labels, pool_idx = _conferrable_pool(run_dir, victim, surrogates, k, images, labels, pool_idx, cfg.seed)
    elif k.selection in ("errors", "idiosyncratic"):
        predicted = representations(victim, images, "probs").argmax(1)
        references = (
            []
            if k.selection == "errors"
            else [representations(m, images, "probs").argmax(1) for m in _reference_models(run_dir, k.reference)]
        )
        wrong = np.flatnonzero(victim_errors(predicted, labels.numpy(), references, k.reference_quorum))
        if len(wrong) < max(k.num_datapoints, k.neighbours):
            hint = "a lower key.reference_quorum, " if k.selection == "idiosyncratic" else ""
            hint += "key.pool: test (10,000 images), " if k.pool != "test" else ""
            raise FpencError(
                f"only {len(wrong)} images of the {k.pool} pool pass key.selection '{k.selection}', fewer "
                f"than key.num_datapoints ({k.num_datapoints}) / key.neighbours ({k.neighbours}); "
                f"lower them, or use {hint}or key.selection: kmeans"
            )
        pool_idx, images, labels = pool_idx[wrong], images[torch.as_tensor(wrong)], labels[torch.as_tensor(wrong)]
    sel_reps = representations(victim, images, k.selection_layer)
    chosen = kmeans_select(sel_reps, k.num_datapoints, seed=cfg.seed, niter=k.kmeans_iters)
    out_reps = sel_reps if k.view_layer == k.selection_layer else representations(victim, images, k.view_layer)
    views = sample_views(out_reps, chosen, k.num_views, k.neighbours, seed=cfg.seed)  # [V, N] into the pool
    seconds = time.perf_counter() - t0
    key = {
        **meta,
        "pool": k.pool,
        "datapoints": torch.as_tensor(pool_idx[chosen]),
        "views": torch.as_tensor(pool_idx[views]),
        "view_images": images[torch.as_tensor(views.reshape(-1))].reshape(*views.shape, *images.shape[1:]).clone(),
        "datapoint_labels": labels[torch.as_tensor(chosen)].clone(),
        "seconds": round(seconds, 3),
    }
    save_tensors(path, key, FORMAT)
    classes = len(np.unique(key["datapoint_labels"].numpy()))
    log(f"[done] key: {k.num_datapoints} datapoints over {classes} classes, {k.num_views} views, in {seconds:.2f}s")
    return load_key(path)
