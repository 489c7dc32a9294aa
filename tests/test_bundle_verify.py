"""The exported bundle (fpenc.bundle), verification of one suspect (fpenc.verify) and `fpenc verify`."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from fpenc.bundle import BundleError, export_bundle, load_bundle
from fpenc.encoder.network import FingerprintEncoder
from fpenc.errors import FpencError, WeightsFileError
from fpenc.fingerprint.fingerprints import fingerprints
from fpenc.suspects import Suspect, from_module
from fpenc.verify import choose_pairs, pair_fingerprints, verify_suspect

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:FutureWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.onnx.*"),
              pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")]
REPO = Path(__file__).resolve().parents[1]
U, V, N, K, C, H, W = 3, 4, 6, 10, 1, 28, 28


def small_cnn(seed: int, in_channels: int = 1, classes: int = K) -> nn.Module:
    """A tiny random CNN with confident (far from uniform) outputs, so fingerprints of two seeds differ."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                        nn.Linear(64, classes))
    with torch.no_grad():
        net[-1].weight.mul_(20.0)
    return net.eval()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A bundle of a random victim CNN: U=3 UAPs, V=4 views of N=6 1x28x28 images, K=10."""
    tmp = tmp_path_factory.mktemp("bundle")
    g = torch.Generator().manual_seed(0)
    victim = small_cnn(0)
    uaps = (torch.rand(U, C, H, W, generator=g) - 0.5) * 0.5
    view_images = torch.randint(0, 256, (V, N, C, H, W), generator=g, dtype=torch.uint8)
    vf = fingerprints(from_module(victim), uaps, view_images)
    torch.manual_seed(1)
    enc = FingerprintEncoder(2 * N * K, hidden_dim=32, embed_dim=16, proj_dim=8)
    enc.train()
    enc(torch.randn(16, 2 * N * K))  # move the BatchNorm running statistics off their defaults
    enc.eval()
    path = tmp / "victim.safetensors"
    sha = export_bundle(path, encoder=enc, uaps=uaps, view_images=view_images,
                        datapoints=torch.arange(N, dtype=torch.int64) * 7,
                        views=torch.arange(V * N, dtype=torch.int64).reshape(V, N),
                        victim_fingerprints=vf, reference_similarities=torch.rand(12, generator=g) * 0.5,
                        meta={"victim_id": "victim", "dataset": "fashion_mnist", "api": "probs", "eps": 0.25,
                              "norm": "linf"})
    return {"path": path, "sha": sha, "victim": victim, "enc": enc, "uaps": uaps, "view_images": view_images,
            "vf": vf, "tmp": tmp}


def test_round_trip(toy):
    b = load_bundle(toy["path"])
    assert b.sha256 == toy["sha"]
    assert torch.equal(b.uaps, toy["uaps"]) and torch.equal(b.view_images, toy["view_images"])
    assert torch.equal(b.victim_fingerprints, toy["vf"])
    assert b.datapoints.dtype == torch.int64 and b.views.shape == (V, N)
    assert (b.num_uaps, b.num_views, b.num_datapoints, b.num_classes, b.input_shape) == (U, V, N, K, (C, H, W))
    m = b.metadata
    assert m["format"] == "fpenc-bundle/1" and m["encoder_config"] == toy["enc"].config()
    assert m["meta"]["victim_id"] == "victim" and m["meta"]["num_classes"] == K and m["meta"]["input_shape"] == [C, H, W]
    assert {"torch", "fpenc", "numpy", "safetensors", "python"} <= set(m["versions"]) and m["created"]
    enc = b.encoder()
    assert not enc.training
    x = torch.rand(5, 2 * N * K)
    with torch.no_grad():
        assert torch.equal(enc.encode(x), toy["enc"].encode(x))


def _tensor_span(path: Path, name: str) -> tuple[int, int]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    begin, end = json.loads(raw[8 : 8 + n])[name]["data_offsets"]
    return 8 + n + begin, 8 + n + end


@pytest.mark.parametrize("part", ["uaps", "reference_similarities", "encoder.encoder.0.weight"])
def test_corrupted_part_is_named(toy, tmp_path, part):
    bad = tmp_path / "bad.safetensors"
    raw = bytearray(toy["path"].read_bytes())
    begin, end = _tensor_span(toy["path"], part)
    raw[(begin + end) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    name = part.split(".")[0]
    with pytest.raises(BundleError, match=f"corrupted: part '{name}' does not match its SHA-256; re-export"):
        load_bundle(bad)


def test_truncated_missing_and_foreign_files(toy, tmp_path):
    from safetensors.torch import save_file

    raw = toy["path"].read_bytes()
    (tmp_path / "short.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(WeightsFileError, match="not a safetensors file, or truncated"):
        load_bundle(tmp_path / "short.safetensors")
    (tmp_path / "text.safetensors").write_text("hello, not a bundle\n")
    with pytest.raises(BundleError, match="not a safetensors file"):
        load_bundle(tmp_path / "text.safetensors")
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope.safetensors")
    save_file({"x": torch.zeros(3)}, str(tmp_path / "other.safetensors"), metadata={"format": "pt"})
    with pytest.raises(BundleError, match="not an fpenc bundle"):
        load_bundle(tmp_path / "other.safetensors")
    # a bundle with one part removed
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(toy["path"]), framework="pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(toy["path"]))
    del tensors["views"]
    save_file(tensors, str(tmp_path / "partial.safetensors"), metadata=meta)
    with pytest.raises(BundleError, match="part 'views' is missing"):
        load_bundle(tmp_path / "partial.safetensors")


def test_export_rejects_inconsistent_parts(toy, tmp_path):
    b = load_bundle(toy["path"])
    kw = dict(encoder=b.encoder(), uaps=b.uaps, view_images=b.view_images, datapoints=b.datapoints, views=b.views,
              victim_fingerprints=b.victim_fingerprints, reference_similarities=b.reference_similarities)
    with pytest.raises(ValueError, match="view_images must be uint8"):
        export_bundle(tmp_path / "x.safetensors", **{**kw, "view_images": b.view_images.float()})
    with pytest.raises(ValueError, match="encoder takes"):
        export_bundle(tmp_path / "x.safetensors", **{**kw, "encoder": FingerprintEncoder(7)})
    with pytest.raises(ValueError, match="JSON"):
        export_bundle(tmp_path / "x.safetensors", **kw, meta={"bad": object()})
    assert not (tmp_path / "x.safetensors").exists() and not list(tmp_path.glob(".x.safetensors.*"))


def test_pair_fingerprints_match_full_fingerprints(toy):
    pairs = choose_pairs(U, V, 7, seed=3)
    assert pairs.shape == (7, 2) and len({tuple(p) for p in pairs.tolist()}) == 7
    suspect = from_module(small_cnn(5))
    got = pair_fingerprints(suspect, toy["uaps"], toy["view_images"], pairs, batch_size=17)
    n_views = len(set(pairs[:, 1].tolist()))
    assert suspect.queries == n_views * N + 7 * N
    full = fingerprints(from_module(small_cnn(5)), toy["uaps"], toy["view_images"])
    torch.testing.assert_close(got, full[pairs[:, 0], pairs[:, 1]], rtol=0, atol=1e-6)


def test_verify_queries_and_similarity(toy):
    b = load_bundle(toy["path"])
    same = from_module(small_cnn(0))
    r = verify_suspect(b, same, num_fingerprints=8, seed=1)
    n_views = len({v for _, v in r["pairs"]})
    assert r["queries"] == same.queries == n_views * N + 8 * N
    assert {"similarity", "p_value", "verdict", "queries", "num_fingerprints", "alpha", "seconds"} <= set(r)
    assert r["similarity"] == pytest.approx(1.0, abs=1e-5) and r["verdict"] == "pirated"
    other = verify_suspect(b, from_module(small_cnn(9)), num_fingerprints=8, seed=1)
    assert other["similarity"] < r["similarity"] - 1e-3
    with pytest.raises(ValueError, match=r"\[2, 12\]"):
        verify_suspect(b, from_module(small_cnn(0)), num_fingerprints=13)
    with pytest.raises(ValueError, match=r"\[2, 12\]"):
        verify_suspect(b, from_module(small_cnn(0)), num_fingerprints=1)


def test_verify_rejects_bad_suspects(toy):
    b = load_bundle(toy["path"])
    nan = Suspect(lambda x: torch.full((len(x), K), float("nan")), name="nan-model")
    with pytest.raises(FpencError, match="NaN"):
        verify_suspect(b, nan, num_fingerprints=4)
    five = from_module(small_cnn(0, classes=5))
    with pytest.raises(FpencError, match="returned 5 classes, but the victim has 10"):
        verify_suspect(b, five, num_fingerprints=4)
    with pytest.raises(FpencError, match="set up for 5 classes"):
        verify_suspect(b, from_module(small_cnn(0), num_classes=5), num_fingerprints=4)
    rgb = from_module(small_cnn(0, in_channels=3))
    with pytest.raises(FpencError, match=r"does not accept 1x28x28 .* \(fashion_mnist\); is it a model of the same task"):
        verify_suspect(b, rgb, num_fingerprints=4)


def _run_cli(args: list[str]) -> subprocess.CompletedProcess:
    code = ("import sys, fpenc.cli\n"
            f"rc = fpenc.cli.main({args!r})\n"
            "assert 'pytorch_lightning' not in sys.modules and 'lightning' not in sys.modules, 'Lightning was imported'\n"
            "sys.exit(rc)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)


@pytest.mark.parametrize("kind", ["torchscript", "onnx"])
def test_cli_verify_json(toy, kind):
    model = small_cnn(0)
    if kind == "torchscript":
        path = toy["tmp"] / "suspect.pt"
        torch.jit.save(torch.jit.script(model), str(path))
    else:
        pytest.importorskip("onnxruntime")
        path = toy["tmp"] / "suspect.onnx"
        torch.onnx.export(model, (torch.rand(2, C, H, W),), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, dynamo=False)
    proc = _run_cli(["verify", "--bundle", str(toy["path"]), "--suspect", str(path), "--fingerprints", "6", "--json"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert {"similarity", "p_value", "verdict", "queries"} <= set(out)
    assert out["similarity"] == pytest.approx(1.0, abs=1e-4) and out["verdict"] == "pirated"
    assert out["queries"] == len({v for _, v in out["pairs"]}) * N + 6 * N


def test_cli_verify_text_and_errors(toy, tmp_path, capsys):
    from fpenc.cli import main

    path = tmp_path / "suspect.pt"
    torch.jit.save(torch.jit.script(small_cnn(0)), str(path))
    assert main(["verify", "--bundle", str(toy["path"]), "--suspect", str(path), "--fingerprints", "4"]) == 0
    out = capsys.readouterr().out
    for word in ("similarity:", "p-value:", "verdict:", "queries:"):
        assert word in out
    bad = tmp_path / "bad.safetensors"
    raw = bytearray(toy["path"].read_bytes())
    begin, end = _tensor_span(toy["path"], "uaps")
    raw[begin + 5] ^= 0x01
    bad.write_bytes(bytes(raw))
    assert main(["verify", "--bundle", str(bad), "--suspect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fpenc verify: error:") and "part 'uaps'" in err
    assert main(["verify", "--bundle", str(toy["path"]), "--suspect", str(path), "--fingerprints", "99"]) == 2
    assert "[2, 12]" in capsys.readouterr().err
    pickled = tmp_path / "model.pt"
    torch.save(small_cnn(0), pickled)
    assert main(["verify", "--bundle", str(toy["path"]), "--suspect", str(pickled), "--fingerprints", "4"]) == 2
    assert "pickle" in capsys.readouterr().err


@pytest.fixture(scope="module")
def label_bundle(toy):
    """The toy bundle re-exported for a label-only encoder, with [G=3, P=12] per-model reference rows."""
    b = load_bundle(toy["path"])
    vf = fingerprints(from_module(toy["victim"], api="label"), toy["uaps"], toy["view_images"])
    path = toy["tmp"] / "label.safetensors"
    export_bundle(path, encoder=toy["enc"], uaps=b.uaps, view_images=b.view_images, datapoints=b.datapoints,
                  views=b.views, victim_fingerprints=vf,
                  reference_similarities=torch.rand(3, U * V, generator=torch.Generator().manual_seed(3)) * 0.5,
                  meta={"victim_id": "victim", "dataset": "fashion_mnist", "api": "label"})
    return load_bundle(path)


def test_label_bundle_reduces_richer_answers_and_refuses_poorer(label_bundle, toy):
    assert tuple(label_bundle.reference_similarities.shape) == (3, U * V)
    as_label = verify_suspect(label_bundle, from_module(small_cnn(9), api="label"), num_fingerprints=8, seed=2)
    as_probs = verify_suspect(label_bundle, from_module(small_cnn(9), api="probs"), num_fingerprints=8, seed=2)
    assert as_probs["similarities"] == as_label["similarities"]  # probabilities reduced to their arg-max
    assert verify_suspect(label_bundle, from_module(toy["victim"]), num_fingerprints=8)["similarity"] == pytest.approx(1.0, abs=1e-5)
    rows = label_bundle.reference_similarities.double().mean(1)
    assert as_label["reference_model_means"] == pytest.approx(rows.tolist(), abs=1e-6)
    b = load_bundle(toy["path"])  # a probability encoder cannot be fed a label-only suspect's answers
    with pytest.raises(FpencError, match="trained on 'probs' fingerprints, but the suspect answers only 'label'"):
        verify_suspect(b, from_module(small_cnn(0), api="label"), num_fingerprints=4)
    with pytest.raises(FpencError, match="only 'topk:2'"):
        verify_suspect(b, from_module(small_cnn(0), api="topk:2"), num_fingerprints=4)


def test_export_rejects_bad_reference_shapes(toy, tmp_path):
    b = load_bundle(toy["path"])
    for bad in (torch.rand(2, 3, 4), torch.rand(4, 1), torch.rand(1)):
        with pytest.raises(ValueError, match="reference_similarities"):
            export_bundle(tmp_path / "x.safetensors", encoder=toy["enc"], uaps=b.uaps, view_images=b.view_images,
                          datapoints=b.datapoints, views=b.views, victim_fingerprints=b.victim_fingerprints,
                          reference_similarities=bad)
