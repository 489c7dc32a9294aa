"""Attacks from the victim's weights (fpenc/zoo/attacks.py) and the zoo grids that make them."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_config, tiny_grid
from fpenc.config.attack_spec import composite_kind, composite_slug, parse_attack, parse_attacks
from fpenc.errors import ConfigError
from fpenc.zoo.attacks import apply_attack


def small_victim(seed: int = 0):
    from fpenc.models import build_model

    torch.manual_seed(seed)
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


def test_composite_specs():
    steps = parse_attacks("extract+finetune:ftal+prune:0.5+int8")
    assert [a.kind for a in steps] == ["extract", "finetune", "prune", "int8"]
    assert (
        composite_slug(steps) == "extract-finetuneFTAL-prune0p5-int8" and composite_kind(steps) == "composite-extract"
    )
    assert composite_kind(parse_attacks("finetune:FTAL+int8")) == "composite"
    assert (
        composite_kind(parse_attacks("finetune:RTAL")) == "finetune-RTAL"
        and composite_kind(parse_attacks("int8")) == "int8"
    )
    with pytest.raises(ConfigError, match="extract can only be the first step"):
        parse_attacks("prune:0.5+extract")
    with pytest.raises(ConfigError, match="repeats a step"):
        parse_attacks("int8+int8")
    with pytest.raises(ConfigError, match="unknown attack"):
        parse_attacks("prune:0.5+steal")


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
    victim = small_victim().requires_grad_(False)  # as after serving as an extraction's teacher in the zoo
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
        tiny_grid("piracy", "fmnist_a", more="attacks: [finetune:FTAL+prune:0.5+int8]"),
        tiny_grid("piracy", "fmnist_c", more="attacks: [extract+prune:0.5+int8]"),
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
        "piracy-fmnist_a-adam-s0-finetuneFTAL-prune0p5-int8",
        "piracy-fmnist_c-adam-s0-extract-prune0p5-int8",
    ]
    sets = assign_sets(cfg, complete=False)
    assert {sets[i] for i in ids[1:4] + ids[6:]} == {"test"}  # copies made from weights never train the encoder
    from fpenc.io import load_weights

    weights = load_weights(tmp_path / "runs/atk/models/piracy-fmnist_c-adam-s0-extract-prune0p5-int8.pt")
    w = torch.cat([v.flatten() for k, v in weights["state_dict"].items() if k.endswith("weight") and v.ndim > 1])
    assert (w == 0).float().mean() >= 0.49  # the extracted arc-C copy was then pruned
    composite = {m["id"]: m for m in manifest["models"]}["piracy-fmnist_c-adam-s0-extract-prune0p5-int8"]
    assert composite["architecture"] == "fmnist_c" and composite["spec"]["extraction"]["api"] == "probs"
    assert composite["queries"] > 0 and composite["train_seconds"] > 0
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


def test_real_int8_copy_runs_quantized_kernels_and_round_trips_through_the_zoo(tmp_path, tiny_fmnist):
    from torch.ao.nn import quantized as nnq

    from fpenc.config import load_pipeline_config
    from fpenc.models.quantized import load_plain_state_dict, plain_state_dict, rebuild_int8
    from fpenc.rundir import RunDir
    from fpenc.zoo.builder import build_zoo

    victim = small_victim()
    q = apply_attack(victim, parse_attack("int8static"), loader(256))
    layers = [m for m in q.modules() if isinstance(m, (nnq.Conv2d, nnq.Linear))]
    assert len(layers) == sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in victim.modules())
    assert all(m.weight().dtype == torch.qint8 for m in layers)
    x = torch.rand(64, 1, 28, 28)
    with torch.no_grad():
        assert (q(x).argmax(1) == victim(x).argmax(1)).float().mean() > 0.9 and not torch.equal(q(x), victim(x))
    # stored as plain tensors, rebuilt strictly
    state = plain_state_dict(q)
    assert all(not v.is_quantized for v in state.values())
    again = rebuild_int8(small_victim(seed=5), q.config)
    load_plain_state_dict(again, state)
    assert torch.equal(again(x), q(x))
    with pytest.raises(RuntimeError, match="missing"):
        load_plain_state_dict(
            rebuild_int8(small_victim(), q.config), {k: v for k, v in state.items() if k != "head.1.bias"}
        )
    with pytest.raises(RuntimeError, match="unexpected"):
        load_plain_state_dict(rebuild_int8(small_victim(), q.config), {**state, "extra": torch.zeros(1)})
    # through the zoo: built, hashed, reloaded as the same INT8 model; a rerun trains nothing
    cfg = load_pipeline_config(
        [tiny_config(tmp_path, tiny_fmnist, "q8", [tiny_grid("piracy", "fmnist_a", more="attacks: [int8static]")])]
    )
    manifest = build_zoo(cfg, progress=False)
    entry = manifest["models"][1]
    assert entry["id"] == "piracy-fmnist_a-adam-s0-int8static" and entry["agreement"] > 0.9
    net = RunDir(tmp_path / "runs/q8").load_model(entry)
    assert any(isinstance(m, nnq.Conv2d) for m in net.modules())
    assert build_zoo(cfg, progress=False)["models"][1]["sha256"] == entry["sha256"]
