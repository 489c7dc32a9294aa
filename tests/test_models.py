"""Tests for fpenc.models: the architecture registry, ImageClassifier and the nets."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from fpenc.errors import ConfigError, UnknownArchitectureError
from fpenc.models import (
    ARCHITECTURES,
    FMNIST_ARCS,
    ImageClassifier,
    Normalize,
    arch_config,
    build_model,
    canonical_arch,
    known_architectures,
    resolve_architecture,
)

FMNIST = ["fmnist_a", "fmnist_b", "fmnist_c", "fmnist_d", "fmnist_e"]
SMALL = ["mlp", "bn_resnet"]  # outside Table 1: suspects of families the encoder never trains on
TORCHVISION = ["resnet18", "resnet34", "vgg16", "densenet121", "googlenet"]
ALL = FMNIST + SMALL + TORCHVISION

# (input_shape, num_classes) per use case; vgg16's five max-pools need >= 32x32.
SHAPES = [((1, 28, 28), 10), ((3, 32, 32), 10), ((3, 64, 64), 200)]
BUILD_CASES = [
    pytest.param(arch, shape, k, id=f"{arch}-{shape[0]}x{shape[1]}x{shape[2]}-{k}")
    for arch in ALL
    for shape, k in SHAPES
    if not (arch == "vgg16" and shape[1] < 32)
]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _default_shape(arch: str) -> tuple[tuple[int, int, int], int]:
    return ((1, 28, 28), 10) if arch.startswith("fmnist") else ((3, 32, 32), 10)


def test_known_architectures_lists_every_registered_name() -> None:
    assert known_architectures() == ALL
    assert list(ARCHITECTURES) == ALL


@pytest.mark.parametrize(("arch", "shape", "num_classes"), BUILD_CASES)
def test_forward_and_features_shapes(arch: str, shape: tuple[int, int, int], num_classes: int) -> None:
    model = build_model(arch, num_classes, shape).eval()
    assert isinstance(model, ImageClassifier)
    assert isinstance(model.head, nn.Linear)
    x = torch.rand(2, *shape)
    with torch.no_grad():
        logits = model(x)
        feats = model.features(x)
    d = model.head.in_features
    assert logits.shape == (2, num_classes)
    assert feats.shape == (2, d)
    assert model.feature_dim == d and model.num_classes == num_classes
    assert torch.equal(logits, model.head(feats))
    assert torch.isfinite(logits).all()


def test_vgg16_rejects_inputs_smaller_than_32() -> None:
    with pytest.raises(ConfigError, match="at least 32x32"):
        build_model("vgg16", 10, (1, 28, 28))


@pytest.mark.parametrize("arch", ALL)
def test_rebuild_from_arch_config_reproduces_outputs(arch: str) -> None:
    shape, k = _default_shape(arch)
    mean, std = [0.5] * shape[0], [0.25] * shape[0]
    model = build_model(arch, k, shape, mean=mean, std=std).eval()
    cfg = arch_config(model)
    assert json.loads(json.dumps(cfg)) == cfg  # plain JSON
    assert cfg["arch"] == arch and cfg["num_classes"] == k and cfg["input_shape"] == list(shape)
    assert cfg["mean"] == mean and cfg["std"] == std

    torch.manual_seed(123)  # a different init, overwritten by the state_dict
    clone = build_model(**cfg).eval()
    clone.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(2, *shape)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))
        assert torch.equal(model.features(x), clone.features(x))


@pytest.mark.parametrize("arch", ["fmnist_d", "resnet18"])
def test_state_dict_and_config_survive_torch_load_weights_only(arch: str, tmp_path) -> None:
    shape, k = _default_shape(arch)
    model = build_model(arch, k, shape, mean=[0.1] * shape[0], std=[0.3] * shape[0])
    model.train()
    with torch.no_grad():  # move BatchNorm running stats away from their init
        model(torch.rand(4, *shape))
    model.eval()
    path = tmp_path / "weights.pt"
    torch.save({"arch": arch_config(model), "state_dict": model.state_dict()}, path)

    blob = torch.load(path, weights_only=True, map_location="cpu")
    clone = build_model(**blob["arch"]).eval()
    clone.load_state_dict(blob["state_dict"], strict=True)
    x = torch.rand(3, *shape)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))


def test_normalization_lives_inside_the_model() -> None:
    mean, std = (0.2, 0.4, 0.6), (0.5, 0.25, 0.1)
    model = build_model("fmnist_c", 10, (3, 32, 32), mean=mean, std=std).eval()
    assert isinstance(model.normalize, Normalize)
    assert set(model.state_dict()) >= {"normalize.mean", "normalize.std"}
    x = torch.rand(2, 3, 32, 32)
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model.features(x), model.body(expected))
    plain = build_model("fmnist_c", 10, (3, 32, 32))
    assert isinstance(plain.normalize, nn.Identity)
    assert arch_config(plain)["mean"] is None and arch_config(plain)["std"] is None


def test_construction_uses_the_callers_seed() -> None:
    torch.manual_seed(7)
    a = build_model("fmnist_a", 10, (1, 28, 28)).state_dict()
    torch.manual_seed(7)
    b = build_model("fmnist_a", 10, (1, 28, 28)).state_dict()
    torch.manual_seed(8)
    c = build_model("fmnist_a", 10, (1, 28, 28)).state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not all(torch.equal(a[key], c[key]) for key in a)


def test_unknown_architecture_lists_known_names_and_suggests() -> None:
    with pytest.raises(UnknownArchitectureError) as info:
        build_model("resnet19", 10, (3, 32, 32))
    msg = str(info.value)
    assert "unknown architecture 'resnet19'" in msg
    assert all(name in msg for name in known_architectures())
    assert "did you mean 'resnet18'" in msg
    assert "\n" not in msg
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)

    with pytest.raises(UnknownArchitectureError) as info:
        build_model("zzzzzz", 10, (3, 32, 32))
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("letter", list("ABCDE"))
def test_fmnist_aliases(letter: str) -> None:
    canonical = f"fmnist_{letter.lower()}"
    for alias in (letter, letter.lower(), f"arc_{letter.lower()}", f"ARC_{letter}", f"FMNIST-{letter}", canonical):
        assert canonical_arch(alias) == canonical
    assert arch_config(build_model(letter, 10, (1, 28, 28)))["arch"] == canonical
    assert canonical_arch("ResNet18") == "resnet18"
    assert resolve_architecture(letter) == canonical


def _fmnist_structure(model: ImageClassifier) -> dict:
    convs = [m for m in model.body.modules() if isinstance(m, nn.Conv2d)]
    acts = {type(m) for m in model.body.modules() if isinstance(m, (nn.ELU, nn.ReLU, nn.PReLU))}
    return {
        "num_conv": len(convs),
        "kernel_size": {c.kernel_size for c in convs},
        "activation": acts,
        "dropout": any(isinstance(m, nn.Dropout) for m in model.body.modules()),
        "pools": sum(isinstance(m, nn.MaxPool2d) for m in model.body.modules()),
    }


def test_fmnist_arcs_follow_table_1() -> None:
    table = {  # Peng et al. (CVPR 2022) Table 1
        "A": (nn.ELU, False, 3, 2),
        "B": (nn.ELU, False, 5, 3),
        "C": (nn.ReLU, False, 3, 2),
        "D": (nn.PReLU, False, 3, 4),
        "E": (nn.ReLU, True, 5, 2),
    }
    seen = set()
    for letter, (act, dropout, kernel, num_conv) in table.items():
        spec = FMNIST_ARCS[letter]
        assert (spec.dropout, spec.kernel_size, spec.num_conv) == (dropout, kernel, num_conv)
        assert ARCHITECTURES[f"fmnist_{letter.lower()}"].table1 == spec
        got = _fmnist_structure(build_model(letter, 10, (1, 28, 28)))
        assert got == {
            "num_conv": num_conv,
            "kernel_size": {(kernel, kernel)},
            "activation": {act},
            "dropout": dropout,
            "pools": 2,
        }
        seen.add((act, dropout, kernel, num_conv))
    assert len(seen) == 5  # every arc is different


@pytest.mark.parametrize("arch", FMNIST)
def test_fmnist_arcs_train_on_other_inputs(arch: str) -> None:
    model = build_model(arch, 7, (3, 20, 36)).train()
    x = torch.rand(4, 3, 20, 36)
    loss = nn.functional.cross_entropy(model(x), torch.randint(0, 7, (4,)))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_builder_options_round_trip() -> None:
    model = build_model("fmnist_a", 10, (1, 28, 28), channels=[8, 12], hidden=32)
    assert model.feature_dim == 32
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [8, 12]
    cfg = arch_config(model)
    assert cfg["channels"] == [8, 12] and cfg["hidden"] == 32
    clone = build_model(**cfg)
    clone.load_state_dict(model.state_dict(), strict=True)

    vgg = build_model("vgg16", 10, (3, 32, 32), batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in vgg.modules())
    assert arch_config(vgg)["batch_norm"] is False
    assert any(isinstance(m, nn.BatchNorm2d) for m in build_model("vgg16", 10, (3, 32, 32)).modules())


def test_arch_config_from_arguments_matches_model() -> None:
    args = {"num_classes": 10, "input_shape": (1, 28, 28), "mean": (0.3,), "std": (0.4,)}
    cfg = arch_config("B", **args)
    assert cfg == arch_config(arch="fmnist_b", **args)
    assert cfg == arch_config(build_model("b", **args))


def test_arch_config_of_a_hand_built_model_is_an_error() -> None:
    model = ImageClassifier(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ConfigError, match="build_model"):
        arch_config(model)


@pytest.mark.parametrize("num_classes", [1, 0, -3, True, 2.5, "10", None])
def test_bad_num_classes(num_classes) -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("fmnist_a", num_classes, (1, 28, 28))


@pytest.mark.parametrize(
    "input_shape", [(28, 28), (1, 28, 28, 1), (0, 28, 28), (1, -1, 28), (1.5, 28, 28), "1x28x28", None, (True, 28, 28)]
)
def test_bad_input_shape(input_shape) -> None:
    with pytest.raises(ConfigError, match="input_shape"):
        build_model("fmnist_a", 10, input_shape)


@pytest.mark.parametrize(
    ("mean", "std"),
    [((0.5,), None), (None, (0.5,)), ((0.5, 0.5), (0.5, 0.5)), ((0.5,), (0.0,)), ((float("nan"),), (1.0,))],
)
def test_bad_normalization(mean, std) -> None:
    with pytest.raises(ConfigError):
        build_model("fmnist_a", 10, (1, 28, 28), mean=mean, std=std)


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        build_model("resnet18", 10, (3, 32, 32), width=2)
    with pytest.raises(ConfigError, match="batch_norm"):
        build_model("vgg16", 10, (3, 32, 32), batch_norm="no")
    with pytest.raises(ConfigError, match="channels"):
        build_model("fmnist_d", 10, (1, 28, 28), channels=[8, 8])
    with pytest.raises(ConfigError):
        build_model(123, 10, (1, 28, 28))  # type: ignore[arg-type]
