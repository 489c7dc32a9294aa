"""The W&B dashboard of ``fpenc test``: only when the trainer logs to a ``WandbLogger`` (a run with
``logger: false`` or a CSVLogger never imports wandb).

Logged once the test ends, to every WandbLogger of the trainer:

* ``zoo``: the manifest's models (id, role, architecture, optimizer, seed, data split, the
  encoder's split, test accuracy, agreement with the victim, recovery rate, queries, parent);
* ``uap_transfer``: how the UAP bank fools each zoo model (``uap_transfer.json`` of ``fpenc uap``),
  when the run has it;
* ``test/results``: the report's verdict per model; ``test/similarity_cdf``: the CDF plot;
  histograms of the pair similarities (per test role) and of the reference models';
* the report's numbers as the run's summary (``test/<key>``);
* the verification bundle as an artifact of type ``model`` (``<name>-bundle``), the encoder
  checkpoint it was tested with (``<name>-encoder``, type ``model``) and the report files
  (``<name>-report``, type ``report``).

The run itself is named ``<config name>-<stage>`` and grouped by config (``fpenc.lightning_cli``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytorch_lightning as pl

ZOO_COLUMNS = (
    "id",
    "role",
    "architecture",
    "optimizer",
    "seed",
    "split",
    "encoder_split",
    "test_accuracy",
    "agreement",
    "recovery_rate",
    "queries",
    "parent",
)
UAP_COLUMNS = ("id", "role", "architecture", "optimizer", "fooling_mean", "fooling_std", "follows_mean", "follows_std")
RESULT_COLUMNS = (
    "id",
    "split",
    "role",
    "architecture",
    "optimizer",
    "accuracy",
    "agreement",
    "similarity",
    "p_value",
    "verdict",
)


def wandb_loggers(trainer: pl.Trainer) -> list:
    """The trainer's WandbLoggers (importing their class does not import wandb)."""
    from pytorch_lightning.loggers import WandbLogger

    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


def zoo_rows(manifest: dict, encoder_splits: dict[str, str]) -> list[list]:
    return [
        [m.get(c) for c in ZOO_COLUMNS[:6]] + [encoder_splits.get(m["id"])] + [m.get(c) for c in ZOO_COLUMNS[7:]]
        for m in manifest.get("models", [])
    ]


def summary_of(report: dict) -> dict:
    """The report's scalar numbers and counts, as ``test/<key>``."""
    return {
        f"test/{k}": v
        for k, v in report.items()
        if isinstance(v, (int, float, str)) and not isinstance(v, bool) and k not in ("format", "bundle")
    }


def artifact_name(name: str, what: str = "bundle") -> str:
    """A W&B artifact name (letters, digits, ``-_.``) for ``what`` of run ``name``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{name}-{what}")


class WandbDashboardCallback(pl.Callback):
    """See the module docstring. Reads what the export and report callbacks made (their
    attributes, else the run directory's ``report.json``)."""

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loggers = wandb_loggers(trainer)
        if not loggers or not trainer.is_global_zero:  # under DDP the first process logs
            return
        import wandb

        from fpenc.callbacks.defaults import find_callback
        from fpenc.callbacks.report import ReportCallback
        from fpenc.rundir import RunDir

        dm = trainer.datamodule
        run = RunDir(dm.run_dir)
        reporter = find_callback(trainer, ReportCallback)
        report = (
            reporter.report
            if reporter is not None and reporter.report is not None
            else (json.loads(run.report_json.read_text()) if run.report_json.is_file() else None)
        )
        data = {"zoo": wandb.Table(columns=list(ZOO_COLUMNS), data=zoo_rows(run.load_manifest(), dm.encoder_splits()))}
        if run.uap_transfer.is_file():
            rows = json.loads(run.uap_transfer.read_text()).get("models", [])
            data["uap_transfer"] = wandb.Table(
                columns=list(UAP_COLUMNS), data=[[r.get(c) for c in UAP_COLUMNS] for r in rows]
            )
        if report is not None:
            data["test/results"] = wandb.Table(
                columns=list(RESULT_COLUMNS), data=[[r.get(c) for c in RESULT_COLUMNS] for r in report["models"]]
            )
        if run.similarity_cdf.is_file():
            data["test/similarity_cdf"] = wandb.Image(str(run.similarity_cdf))
        if run.verdict_margins.is_file():
            data["test/verdict_margins"] = wandb.Image(str(run.verdict_margins))
        if reporter is not None and reporter.rows:
            for role in ("piracy", "homologous"):
                sims = [r["similarities"] for r in reporter.rows if r["role"] == role and r["split"] == "test"]
                if sims:
                    data[f"test/similarity_{role}"] = wandb.Histogram(np.concatenate(sims))
        if reporter is not None and reporter.reference is not None:
            data["test/reference_similarity"] = wandb.Histogram(np.ravel(reporter.reference))
        bundle = report.get("bundle") if report else None
        for logger in loggers:
            logger.experiment.log(data)
            if report is not None:
                logger.experiment.summary.update(summary_of(report))
            if bundle:
                artifact = wandb.Artifact(
                    artifact_name(dm.name),
                    type="model",
                    metadata={
                        "bundle_sha256": report.get("bundle_sha256"),
                        "name": dm.name,
                        "alpha": report.get("alpha"),
                        "api": report.get("api"),
                    },
                )
                artifact.add_file(str(bundle))
                logger.experiment.log_artifact(artifact)
            if trainer.ckpt_path and Path(trainer.ckpt_path).is_file():
                ckpt = wandb.Artifact(artifact_name(dm.name, "encoder"), type="model", metadata={"name": dm.name})
                ckpt.add_file(str(trainer.ckpt_path))
                logger.experiment.log_artifact(ckpt)
            files = [
                f for f in (run.report_json, run.report_md, run.similarity_cdf, run.verdict_margins) if f.is_file()
            ]
            if files:
                rep = wandb.Artifact(artifact_name(dm.name, "report"), type="report", metadata={"name": dm.name})
                for f in files:
                    rep.add_file(str(f))
                logger.experiment.log_artifact(rep)
