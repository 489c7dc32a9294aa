"""`fpenc fit` / `fpenc test` through the one entry point `main(args)`, on a tiny zoo: cpu, no
logger, a few epochs. Then the exported bundle verifies a TorchScript suspect."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO, tiny_config, tiny_grid
from fpenc.cli import main

pytestmark = pytest.mark.slow  # trains a zoo and an encoder end to end


def encoder_config(tmp_path, data_root, name="tinyenc", reference=True):
    grids = [tiny_grid(role, "fmnist_b", seeds="0, 1, 2") for role in ("piracy", "homologous")]
    grids += [tiny_grid(role, "fmnist_c") for role in ("piracy", "homologous")]
    if reference:  # the verdict's reference population: the victim's architecture on its own data, and another
        grids += [
            tiny_grid("homologous", "fmnist_a", seeds="10, 11", more="split: reference, data: victim"),
            tiny_grid("homologous", "fmnist_b", seeds="10", more="split: reference"),
        ]
    return tiny_config(
        tmp_path,
        data_root,
        name,
        grids,
        pipeline_extra="""
        uap: {num_uaps: 2, steps: 5, batch_size: 64, eps: 0.3, holdout: 50}
        key: {num_datapoints: 8, num_views: 3, neighbours: 4}
        sets: {train_architectures: [fmnist_b], train_models_per_role: 1}
    """,
        extra=f"""
        seed_everything: 0
        data: {{batch_size: 256, progress: false}}
        model: {{hidden_dim: 32, embed_dim: 16, proj_dim: 8, sanity_images: 40, alpha: 0.2, export_dir: {tmp_path / "checkpoints"}}}
        trainer: {{max_epochs: 3, accelerator: cpu, logger: false, enable_progress_bar: false, enable_model_summary: false}}
    """,
    )


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from conftest import make_fmnist_files

    tmp_path = tmp_path_factory.mktemp("enc")
    data = make_fmnist_files(tmp_path / "fmnist")
    config = encoder_config(tmp_path, data)
    assert main(["fit", "--config", str(config)]) == 0  # runs zoo, uap, key, fingerprints first
    return tmp_path, config


def test_fit_runs_earlier_stages_and_checkpoints(fitted):
    tmp_path, _ = fitted
    run = tmp_path / "runs/tinyenc"
    for name in ("manifest.json", "uaps.pt", "key.pt", "encoder/best.ckpt", "encoder/last.ckpt", "config.yaml"):
        assert (run / name).is_file(), name
    # fit never queries the sealed sets: the victim's and the 6 training / validation models' fingerprints only
    names = sorted(p.stem for p in (run / "fingerprints").glob("*.pt"))
    assert len(names) == 7 and "victim" in names
    assert not [n for n in names if "fmnist_c" in n or n.endswith(("-s10-victimdata", "-s11-victimdata", "-s10"))]


def test_fit_cannot_read_the_sealed_sets(fitted):
    from datamodules.fingerprints import FingerprintDataModule
    from fpenc.config import load_pipeline_config
    from fpenc.errors import ConfigError

    _, config = fitted
    dm = FingerprintDataModule(load_pipeline_config([config]), api="label")
    dm.setup("fit")
    assert {m.split for m in dm.models} == {"victim", "train", "val"}
    for sealed in ("test", "reference"):
        with pytest.raises(ConfigError, match=f"the {sealed} models are sealed while the encoder fits"):
            dm.split(sealed)


def test_test_refuses_without_ckpt_path(fitted, capsys):
    _, config = fitted
    assert main(["test", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "--ckpt_path" in err and "untrained" in err


@pytest.fixture(scope="module")
def tested(fitted):
    """`fpenc test` once: the report and the bundle; returns (tmp_path, config, stdout)."""
    import contextlib
    import io

    tmp_path, config = fitted
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["test", "--config", str(config), "--ckpt_path", "best"]) == 0
    return tmp_path, config, buf.getvalue()


def test_test_writes_report_and_bundle_then_verify(tested):
    tmp_path, config, out = tested
    assert "| model | split | role | accuracy | agreement | margin | similarity | p-value | verdict |" in out
    run = tmp_path / "runs/tinyenc"
    report = json.loads((run / "report.json").read_text())
    for key in (
        "auc",
        "tpr_at_1pct_fpr",
        "tpr_at_5pct_fpr",
        "models",
        "bundle",
        "p_value_floor",
        "piracy_derived",
        "homologous_derived",
        "not_assessable",
        "gates",
        "reference_models",
    ):
        assert key in report
    assert 0.0 <= report["auc"] <= 1.0
    ids = {m["id"]: m for m in report["models"]}
    assert {m["split"] for m in ids.values()} == {"val", "reference", "test"}
    assert ids["piracy-fmnist_c-adam-s0"]["split"] == "test"
    assert report["reference_models"] == [
        "homologous-fmnist_a-adam-s10-victimdata",
        "homologous-fmnist_a-adam-s11-victimdata",
        "homologous-fmnist_b-adam-s10",
    ]
    assert all(ids[i]["split"] == "reference" for i in report["reference_models"])
    for m in ids.values():
        assert set(m) >= {
            "id",
            "role",
            "architecture",
            "optimizer",
            "similarity",
            "agreement",
            "p_value",
            "verdict",
            "reasons",
            "accuracy",
        }
        assert 0.0 <= m["p_value"] <= 1.0 and m["verdict"] in ("derived", "not shown", "not assessable")
        assert m["reasons"]
    text = (run / "report.md").read_text()
    assert text.startswith("# Verification report")
    # the headline answers "can this bundle be trusted?" from the test models' verdicts
    test = [m for m in report["models"] if m["split"] == "test"]
    accused = sum(m["verdict"] == "derived" for m in test if m["role"] == "homologous")
    detected = sum(m["verdict"] == "derived" for m in test if m["role"] == "piracy")
    headline = text.splitlines()[2]
    assert headline.startswith("Can this bundle be trusted? " + ("**Yes" if accused == 0 else "**No"))
    assert f"accused: {accused} of {sum(m['role'] == 'homologous' for m in test)}" in headline
    assert f"copies detected: {detected} of {sum(m['role'] == 'piracy' for m in test)}" in headline
    assert "p-value floor" in headline and "](verdict_margins.png)" in text
    for png in ("similarity_cdf.png", "verdict_margins.png"):
        assert (run / png).read_bytes()[:4] == b"\x89PNG"
    bundle = tmp_path / "checkpoints/tinyenc.fpenc.safetensors"
    assert report["bundle"] == str(bundle) and bundle.is_file()

    # The exported bundle verifies a TorchScript file of a zoo model, without Lightning.
    from fpenc.rundir import load_zoo_model

    entry = next(
        m for m in json.loads((run / "manifest.json").read_text())["models"] if m["id"] == "piracy-fmnist_c-adam-s0"
    )
    net = load_zoo_model(entry, run).eval()
    scripted = tmp_path / "suspect.ts"
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 1, 28, 28)), str(scripted))
    code = (
        "import json, sys, fpenc.cli; rc = fpenc.cli.main(sys.argv[1:]); "
        "assert 'pytorch_lightning' not in sys.modules; sys.exit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "verify", "--bundle", str(bundle), "--suspect", str(scripted), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    answer = json.loads(result.stdout)["results"][0]
    assert result.returncode == {"not shown": 0, "derived": 10, "not assessable": 11}[answer["verdict"]], result.stderr
    assert set(answer) >= {"similarity", "agreement", "p_value", "verdict", "queries", "reasons"}
    # the file gives the verdict, p-value and similarity of the report (the same code path)
    row = ids["piracy-fmnist_c-adam-s0"]
    assert answer["verdict"] == row["verdict"] and answer["p_value"] == pytest.approx(
        row["p_value"], rel=1e-4, abs=1e-9
    )
    assert answer["agreement"] == row["agreement"]


def test_fit_with_bad_data_option_is_one_line(fitted, capsys):
    _, config = fitted
    assert (
        main(
            [
                "fit",
                "--config",
                str(config),
                "--pipeline.sets.train_architectures",
                "[fmnist_z]",
                "--trainer.max_epochs",
                "1",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert "pipeline.sets.train_architectures: unknown architecture 'fmnist_z'" in err[-1]


def test_verdict_needs_two_reference_models(fitted, capsys):
    tmp_path, _ = fitted
    config = encoder_config(tmp_path, tmp_path / "fmnist", reference=False)  # same run, no reference grid
    config = config.rename(tmp_path / "tinyenc_noref.yaml")
    encoder_config(tmp_path, tmp_path / "fmnist")  # the shared config file as it was, for the other tests
    assert main(["fit", "--config", str(config), "--trainer.max_epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "needs >= 2 reference models" in err[-1] and "there are 0" in err[-1] and "split: reference" in err[-1]


def test_negative_suite_is_never_derived_and_calibrate_reports_it(tested, tmp_path_factory, capsys):
    """Constant, random-label, untrained and class-permuted models are `not assessable` (never
    `derived`); independently trained models get p-values no smaller than the bundle's floor;
    `fpenc calibrate` counts exactly the verdicts that `verify` gives file by file. (Whether an
    independent model is accused at a given alpha is a statistical question, measured on the demo
    by experiments/verdict_suite.py, not asserted on this tiny zoo.)"""
    from fpenc.bundle import load_bundle
    from fpenc.config import load_pipeline_config
    from fpenc.rundir import load_zoo_model, victim_entry
    from fpenc.suspect_export import export_model
    from fpenc.suspects import from_file
    from fpenc.verification import bundle_pvalue_floor, verify_suspect
    from fpenc.zoo.builder import build_zoo
    from fpenc.zoo.negatives import broken_models

    tmp_path, _, _ = tested
    run = tmp_path / "runs/tinyenc"
    bundle = load_bundle(tmp_path / "checkpoints/tinyenc.fpenc.safetensors")
    floor = bundle_pvalue_floor(bundle)
    neg_cfg = tiny_config(
        tmp_path,
        tmp_path / "fmnist",
        "tinyneg",
        [
            tiny_grid("homologous", "fmnist_a", seeds="20, 21", more="data: victim"),
            tiny_grid("homologous", "fmnist_b, fmnist_c", seeds="20"),
        ],
    )
    cfg = load_pipeline_config([neg_cfg])
    independents = {
        m["id"]: load_zoo_model(m, cfg.run_dir)
        for m in build_zoo(cfg, progress=False)["models"]
        if m["role"] == "homologous"
    }
    victim = load_zoo_model(victim_entry(run), run)
    broken = broken_models(victim, next(iter(independents.values())), (1, 28, 28), 10, classes=(0, 3, 7))
    folder = tmp_path_factory.mktemp("negatives")
    p_values = {}
    for name, net in {**broken, **independents}.items():
        r = verify_suspect(bundle, from_file(export_model(net, (1, 28, 28), folder / f"{name}.pt")), alpha=0.5)
        p_values[name] = r["p_value"] if r["verdict"] != "not assessable" else None
        if name in broken and name != "independent_without_normalisation":
            assert r["verdict"] == "not assessable" and "accuracy" in r["reasons"][0], (name, r["reasons"])
        if name in independents:  # (an independent of an architecture the encoder never saw may be out of distribution)
            assert r["p_value"] >= floor * (1 - 1e-9), name
    report = tmp_path / "calibration.json"
    assert (
        main(
            [
                "calibrate",
                "--bundle",
                str(bundle.path),
                "--negatives",
                str(folder),
                "--json",
                str(report),
                "--plot",
                str(tmp_path / "calibration.png"),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "observed rate" in out and "Clopper-Pearson" in out
    result = json.loads(report.read_text())
    assert result["negatives"] == len(broken) + len(independents)
    for row in result["table"]:
        assert row["derived"] == sum(p is not None and p < row["alpha"] for p in p_values.values()), row
    assert (tmp_path / "calibration.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["calibrate", "--bundle", str(bundle.path), "--negatives", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_fit_ckpt_path_resumes_or_refuses(tested, capsys):
    tmp_path, config, _ = tested
    last = tmp_path / "runs/tinyenc/encoder/last.ckpt"
    before = torch.load(last, weights_only=False)["epoch"]  # our own checkpoint
    assert main(["fit", "--config", str(config), "--ckpt_path", "last", "--trainer.max_epochs", str(before + 2)]) == 0
    assert torch.load(last, weights_only=False)["epoch"] == before + 1  # one more epoch: resumed, not restarted
    assert main(["fit", "--config", str(config), "--ckpt_path", str(tmp_path / "nope.ckpt")]) == 2
    assert "cannot resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": -1.0}, "model.lr must be > 0"),
        ({"alpha": float("nan")}, "model.alpha must be a finite number"),
        ({"alpha": 1.5}, "model.alpha must be in"),
        ({"temperature": 0.0}, "model.temperature must be > 0"),
        ({"verdict_statistic": "vibes"}, "model.verdict_statistic must be one of"),
        ({"hidden_dim": 0}, "hidden_dim, embed_dim and proj_dim must be >= 1"),
    ],
)
def test_bad_model_options_are_config_errors(kwargs, message):
    from fpenc.encoder.module import EncoderModule
    from fpenc.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        EncoderModule(input_dim=40, **kwargs)


def test_experimental_statistic_warns():
    from fpenc.encoder.module import EncoderModule

    with pytest.warns(UserWarning, match="experimental"):
        EncoderModule(input_dim=40, verdict_statistic="agreement-or-similarity")


def test_damaged_checkpoint_is_one_line(tested, tmp_path, capsys):
    _, config, _ = tested
    bad = tmp_path / "bad.ckpt"
    bad.write_text("garbage")
    assert main(["test", "--config", str(config), "--ckpt_path", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "is not a PyTorch checkpoint" in err[-1]


def test_transfer_tests_another_victim_with_a_bundles_encoder(tested, capsys):
    """Encoder transfer (App. E): V1's exported encoder judges V2's zoo with no checkpoint of V2's."""
    from fpenc.bundle import load_bundle

    tmp_path, config, _ = tested
    v1 = tmp_path / "checkpoints/tinyenc.fpenc.safetensors"
    text = (
        config.read_text().replace("name: tinyenc", "name: tinyv2").replace("pipeline:\n", "pipeline:\n  seed: 1\n", 1)
    )
    v2 = tmp_path / "tinyv2.yaml"
    v2.write_text(text)
    assert main(["test", "--config", str(v2), "--model.init_from", str(v1)]) == 0
    out = load_bundle(tmp_path / "checkpoints/tinyv2.fpenc.safetensors")
    src = load_bundle(v1)
    assert out.meta["victim_sha256"] != src.meta["victim_sha256"]  # another victim
    for name, w in src.encoder().state_dict().items():
        assert torch.equal(out.encoder().state_dict()[name], w), name  # V1's encoder, unchanged
    report = json.loads((tmp_path / "runs/tinyv2/report.json").read_text())
    assert 0.0 <= report["auc"] <= 1.0
    capsys.readouterr()
    for args, message in (
        (["--model.init_from", str(v1), "--ckpt_path", "best"], "both give the encoder's weights"),
        (["--model.init_from", str(tmp_path / "missing.safetensors")], "does not exist"),
        (["--model.init_from", str(v1), "--model.hidden_dim", "64"], "hidden_dim 32 (this run: 64)"),
    ):
        assert main(["test", "--config", str(v2), *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_fit_with_ddp_on_two_cpu_processes(fitted, tmp_path_factory, capsys):
    """`fpenc fit --trainer.strategy ddp --trainer.devices 2` (gloo on CPU) on a copy of the fitted run's
    earlier stages: both processes finish, best.ckpt is rank 0's one file and loads; the validation
    separation the two processes agreed on (each from both processes' representations, without
    DistributedSampler's padding) is what one process computes for those weights; `fpenc test
    --ckpt_path best` on it writes a report with finite metrics. `--trainer.sync_batchnorm` on CPU
    processes is a one-line error."""
    import math
    import os
    import shutil
    import signal

    import pytorch_lightning as pl

    from datamodules.fingerprints import FingerprintDataModule
    from fpenc.config import load_pipeline_config
    from fpenc.encoder.module import EncoderModule

    src, _ = fitted
    tmp_path = tmp_path_factory.mktemp("ddp")
    keep = shutil.ignore_patterns("encoder", "report*", "*.png", "config.yaml", ".lock")
    shutil.copytree(src / "runs/tinyenc", tmp_path / "runs/tinyenc", ignore=keep)  # zoo, UAPs, key, fingerprints
    config = encoder_config(tmp_path, src / "fmnist")

    def fpenc(*args: str) -> subprocess.CompletedProcess:
        """The command in a subprocess (DDP reruns the command line), killed with its workers on a hang."""
        cmd = [sys.executable, "-m", "fpenc.cli", *args, "--config", str(config)]
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            out, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"fpenc {args[0]} did not finish in 180 s (a deadlock between the DDP processes?)")
        assert proc.returncode == 0, err[-3000:]
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    ddp_cpu = ("--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu")
    # refused before any process starts, so in this one (torch's SyncBatchNorm runs on GPUs only)
    assert main(["fit", "--config", str(config), *ddp_cpu, "--trainer.sync_batchnorm", "true"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("fpenc fit: error: --trainer.sync_batchnorm")
    ddp = fpenc("fit", *ddp_cpu)
    assert "another fpenc process" not in ddp.stderr
    best = tmp_path / "runs/tinyenc/encoder/best.ckpt"
    assert best.is_file() and (tmp_path / "runs/tinyenc/encoder/last.ckpt").is_file()
    ckpt = torch.load(best, weights_only=False)
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])  # the module's weights, not DDP's wrapper
    assert ckpt["global_step"] == ckpt["epoch"] + 1  # full-batch: per process half the data, one step an epoch
    score = next(s["best_model_score"] for s in ckpt["callbacks"].values() if s.get("best_model_score") is not None)

    fpenc("test", "--ckpt_path", "best")
    report = json.loads((tmp_path / "runs/tinyenc/report.json").read_text())
    for key in ("auc", "tpr_at_1pct_fpr", "tpr_at_5pct_fpr", "auc_models"):
        assert math.isfinite(report[key]), key
    assert (tmp_path / "checkpoints/tinyenc.fpenc.safetensors").is_file()

    # (after the commands: reading the fingerprints here takes the run's lock for the rest of pytest)
    module = EncoderModule.load_from_checkpoint(best)
    dm = FingerprintDataModule(load_pipeline_config([config]), batch_size=256, progress=False)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(module, datamodule=dm, verbose=False)
    assert metrics["val/separation"] == pytest.approx(float(score), rel=1e-5)
