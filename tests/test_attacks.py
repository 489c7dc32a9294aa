"""Attacks from the victim's weights (fpenc/zoo/attacks.py) and the zoo grids that make them."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_config, tiny_grid
from fpenc.config.attack_spec import parse_attack
from fpenc.errors import ConfigError
from fpenc.zoo.attacks import apply_attack


def small_victim():
    from fpenc.models import build_model

    torch.manual_seed(0)
    return build_model("fmnist_a", num_classes=10, input_shape=(1, 28, 28), channels=[4, 8, 8, 8]).eval()


def loader(n=64):
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    return DataLoader(
        TensorDataset(torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)), batch_size=32
    )


def test_parse_attack_specs_and_errors():
    assert parse_attack("finetune:ftal").mode == "FTAL" and parse_attack("finetune:FTAL").slug == "finetuneFTAL"
    assert parse_attack("prune:0.5").slug == "prune0p5" and parse_attack("int8").slug == "int8"
    for bad, msg in [
        ("prune", "needs a number"),
        ("prune:1.5", r"in \(0, 1\)"),
        ("finetune:XX", "FTLL, FTAL, RTLL, RTAL"),
        ("int8:3", "takes no argument"),
        ("steal", "unknown attack"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            parse_attack(bad)


@pytest.mark.parametrize(
    "spec",
    [
        "finetune:FTLL",
        "finetune:FTAL",
        "finetune:RTLL",
        "finetune:RTAL",
        "prune:0.5",
        "fineprune:0.5",
        "int8",
        "fp16",
        "advtrain:0.05",
        "uat:0.1",
    ],
)
def test_each_attack_changes_a_copy_and_leaves_the_victim(spec):
    victim = small_victim()
    before = {k: v.clone() for k, v in victim.state_dict().items()}
    attack = parse_attack(spec)
    copy = apply_attack(victim, attack, loader() if attack.trains else None, "adam", 1e-3, 1)
    assert all(torch.equal(before[k], v) for k, v in victim.state_dict().items()), "the victim was modified"
    after = copy.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, f"{spec} changed nothing"
    body = [k for k in changed if not k.startswith("head.")]
    if attack.mode in ("FTLL", "RTLL"):
        assert not [k for k in body if "weight" in k or "bias" in k], "last-layer modes must keep the body"
    if attack.kind in ("prune", "fineprune"):
        w = torch.cat([m.weight.flatten() for m in copy.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))])
        assert (w == 0).float().mean() >= 0.49  # fine-pruning keeps the pruned weights at zero


def test_attack_grids_build_copies_in_the_test_set(tmp_path, tiny_fmnist):
    from fpenc.config import load_pipeline_config
    from fpenc.zoo.builder import build_zoo
    from fpenc.zoo.sets import assign_sets

    grids = [
        tiny_grid("piracy", "fmnist_a", more="attacks: [prune:0.3, int8, finetune:FTAL]"),
        tiny_grid("piracy", "fmnist_c", more="extraction: {api: label}"),
        tiny_grid("homologous", "fmnist_c"),
    ]
    cfg = load_pipeline_config([tiny_config(tmp_path, tiny_fmnist, "atk", grids)])
    manifest = build_zoo(cfg, progress=False)
    ids = [m["id"] for m in manifest["models"]]
    assert ids == [
        "victim",
        "piracy-fmnist_a-adam-s0-prune0p3",
        "piracy-fmnist_a-adam-s0-int8",
        "piracy-fmnist_a-adam-s0-finetuneFTAL",
        "piracy-fmnist_c-adam-s0-apilabel",
        "homologous-fmnist_c-adam-s0",
    ]
    sets = assign_sets(cfg, complete=False)
    assert {sets[i] for i in ids[1:4]} == {"test"}  # copies made from the weights never train the encoder
    by_id = {m["id"]: m for m in manifest["models"]}
    assert by_id["piracy-fmnist_a-adam-s0-int8"]["spec"]["attack"] == "int8"
    assert by_id["piracy-fmnist_a-adam-s0-int8"]["agreement"] > 0.9  # INT8 of the victim answers like it
    assert by_id["piracy-fmnist_c-adam-s0-apilabel"]["spec"]["extraction"]["api"] == "label"
    # a rerun trains nothing (the older manifests' specs without "attack" stay valid too)
    assert [m["train_seconds"] for m in build_zoo(cfg, progress=False)["models"]] == [
        m["train_seconds"] for m in manifest["models"]
    ]
    text = (tmp_path / "runs/atk/manifest.json").read_text()
    assert json.loads(text)["models"][1]["set"] == "test"


@pytest.mark.parametrize(
    "grid, message",
    [
        ("{role: piracy, architectures: [fmnist_b], attacks: [int8]}", "keep its architecture"),
        ("{role: homologous, architectures: [fmnist_a], attacks: [int8]}", "are for piracy grids"),
        ("{role: piracy, architectures: [fmnist_a], attacks: [prune:2]}", r"in \(0, 1\)"),
        ("{role: piracy, extraction: {api: topx}}", "unknown API"),
        ("{role: piracy, extraction: {apii: label}}", "did you mean 'api'"),
    ],
)
def test_bad_attack_grids_are_one_line_errors(tmp_path, grid, message):
    from fpenc.config import load_pipeline_config

    path = tmp_path / "c.yaml"
    path.write_text(f"pipeline:\n  zoo:\n    victim: {{architecture: fmnist_a}}\n    grids: [{grid}]\n")
    with pytest.raises(ConfigError, match=message):
        load_pipeline_config([path])
