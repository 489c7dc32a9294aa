"""Batch verification (`fpenc verify --suspects DIR_OR_LIST --bundle A --bundle B --out results.jsonl`):
the same lines as plain `fpenc verify`, each distinct image asked once, resumable, bad files as lines,
and the same lines from Ray's executor as from the local one."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess

import numpy as np
import pytest
import torch
from test_bundle_verify import C, H, N, U, V, W, small_cnn, toy_encoder, write_toy_bundle

from conftest import run_cli_without_lightning

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.onnx.*"),
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
]
pytest.importorskip("onnxruntime")
# what a batch line adds to a plain result, and the times, which differ from run to run
BATCH_ONLY = {"schema", "bundle", "bundle_commitment", "settings", "images_asked", "suspect_seconds", "seconds"}


def _key(image: np.ndarray) -> str:
    """The content key, written out here (the reference for fpenc's AnswerLog.key)."""
    return hashlib.sha256(np.ascontiguousarray(image, dtype=np.float32).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """Two bundles of two victims on the same view images (one view held twice) and the same labelled
    images, one probs and one label-only; suspect files: each victim (ONNX, TorchScript) and another CNN."""
    from fpenc.suspect_export import export_model

    tmp = tmp_path_factory.mktemp("batch")
    g = torch.Generator().manual_seed(0)
    views = torch.randint(0, 256, (V, N, C, H, W), generator=g, dtype=torch.uint8)
    views[3] = views[0]  # a view held twice: its clean and perturbed images are asked once
    bundles = []
    for name, seed, api in (("a", 0, "probs"), ("b", 1, "label")):
        uaps = (torch.rand(U, C, H, W, generator=g) - 0.5) * 0.5
        victim = small_cnn(seed)
        enc = toy_encoder(victim, [small_cnn(s) for s in (20, 21, 22)], uaps, views)
        path = tmp / f"{name}.safetensors"
        write_toy_bundle(path, victim, [small_cnn(s) for s in (10, 11, 12, 13)], enc, uaps, views, api=api)
        bundles.append(str(path))
    folder = tmp / "suspects"
    export_model(small_cnn(0), (C, H, W), folder / "a_victim.onnx")
    export_model(small_cnn(1), (C, H, W), folder / "b_victim.pt")
    export_model(small_cnn(9), (C, H, W), folder / "c_other.onnx")
    return {"tmp": tmp, "bundles": bundles, "folder": folder}


def _main(args: list[str]) -> tuple[int, str]:
    from fpenc.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(args)
    return rc, buf.getvalue()


def batch(two, out, *more: str, suspects=None) -> tuple[int, list[dict]]:
    args = ["verify", "--suspects", str(suspects or two["folder"]), "--out", str(out)]
    rc, _ = _main([*args, *(a for b in two["bundles"] for a in ("--bundle", b)), *more])
    return rc, [json.loads(line) for line in out.read_text().splitlines()]


def plain(bundle: str, suspect: str, other: str) -> dict:
    """The plain command's result for ``suspect`` (with ``other`` beside it, so that a bad file is a row)."""
    _, text = _main(["verify", "--bundle", bundle, suspect, other, "--json"])
    return json.loads(text)["results"][0]


def _strip(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in BATCH_ONLY}


@pytest.fixture(scope="module")
def local_lines(two):
    rc, lines = batch(two, two["tmp"] / "local.jsonl")
    assert rc == 11, lines  # not assessable (11) is the highest code
    return lines


def test_lines_equal_plain_verify(two, local_lines):
    suspects = sorted(str(p) for p in two["folder"].iterdir())
    assert [(r["suspect"], r["bundle"]) for r in local_lines] == [(s, b) for s in suspects for b in two["bundles"]]
    other = str(two["folder"] / "c_other.onnx")
    for row in local_lines:
        assert row["schema"] == "fpenc-verify-batch/1" and row["images_asked"] > 0
        assert _strip(row) == _strip(plain(row["bundle"], row["suspect"], other)), (row["suspect"], row["bundle"])
    verdicts = {(os.path.basename(r["suspect"]), os.path.basename(r["bundle"])[0]): r["verdict"] for r in local_lines}
    assert verdicts[("a_victim.onnx", "a")] == "derived" and verdicts[("b_victim.pt", "b")] == "derived"
    assert verdicts[("c_other.onnx", "a")] != "derived" and verdicts[("a_victim.onnx", "b")] != "derived"


def test_each_distinct_image_is_asked_once(two, tmp_path, monkeypatch):
    """The suspect's model sees each distinct image of both verdicts once, in one call; the plain
    path reads every image of each verdict (duplicates and both bundles' shared images included)."""
    import fpenc.suspects
    from fpenc.bundle import load_bundle
    from fpenc.suspects import Suspect, load_model_file
    from fpenc.verification import verify_suspect

    path = str(two["folder"] / "a_victim.onnx")
    real = load_model_file(path)
    read = []

    def reader(x):
        read.extend(_key(im) for im in x.numpy())
        return real(x)

    for b in two["bundles"]:  # the reference: what each plain verdict reads
        bundle = load_bundle(b)
        verify_suspect(bundle, Suspect(reader, bundle.meta["api"], "auto", bundle.num_classes))
    asked, calls = [], []

    def counting_loader(p, trusted=False):
        fn = load_model_file(p, trusted)

        def fn_counted(x):
            calls.append(len(x))
            asked.extend(_key(im) for im in x.numpy())
            return fn(x)

        return fn_counted

    monkeypatch.setattr(fpenc.suspects, "load_model_file", counting_loader)
    (tmp_path / "one.txt").write_text(path + "\n")
    rc, lines = batch(two, tmp_path / "out.jsonl", suspects=tmp_path / "one.txt")
    assert rc == 11
    assert len(asked) == len(set(asked)), "an image was asked twice"
    assert set(asked) == set(read) and len(read) > len(set(read))  # the plain path reads duplicates
    assert calls == [len(set(read))]  # one batch: all distinct images of both bundles
    assert [r["images_asked"] for r in lines] == [len(set(read))] * 2
    with_dups = sum(r["queries"] for r in lines)
    assert with_dups == len(read)  # each verdict still reads its images (from the answers): same `queries`


def test_resume_after_an_interrupted_run(two, local_lines, tmp_path, monkeypatch):
    """A kill mid-write leaves a cut last line: it is dropped and its suspect judged again; the pairs
    already there are skipped; an interrupted run keeps the lines of the suspects it finished."""
    import fpenc.batch_verify
    import fpenc.suspects

    out = tmp_path / "out.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in local_lines[:3])  # suspect 1 done, suspect 2 half written
    out.write_text(text[: len(text) - len(json.dumps(local_lines[2])) // 2])
    loaded = []
    real_loader = fpenc.suspects.load_model_file
    monkeypatch.setattr(fpenc.suspects, "load_model_file", lambda p, t=False: loaded.append(p) or real_loader(p, t))
    rc, lines = batch(two, out)
    assert rc == 11 and [os.path.basename(p) for p in loaded] == ["b_victim.pt", "c_other.onnx"]
    assert [_strip(r) for r in lines] == [_strip(r) for r in local_lines]
    loaded.clear()
    assert batch(two, out) == (11, lines) and not loaded  # all done: nothing asked, nothing written
    # Ctrl-C after the first suspect: its lines are in the file, the rerun does the rest
    out2 = tmp_path / "out2.jsonl"
    real_judge = fpenc.batch_verify.judge_file

    def interrupted(path, *args):
        if "b_victim" in path:
            raise KeyboardInterrupt
        return real_judge(path, *args)

    monkeypatch.setattr(fpenc.batch_verify, "judge_file", interrupted)
    assert batch(two, out2)[0] == 130
    assert [json.loads(line)["suspect"] for line in out2.read_text().splitlines()] == [local_lines[0]["suspect"]] * 2
    monkeypatch.setattr(fpenc.batch_verify, "judge_file", real_judge)
    rc, lines = batch(two, out2)
    assert rc == 11 and [_strip(r) for r in lines] == [_strip(r) for r in local_lines]


def test_a_rerun_with_other_settings_never_reuses_lines(two, local_lines, tmp_path, capsys):
    """Lines record the settings of their verdict; a rerun with another --alpha, --fingerprints or
    --seed into the same file is refused (one line, exit 2) and the file is left as it was."""
    out = tmp_path / "out.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in local_lines))
    before = out.read_text()
    assert all(r["settings"]["alpha"] == 0.01 and r["settings"]["fingerprints"] is None for r in local_lines)
    bundles = [a for b in two["bundles"] for a in ("--bundle", b)]
    for more in (["--alpha", "0.05"], ["--fingerprints", "6"], ["--fingerprints", "6", "--seed", "1"]):
        capsys.readouterr()
        rc, _ = _main(["verify", "--suspects", str(two["folder"]), "--out", str(out), *more, *bundles])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert "other settings" in err and "another --out" in err
        assert out.read_text() == before
    assert batch(two, out) == (11, local_lines)  # the same settings: every line reused as it is


def test_bad_suspects_are_lines_and_the_batch_goes_on(two, tmp_path):
    """Files that cannot be loaded, and a model that fails on the bundles' images (asked without the
    table then, so that its error is the plain command's), are error lines; the others are judged."""
    from fpenc.suspect_export import export_model

    good = two["folder"] / "a_victim.onnx"
    (tmp_path / "garbage.onnx").write_bytes(b"\x08not a model")
    torch.save(small_cnn(0), tmp_path / "pickled.pt")
    export_model(small_cnn(0, in_channels=3), (3, H, W), tmp_path / "rgb.onnx")  # fails on 1x28x28 images
    (tmp_path / "list.txt").write_text(
        f"# suspects\n{good}\ngarbage.onnx\n\nmissing.onnx\npickled.pt\nrgb.onnx\nhttp://host:8000/predict\n"
    )
    rc, lines = batch(two, tmp_path / "out.jsonl", suspects=tmp_path / "list.txt")
    assert rc == 2 and len(lines) == 6 * 2
    assert lines[0]["verdict"] == "derived" and lines[1]["verdict"] != "error"
    errors = lines[2:]
    assert all(r["verdict"] == "error" and "\n" not in r["error"] and r["reasons"] == [r["error"]] for r in errors)
    assert "does not exist" in lines[4]["error"] and "pickle" in lines[6]["error"] and "URL" in lines[10]["error"]
    assert "failed on 1x28x28" in lines[8]["error"]
    for row in errors[:8]:  # the plain command's own error rows
        assert _strip(row) == _strip(plain(row["bundle"], row["suspect"], str(good)))


def test_bad_batch_arguments_are_one_line_errors(two, tmp_path, capsys):
    from fpenc.cli import main

    a, b = two["bundles"]
    suspect, x = str(two["folder"] / "a_victim.onnx"), str(tmp_path / "x.jsonl")
    cases = [
        (["--suspects", str(two["folder"]), "--bundle", a], "--suspects needs --out"),
        (["--bundle", a, "--bundle", b, suspect], "add --suspects"),
        (["--bundle", a, suspect, "--out", "x.jsonl"], "add --suspects"),
        (["--bundle", a, suspect, "--executor", "ray"], "add --suspects"),
        (["--suspects", str(tmp_path / "nope"), "--bundle", a, "--out", x], "does not exist"),
        (["--suspects", suspect, "--bundle", a, "--out", x], "is a model file"),
        (["--suspects", str(tmp_path), "--bundle", a, "--out", x], "no model files"),
        (["--suspects", str(two["folder"]), "--bundle", a, "--out", x, "--json"], "JSON lines"),
        (["--suspects", str(two["folder"]), "--bundle", a, "--out", x, "--alpha", "1e-9"], "p-value floor"),
        (["--suspects", str(two["folder"]), "--bundle", a, "--out", x, "--fingerprints", "99"], "[2, 12]"),
    ]
    for args, message in cases:
        assert main(["verify", *args]) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (args, err)
    assert not (tmp_path / "x.jsonl").exists()


def _run_cli(args: list[str]) -> subprocess.CompletedProcess:
    """``fpenc`` in a fresh process, which must not import Lightning."""
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    return run_cli_without_lightning(args, timeout=300, env=env)


def test_batch_command_stays_off_lightning(two, local_lines, tmp_path):
    (tmp_path / "one.txt").write_text(f"{two['folder'] / 'a_victim.onnx'}\n")
    out = tmp_path / "out.jsonl"
    proc = _run_cli(
        ["verify", "--suspects", str(tmp_path / "one.txt"), "--bundle", two["bundles"][0], "--out", str(out)]
    )
    assert proc.returncode == 10, proc.stderr[-3000:]  # derived
    assert "1 suspects judged" in proc.stdout and "derived 1" in proc.stdout
    assert [_strip(json.loads(line)) for line in out.read_text().splitlines()] == [_strip(local_lines[0])]


def test_ray_executor_on_two_workers_gives_the_local_lines(two, local_lines, tmp_path):
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'fpenc[ray]')")
    out = tmp_path / "ray.jsonl"
    args = ["verify", "--suspects", str(two["folder"]), "--out", str(out), "--executor", "ray", "--max-workers", "2"]
    proc = _run_cli([*args, *(a for b in two["bundles"] for a in ("--bundle", b))])
    assert proc.returncode == 11, proc.stderr[-3000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]

    def by_pair(rows):
        return sorted((r["suspect"], r["bundle"], json.dumps(_strip(r), sort_keys=True)) for r in rows)

    assert by_pair(lines) == by_pair(local_lines)
