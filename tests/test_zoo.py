"""The zoo stage end to end on tiny data: build, manifest, resume, invalidation, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, sigkill_once_recorded, tiny_zoo_config
from fpenc.cli import main
from fpenc.config import load_pipeline_config
from fpenc.rundir import load_zoo_model
from fpenc.zoo.builder import plan_zoo


def read_manifest(tmp_path):
    return json.loads((tmp_path / "runs" / "tiny" / "manifest.json").read_text())


def test_plan_follows_config(tmp_path, tiny_fmnist):
    cfg = load_pipeline_config([tiny_zoo_config(tmp_path, tiny_fmnist)])
    specs = plan_zoo(cfg)
    assert [s.id for s in specs] == [
        "victim",
        "piracy-fmnist_b-adam-s0",
        "piracy-fmnist_c-adam-s0",
        "homologous-fmnist_c-sgd-s0",
        "homologous-fmnist_c-adam-s0",
    ]
    assert {s.split for s in specs if s.role == "piracy"} == {"attacker"}
    assert {s.split for s in specs if s.role == "homologous"} == {"homologous"}


def test_zoo_builds_resumes_and_rebuilds_what_changed(tmp_path, tiny_fmnist, capsys):
    config = tiny_zoo_config(tmp_path, tiny_fmnist)
    assert main(["zoo", "--config", str(config), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "test_acc" in out and "piracy-fmnist_b-adam-s0" in out
    manifest = read_manifest(tmp_path)
    models = {m["id"]: m for m in manifest["models"]}
    assert len(models) == 5
    assert models["victim"]["role"] == "victim"
    for m in models.values():
        assert 0.0 <= m["test_accuracy"] <= 1.0
        net = load_zoo_model(m, tmp_path / "runs" / "tiny")  # hash-checked, weights_only
        assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
        assert net.config["channels"][:2] == ([8, 8] if m["role"] == "homologous" else [16, 32])  # grid options
        # trained channels-last, saved and served in the standard NCHW layout
        payload = torch.load(tmp_path / "runs" / "tiny" / m["weights"], weights_only=True)
        assert all(t.is_contiguous() for t in payload["state_dict"].values()), m["id"]
    for pid in ("piracy-fmnist_b-adam-s0", "piracy-fmnist_c-adam-s0"):
        p = models[pid]
        assert p["queries"] == len(__import__("numpy").load(tmp_path / "runs/tiny/splits.npz")["attacker"])
        assert p["recovery_rate"] == pytest.approx(p["test_accuracy"] / models["victim"]["test_accuracy"], abs=1e-3)
        assert p["parent_sha256"] == models["victim"]["sha256"]
    # A second run trains nothing.
    assert main(["zoo", "--config", str(config), "--no-progress"]) == 0
    assert read_manifest(tmp_path)["models"] == manifest["models"]
    # A damaged weights file is detected by its hash and only that model is rebuilt.
    victim_file = tmp_path / "runs/tiny" / models["homologous-fmnist_c-sgd-s0"]["weights"]
    victim_file.write_bytes(victim_file.read_bytes()[:100])
    capsys.readouterr()
    assert main(["zoo", "--config", str(config), "--no-progress"]) == 0
    logs = capsys.readouterr()
    # Judged from the builder's own log lines, not from timings (a fast machine trains in 0.0 s).
    for mid in models:
        rebuilt = f"[done] {mid}:" in logs.err
        skipped = f"[skip] {mid}:" in logs.out
        assert (rebuilt, skipped) == ((True, False) if mid == "homologous-fmnist_c-sgd-s0" else (False, True)), mid
    again = {m["id"]: m for m in read_manifest(tmp_path)["models"]}
    assert set(again) == set(models)


def test_retrained_victim_invalidates_piracy_models(tmp_path, tiny_fmnist):
    config = tiny_zoo_config(tmp_path, tiny_fmnist)
    assert main(["zoo", "--config", str(config), "--no-progress"]) == 0
    first = {m["id"]: m for m in read_manifest(tmp_path)["models"]}
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("pipeline:\n  name: tiny\n  zoo:\n    victim: {epochs: 1}\n")
    assert main(["zoo", "--config", str(config), "--config", str(overlay), "--no-progress"]) == 0
    second = {m["id"]: m for m in read_manifest(tmp_path)["models"]}
    assert second["victim"]["sha256"] != first["victim"]["sha256"]
    for mid, m in second.items():
        if m["role"] == "piracy":
            assert m["parent_sha256"] == second["victim"]["sha256"] != first[mid]["parent_sha256"]
        if m["role"] == "homologous":
            assert m["sha256"] == first[mid]["sha256"]  # not derived from the victim: kept


def run_cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "fpenc.cli", *args], capture_output=True, text=True, cwd=REPO, **kw)


@pytest.mark.parametrize(
    "extra, message",
    [
        ("pipeline:\n  zoo:\n    victim: {architecture: fmnist_z}\n", "unknown architecture 'fmnist_z'"),
        (
            "pipeline:\n  zoo:\n    victim: {epochs: 1, optimiser: sgd}\n",
            "unknown key 'optimiser' (did you mean 'optimizer'?)",
        ),
    ],
)
def test_bad_config_is_one_line_nonzero(tmp_path, tiny_fmnist, extra, message):
    base = tiny_zoo_config(tmp_path, tiny_fmnist)
    overlay = tmp_path / "bad.yaml"
    overlay.write_text(extra)
    result = run_cli(["zoo", "--config", str(base), "--config", str(overlay)])
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_missing_dataset_is_one_line_nonzero(tmp_path, monkeypatch, capsys):
    import fpenc.data.datasets as ds

    monkeypatch.setattr(ds, "FMNIST_DEBIAN_ROOT", str(tmp_path / "no-debian"))
    config = tiny_zoo_config(tmp_path, tmp_path / "no-such-root")
    assert main(["zoo", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "Fashion-MNIST not found" in err and "apt-get install dataset-fashion-mnist" in err and "download" in err


def test_sigkill_midway_then_resume(tmp_path, tiny_fmnist):
    """Kill -9 `fpenc zoo` after the first models are recorded; the rerun keeps them and completes."""
    config = tiny_zoo_config(tmp_path, tiny_fmnist)
    # More epochs than the other tests, so that a fast machine cannot finish the zoo between two polls.
    slow = tmp_path / "slow.yaml"
    slow.write_text(
        "pipeline:\n  zoo:\n    grids:\n"
        "      - {role: piracy, architectures: [fmnist_b, fmnist_c], optimizers: [adam], seeds: [0], epochs: 15, batch_sizes: [64]}\n"
        "      - {role: homologous, architectures: [fmnist_c], optimizers: [sgd, adam], seeds: [0], epochs: 15, batch_sizes: [64]}\n"
    )
    manifest = tmp_path / "runs/tiny/manifest.json"
    cmd = [sys.executable, "-m", "fpenc.cli", "zoo", "--config", str(config), "--config", str(slow), "--no-progress"]
    sigkill_once_recorded(cmd, manifest)
    before = {m["id"]: m for m in json.loads(manifest.read_text())["models"]}
    assert 2 <= len(before) < 5
    result = run_cli(["zoo", "--config", str(config), "--config", str(slow), "--no-progress"])
    assert result.returncode == 0, result.stderr
    after = {m["id"]: m for m in json.loads(manifest.read_text())["models"]}
    assert len(after) == 5
    assert not list((tmp_path / "runs/tiny").rglob("*.tmp"))
    for mid, m in before.items():
        assert after[mid]["sha256"] == m["sha256"] and after[mid]["train_seconds"] == m["train_seconds"]
        assert f"[skip] {mid}" in result.stdout


def test_second_concurrent_zoo_on_one_run_dir_refuses(tmp_path, tiny_fmnist):
    config = tiny_zoo_config(tmp_path, tiny_fmnist)
    slow = tmp_path / "slow.yaml"
    slow.write_text(
        "pipeline:\n  zoo:\n    grids:\n"
        "      - {role: homologous, architectures: [fmnist_c], optimizers: [adam], seeds: [0], epochs: 50, "
        "batch_sizes: [64]}\n"
    )
    first = subprocess.Popen(
        [sys.executable, "-m", "fpenc.cli", "zoo", "--config", str(config), "--config", str(slow), "--no-progress"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lock = tmp_path / "runs/tiny/.lock"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (lock.exists() and lock.read_text().strip() == str(first.pid)):
            time.sleep(0.05)
        assert lock.read_text().strip() == str(first.pid)
        second = run_cli(["zoo", "--config", str(config), "--config", str(slow), "--no-progress"])
        assert second.returncode == 2
        assert f"another fpenc process (pid {first.pid}) is working in" in second.stderr
        assert second.stderr.strip().splitlines()[-1].startswith("fpenc zoo: error: another fpenc process")
    finally:
        first.kill()
        first.wait()


def test_a_diverged_model_is_refused_and_the_built_ones_kept(tmp_path, tiny_fmnist, capsys):
    """A grid whose training blows up (SGD at lr 1e9: NaN weights) stops the zoo with one line that
    names the model and what to change; the victim, trained before it, stays recorded."""
    from conftest import tiny_config, tiny_grid

    grids = [tiny_grid("homologous", "fmnist_c", opts="sgd", more="lr: 1.0e+9")]
    config = tiny_config(tmp_path, tiny_fmnist, "tiny", grids)
    assert main(["zoo", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "homologous-fmnist_c-sgd-s0" in err and "diverged" in err and "smaller lr" in err
    assert [m["id"] for m in read_manifest(tmp_path)["models"]] == ["victim"]
