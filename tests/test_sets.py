"""The split policy (fpenc/zoo/sets.py): four disjoint sets decided at plan time, from the config."""

from __future__ import annotations

import pytest

from fpenc.config import load_pipeline_config
from fpenc.errors import ConfigError
from fpenc.zoo.sets import assign_sets, ids_in, key_reference_ids, reference_ids


def config(tmp_path, grids: str, extra: str = ""):
    path = tmp_path / "c.yaml"
    path.write_text(f"pipeline:\n  zoo:\n    victim: {{architecture: fmnist_a}}\n    grids:\n{grids}{extra}")
    return load_pipeline_config([path])


GRIDS = """\
      - {role: piracy, architectures: [fmnist_a, fmnist_c], optimizers: [adam, sgd], seeds: [0, 1, 2, 3]}
      - {role: homologous, architectures: [fmnist_a, fmnist_c], optimizers: [adam, sgd], seeds: [0, 1, 2, 3]}
      - {role: homologous, split: reference, architectures: [fmnist_b], seeds: [100, 101]}
"""


def test_auto_sets_alternate_optimizers_and_keep_reference_apart(tmp_path):
    sets = assign_sets(config(tmp_path, GRIDS))
    assert sets["victim"] == "victim"
    val = sorted(ids_in(sets, "val"))
    assert val == [f"{r}-fmnist_a-{o}" for r in ("homologous", "piracy") for o in ("adam-s3", "sgd-s2", "sgd-s3")]
    train = ids_in(sets, "train")
    assert len(train) == 10 and {i.split("-")[2] for i in train} == {"adam", "sgd"}  # both optimizers train
    assert {sets[i] for i in sets if "fmnist_c" in i} == {"test"}
    assert ids_in(sets, "reference") == ["homologous-fmnist_b-adam-s100", "homologous-fmnist_b-adam-s101"]
    assert reference_ids(config(tmp_path, GRIDS)) == ids_in(sets, "reference")
    # every planned model in exactly one set
    assert sorted(sets.values()).count("victim") == 1 and len(sets) == 1 + 32 + 2


def test_sets_policy_is_configurable(tmp_path):
    sets = assign_sets(config(tmp_path, GRIDS, "  sets: {train_architectures: [fmnist_c], train_models_per_role: 2}\n"))
    assert len(ids_in(sets, "train")) == 4 and {i.split("-")[1] for i in ids_in(sets, "train")} == {"fmnist_c"}
    assert {sets[i] for i in sets if "fmnist_a" in i} == {"test"}
    with pytest.raises(ConfigError, match="needs 8 to train on"):
        assign_sets(config(tmp_path, GRIDS, "  sets: {train_models_per_role: 8}\n"))
    with pytest.raises(ConfigError, match="name no model of the zoo"):
        assign_sets(config(tmp_path, GRIDS, "  sets: {train_architectures: [fmnist_e]}\n"))


def test_a_model_in_two_sets_is_refused(tmp_path):
    twice = GRIDS + "      - {role: homologous, split: test, architectures: [fmnist_b], seeds: [101, 102]}\n"
    with pytest.raises(ConfigError, match=r"homologous-fmnist_b-adam-s101 is in two sets: split 'reference'"):
        assign_sets(config(tmp_path, twice))


def test_explicit_sets_and_missing_ones(tmp_path):
    explicit = """\
      - {role: piracy, split: train, architectures: [fmnist_b], seeds: [0, 1]}
      - {role: homologous, split: train, architectures: [fmnist_b], seeds: [0, 1]}
      - {role: piracy, split: val, architectures: [fmnist_d], seeds: [0]}
      - {role: homologous, split: test, architectures: [fmnist_e], seeds: [0]}
"""
    sets = assign_sets(config(tmp_path, explicit))
    assert [sets[i] for i in ("piracy-fmnist_b-adam-s1", "piracy-fmnist_d-adam-s0", "homologous-fmnist_e-adam-s0")] == [
        "train",
        "val",
        "test",
    ]
    with pytest.raises(ConfigError, match="no test models"):
        assign_sets(config(tmp_path, explicit.replace("split: test", "split: val")))


def test_key_reference_defaults_to_training_homologous_models(tmp_path):
    cfg = config(tmp_path, GRIDS, "  key: {pool: test, selection: idiosyncratic}\n")
    ref = key_reference_ids(cfg)
    assert len(ref) == 5 and all(i.startswith("homologous-fmnist_a-") for i in ref) and ref == sorted(ref)
    ok = config(tmp_path, GRIDS, "  key: {selection: idiosyncratic, reference: [homologous-fmnist_a-adam-s0]}\n")
    assert key_reference_ids(ok) == ["homologous-fmnist_a-adam-s0"]
    for bad in ("homologous-fmnist_a-sgd-s3", "homologous-fmnist_b-adam-s100", "homologous-fmnist_c-adam-s0", "h-zzz"):
        cfg = config(tmp_path, GRIDS, f"  key: {{selection: idiosyncratic, reference: [{bad}]}}\n")
        with pytest.raises(ConfigError, match="not models the encoder trains on.*Use training models"):
            key_reference_ids(cfg)
