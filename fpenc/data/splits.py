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


def make_splits(n_train: int, seed: int, homologous_overlap: float = 0.5) -> dict[str, np.ndarray]:
    """Split indices ``0..n_train-1`` into the three :data:`SPLIT_NAMES` subsets.

    Returns:
        ``victim``: ``n_train // 2`` random indices; ``attacker``: the remaining indices;
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
    victim, attacker = perm[: n_train // 2], perm[n_train // 2 :]
    n_shared = int(round(homologous_overlap * len(victim)))
    homologous = np.concatenate(
        [
            rng.choice(victim, size=n_shared, replace=False),
            rng.choice(attacker, size=len(victim) - n_shared, replace=False),
        ]
    )
    return {name: np.sort(arr).astype(np.int64) for name, arr in zip(SPLIT_NAMES, (victim, attacker, homologous))}


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
