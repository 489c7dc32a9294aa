"""The zoo on an executor: Ray tasks give the local executor's models bit for bit, the driver alone
writes the manifest, and a SIGKILLed Ray driver's rerun keeps every finished model."""

from __future__ import annotations

import json
import operator
import subprocess
import sys

import pytest

from conftest import REPO, sigkill_once_recorded, tiny_zoo_config
from fpenc.cli import main
from fpenc.errors import ConfigError
from fpenc.executor import ExecutorOptions, LocalExecutor, make_executor


def test_local_executor_runs_in_submission_order_with_its_threads():
    import torch

    ex = LocalExecutor(ExecutorOptions(cpus_per_task=1))
    before = torch.get_num_threads()
    ex.submit("a", operator.mul, 1, 2)
    ex.submit("b", torch.get_num_threads)
    assert ex.pending == 2
    assert ex.next_done() == ("a", 2)
    assert ex.next_done() == ("b", 1)  # the task ran with its thread count ...
    assert torch.get_num_threads() == before and ex.pending == 0  # ... and the driver's is restored
    ex.submit("bad", int, "x")
    with pytest.raises(ValueError) as err:
        ex.next_done()
    assert err.value.task_tag == "bad"


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(name="spark"), "executor 'spark' is not one of local, ray"),
        (dict(cpus_per_task=0), "cpus per task must be at least 1"),
        (dict(name="ray", gpus_per_task=-1), "gpus per task must be 0 or more"),
        (dict(gpus_per_task=0.5), "need --executor ray"),
    ],
)
def test_bad_executor_options_are_one_line_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        ExecutorOptions(**options)


def test_ray_missing_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'fpenc\[ray\]'"):
        make_executor(ExecutorOptions(name="ray"))


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_executor_returns_results_and_raises_the_task_error(ray_cluster):
    # (functions of importable modules: Ray's workers cannot import this test file)
    ex = make_executor(ExecutorOptions(name="ray", max_workers=1))  # one at a time: the rest wait their turn
    handle = ex.put(21)
    for tag in range(3):
        ex.submit(tag, operator.mul, handle, tag)
    assert ex.pending == 3
    assert sorted(ex.next_done() for _ in range(3)) == [(0, 0), (1, 21), (2, 42)]
    ex.submit("bad", int, "no such model")
    with pytest.raises(ValueError, match="no such model") as err:  # the task's own exception, not a wrapper
        ex.next_done()
    assert err.value.task_tag == "bad"  # naming the task that failed
    ex.shutdown()
    assert ray_cluster.is_initialized()  # a cluster the executor did not start is left running


@pytest.mark.slow
def test_ray_zoo_is_bit_identical_to_the_local_one(tmp_path, tiny_fmnist, ray_cluster, capsys):
    config = tiny_zoo_config(tmp_path, tiny_fmnist)
    manifests = {}
    for executor in ("local", "ray"):
        runs = tmp_path / executor
        args = ["zoo", "-c", str(config), "--runs-dir", str(runs), "--no-progress", "--cpus-per-task", "1"]
        assert main([*args, "--executor", executor]) == 0
        manifests[executor] = json.loads((runs / "tiny" / "manifest.json").read_text())
    local, ray = (manifests[e]["models"] for e in ("local", "ray"))
    assert [m["id"] for m in ray] == [m["id"] for m in local]  # plan order, whatever order they finished in
    drop = ("train_seconds",)
    assert [{k: v for k, v in m.items() if k not in drop} for m in ray] == [
        {k: v for k, v in m.items() if k not in drop} for m in local
    ]  # same weights (sha256 by content), accuracy, agreement, parent hashes


@pytest.mark.slow
def test_sigkilled_ray_driver_resumes_with_finished_models_kept(tmp_path, tiny_fmnist):
    pytest.importorskip("ray")
    config = tiny_zoo_config(tmp_path, tiny_fmnist)
    slow = tmp_path / "slow.yaml"  # more epochs, so that the zoo cannot finish between two polls
    slow.write_text(
        "pipeline:\n  zoo:\n    grids:\n"
        "      - {role: piracy, architectures: [fmnist_b, fmnist_c], optimizers: [adam], seeds: [0], epochs: 30, batch_sizes: [64]}\n"
        "      - {role: homologous, architectures: [fmnist_c], optimizers: [sgd, adam], seeds: [0], epochs: 30, batch_sizes: [64]}\n"
    )
    args = [sys.executable, "-m", "fpenc.cli", "zoo", "-c", str(config), "-c", str(slow), "--no-progress"]
    args += ["--executor", "ray", "--cpus-per-task", "1"]
    manifest = tmp_path / "runs/tiny/manifest.json"
    sigkill_once_recorded(args, manifest)
    before = {m["id"]: m for m in json.loads(manifest.read_text())["models"]}  # a whole manifest, never torn
    assert 2 <= len(before) < 5
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    after = {m["id"]: m for m in json.loads(manifest.read_text())["models"]}
    assert len(after) == 5
    assert not list((tmp_path / "runs/tiny").rglob("*.tmp"))
    for mid, m in after.items():
        if mid in before:  # kept as they were, not retrained
            assert m["sha256"] == before[mid]["sha256"] and m["train_seconds"] == before[mid]["train_seconds"]
            assert f"[skip] {mid}" in result.stdout
        else:
            assert f"[done] {mid}" in result.stderr
