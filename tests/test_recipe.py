"""Training recipes of independent models (augmentation, label smoothing, adversarial training) and
zoo grids of copies of another model than the victim."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config, tiny_grid
from fpenc.bench.command import model_kind
from fpenc.cli import main
from fpenc.config import load_pipeline_config
from fpenc.config.recipe_spec import Recipe
from fpenc.errors import ConfigError
from fpenc.zoo.plan import plan_zoo
from fpenc.zoo.recipe import recipe_loss, shift_flip


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))


@pytest.mark.parametrize(
    "d, message",
    [
        ({"augmnt": True}, "unknown training option 'augmnt'"),
        ({"augment": 1}, "augment must be true or false"),
        ({"label_smoothing": 1.0}, "label_smoothing must be in [0, 1)"),
        ({"adversarial_eps": -0.1}, "adversarial_eps must be in [0, 1]"),
    ],
)
def test_recipe_refuses_bad_options(d, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        Recipe.from_dict(d)


def test_shift_moves_each_image_by_at_most_two_pixels():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10, 10] = 1.0  # one bright pixel
    out = shift_flip(x)
    assert out.shape == x.shape
    pos = out[:, 0].flatten(1).argmax(1)
    rows, cols = pos // 28, pos % 28
    assert ((rows - 10).abs() <= 2).all() and ((cols - 10).abs() <= 2).all()
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 5  # shifts vary over the batch
    assert out.sum() == x.sum()  # no pixel leaves the image (2 px from the border)


def test_recipe_loss_matches_plain_and_smoothed_cross_entropy():
    net, x, y = tiny_net(), torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    loss, logits = recipe_loss(Recipe(), net, x, y)
    assert torch.allclose(loss, F.cross_entropy(net(x), y))
    smoothed, _ = recipe_loss(Recipe(label_smoothing=0.2), net, x, y)
    logp = F.log_softmax(net(x), 1)
    target = torch.full_like(logp, 0.2 / 10).scatter_(1, y[:, None], 0.8 + 0.2 / 10)
    assert torch.allclose(smoothed, -(target * logp).sum(1).mean(), atol=1e-6)  # the naive reference


def test_adversarial_recipe_trains_on_worse_inputs_within_eps():
    net, x, y = tiny_net(), torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    clean, _ = recipe_loss(Recipe(), net, x, y)
    adv, _ = recipe_loss(Recipe(adversarial_eps=0.1), net, x, y)
    assert adv > clean
    assert net.training  # left as it was found


def test_copies_of_another_model_and_recipes_in_the_zoo(tmp_path, tiny_fmnist):
    other = "homologous-fmnist_a-adam-s5"
    grids = [
        tiny_grid("homologous", "fmnist_a", seeds="5"),
        tiny_grid("homologous", "fmnist_a", seeds="6", more="training: {augment: true, label_smoothing: 0.1}"),
        tiny_grid("homologous", "fmnist_a", seeds="7", more=f"parent: {other}, attacks: [prune:0.5], split: test"),
        tiny_grid("homologous", "fmnist_c", seeds="8", more=f"parent: {other}, split: test"),  # extracted from it
        tiny_grid("piracy", "fmnist_a", seeds="9", more="attacks: [prune:0.5]"),
    ]
    config = tiny_config(tmp_path, tiny_fmnist, "parents", grids)
    specs = {s.id: s for s in plan_zoo(load_pipeline_config([config]))}
    assert f"homologous-fmnist_a-adam-s7-prune0p5-of-{other}" in specs
    assert specs[f"homologous-fmnist_c-adam-s8-of-{other}"].extraction is not None
    assert specs["homologous-fmnist_a-adam-s6-augment-label_smoothing0p1"].training["label_smoothing"] == 0.1
    assert main(["zoo", "--config", str(config), "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "runs/parents/manifest.json").read_text())
    models = {m["id"]: m for m in manifest["models"]}
    pruned = models[f"homologous-fmnist_a-adam-s7-prune0p5-of-{other}"]
    extracted = models[f"homologous-fmnist_c-adam-s8-of-{other}"]
    for copy in (pruned, extracted):
        assert copy["parent"] == other and copy["parent_sha256"] == models[other]["sha256"]
        assert copy["set"] == "test"
    assert extracted["queries"] > 0
    assert models["piracy-fmnist_a-adam-s9-prune0p5"]["parent_sha256"] == models["victim"]["sha256"]
    # each with the kind the benchmark reports it under
    kinds = {mid: model_kind(m, "fmnist_a", 0.5) for mid, m in models.items()}
    assert kinds[pruned["id"]] == "other-victim-prune"
    assert kinds[extracted["id"]] == "other-victim-extract-probs-other-arch"
    assert kinds["homologous-fmnist_a-adam-s6-augment-label_smoothing0p1"] == (
        "independent-augment+label_smoothing-same-arch"
    )
    assert kinds["piracy-fmnist_a-adam-s9-prune0p5"] == "prune"
    small = {**extracted, "parent": "victim", "role": "piracy"}
    small["spec"] = {**small["spec"], "extraction": {**small["spec"]["extraction"], "pool_fraction": 0.03}}
    assert model_kind(small, "fmnist_a", 0.5) == "extract-probs-other-arch-pool0.03"


@pytest.mark.parametrize(
    "grid, message",
    [
        (tiny_grid("homologous", "fmnist_a", more="parent: nobody, attacks: [int8]"), "parent 'nobody' is no model"),
        (tiny_grid("piracy", "fmnist_a", more="parent: victim"), "copies of the victim are piracy grids"),
        (tiny_grid("homologous", "fmnist_a", more="attacks: [int8]"), "plain independent models have none"),
        (tiny_grid("piracy", "fmnist_a", more="training: {augment: true}"), "recipe is for independent models"),
        (tiny_grid("homologous", "fmnist_a", more="training: {mixup: 1}"), "unknown training option 'mixup'"),
    ],
)
def test_bad_parent_or_recipe_is_refused(tmp_path, tiny_fmnist, grid, message):
    config = tiny_config(tmp_path, tiny_fmnist, "bad", [tiny_grid("homologous", "fmnist_a"), grid])
    with pytest.raises(ConfigError, match=message):
        plan_zoo(load_pipeline_config([config]))


def test_copy_of_another_model_keeps_its_architecture(tmp_path, tiny_fmnist):
    grids = [
        tiny_grid("homologous", "fmnist_c", seeds="5"),
        tiny_grid("homologous", "fmnist_a", seeds="6", more="parent: homologous-fmnist_c-adam-s5, attacks: [int8]"),
    ]
    with pytest.raises(ConfigError, match=r"keep its architecture: set architectures: \[fmnist_c\]"):
        plan_zoo(load_pipeline_config([tiny_config(tmp_path, tiny_fmnist, "arch", grids)]))


def test_a_changed_parent_rebuilds_its_copies_only(tmp_path, tiny_fmnist):
    other = "homologous-fmnist_a-adam-s5"
    grids = [
        tiny_grid("homologous", "fmnist_a", seeds="5", more="name: other_owner"),
        tiny_grid("homologous", "fmnist_a", seeds="7", more=f"name: copies, parent: {other}, attacks: [prune:0.5]"),
        tiny_grid("homologous", "fmnist_c", seeds="8", more="name: plain"),
    ]
    config = tiny_config(tmp_path, tiny_fmnist, "reparent", grids)
    assert main(["zoo", "--config", str(config), "--no-progress"]) == 0

    def read() -> dict:
        return {m["id"]: m for m in json.loads((tmp_path / "runs/reparent/manifest.json").read_text())["models"]}

    first = read()
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("pipeline:\n  zoo:\n    grids:\n      - {name: other_owner, epochs: 2}\n")
    assert main(["zoo", "--config", str(config), "--config", str(overlay), "--no-progress"]) == 0
    second = read()
    copy = f"homologous-fmnist_a-adam-s7-prune0p5-of-{other}"
    assert second[other]["sha256"] != first[other]["sha256"]
    assert second[copy]["parent_sha256"] == second[other]["sha256"] != first[copy]["parent_sha256"]
    assert second["homologous-fmnist_c-adam-s8"]["sha256"] == first["homologous-fmnist_c-adam-s8"]["sha256"]
