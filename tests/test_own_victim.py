"""The owner's own victim: a class fpenc does not define (by class path) with weights saved by plain
PyTorch, never retrained; the zoo is built around it; the class as a zoo architecture too."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from conftest import make_fmnist_files, tiny_grid
from fpenc.cli import main

OWN_NETS = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    """A user's classifier: images in [0, 1], its normalisation inside, logits out."""

    def __init__(self, width: int = 16, classes: int = 10):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.fc1 = nn.Linear(width * 16, 32)
        self.out = nn.Linear(32, classes)

    def forward(self, x):
        return self.out(torch.relu(self.fc1(self.conv((x - 0.3) / 0.3).flatten(1))))
'''


@pytest.fixture
def own_nets(tmp_path, monkeypatch):
    """``ownnets.TinyNet`` importable, and a trained state dict of it saved by plain PyTorch."""
    (tmp_path / "ownnets.py").write_text(OWN_NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import ownnets

    torch.manual_seed(0)
    net = ownnets.TinyNet(width=8)
    data = make_fmnist_files(tmp_path / "fmnist")
    from fpenc.data.datasets import load_dataset

    arrays = load_dataset("fashion_mnist", root=data)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    x, y = arrays.train_x.float() / 255, arrays.train_y
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    (tmp_path / "weights").mkdir()
    torch.save(net.state_dict(), tmp_path / "weights" / "mine.pt")  # plain PyTorch, no fpenc
    return tmp_path, data, net


def own_config(tmp_path, data, victim_extra: str = "", name: str = "own") -> object:
    grids = [
        tiny_grid("piracy", "fmnist_b"),
        tiny_grid("homologous", "ownnets.TinyNet", more="options: {width: 4}"),
        tiny_grid("piracy", "ownnets.TinyNet", more="attacks: ['prune:0.5', 'finetune:FTLL'], options: {width: 8}"),
    ]
    path = tmp_path / "configs" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        textwrap.dedent(f"""\
        pipeline:
          name: {name}
          runs_dir: {tmp_path / "runs"}
          data: {{dataset: fashion_mnist, root: {data}}}
          zoo:
            victim: {{class_path: ownnets.TinyNet, init_args: {{width: 8}}, weights: ../weights/mine.pt{victim_extra}}}
            grids:
        """)
        + "".join(f"      - {g}\n" for g in grids)
    )
    return path


def test_own_victim_is_loaded_never_trained_and_the_zoo_is_built_around_it(own_nets, capsys):
    tmp_path, data, net = own_nets
    config = own_config(tmp_path, data)  # weights: relative to the config file's folder
    assert main(["zoo", "--config", str(config), "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "runs/own/manifest.json").read_text())
    victim = manifest["models"][0]
    assert victim["id"] == "victim" and victim["architecture"] == "ownnets.TinyNet" and victim["train_seconds"] == 0
    from fpenc.rundir import load_zoo_model

    loaded = load_zoo_model(victim, tmp_path / "runs/own")
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(loaded(x), net.eval()(x))  # her weights, bit for bit
    ids = {m["id"]: m for m in manifest["models"]}
    assert ids["piracy-ownnets.TinyNet-adam-s0-prune0p5"]["agreement"] > 0.8  # a copy of her model
    assert "homologous-ownnets.TinyNet-adam-s0" in ids  # her class as a zoo architecture
    # a changed training setting of the victim does not retrain it over her weights; nothing is rebuilt
    config2 = own_config(tmp_path, data, victim_extra=", epochs: 9, optimizer: sgd")
    capsys.readouterr()
    assert main(["zoo", "--config", str(config2), "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "[done]" not in out.err and out.out.count("[skip]") == len(manifest["models"])  # nothing trained again
    again = json.loads((tmp_path / "runs/own/manifest.json").read_text())
    assert {m["id"]: m["sha256"] for m in again["models"]}["victim"] == victim["sha256"]
    assert all(m["train_seconds"] == 0 for m in again["models"] if m["id"] == "victim")


def test_own_victim_errors_are_one_line(own_nets, capsys):
    tmp_path, data, _ = own_nets
    bad = own_config(tmp_path, data, name="bad")
    bad.write_text(bad.read_text().replace("../weights/mine.pt", "../weights/nope.pt"))
    assert main(["zoo", "--config", str(bad), "--no-progress"]) == 2
    assert "not found (relative paths start at the folder" in capsys.readouterr().err
    wrong = own_config(tmp_path, data, name="wrong")
    wrong.write_text(wrong.read_text().replace("init_args: {width: 8}", "init_args: {width: 4}"))
    assert main(["zoo", "--config", str(wrong), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (after the run's banner line)
    assert err.startswith("fpenc zoo: error:") and "does not fit ownnets.TinyNet({'width': 4})" in err
    missing = own_config(tmp_path, data, name="missing")
    missing.write_text(missing.read_text().replace("class_path: ownnets.TinyNet", "class_path: ownnets.Nope"))
    assert main(["zoo", "--config", str(missing), "--no-progress"]) == 2
    assert "ownnets has no nn.Module class 'Nope'" in capsys.readouterr().err
    pickled = tmp_path / "weights" / "module.pt"
    import ownnets

    torch.save(ownnets.TinyNet(8), pickled)
    whole = own_config(tmp_path, data, name="whole")
    whole.write_text(whole.read_text().replace("mine.pt", "module.pt"))
    assert main(["zoo", "--config", str(whole), "--no-progress"]) == 2
    assert "save the weights with torch.save(model.state_dict(), path)" in capsys.readouterr().err


def named_base(tmp_path, data, name: str):
    """The tiny encoder config of test_encoder_cli with every zoo grid named (protect retargets grids by name)."""
    from test_encoder_cli import encoder_config

    base = encoder_config(tmp_path, data, name=name)
    lines = base.read_text().splitlines()
    grids = [i for i, line in enumerate(lines) if line.lstrip().startswith("- {role:")]
    for n, i in enumerate(grids):
        lines[i] = lines[i].replace("- {role:", f"- {{name: g{n}, role:", 1)
    base.write_text("\n".join(lines) + "\n")
    return base


@pytest.mark.slow
def test_protect_one_command_then_verify_a_copy_and_an_independent_model(own_nets, capsys, monkeypatch):
    """`fpenc protect` on a tiny base config: her model in, a bundle out; a pruned copy of it is
    `derived`, an independent model of her class is not."""
    tmp_path, data, net = own_nets
    base = named_base(tmp_path, data, "tinybase")
    args = ["protect", "--model", str(tmp_path / "weights/mine.pt"), "--class-path", "ownnets.TinyNet"]
    assert main([*args, "--init-args", '{"width": 8}', "-c", str(base), "--name", "hers"]) == 0
    out = capsys.readouterr().out
    assert "the victim is ownnets.TinyNet" in out and "(loaded, never trained)" in out
    manifest = json.loads((tmp_path / "runs/hers/manifest.json").read_text())
    reference = [m for m in manifest["models"] if m["set"] == "reference"]
    # the verdict's population holds independent models of her class on her data (the hardest innocents)
    assert any(m["architecture"] == "ownnets.TinyNet" and m["id"].endswith("-victimdata") for m in reference)
    bundle = tmp_path / "checkpoints/hers.fpenc.safetensors"
    assert f"bundle:      {bundle}" in out and (tmp_path / "runs/hers/protect.yaml").is_file()
    # run again: every stage is complete and the encoder goes on from its checkpoint, not trained anew
    from fpenc.encoder.module import EncoderModule

    def no_training(*_):
        raise AssertionError("the encoder was trained again")

    monkeypatch.setattr(EncoderModule, "training_step", no_training)
    assert main([*args, "--init-args", '{"width": 8}', "-c", str(base), "--name", "hers"]) == 0
    again = capsys.readouterr().out
    assert "[skip] victim: complete" in again and "zoo models are built" in again
    monkeypatch.undo()
    import copy

    import ownnets

    from fpenc.suspect_export import export_model

    pruned = copy.deepcopy(net)
    for m in pruned.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.utils.prune.l1_unstructured(m, "weight", 0.2)
            torch.nn.utils.prune.remove(m, "weight")
    torch.manual_seed(5)
    other = ownnets.TinyNet(width=8)
    files = [str(export_model(n.eval(), (1, 28, 28), tmp_path / f"{k}.pt")) for k, n in (("c", pruned), ("i", other))]
    assert main(["verify", "--bundle", str(bundle), *files, "--format", "csv", "--fail-on", "derived"]) == 1
    rows = capsys.readouterr().out.splitlines()[1:]
    assert rows[0].split(",")[1] == "derived" and rows[1].split(",")[1] != "derived"
    assert main([*args, "--init-args", "[8]"]) == 2
    assert "--init-args must be a JSON object" in capsys.readouterr().err
    # new weights in her file: the zoo is not the one the encoder was trained on, so no resuming
    from fpenc.config import load_pipeline_config
    from fpenc.protection import zoo_unchanged

    configs = [str(base), str(tmp_path / "runs/hers/protect.yaml")]
    assert zoo_unchanged(load_pipeline_config(configs))
    weights = tmp_path / "weights/mine.pt"
    state = torch.load(weights, weights_only=True)
    first = next(iter(state))
    state[first] = state[first] + 0.01
    torch.save(state, weights)
    assert not zoo_unchanged(load_pipeline_config(configs))


@pytest.mark.slow
def test_readme_python_example_runs(own_nets, capsys):
    """The README's Python example, run as written: its class, weights file and config pointed at
    the tiny ones, `ask_the_suspect` a pruned copy of her model."""
    from conftest import REPO

    tmp_path, data, net = own_nets
    text = (REPO / "README.md").read_text()
    code = text[text.index("From Python") :].split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 12
    base = named_base(tmp_path, data, "readme")
    base.write_text(base.read_text().replace("data: {batch_size", "data: {api: label, batch_size"))  # as the demo
    for old, new in (
        ("from mypkg.nets import MyNet", "from ownnets import TinyNet as MyNet"),
        ("width=24", "width=8"),
        ('{"width": 24}', '{"width": 8}'),
        ('"mine.pt"', repr(str(tmp_path / "weights/mine.pt"))),
        ('"fmnist_demo"', repr(str(base))),
    ):
        assert old in code, old
        code = code.replace(old, new)
    import copy

    import torch.nn.utils.prune

    pruned = copy.deepcopy(net).eval()
    torch.nn.utils.prune.l1_unstructured(pruned.out, "weight", 0.2)
    exec(compile(code, "README.md", "exec"), {"ask_the_suspect": pruned})
    out = capsys.readouterr().out.splitlines()
    verdict = next(i for i, line in enumerate(out) if line.startswith("derived"))
    assert out[verdict + 1].startswith("  p = ") and out[verdict + 2].startswith("  agreement"), out[verdict:]


def test_export_writes_suspect_files_fpenc_reads(own_nets, capsys):
    """`fpenc export`: her class's state_dict, or a zoo weights file, as ONNX / TorchScript that
    answer exactly as the model does."""
    from fpenc.suspects import from_file, from_module

    tmp_path, data, net = own_nets
    onnx = tmp_path / "mine.onnx"
    args = [
        "export",
        str(tmp_path / "weights/mine.pt"),
        "--class-path",
        "ownnets.TinyNet",
        "--init-args",
        '{"width": 8}',
    ]
    pytest.importorskip("onnxruntime")
    assert main([*args, "--out", str(onnx)]) == 0
    assert "images [B, 1, 28, 28] in [0, 1]" in capsys.readouterr().out
    x = torch.rand(7, 1, 28, 28)
    assert torch.allclose(from_file(onnx)(x), from_module(net.eval())(x), atol=1e-5)
    from fpenc.io import save_weights
    from fpenc.models import build_model

    zoo_net = build_model("fmnist_b", 10, (1, 28, 28)).eval()
    save_weights(tmp_path / "zoo.pt", zoo_net.state_dict(), zoo_net.config)
    assert main(["export", str(tmp_path / "zoo.pt"), "--out", str(tmp_path / "zoo_suspect.pt")]) == 0
    assert torch.allclose(from_file(tmp_path / "zoo_suspect.pt")(x), from_module(zoo_net)(x), atol=1e-5)
    assert main(["export", str(tmp_path / "weights/mine.pt"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "give its class too: --class-path" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "x.h5")]) == 2
    assert "name it .onnx" in capsys.readouterr().err


def test_plan_estimate_counts_the_steps_the_plan_trains(monkeypatch):
    """The time estimate against a hand count: epochs x ceil(images / batch) steps per trained model,
    extraction a third more on the pool it queries, weight copies without training free, her model free."""
    import fpenc.zoo.estimate as est
    from fpenc.zoo.plan import ModelSpec

    monkeypatch.setattr(est, "step_seconds", lambda *a, **k: 0.01)

    def spec(mid, epochs=2, attack=None, extraction=None, weights=None):
        return ModelSpec(mid, "piracy", "fmnist_a", "adam", 0, 100, epochs, 1e-3, "attacker", extraction=extraction,
                         attack=attack, weights_sha256=weights)  # fmt: skip

    specs = [
        spec("victim", weights="abc"),  # her model: loaded
        spec("homologous"),  # 2 epochs x ceil(500 / 100) = 10 steps
        spec("extracted", extraction={"pool_fraction": 0.5}),  # 2 x ceil(250 / 100) = 6 steps x 4/3
        spec("pruned", attack="prune:0.5"),  # no training
        spec("finetuned", epochs=1, attack="finetune:FTAL"),  # 1 x 5 = 5 steps
    ]
    assert est.plan_seconds(specs, n_train=1000, num_classes=10, input_shape=(1, 28, 28)) == pytest.approx(
        0.01 * (10 + 6 * 4 / 3 + 5)
    )
    assert est.step_seconds("fmnist_a", {}, 10, (1, 28, 28), 8, repeats=1) > 0
