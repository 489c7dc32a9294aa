"""Tests for fpenc.data.splits: victim / attacker / homologous index splits."""

from __future__ import annotations

import numpy as np
import pytest

from fpenc.data.splits import SPLIT_NAMES, load_splits, make_splits, save_splits
from fpenc.errors import ConfigError, FpencError


@pytest.mark.parametrize("n_train", [2, 101, 1000])
def test_sizes_and_disjoint(n_train):
    s = make_splits(n_train, seed=0)
    assert set(s) == set(SPLIT_NAMES)
    victim, attacker, homologous = s["victim"], s["attacker"], s["homologous"]
    assert len(victim) == n_train // 2 and len(attacker) == n_train - n_train // 2
    assert len(homologous) == len(victim)
    assert not np.intersect1d(victim, attacker).size
    assert np.array_equal(np.union1d(victim, attacker), np.arange(n_train))
    for arr in s.values():
        assert arr.dtype == np.int64 and np.all(np.diff(arr) > 0)  # sorted, unique


@pytest.mark.parametrize("overlap", [0.0, 0.3, 0.5, 1.0])
def test_overlap_exact(overlap):
    s = make_splits(1000, seed=7, homologous_overlap=overlap)
    shared = np.intersect1d(s["homologous"], s["victim"]).size
    assert shared == round(overlap * 500)
    assert np.intersect1d(s["homologous"], s["attacker"]).size == 500 - shared


def test_deterministic_per_seed():
    a, b, c = make_splits(500, seed=1), make_splits(500, seed=1), make_splits(500, seed=2)
    assert all(np.array_equal(a[k], b[k]) for k in SPLIT_NAMES)
    assert not np.array_equal(a["victim"], c["victim"])
    assert not np.array_equal(a["homologous"], c["homologous"])


@pytest.mark.parametrize("overlap", [-0.1, 1.5])
def test_bad_overlap(overlap):
    with pytest.raises(ConfigError, match="homologous_overlap"):
        make_splits(100, seed=0, homologous_overlap=overlap)


def test_too_small():
    with pytest.raises(ConfigError):
        make_splits(1, seed=0)


def test_save_load_roundtrip(tmp_path):
    splits = make_splits(300, seed=4)
    meta = {"dataset": "fashion_mnist", "seed": 4, "homologous_overlap": 0.5}
    path = tmp_path / "sub" / "splits.npz"
    save_splits(path, splits, meta)
    assert [p.name for p in path.parent.iterdir()] == ["splits.npz"]  # no temp file left
    loaded, loaded_meta = load_splits(path)
    assert loaded_meta == meta
    assert set(loaded) == set(SPLIT_NAMES)
    assert all(np.array_equal(loaded[k], splits[k]) and loaded[k].dtype == np.int64 for k in SPLIT_NAMES)
    save_splits(path, make_splits(300, seed=5), {"seed": 5})  # overwrite in place
    assert load_splits(path)[1] == {"seed": 5}


def test_load_corrupt(tmp_path):
    path = tmp_path / "splits.npz"
    save_splits(path, make_splits(100, seed=0), {})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(FpencError, match=r"splits\.npz.*delete it"):
        load_splits(path)


def test_load_missing(tmp_path):
    with pytest.raises(FpencError, match="does not exist"):
        load_splits(tmp_path / "nope.npz")


def test_declared_victim_subset(tmp_path):
    from fpenc.data.splits import read_indices

    declared = np.array([7, 3, 11, 0, 19, 4])
    np.save(tmp_path / "mine.npy", declared)
    (tmp_path / "mine.txt").write_text("\n".join(map(str, declared)) + "\n")
    for name in ("mine.npy", "mine.txt"):
        assert read_indices(tmp_path / name, 20).tolist() == sorted(declared.tolist())
    s = make_splits(20, 0, 0.5, read_indices(tmp_path / "mine.npy", 20))
    assert s["victim"].tolist() == sorted(declared.tolist())
    assert sorted(s["victim"].tolist() + s["attacker"].tolist()) == list(range(20))  # the rest is the attacker's
    assert len(s["homologous"]) == 6 and len(np.intersect1d(s["homologous"], s["victim"])) == 3
    np.save(tmp_path / "bad.npy", np.array([1, 1, 2]))
    with pytest.raises(ConfigError, match="distinct and in \\[0, 20\\)"):
        read_indices(tmp_path / "bad.npy", 20)
    with pytest.raises(ConfigError, match="not found"):
        read_indices(tmp_path / "none.npy", 20)
    np.save(tmp_path / "all.npy", np.arange(20))
    with pytest.raises(ConfigError, match="leave some for the attacker"):
        read_indices(tmp_path / "all.npy", 20)


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
def test_overlap_split_for_one_grid(fraction):
    """`data: overlap:F`: a victim-sized subset sharing exactly round(F * |victim|) samples with the
    victim's half, the same for one F, another for another F."""
    from fpenc.data.splits import overlap_split, parse_overlap

    splits = make_splits(1000, seed=3)
    idx = overlap_split(splits, parse_overlap(f"overlap:{fraction}"), seed=3)
    assert len(idx) == len(splits["victim"]) == len(np.unique(idx))
    assert len(np.intersect1d(idx, splits["victim"])) == round(fraction * 500)
    assert set(idx) <= set(splits["victim"]) | set(splits["attacker"])
    assert np.array_equal(idx, overlap_split(splits, fraction, seed=3))
    if 0 < fraction < 1:
        assert not np.array_equal(idx, overlap_split(splits, fraction, seed=4))


def test_overlap_grid_data_is_checked(tmp_path):
    from fpenc.config import load_pipeline_config
    from fpenc.data.splits import parse_overlap
    from fpenc.zoo.plan import plan_zoo

    assert parse_overlap("victim") is None
    for bad in ("overlap:1.5", "overlap:x"):
        with pytest.raises(ConfigError, match="overlap must be a number in"):
            parse_overlap(bad)
    cfg = tmp_path / "c.yaml"
    grid = "{role: ROLE, architectures: [fmnist_a], seeds: [7], epochs: 1, data: 'overlap:0.25'}"
    cfg.write_text(f"pipeline:\n  zoo:\n    grids:\n      - {grid.replace('ROLE', 'homologous')}\n")
    specs = plan_zoo(load_pipeline_config([cfg]))
    spec = next(s for s in specs if s.role == "homologous")
    assert spec.id == "homologous-fmnist_a-adam-s7-overlap0p25data" and spec.split == "overlap:0.25"
    cfg.write_text(f"pipeline:\n  zoo:\n    grids:\n      - {grid.replace('ROLE', 'piracy')}\n")
    with pytest.raises(ConfigError, match="for independent models"):
        load_pipeline_config([cfg])


def test_zoo_trains_a_model_on_an_overlap_split(tmp_path, tiny_fmnist):
    """A grid with data: overlap:F trains to completion; its model's spec records the split."""
    from conftest import tiny_config, tiny_grid
    from fpenc.config import load_pipeline_config
    from fpenc.zoo.builder import build_zoo

    grids = [tiny_grid("homologous", "fmnist_c", more="data: 'overlap:0.25', options: {channels: [8, 8]}")]
    cfg = load_pipeline_config([tiny_config(tmp_path, tiny_fmnist, "ov", grids)])
    manifest = build_zoo(cfg, progress=False)
    (m,) = [m for m in manifest["models"] if m["role"] == "homologous"]
    assert m["id"] == "homologous-fmnist_c-adam-s0-overlap0p25data" and m["spec"]["split"] == "overlap:0.25"
    assert m["test_accuracy"] > 0.2
