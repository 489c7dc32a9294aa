"""Seeded splits of a training set into victim / attacker / homologous subsets (paper §5.1).

The victim model trains on a random half of the training set and the attacker (who steals it)
on the other half; a homologous model trains on a subset that shares a fraction
``homologous_overlap`` of its samples with the victim's half.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from fpenc.errors import ConfigError, FpencError
from fpenc.io import atomic_path

SPLIT_NAMES = ("victim", "attacker", "homologous")
META_KEY = "__meta__"


def read_indices(path: str | os.PathLike, n_train: int) -> np.ndarray:
    """Training-set indices from a ``.npy`` integer array or a text file (one index per line),
    checked: in ``[0, n_train)``, no repeats, and leaving some images for the attacker.

    Raises:
        ConfigError: a missing or unreadable file, or indices outside those rules.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data.victim_indices: {path} not found (a .npy array or a text file of training indices)")
    try:
        idx = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, dtype=np.int64, ndmin=1)
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"data.victim_indices: cannot read {path} ({err}); save it with np.save or one index per line"
        ) from None
    idx = np.asarray(idx)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or len(idx) < 1:
        raise ConfigError(f"data.victim_indices: {path} must hold a 1-d array of integer indices")
    if idx.min() < 0 or idx.max() >= n_train or len(np.unique(idx)) != len(idx):
        raise ConfigError(f"data.victim_indices: indices must be distinct and in [0, {n_train}) (the training set)")
    if len(idx) >= n_train:
        raise ConfigError(
            "data.victim_indices: the victim's subset is the whole training set; leave some for the attacker"
        )
    return np.sort(idx.astype(np.int64))


def make_splits(
    n_train: int, seed: int, homologous_overlap: float = 0.5, victim: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Split indices ``0..n_train-1`` into the three :data:`SPLIT_NAMES` subsets.

    ``victim``: the indices the owner's model really trained on (:func:`read_indices`), else None.

    Returns:
        ``victim``: ``n_train // 2`` random indices (or the given ones); ``attacker``: the remaining indices;
        ``homologous``: ``len(victim)`` indices, ``round(homologous_overlap * len(victim))`` of
        them from victim and the rest from attacker. All sorted int64 ``[k]`` arrays.

    Raises:
        ConfigError: ``n_train < 2`` or ``homologous_overlap`` outside ``[0, 1]``.
    """
    if int(n_train) != n_train or n_train < 2:
        raise ConfigError(f"cannot split a training set of {n_train} samples: it needs at least 2")
    if not 0.0 <= float(homologous_overlap) <= 1.0:
        raise ConfigError(
            f"homologous_overlap={homologous_overlap} is outside [0, 1]: set it to a fraction such as 0.5"
        )
    rng = np.random.default_rng(seed)
    perm = rng.permutation(int(n_train))
    if victim is None:
        victim, attacker = perm[: n_train // 2], perm[n_train // 2 :]
    else:  # the owner's declared subset; the attacker's pool is everything else
        attacker = np.setdiff1d(perm, victim, assume_unique=True)
    homologous = _overlapping(victim, attacker, homologous_overlap, rng)
    return {name: np.sort(arr).astype(np.int64) for name, arr in zip(SPLIT_NAMES, (victim, attacker, homologous))}


def _overlapping(victim: np.ndarray, attacker: np.ndarray, overlap: float, rng: np.random.Generator) -> np.ndarray:
    """``len(victim)`` indices, ``round(overlap * min(len(victim), len(attacker)))`` of them drawn from
    ``victim`` (more if ``attacker`` is too small for the rest), the rest from ``attacker``."""
    n_shared = max(int(round(overlap * min(len(victim), len(attacker)))), len(victim) - len(attacker))
    return np.concatenate(
        [
            rng.choice(victim, size=n_shared, replace=False),
            rng.choice(attacker, size=len(victim) - n_shared, replace=False),
        ]
    )


OVERLAP = "overlap:"
"""A grid's ``data: overlap:F``: a homologous-like subset sharing the share ``F`` of its samples with
the victim's half (:func:`overlap_split`), whatever ``data.homologous_overlap`` says."""


def parse_overlap(name: str) -> float | None:
    """``F`` of a split name ``overlap:F`` (None for any other name).

    Raises:
        ConfigError: ``F`` not a number in [0, 1].
    """
    if not name.startswith(OVERLAP):
        return None
    try:
        fraction = float(name[len(OVERLAP) :])
    except ValueError:
        fraction = -1.0
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"data '{name}': the overlap must be a number in [0, 1], e.g. overlap:0.25")
    return fraction


def overlap_split(splits: dict[str, np.ndarray], fraction: float, seed: int) -> np.ndarray:
    """``len(victim)`` sorted indices, the share ``fraction`` drawn from ``splits["victim"]`` and the
    rest from ``splits["attacker"]``, as :func:`make_splits` draws the homologous split (paper App. C.2: homologous models of every overlap rate);
    seeded by ``seed`` and ``fraction``, so one overlap gives one subset."""
    rng = np.random.default_rng([int(seed), int(round(fraction * 1_000_000))])
    chosen = _overlapping(np.asarray(splits["victim"]), np.asarray(splits["attacker"]), fraction, rng)
    return np.sort(chosen).astype(np.int64)


def save_splits(path: str | os.PathLike, splits: dict[str, np.ndarray], meta: dict) -> None:
    """Write ``splits`` (name -> int64 indices) and JSON-able ``meta`` to an ``.npz`` atomically.

    The file is written to a temporary file in the same folder, fsynced, then renamed over ``path``
    (:func:`fpenc.io.atomic_path`).
    """
    path = Path(path)
    if META_KEY in splits:
        raise ConfigError(f"split name {META_KEY!r} is reserved: rename that split")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.asarray(idx, dtype=np.int64) for name, idx in splits.items()}
    arrays[META_KEY] = np.array(json.dumps(meta, sort_keys=True))
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load_splits(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Read a file written by :func:`save_splits`: ``(name -> int64 [k] indices, meta)``.

    Raises:
        FpencError: the file is missing, truncated or corrupt (names it; delete it to recompute).
    """
    path = Path(path)
    if not path.is_file():
        raise FpencError(f"splits file {path} does not exist: run the splits step to create it")
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz[META_KEY][()]))
            splits = {k: np.asarray(npz[k], dtype=np.int64) for k in npz.files if k != META_KEY}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise FpencError(
            f"splits file {path} is corrupt ({type(err).__name__}: {err}): delete it to recompute the splits"
        ) from err
    if not isinstance(meta, dict):
        raise FpencError(f"splits file {path} has invalid metadata: delete it to recompute the splits")
    return splits, meta
