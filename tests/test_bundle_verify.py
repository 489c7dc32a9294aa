"""The exported bundle (fpenc.bundle), verification of one suspect (fpenc.verification) and `fpenc verify`."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import run_cli_without_lightning
from fpenc.bundle import BundleError, export_bundle, load_bundle
from fpenc.encoder.network import FingerprintEncoder
from fpenc.errors import FpencError, WeightsFileError
from fpenc.fingerprint.fingerprints import fingerprints
from fpenc.suspects import Suspect, from_module
from fpenc.verification import choose_pairs, pair_fingerprints, verify_suspect

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.onnx.*"),
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
]
REPO = Path(__file__).resolve().parents[1]
U, V, N, K, C, H, W = 3, 4, 6, 10, 1, 28, 28


def small_cnn(seed: int, in_channels: int = 1, classes: int = K) -> nn.Module:
    """A tiny random CNN with confident (far from uniform) outputs that vary from image to image, so
    fingerprints of two seeds differ."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(in_channels, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * H * W, classes))
    with torch.no_grad():
        net[-1].weight.mul_(20.0)
    return net.eval()


def write_toy_bundle(path, victim, references, enc, uaps, view_images, api="probs", sanity=None, gates=None, zoo=()):
    """A bundle whose reference evidence is computed from real ``references`` models (their
    fingerprints through ``enc``), labelled images labelled by the victim (S = 40)."""
    from fpenc.verdict import pair_agreement, pair_similarities

    vf = fingerprints(from_module(victim, api=api), uaps, view_images)
    flat_v = vf.reshape(-1, vf.shape[-1])
    with torch.no_grad():
        hv = enc.encode(flat_v)
        refs = [fingerprints(from_module(m, api=api), uaps, view_images).reshape(len(flat_v), -1) for m in references]
        ref_s = torch.stack([pair_similarities(enc.encode(f), hv) for f in refs])
        zoo_h = torch.stack(
            [hv]
            + [
                enc.encode(fingerprints(from_module(m, api=api), uaps, view_images).reshape(len(flat_v), -1))
                for m in zoo
            ]
        )
    ref_a = torch.stack([pair_agreement(f, flat_v, K) for f in refs])
    if sanity is None:
        images = torch.randint(0, 256, (40, C, H, W), generator=torch.Generator().manual_seed(7), dtype=torch.uint8)
        with torch.no_grad():
            labels = victim(images.float() / 255).argmax(1)
        sanity = (images, labels)
    meta = {
        "victim_id": "victim",
        "dataset": "fashion_mnist",
        "api": api,
        "eps": 0.25,
        "norm": "linf",
        "reference_models": [f"ref{i}" for i in range(len(references))],
        "gates": gates or {"min_accuracy": 0.55, "min_label_entropy": 0.0, "ood_threshold": None},
    }
    return export_bundle(
        path,
        encoder=enc,
        uaps=uaps,
        view_images=view_images,
        datapoints=torch.arange(N, dtype=torch.int64) * 7,
        views=torch.arange(V * N, dtype=torch.int64).reshape(V, N),
        victim_fingerprints=vf,
        reference_similarities=ref_s,
        reference_agreement=ref_a,
        sanity_images=sanity[0],
        sanity_labels=sanity[1],
        zoo_embeddings=zoo_h,
        meta=meta,
    ), vf


def toy_encoder(victim, independents, uaps, view_images, steps: int = 60) -> FingerprintEncoder:
    """A small encoder trained with SupCon to tell the victim's fingerprints from ``independents``'."""
    from fpenc.encoder.loss import SupConLoss

    x = torch.cat([fingerprints(from_module(m), uaps, view_images).reshape(U * V, -1) for m in [victim, *independents]])
    y = torch.cat([torch.zeros(U * V), torch.ones(len(independents) * U * V)]).long()
    torch.manual_seed(1)
    enc = FingerprintEncoder(2 * N * K, hidden_dim=32, embed_dim=16, proj_dim=8)
    opt, loss = torch.optim.Adam(enc.parameters(), 1e-2), SupConLoss(0.1)
    for _ in range(steps):
        opt.zero_grad()
        loss(enc(x), y).backward()
        opt.step()
    return enc.eval()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A bundle of a random victim CNN: U=3 UAPs, V=4 views of N=6 1x28x28 images, K=10, and 4
    random reference CNNs."""
    tmp = tmp_path_factory.mktemp("bundle")
    g = torch.Generator().manual_seed(0)
    victim = small_cnn(0)
    uaps = (torch.rand(U, C, H, W, generator=g) - 0.5) * 0.5
    view_images = torch.randint(0, 256, (V, N, C, H, W), generator=g, dtype=torch.uint8)
    enc = toy_encoder(victim, [small_cnn(s) for s in (20, 21, 22)], uaps, view_images)
    path = tmp / "victim.safetensors"
    sha, vf = write_toy_bundle(path, victim, [small_cnn(s) for s in (10, 11, 12, 13)], enc, uaps, view_images)
    return {
        "path": path,
        "sha": sha,
        "victim": victim,
        "enc": enc,
        "uaps": uaps,
        "view_images": view_images,
        "vf": vf,
        "tmp": tmp,
    }


def test_round_trip(toy):
    b = load_bundle(toy["path"])
    assert b.sha256 == toy["sha"]
    assert torch.equal(b.uaps, toy["uaps"]) and torch.equal(b.view_images, toy["view_images"])
    assert torch.equal(b.victim_fingerprints, toy["vf"])
    assert b.datapoints.dtype == torch.int64 and b.views.shape == (V, N)
    assert (b.num_uaps, b.num_views, b.num_datapoints, b.num_classes, b.input_shape) == (U, V, N, K, (C, H, W))
    m = b.metadata
    assert m["format"] == "fpenc-bundle/2" and m["encoder_config"] == toy["enc"].config()
    assert (
        m["meta"]["victim_id"] == "victim" and m["meta"]["num_classes"] == K and m["meta"]["input_shape"] == [C, H, W]
    )
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
    kw = dict(
        encoder=b.encoder(),
        uaps=b.uaps,
        view_images=b.view_images,
        datapoints=b.datapoints,
        views=b.views,
        victim_fingerprints=b.victim_fingerprints,
        reference_similarities=b.reference_similarities,
        reference_agreement=b.reference_agreement,
        sanity_images=b.sanity_images,
        sanity_labels=b.sanity_labels,
        zoo_embeddings=b.zoo_embeddings,
    )
    with pytest.raises(ValueError, match="view_images must be uint8"):
        export_bundle(tmp_path / "x.safetensors", **{**kw, "view_images": b.view_images.float()})
    with pytest.raises(ValueError, match="encoder takes"):
        export_bundle(tmp_path / "x.safetensors", **{**kw, "encoder": FingerprintEncoder(7)})
    with pytest.raises(ValueError, match="JSON"):
        export_bundle(tmp_path / "x.safetensors", **kw, meta={"bad": object()})
    with pytest.raises(ValueError, match="sanity_labels"):
        export_bundle(tmp_path / "x.safetensors", **{**kw, "sanity_labels": b.sanity_labels[:3]})
    with pytest.raises(ValueError, match="reference_agreement"):
        export_bundle(tmp_path / "x.safetensors", **{**kw, "reference_agreement": b.reference_agreement[:1]})
    with pytest.raises(ValueError, match="zoo_embeddings"):
        export_bundle(tmp_path / "x.safetensors", **{**kw, "zoo_embeddings": b.zoo_embeddings[:, :2]})
    assert not (tmp_path / "x.safetensors").exists() and not list(tmp_path.glob(".x.safetensors.*"))


def test_pair_fingerprints_match_full_fingerprints(toy):
    pairs = choose_pairs(U, V, 7, seed=3)
    assert pairs.shape == (7, 2) and len({tuple(p) for p in pairs.tolist()}) == 7
    suspect = from_module(small_cnn(5))
    got = pair_fingerprints(suspect, toy["uaps"], toy["view_images"], pairs, batch_size=17)
    n_views = len(set(pairs[:, 1].tolist()))
    assert suspect.queries == n_views * N + 7 * N
    full = fingerprints(from_module(small_cnn(5)), toy["uaps"], toy["view_images"])
    # the same answers up to float noise: batches of another size take other kernels (1.01e-6 seen
    # with 16 threads); a class flips only when its probability moves by far more than this
    torch.testing.assert_close(got, full[pairs[:, 0], pairs[:, 1]], rtol=0, atol=1e-5)


def test_verify_queries_and_similarity(toy):
    b = load_bundle(toy["path"])
    same = from_module(small_cnn(0))
    r = verify_suspect(b, same, num_fingerprints=8, seed=1)
    n_views = len({v for _, v in r["pairs"]})
    assert r["queries"] == same.queries == 40 + n_views * N + 8 * N  # labelled images first
    assert {
        "similarity",
        "agreement",
        "p_value",
        "verdict",
        "reasons",
        "queries",
        "num_fingerprints",
        "alpha",
        "sanity",
        "p_value_floor",
        "seconds",
    } <= set(r)
    assert r["similarity"] == pytest.approx(1.0, abs=1e-5) and r["agreement"] == 1.0 and r["verdict"] == "derived"
    assert r["sanity"]["accuracy"] == 1.0 and r["reasons"]
    other = verify_suspect(b, from_module(small_cnn(9)), num_fingerprints=8, seed=1)
    assert other["similarity"] < r["similarity"] - 1e-3 and other["verdict"] != "derived"
    with pytest.raises(ValueError, match=r"\[2, 12\]"):
        verify_suspect(b, from_module(small_cnn(0)), num_fingerprints=13)
    with pytest.raises(ValueError, match=r"\[2, 12\]"):
        verify_suspect(b, from_module(small_cnn(0)), num_fingerprints=1)


def test_verify_uses_every_pair_by_default_and_ignores_the_seed(toy):
    b = load_bundle(toy["path"])
    runs = [verify_suspect(b, from_module(small_cnn(0)), seed=s) for s in (0, 1, 2)]
    assert runs[0]["num_fingerprints"] == U * V and runs[0]["pairs"] == [[u, v] for u in range(U) for v in range(V)]
    assert len({(r["p_value"], r["similarity"], r["verdict"]) for r in runs}) == 1
    assert runs[0]["queries"] == 40 + V * N * (1 + U)  # labelled images, then every clean view and perturbed pair


def test_verify_refuses_alpha_at_or_below_the_floor(toy):
    from fpenc.errors import ConfigError
    from fpenc.verification import bundle_pvalue_floor

    b = load_bundle(toy["path"])
    floor = bundle_pvalue_floor(b)
    assert 0.0 < floor < 0.05
    with pytest.raises(ConfigError, match="p-value floor"):
        verify_suspect(b, from_module(small_cnn(0)), alpha=floor / 2)
    victim = verify_suspect(b, from_module(small_cnn(0)), alpha=floor * 1.5)
    assert victim["p_value"] == pytest.approx(floor, rel=1e-6) and victim["verdict"] == "derived"


def test_verify_gates_make_broken_models_not_assessable(toy):
    b = load_bundle(toy["path"])
    constant = Suspect(lambda x: torch.nn.functional.one_hot(torch.full((len(x),), 3), K).float() * 9, name="const")
    r = verify_suspect(b, constant)
    assert r["verdict"] == "not assessable" and r["sanity"]["top_class"] == 3
    assert any("accuracy" in why for why in r["reasons"])
    stranger = verify_suspect(b, from_module(small_cnn(9)))
    assert stranger["verdict"] == "not assessable" and stranger["sanity"]["accuracy"] < 0.55


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
    with pytest.raises(FpencError, match=r"failed on 1x28x28 .* \(fashion_mnist\): .*is it a model of the same task"):
        verify_suspect(b, rgb, num_fingerprints=4)


def _run_cli(args: list[str]) -> subprocess.CompletedProcess:
    return run_cli_without_lightning(args)


@pytest.mark.parametrize("kind", ["torchscript", "onnx"])
def test_cli_verify_json(toy, kind):
    model = small_cnn(0)
    if kind == "torchscript":
        path = toy["tmp"] / "suspect.pt"
        torch.jit.save(torch.jit.script(model), str(path))
    else:
        pytest.importorskip("onnxruntime")
        path = toy["tmp"] / "suspect.onnx"
        torch.onnx.export(
            model,
            (torch.rand(2, C, H, W),),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "b"}, "y": {0: "b"}},
            dynamo=False,
        )
    proc = _run_cli(["verify", "--bundle", str(toy["path"]), "--suspect", str(path), "--fingerprints", "6", "--json"])
    assert proc.returncode == 10, proc.stderr  # derived
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["schema"] == "fpenc-verify/1" and len(doc["results"]) == 1
    out = doc["results"][0]
    assert {"similarity", "p_value", "verdict", "queries"} <= set(out)
    assert out["similarity"] == pytest.approx(1.0, abs=1e-4) and out["verdict"] == "derived"
    assert out["queries"] == 40 + len({v for _, v in out["pairs"]}) * N + 6 * N


def test_cli_verify_text_and_errors(toy, tmp_path, capsys):
    from fpenc.cli import main

    path = tmp_path / "suspect.pt"
    torch.jit.save(torch.jit.script(small_cnn(0)), str(path))
    assert main(["verify", "--bundle", str(toy["path"]), "--suspect", str(path), "--fingerprints", "4"]) == 10
    out = capsys.readouterr().out
    for word in (
        "sanity:",
        "agreement:",
        "similarity:",
        "p-value:",
        "floor",
        "verdict:     derived",
        "because:",
        "queries:",
    ):
        assert word in out
    other = tmp_path / "other.pt"
    torch.jit.save(torch.jit.script(small_cnn(9)), str(other))
    assert main(["verify", "--bundle", str(toy["path"]), "--suspect", str(other)]) == 11  # not assessable
    assert "verdict:     not assessable" in capsys.readouterr().out
    assert main(["verify", "--bundle", str(toy["path"]), "--suspect", str(path), "--alpha", "1e-9"]) == 2
    assert "p-value floor" in capsys.readouterr().err
    assert main(["verify", "--bundle", str(toy["path"]), "--suspect", str(path), "--seed", "-1"]) == 2
    assert "--seed must be >= 0" in capsys.readouterr().err
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


def test_cli_verify_several_suspects_csv_json_and_fail_on(toy, tmp_path, capsys):
    """Several suspects (names and a glob) in one call: one row each, exit codes by verdict, and a
    bad file reported in its row without stopping the others."""
    import csv
    import io

    from fpenc.cli import main

    folder = tmp_path / "suspects"
    folder.mkdir()
    torch.jit.save(torch.jit.script(small_cnn(0)), str(folder / "a_copy.pt"))  # the victim: derived
    torch.jit.save(torch.jit.script(small_cnn(9)), str(folder / "b_other.pt"))  # random CNN: not assessable
    bundle = str(toy["path"])
    assert main(["verify", "--bundle", bundle, str(folder / "*.pt"), "--format", "csv", "--fingerprints", "4"]) == 11
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [Path(r["suspect"]).name for r in rows] == ["a_copy.pt", "b_other.pt"]
    assert [r["verdict"] for r in rows] == ["derived", "not assessable"]
    assert float(rows[0]["p_value"]) < 0.01 and rows[1]["reasons"]
    args = ["verify", "--bundle", bundle, str(folder / "b_other.pt"), "--fingerprints", "4", "--format", "csv"]
    assert main([*args, "--fail-on", "derived"]) == 0  # nothing derived
    assert main([*args, str(folder / "a_copy.pt"), "--fail-on", "derived"]) == 1
    assert main([*args, "--fail-on", "derived,not assessable"]) == 1
    capsys.readouterr()
    assert main([*args, "--fail-on", "guilty"]) == 2
    assert "--fail-on takes verdicts" in capsys.readouterr().err
    pickled = folder / "c_pickle.pt"
    torch.save(small_cnn(0), pickled)
    assert main(["verify", "--bundle", bundle, str(folder / "a_copy.pt"), str(pickled), "--format", "json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert [r["verdict"] for r in doc["results"]] == ["derived", "error"] and "pickle" in doc["results"][1]["error"]
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((REPO / "fpenc" / "schemas" / "verify.schema.json").read_text())
    jsonschema.validate(doc, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**doc, "results": [{**doc["results"][0], "verdict": "guilty"}]}, schema)
    assert main(["verify", "--bundle", bundle, str(tmp_path / "none*.onnx")]) == 2
    assert "no file matches" in capsys.readouterr().err
    assert main(["verify", "--bundle", bundle]) == 2
    assert "give the suspect model file(s)" in capsys.readouterr().err


def test_cli_verify_onnx_torchscript_and_pt2_one_csv_row_each(toy, tmp_path, capsys):
    """The three suspect formats in one call: one CSV row each; --fail-on derived exits 1 when one is."""
    pytest.importorskip("onnxruntime")
    from fpenc.cli import main
    from fpenc.suspect_export import export_model

    a = export_model(small_cnn(9), (C, H, W), tmp_path / "a.onnx")  # another CNN: not derived
    b = export_model(toy["victim"], (C, H, W), tmp_path / "b.pt")  # the victim: derived
    c = tmp_path / "c.pt2"
    net, x = small_cnn(11).eval(), torch.rand(2, C, H, W)
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("b")},)), c)
    args = ["verify", "--bundle", str(toy["path"]), str(a), str(b), str(c), "--format", "csv", "--fingerprints", "4"]
    assert main([*args, "--trusted-suspect", "--fail-on", "derived"]) == 1
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 4 and [r.split(",")[0] for r in rows[1:]] == [str(a), str(b), str(c)]
    assert rows[2].split(",")[1] == "derived" and rows[1].split(",")[1] != "derived"
    assert main(args) == 2  # the .pt2 without --trusted-suspect: an error row, the others judged
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 4 and rows[3].split(",")[1] == "error" and rows[2].split(",")[1] == "derived"


@pytest.fixture(scope="module")
def label_bundle(toy):
    """The toy bundle re-exported for a label-only encoder."""
    path = toy["tmp"] / "label.safetensors"
    write_toy_bundle(
        path,
        toy["victim"],
        [small_cnn(s) for s in (10, 11, 12)],
        toy["enc"],
        toy["uaps"],
        toy["view_images"],
        api="label",
    )
    return load_bundle(path)


def test_label_bundle_reduces_richer_answers_and_refuses_poorer(label_bundle, toy):
    assert tuple(label_bundle.reference_similarities.shape) == (3, U * V)
    # (the toy encoder was trained on probabilities: uninformative here, hence a high p-value floor and alpha)
    as_label = verify_suspect(label_bundle, from_module(small_cnn(9), api="label"), 8, alpha=0.9, seed=2)
    as_probs = verify_suspect(label_bundle, from_module(small_cnn(9), api="probs"), 8, alpha=0.9, seed=2)
    assert as_probs["similarities"] == as_label["similarities"]  # probabilities reduced to their arg-max
    assert as_probs["agreements"] == as_label["agreements"]
    same = verify_suspect(label_bundle, from_module(toy["victim"]), 8, alpha=0.9)
    assert same["similarity"] == pytest.approx(1.0, abs=1e-5) and same["agreement"] == 1.0
    b = load_bundle(toy["path"])  # a probability encoder cannot be fed a label-only suspect's answers
    with pytest.raises(FpencError, match="trained on 'probs' fingerprints, but the suspect answers only 'label'"):
        verify_suspect(b, from_module(small_cnn(0), api="label"), num_fingerprints=4)
    with pytest.raises(FpencError, match="only 'topk:2'"):
        verify_suspect(b, from_module(small_cnn(0), api="topk:2"), num_fingerprints=4)


def test_export_rejects_bad_reference_shapes(toy, tmp_path):
    b = load_bundle(toy["path"])
    for bad in (torch.rand(2, 3, 4), torch.rand(4, 1), torch.rand(1), torch.rand(1, U * V)):
        with pytest.raises(ValueError, match="reference_similarities"):
            export_bundle(
                tmp_path / "x.safetensors",
                encoder=toy["enc"],
                uaps=b.uaps,
                view_images=b.view_images,
                datapoints=b.datapoints,
                views=b.views,
                victim_fingerprints=b.victim_fingerprints,
                reference_similarities=bad,
                reference_agreement=bad,
                sanity_images=b.sanity_images,
                sanity_labels=b.sanity_labels,
                zoo_embeddings=b.zoo_embeddings,
            )


def test_old_bundle_format_is_refused_with_the_remedy(toy, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(toy["path"]), framework="pt") as fh:
        meta = fh.metadata()
    save_file(
        load_file(str(toy["path"])), str(tmp_path / "old.safetensors"), metadata={**meta, "format": "fpenc-bundle/1"}
    )
    with pytest.raises(BundleError, match="older format .* re-export it with `fpenc test`"):
        load_bundle(tmp_path / "old.safetensors")


def _forge(src: Path, dst: Path, change) -> None:
    """Rewrite a bundle with ``change(tensors, header)`` applied and every hash recomputed, as a forger would."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from fpenc.bundle import ENCODER_PREFIX, state_dict_sha256, tensor_sha256

    with safe_open(str(src), framework="pt") as fh:
        raw = fh.metadata()
    header, tensors = json.loads(raw["fpenc"]), load_file(str(src))
    change(tensors, header)
    for name, rec in header["parts"].items():
        if name != "encoder":
            rec["sha256"] = tensor_sha256(tensors[name])
    header["parts"]["encoder"]["sha256"] = state_dict_sha256(
        {k[len(ENCODER_PREFIX) :]: v for k, v in tensors.items() if k.startswith(ENCODER_PREFIX)}
    )
    save_file(tensors, str(dst), metadata={**raw, "fpenc": json.dumps(header, sort_keys=True)})


def test_signed_bundle_verifies_with_its_key_and_forgeries_are_named(toy, tmp_path, capsys):
    from fpenc.cli import main

    signed = tmp_path / "signed.safetensors"
    signed.write_bytes(toy["path"].read_bytes())
    assert main(["keygen", "--out", str(tmp_path / "owner")]) == 0
    assert main(["keygen", "--out", str(tmp_path / "other")]) == 0
    assert (tmp_path / "owner.key").stat().st_mode & 0o777 == 0o600
    assert main(["keygen", "--out", str(tmp_path / "owner")]) == 2  # never overwrites a key
    assert main(["sign", "--bundle", str(signed), "--key", str(tmp_path / "owner.key")]) == 0
    sig = tmp_path / "signed.safetensors.sig.json"
    assert sig.is_file()
    suspect = tmp_path / "s.pt"
    torch.jit.save(torch.jit.script(small_cnn(0)), str(suspect))
    capsys.readouterr()
    assert (
        main(
            ["verify", "--bundle", str(signed), "--suspect", str(suspect), "--public-key", str(tmp_path / "owner.pub")]
        )
        == 10
    )
    assert "signed by key" in capsys.readouterr().out
    assert (
        main(
            ["verify", "--bundle", str(signed), "--suspect", str(suspect), "--public-key", str(tmp_path / "other.pub")]
        )
        == 2
    )
    assert "not made with the key" in capsys.readouterr().err
    cases = {
        "meta.alpha": lambda t, h: h["meta"].update(alpha=0.09),  # one header value
        "meta.gates.min_accuracy": lambda t, h: h["meta"]["gates"].update(min_accuracy=0.0),
        "parts.reference_agreement.sha256": lambda t, h: t["reference_agreement"].mul_(0.5),  # a tensor, hashes redone
    }
    for field, change in cases.items():
        forged = tmp_path / "forged.safetensors"
        _forge(signed, forged, change)
        load_bundle(forged)  # its own hashes are consistent: only the signature can tell
        assert (
            main(
                [
                    "verify",
                    "--bundle",
                    str(forged),
                    "--suspect",
                    str(suspect),
                    "--public-key",
                    str(tmp_path / "owner.pub"),
                    "--signature",
                    str(sig),
                ]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert "changed after it was signed" in err and field in err, (field, err)


def test_commitment_covers_every_header_value(toy):
    from fpenc.signing import changed_fields, commitment

    b = load_bundle(toy["path"])
    header = json.loads(json.dumps(b.metadata))
    assert commitment(header) == b.commitment
    header["meta"]["victim_id"] = "someone-else"
    assert commitment(header) != b.commitment and changed_fields(b.metadata, header) == ["meta.victim_id"]


def test_encoder_bench_method_scores_prefixes_of_pairs_as_verify_does(toy):
    from fpenc.baselines import Defender, EncoderSimilarity
    from fpenc.baselines.encoder_similarity import pair_order

    b = load_bundle(toy["path"])
    order = pair_order(U, V)
    assert order.shape == (U * V, 2) and len({tuple(p) for p in order.tolist()}) == U * V
    assert order[:V, 1].tolist() == list(range(V))  # each view's first pair before any view's second
    d = Defender(victim=toy["victim"], images=toy["view_images"][0], labels=torch.zeros(N), num_classes=K, bundle=b)
    m = EncoderSimilarity(max_queries=10_000).prepare(d)
    assert m.available == V * N + U * V * N
    suspect = small_cnn(9)
    answers = m.observe(suspect)[0]
    full = verify_suspect(b, from_module(small_cnn(9)))  # naive reference: every pair, as fpenc verify
    sims = {tuple(p): s for p, s in zip(full["pairs"], full["similarities"])}
    assert m.score(answers, m.available) == pytest.approx(np.mean(list(sims.values())), abs=1e-5)
    assert m.spent(2 * N) == 2 * N and m.score(answers, 2 * N + 1) == pytest.approx(sims[(0, 0)], abs=1e-5)
    two = [sims[tuple(p)] for p in order[:2].tolist()]
    assert m.score(answers, 4 * N) == pytest.approx(np.mean(two), abs=1e-5)
    assert m.spent(2 * N - 1) == 0
    with pytest.raises(ValueError, match="no fingerprint pair"):
        m.score(answers, 2 * N - 1)
    assert m.score(m.observe(toy["victim"])[0], m.available) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="bench --bundle"):
        EncoderSimilarity().prepare(Defender(toy["victim"], d.images, d.labels, K))
