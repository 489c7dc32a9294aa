"""The encoder's test callbacks (fpenc.callbacks): attached by default, the module stays thin, and
the W&B dashboard — written only with a WandbLogger — lands in a real offline run."""

from __future__ import annotations

import ast
import json
import struct
import sys
from types import SimpleNamespace

import pytest

from conftest import REPO
from fpenc.cli import main

MODULE = REPO / "fpenc" / "encoder" / "module.py"


def test_encoder_module_has_no_report_bundle_or_wandb_code():
    tree = ast.parse(MODULE.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
            imported.update(f"{node.module}.{a.name}" for a in node.names)
    banned_modules = (
        "wandb",
        "fpenc.bundle",
        "fpenc.encoder.export",
        "fpenc.rundir",
        "pytorch_lightning.loggers",
        "fpenc.callbacks.report",
        "fpenc.callbacks.bundle_export",
        "fpenc.callbacks.wandb_dashboard",
    )
    assert not [n for n in imported if any(n == b or n.startswith(b + ".") for b in banned_modules)], imported
    assert not [n for n in imported if n.startswith("fpenc.report.") and n != "fpenc.report.roc_metrics"], imported
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
    }
    banned_names = {
        "wandb",
        "WandbLogger",
        "export_from_run",
        "export_bundle",
        "load_bundle",
        "evaluate_models",
        "build_report",
        "write_report",
        "format_markdown",
        "plot_cdf",
        "test_report",
        "RunDir",
        "run_dir",
        "cfg",
        "configure_callbacks",
        "log_artifact",
    }
    assert not names & banned_names, names & banned_names
    # the datamodule is reached only through its public interface
    assert not [
        n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and isinstance(n.value, ast.Attribute)
        and n.value.attr == "datamodule"
        and n.attr.startswith("_")
    ]
    assert len(MODULE.read_text().splitlines()) < 300


def test_callback_modules_are_small():
    for path in sorted((REPO / "fpenc" / "callbacks").glob("*.py")) + [MODULE, REPO / "fpenc" / "lightning_cli.py"]:
        assert len(path.read_text().splitlines()) < 300, path


def test_default_callbacks_and_what_the_config_already_has(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    from fpenc.callbacks import BundleExportCallback, ReportCallback, WandbDashboardCallback, default_callbacks

    kinds = [type(c) for c in default_callbacks(tmp_path)]
    assert all(issubclass(k, ModelCheckpoint) for k in kinds[:2])  # best (near ties kept) and last
    assert kinds[2:] == [BundleExportCallback, ReportCallback, WandbDashboardCallback]
    mine = ReportCallback()
    kinds = [type(c) for c in default_callbacks(tmp_path, [mine], checkpoints=False)]
    assert kinds == [BundleExportCallback, WandbDashboardCallback]


def test_injected_network_and_verdict_options():
    import torch

    from fpenc.encoder.module import EncoderModule
    from fpenc.encoder.network import FingerprintEncoder

    net = FingerprintEncoder(40, 8, 4, 2, 0.0, "log")
    module = EncoderModule(input_dim=40, alpha=0.1, export_dir=None, net=net)
    assert module.encoder is net and "net" not in module.hparams
    assert module.verdict_options.alpha == 0.1 and module.verdict_options.export_dir is None
    assert module.encoder(torch.rand(3, 40)).shape == (3, 2)


@pytest.mark.parametrize("logger", ["none", "csv"])
def test_wandb_dashboard_needs_a_wandb_logger_and_never_imports_wandb_otherwise(tmp_path, monkeypatch, logger):
    from pytorch_lightning.loggers import CSVLogger

    from fpenc.callbacks import WandbDashboardCallback

    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` would raise
    loggers = [] if logger == "none" else [CSVLogger(tmp_path)]
    trainer = SimpleNamespace(loggers=loggers, callbacks=[], datamodule=None)
    WandbDashboardCallback().on_test_end(trainer, None)


def wandb_records(path):
    """The protobuf records of an offline run's ``run-*.wandb`` file (wandb's LevelDB-style log:
    a 7-byte file header, then 32 KiB blocks of chunks with a 7-byte header: crc, length, type)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        space = 32768 - pos % 32768
        if space < 7:
            pos += space
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 2):  # full, first
            buf = chunk
        elif kind == 3:  # middle
            buf += chunk
        if kind in (1, 4):  # full, last
            record = pb.Record()
            record.ParseFromString(buf if kind == 1 else buf + chunk)
            yield record


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory):
    from test_encoder_cli import encoder_config

    from conftest import make_fmnist_files

    tmp_path = tmp_path_factory.mktemp("wb")
    config = encoder_config(tmp_path, make_fmnist_files(tmp_path / "fmnist"))
    assert main(["fit", "--config", str(config)]) == 0
    return tmp_path, config


def test_test_fills_a_wandb_dashboard_offline(fitted_run, tmp_path, monkeypatch, capsys):
    import pytorch_lightning as pl

    from fpenc.callbacks import BundleExportCallback, ReportCallback, WandbDashboardCallback
    from fpenc.lightning_cli import run

    run_tmp, config = fitted_run
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert main(["uap", "--config", str(config)]) == 0  # uap_transfer.json, for the UAP table

    class Probe(pl.Callback):
        def setup(self, trainer, pl_module, stage):
            self.kinds = [type(c) for c in trainer.callbacks]
            self.loggers = list(trainer.loggers)

    probe = Probe()
    save = tmp_path / "wb"
    assert (
        run(
            [
                "test",
                "--config",
                str(config),
                "--ckpt_path",
                "best",
                "--trainer.logger",
                "pytorch_lightning.loggers.WandbLogger",
                f"--trainer.logger.init_args.save_dir={save}",
                "--trainer.logger.init_args.offline=true",
                "--trainer.logger.init_args.project=fpenc-test",
            ],
            callbacks=[probe],
        )
        == 0
    )
    (logger,) = probe.loggers
    # named <config>-<stage>, grouped by config: fit and test of one config tell apart after `wandb sync`
    # (read from the run itself: the log's `run` record can lag behind finish() on a loaded machine)
    exp = logger.experiment
    assert (exp.name, exp.group, exp.job_type) == ("tinyenc-test", "tinyenc", "test")
    exp.finish()  # finish the logger's own run: its log is complete once this returns
    capsys.readouterr()
    kinds = [k for k in probe.kinds if k in (BundleExportCallback, ReportCallback, WandbDashboardCallback)]
    assert kinds == [BundleExportCallback, ReportCallback, WandbDashboardCallback]  # the CLI's defaults, in order

    (run_dir,) = (save / "wandb").glob("offline-run-*")
    media = run_dir / "files" / "media"
    tables = {p.name.split("_1_")[0]: json.loads(p.read_text()) for p in media.rglob("*.table.json")}
    assert {"zoo", "uap_transfer", "results"} <= set(tables), tables.keys()
    zoo = tables["zoo"]
    assert (
        zoo["columns"][:8]
        == ["id", "role", "architecture", "optimizer", "seed", "split", "encoder_split", "test_accuracy"]
        and "agreement" in zoo["columns"]
    )
    manifest = json.loads((run_tmp / "runs/tinyenc/manifest.json").read_text())
    assert [r[0] for r in zoo["data"]] == [m["id"] for m in manifest["models"]]
    assert {r[zoo["columns"].index("encoder_split")] for r in zoo["data"]} == {
        "victim",
        "train",
        "val",
        "reference",
        "test",
    }
    uap = tables["uap_transfer"]
    assert "fooling_mean" in uap["columns"] and len(uap["data"]) == len(manifest["models"])
    report = json.loads((run_tmp / "runs/tinyenc/report.json").read_text())
    assert [r[0] for r in tables["results"]["data"]] == [m["id"] for m in report["models"]]
    assert list(media.rglob("similarity_cdf*.png"))

    (log,) = run_dir.glob("run-*.wandb")
    summary, artifacts = {}, {}
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "summary":
            # wandb-core writes an update keyed by `key`, or by `nested_key` once it has merged
            # (debounced) updates: read both
            summary.update({u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in record.summary.update})
        elif kind == "artifact":
            artifacts[record.artifact.name] = record.artifact
    assert summary["test/auc"] == pytest.approx(report["auc"])
    assert summary["test/p_value_floor"] == pytest.approx(report["p_value_floor"])
    assert summary["test/piracy_derived"] == report["piracy_derived"]
    bundle = artifacts["tinyenc-bundle"]
    assert bundle.type == "model"
    assert [e.path for e in bundle.manifest.contents] == ["tinyenc.fpenc.safetensors"]
    assert json.loads(bundle.metadata)["bundle_sha256"] == report["bundle_sha256"]
    assert [e.path for e in artifacts["tinyenc-encoder"].manifest.contents] == ["best.ckpt"]
    assert {e.path for e in artifacts["tinyenc-report"].manifest.contents} >= {"report.json", "report.md"}


@pytest.mark.parametrize(
    "name",
    [
        "encoder/options.py",
        "callbacks/__init__.py",
        "callbacks/bundle_export.py",
        "callbacks/checkpoints.py",
        "callbacks/defaults.py",
        "callbacks/report.py",
        "callbacks/wandb_dashboard.py",
    ],
)
def test_callbacks_import_neither_datamodules_nor_the_zoo_builder(name):
    from test_layering import imports_package

    source = (REPO / "fpenc" / name).read_text()
    assert not imports_package(source, "datamodules") and not imports_package(source, "fpenc.zoo.builder")


def fit_scripted(folder, separations, **kwargs):
    """Fit a one-weight model whose val/separation follows ``separations`` (one per epoch) with the
    encoder's checkpoint callbacks; returns ``(best, last)`` checkpoints (our own files)."""
    import pytorch_lightning as pl
    import torch

    from fpenc.callbacks.checkpoints import encoder_checkpoints

    class Scripted(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            return (self.w - 1).pow(2).sum()

        def validation_step(self, batch, batch_idx):
            self.log("val/separation", separations[self.current_epoch])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.zeros(2, 1), batch_size=2)
    trainer = pl.Trainer(
        max_epochs=len(separations),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        callbacks=encoder_checkpoints(folder, **kwargs),
        num_sanity_val_steps=0,
    )
    trainer.fit(Scripted(), train_dataloaders=data, val_dataloaders=data)
    return tuple(torch.load(folder / f"{n}.ckpt", weights_only=False) for n in ("best", "last"))


def test_checkpoints_best_and_last_epoch(tmp_path):
    """best.ckpt holds the best validation epoch, last.ckpt the final one (not the best again)."""
    import torch

    best, last = fit_scripted(tmp_path, [0.0, -1.0, -2.0])  # worsening: the best epoch is the first
    assert (best["epoch"], last["epoch"]) == (0, 2)
    assert not torch.equal(best["state_dict"]["w"], last["state_dict"]["w"])


@pytest.mark.parametrize(("min_delta", "best_epoch"), [(0.05, 2), (0.0, 3)])
def test_best_checkpoint_ignores_near_ties(tmp_path, min_delta, best_epoch):
    """A later epoch replaces best.ckpt only if it beats it by more than min_delta: 1.04 ties 1.0
    (kept: epoch 0), 1.2 wins (epoch 2), 1.22 ties it; without a tolerance the last epoch wins."""
    from fpenc.callbacks.checkpoints import encoder_checkpoints

    best, _ = fit_scripted(tmp_path, [1.0, 1.04, 1.2, 1.22], min_delta=min_delta)
    assert best["epoch"] == best_epoch
    with pytest.raises(ValueError, match="min_delta"):
        encoder_checkpoints(tmp_path, min_delta=-1.0)
