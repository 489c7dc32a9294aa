"""Key selection, views, fingerprints, API modes, file suspects (TorchScript, ONNX, .pt2) and refusal of pickles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fpenc.errors import FpencError
from fpenc.fingerprint.fingerprints import fingerprints
from fpenc.fingerprint.selection import kmeans_select, sample_views
from fpenc.suspects import Suspect, from_file, from_module


def small_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(1 * 8 * 8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)
    ).eval()


def key_inputs(u=2, v=3, n=5):
    g = torch.Generator().manual_seed(0)
    uaps = (torch.rand(u, 1, 8, 8, generator=g) - 0.5) * 0.4
    views = (torch.rand(v, n, 1, 8, 8, generator=g) * 255).to(torch.uint8)
    return uaps, views


@pytest.mark.parametrize("data_seed", [0, 1, 3, 4])
def test_kmeans_select_one_distinct_point_per_cluster(data_seed):
    # Seeds 0, 1, 3 and 4 are ones where FAISS's own random-point seeding put two centroids in
    # one true cluster; k-means++ seeding must not.
    rng = np.random.default_rng(data_seed)
    centers = rng.normal(size=(6, 4)) * 20
    reps = np.concatenate([c + rng.normal(size=(50, 4)) for c in centers]).astype(np.float32)
    for seed in range(3):
        chosen = kmeans_select(reps, 6, seed=seed)
        assert len(set(chosen.tolist())) == 6
        assert sorted((chosen // 50).tolist()) == list(range(6))  # one per true cluster
        # each chosen point is the nearest point of its cluster to the cluster's mean
        for c in chosen:
            members = reps[(c // 50) * 50 : (c // 50 + 1) * 50]
            d = np.linalg.norm(members - members.mean(0), axis=1)
            assert c % 50 == int(np.argmin(d))
    with pytest.raises(ValueError):
        kmeans_select(reps, 0)


def test_sample_views_are_neighbours_without_replacement():
    rng = np.random.default_rng(1)
    reps = rng.normal(size=(200, 3)).astype(np.float32)
    selected = np.array([3, 50, 120])
    views = sample_views(reps, selected, num_views=4, neighbours=6, seed=0)
    assert views.shape == (4, 3)
    for j, s in enumerate(selected):
        d = np.linalg.norm(reps - reps[s], axis=1)
        nearest6 = set(np.argsort(d)[:6].tolist())
        assert set(views[:, j].tolist()) <= nearest6 and len(set(views[:, j].tolist())) == 4
    with pytest.raises(ValueError):
        sample_views(reps, selected, num_views=7, neighbours=6)


def test_fingerprint_layout_and_determinism():
    net = small_net()
    uaps, views = key_inputs()
    fp1 = fingerprints(from_module(net), uaps, views)
    fp2 = fingerprints(from_module(net), uaps, views)
    assert fp1.shape == (2, 3, 2 * 5 * 4)
    assert torch.equal(fp1, fp2)
    # [M(x_1), M(x_1+v), ...] for UAP 1, view 2
    x = views[2].float() / 255
    with torch.no_grad():
        clean, adv = torch.softmax(net(x), 1), torch.softmax(net((x + uaps[1]).clamp(0, 1)), 1)
    expected = torch.stack([clean, adv], 1).reshape(-1)
    assert torch.allclose(fp1[1, 2], expected, atol=1e-6)


def test_query_count():
    suspect = from_module(small_net())
    uaps, views = key_inputs(u=2, v=3, n=5)
    fingerprints(suspect, uaps, views)
    assert suspect.queries == 3 * 5 * (1 + 2)


def test_topk_and_label_modes():
    net = small_net()
    uaps, views = key_inputs()
    full = fingerprints(from_module(net, api="probs"), uaps, views).reshape(-1, 4)
    top2 = fingerprints(from_module(net, api="topk:2"), uaps, views).reshape(-1, 4)
    label = fingerprints(from_module(net, api="label"), uaps, views).reshape(-1, 4)
    assert ((top2 > 0).sum(1) <= 2).all()
    assert torch.allclose(top2.max(1).values, full.max(1).values)
    assert torch.equal(label.sum(1), torch.ones(len(label)))
    assert torch.equal(label.argmax(1), full.argmax(1))


def test_bad_suspect_outputs_are_clear_errors():
    x = torch.rand(3, 1, 8, 8)
    with pytest.raises(FpencError, match="NaN or inf"):
        Suspect(lambda t: torch.full((len(t), 4), float("nan")))(x)
    with pytest.raises(FpencError, match="returned 3 classes, but the victim has 4"):
        Suspect(lambda t: torch.zeros(len(t), 3), num_classes=4)(x)


def test_torchscript_export_and_onnx_suspects_match_the_module(tmp_path):
    net = small_net()
    uaps, views = key_inputs()
    reference = fingerprints(from_module(net), uaps, views)
    example = torch.rand(2, 1, 8, 8)
    ts = tmp_path / "m.ts"
    torch.jit.save(torch.jit.trace(net, example), ts)
    pt2 = tmp_path / "m.pt2"
    dim = torch.export.Dim("batch", min=1, max=100_000)
    torch.export.save(torch.export.export(net, (example,), dynamic_shapes=({0: dim},)), pt2)
    assert torch.allclose(fingerprints(from_file(ts), uaps, views), reference, atol=1e-5)
    with pytest.raises(FpencError, match=r"torch.export \(.pt2\) file: loading one unpickles .*--trusted-suspect"):
        from_file(pt2)  # refused unless the user trusts the file
    assert torch.allclose(fingerprints(from_file(pt2, trusted=True), uaps, views), reference, atol=1e-5)
    onnx = pytest.importorskip("onnxruntime")
    assert onnx
    onnx_path = tmp_path / "m.onnx"
    torch.onnx.export(
        net,
        (example,),
        onnx_path,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "b"}, "y": {0: "b"}},
        dynamo=False,
    )
    assert torch.allclose(fingerprints(from_file(onnx_path), uaps, views), reference, atol=1e-5)


def test_oversized_files_and_zip_bombs_are_refused_before_reading(tmp_path, monkeypatch):
    import zipfile

    big = tmp_path / "big.onnx"
    with open(big, "wb") as fh:  # a sparse 6 GiB file: never read
        fh.truncate(6 << 30)
    with pytest.raises(FpencError, match="over the 4.0 GiB limit"):
        from_file(big)
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m/code/x.py", b"\0" * (64 << 20))  # 64 MiB of zeros, compressed to ~64 KiB
    assert bomb.stat().st_size < 1 << 20
    monkeypatch.setenv("FPENC_MAX_UNZIPPED_BYTES", str(32 << 20))
    with pytest.raises(FpencError, match="decompress to .* refused as a possible zip bomb"):
        from_file(bomb)


def test_a_file_that_would_unpickle_is_refused(tmp_path, monkeypatch):
    net = small_net()
    path = tmp_path / "model.pt"
    torch.save(net, path)  # a pickled nn.Module: loading it would run code
    called = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: called.append(1))
    with pytest.raises(FpencError, match="pickled Python object"):
        from_file(path)
    raw = tmp_path / "raw.pkl"
    import pickle

    raw.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(FpencError, match="pickled Python object"):
        from_file(raw)
    assert not called


def _fingerprint_args(tmp_path, data_root, uap: str, key: str) -> tuple[list[str], Path]:
    """`fpenc fingerprint` arguments for the tiny zoo with these uap/key settings, and the overlay."""
    from conftest import tiny_zoo_config

    config = tiny_zoo_config(tmp_path, data_root)
    overlay = tmp_path / "fp.yaml"
    overlay.write_text(f"pipeline:\n  name: tiny\n  uap: {uap}\n  key: {key}\n")
    return ["fingerprint", "--config", str(config), "--config", str(overlay), "--no-progress"], overlay


def test_fingerprint_command_on_tiny_zoo(tmp_path, tiny_fmnist):
    from fpenc.cli import main
    from fpenc.fingerprint.key import load_key
    from fpenc.io import load_tensors

    args, _ = _fingerprint_args(
        tmp_path,
        tiny_fmnist,
        "{num_uaps: 2, steps: 3, batch_size: 32, holdout: 50}",
        "{num_datapoints: 10, num_views: 3, neighbours: 4}",
    )
    assert main(args) == 0
    run = tmp_path / "runs/tiny"
    key = load_key(run / "key.pt")
    assert key["datapoints"].shape == (10,) and key["views"].shape == (3, 10)
    assert key["view_images"].shape == (3, 10, 1, 28, 28) and key["view_images"].dtype == torch.uint8
    splits = np.load(run / "splits.npz")
    assert set(key["views"].flatten().tolist()) <= set(splits["victim"].tolist())  # the victim's own data
    files = sorted((run / "fingerprints").glob("*.pt"))
    assert len(files) == 5
    fp = load_tensors(files[0], "fpenc-fingerprints/1")
    assert fp["fingerprints"].shape == (2, 3, 2 * 10 * 10)
    before = {f.name: f.stat().st_mtime_ns for f in files}
    assert main(args) == 0  # everything cached
    assert {f.name: f.stat().st_mtime_ns for f in files} == before


def test_key_from_the_victims_errors_on_the_test_set(tmp_path, tiny_fmnist):
    from fpenc.cli import main
    from fpenc.data.datasets import load_dataset
    from fpenc.fingerprint.key import load_key
    from fpenc.rundir import load_zoo_model, victim_entry
    from fpenc.zoo.evaluate import predict_probs

    args, overlay = _fingerprint_args(
        tmp_path,
        tiny_fmnist,
        "{num_uaps: 1, steps: 2, batch_size: 32, holdout: 50}",
        "{num_datapoints: 6, num_views: 2, neighbours: 3, pool: test, selection: errors}",
    )
    assert main(args) == 0
    run = tmp_path / "runs/tiny"
    key = load_key(run / "key.pt")
    assert key["pool"] == "test" and key["views"].shape == (2, 6)
    arrays = load_dataset("fashion_mnist", root=tiny_fmnist)
    victim = load_zoo_model(victim_entry(run), run)
    wrong = predict_probs(victim, arrays.test_x).argmax(1) != arrays.test_y
    assert wrong[key["datapoints"]].all() and wrong[key["views"].flatten()].all()  # only the victim's errors
    assert torch.equal(key["view_images"][0], arrays.test_x[key["views"][0]])
    assert torch.equal(key["datapoint_labels"], arrays.test_y[key["datapoints"]])
    # asking for more datapoints than the victim has errors is a clear error, not a silent fallback
    overlay.write_text(overlay.read_text().replace("num_datapoints: 6", "num_datapoints: 100000"))
    assert main(args) == 2


def test_conferrable_key_on_the_tiny_zoo(tmp_path, tiny_fmnist):
    """`fpenc fingerprint` with selection: conferrable: the key's images are crafted images of the test
    pool, within eps of their source images; too few passing images is a one-line error."""
    from fpenc.cli import main
    from fpenc.data.datasets import load_dataset
    from fpenc.fingerprint.key import load_key

    key = (
        "{num_datapoints: 4, num_views: 2, neighbours: 2, pool: test, selection: conferrable, "
        "reference: [homologous-fmnist_c-sgd-s0, homologous-fmnist_c-adam-s0], reference_quorum: 0.5, "
        "candidates: 120, conferrable_eps: 0.3, conferrable_steps: 8}"
    )
    args, overlay = _fingerprint_args(
        tmp_path, tiny_fmnist, "{num_uaps: 1, steps: 2, batch_size: 32, holdout: 50}", key
    )
    assert main(args) == 0
    k = load_key(tmp_path / "runs/tiny/key.pt")
    assert k["config"]["surrogates"] == ["piracy-fmnist_b-adam-s0", "piracy-fmnist_c-adam-s0"]
    arrays = load_dataset("fashion_mnist", root=tiny_fmnist)
    source = arrays.test_x[k["views"]]  # [V, N, C, H, W]
    diff = (k["view_images"].int() - source.int()).abs()
    assert diff.max() <= round(0.3 * 255) + 1 and not torch.equal(k["view_images"], source)
    overlay.write_text(overlay.read_text().replace("candidates: 120", "candidates: 3"))
    assert main(args) == 2
    from fpenc.config import load_pipeline_config
    from fpenc.fingerprint.key import build_key

    with pytest.raises(FpencError, match="conferrable examples pass"):
        build_key(load_pipeline_config([args[2], args[4]]), log=lambda *_: None)


def test_victim_errors_mask():
    from fpenc.fingerprint.key import victim_errors

    labels = np.array([0, 1, 2, 3, 4])
    victim = np.array([0, 2, 2, 0, 1])  # wrong on 1, 3, 4
    assert victim_errors(victim, labels).tolist() == [False, True, False, True, True]
    ref_a = np.array([0, 2, 2, 3, 4])  # agrees with the victim's error on 1
    ref_b = np.array([1, 1, 2, 0, 4])  # agrees with the victim's error on 3
    assert victim_errors(victim, labels, [ref_a]).tolist() == [False, False, False, True, True]
    assert victim_errors(victim, labels, [ref_a, ref_b]).tolist() == [False, False, False, False, True]
    # a quorum of 1/2: one of the two reference models disagreeing is enough
    assert victim_errors(victim, labels, [ref_a, ref_b], quorum=0.5).tolist() == [False, True, False, True, True]
    ref_c = np.array([0, 2, 2, 0, 1])  # the victim's twin: agrees with every error
    assert victim_errors(victim, labels, [ref_a, ref_b, ref_c], quorum=2 / 3).tolist() == [
        False,
        False,
        False,
        False,
        True,
    ]
    assert victim_errors(victim, labels, [ref_a, ref_b, ref_c], quorum=1 / 3).tolist() == [
        False,
        True,
        False,
        True,
        True,
    ]
    with pytest.raises(ValueError, match="quorum"):
        victim_errors(victim, labels, [ref_a], quorum=0.0)


def test_idiosyncratic_key_refuses_bad_references(tmp_path, tiny_fmnist):
    from fpenc.cli import main
    from fpenc.config import load_pipeline_config
    from fpenc.fingerprint.key import build_key
    from fpenc.zoo.builder import build_zoo

    key_yaml = (
        "{num_datapoints: 90, num_views: 2, neighbours: 2, pool: test, selection: idiosyncratic, reference: [REF]}"
    )
    args, overlay = _fingerprint_args(
        tmp_path, tiny_fmnist, "{num_uaps: 1, steps: 2, batch_size: 32, holdout: 50}", key_yaml
    )
    text = overlay.read_text()
    for ref, message in (
        ("homologous-nope", "not in the zoo"),
        ("piracy-fmnist_b-adam-s0", "must be homologous models"),
        ("homologous-fmnist_c-sgd-s0", "pass key.selection 'idiosyncratic'"),
    ):
        overlay.write_text(text.replace("REF", ref))
        cfg = load_pipeline_config([args[2], args[4]])
        build_zoo(cfg, progress=False)  # trains once, then skips
        with pytest.raises(FpencError, match=message):
            build_key(cfg, log=lambda *_: None)
        assert main(args) == 2  # the command: one line, exit 2


@pytest.mark.parametrize(
    "api,wanted,ok",
    [
        ("probs", "probs", True),
        ("probs", "topk:3", True),
        ("probs", "label", True),
        ("topk:3", "topk:2", True),
        ("topk:3", "topk:3", True),
        ("topk:2", "topk:3", False),
        ("topk:1", "label", True),
        ("topk:3", "probs", False),
        ("label", "label", True),
        ("label", "probs", False),
        ("label", "topk:1", False),
    ],
)
def test_reveals(api, wanted, ok):
    from fpenc.api import reveals

    assert reveals(api, wanted) is ok


def test_fixed_batch_onnx_and_memory_failures_get_clear_answers(tmp_path):
    """An ONNX export without a dynamic batch axis is queried in batches of its size; a model that
    runs out of memory says so (not "does not accept the images")."""
    pytest.importorskip("onnxruntime")
    from fpenc.fingerprint.fingerprints import query_images

    net = small_net()
    path = tmp_path / "batch1.onnx"
    torch.onnx.export(net, (torch.rand(1, 1, 8, 8),), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    x = torch.rand(5, 1, 8, 8)
    assert torch.allclose(from_file(path)(x), torch.softmax(net(x), 1), atol=1e-5)

    def hog(t):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried "
            "to allocate 8796093022208 bytes"
        )

    with pytest.raises(FpencError, match="ran out of memory answering 5 images"):
        query_images(Suspect(hog), x, 100, (1, 8, 8), "fashion_mnist")
