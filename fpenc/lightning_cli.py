"""``fpenc fit`` / ``fpenc test``: LightningCLI over :class:`EncoderModule` and
:class:`FingerprintDataModule` (imported only for these subcommands: Lightning takes seconds).

The ``pipeline:`` sections of the stacked ``--config`` files are stacked by
:func:`fpenc.config.load_pipeline_data` (named zoo grids merged by name; unknown keys and wrong
types are one-line errors, with did-you-mean) and handed to jsonargparse as ``--pipeline``, typed
:class:`~fpenc.config.PipelineConfig` (so ``--pipeline.seed 3`` overrides it), linked to
``data.pipeline``; the datamodule validates it. Its fingerprint width is linked to ``model.input_dim``. ``test`` refuses to run without ``--ckpt_path`` (Lightning
would silently test untrained weights); ``--ckpt_path best`` or ``last`` names the run's own
``runs/<name>/encoder/{best,last}.ckpt``. With ``--model.init_from BUNDLE`` instead, ``test`` judges
this run's models with that bundle's trained encoder (encoder transfer, :mod:`fpenc.encoder.transfer`).

The trainer gets, after the config's own callbacks, the encoder's checkpoints and the callbacks
of ``test`` (:mod:`fpenc.callbacks`): bundle export, report, W&B dashboard (the last only acts
with a ``WandbLogger``); the model's verdict options (``model.alpha``, ``model.export_dir``...)
reach them through :attr:`EncoderModule.verdict_options`.

Several devices (``--trainer.strategy ddp --trainer.devices N``): this process runs the earlier
stages, then Lightning starts the other N - 1 by rerunning its command line (so start it as the
``fpenc`` command or a script, not from a notebook or test runner); they skip the stages and share
its run-directory lock (:func:`fpenc.io.lock_run_dir`). What they gather: :mod:`fpenc.encoder.distributed`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from fpenc.errors import ConfigError, FpencError
from fpenc.rundir import RunDir

SUBCOMMANDS = ("fit", "validate", "test")


def config_paths(args: list[str]) -> list[str]:
    """The values of every ``--config``/``-c`` option in ``args``."""
    out = []
    for i, a in enumerate(args):
        if a in ("--config", "-c") and i + 1 < len(args):
            out.append(args[i + 1])
        elif a.startswith("--config="):
            out.append(a.split("=", 1)[1])
    return out


def resolve_config_args(args: list[str]) -> list[str]:
    """``args`` with every ``--config`` value that names a shipped config (``-c fmnist_demo``) as its path."""
    from fpenc.config.loader import resolve_config

    out = list(args)
    for i, a in enumerate(out):
        if a in ("--config", "-c") and i + 1 < len(out):
            out[i + 1] = str(resolve_config(out[i + 1]))
        elif a.startswith("--config="):
            out[i] = f"--config={resolve_config(a.split('=', 1)[1])}"
    return out


def _cli_class():
    from pytorch_lightning.cli import LightningCLI

    from fpenc.config import PipelineConfig

    class FpencLightningCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.add_argument(
                "--pipeline",
                type=Optional[PipelineConfig],  # noqa: UP045 (jsonargparse reads this type at run time)
                default=None,
                help="the pipeline section of the configs (fpenc stacks the files' sections, named grids by name)",
            )
            parser.link_arguments("pipeline", "data.pipeline")
            parser.link_arguments("data.input_dim", "model.input_dim", apply_on="instantiate")

        def before_instantiate_classes(self) -> None:
            """W&B runs as users expect them: named ``<config name>-<stage>``, grouped by config, the
            stage as job type (unless the config names them); ``WANDB_MODE=online`` is the one switch
            that sends them to the server (offline by default)."""
            import os

            cfg = self.config[self.subcommand]
            pipeline = cfg.get("pipeline")
            loggers = cfg.get("trainer", {}).get("logger")
            for lg in loggers if isinstance(loggers, list) else [loggers]:
                if not str(getattr(lg, "class_path", "")).endswith("WandbLogger"):
                    continue
                init = lg.init_args
                name = (pipeline.get("init_args.name") or pipeline.get("name") if pipeline else None) or "fpenc"
                for key, value in (
                    ("name", f"{name}-{self.subcommand}"),
                    ("group", name),
                    ("job_type", self.subcommand),
                ):
                    if init.get(key) is None:
                        init[key] = value
                if os.environ.get("WANDB_MODE") == "online":
                    init["offline"] = False

        def _run_stages(self, sets=None) -> None:
            """The pipeline's stages up to the fingerprints (cached: a finished stage only checks its
            outputs); ``sets``: fingerprint only those models (fit: never a reference or test model).
            Not in the other processes of a DDP run: the first ran them before it started them."""
            import os

            from fpenc.pipeline import run_stages

            if os.environ.get("LOCAL_RANK", "0") != "0":
                return

            dm = self.datamodule
            run_stages(dm.cfg, api=dm.api, progress=dm.progress, sets=sets)

        def before_fit(self) -> None:
            """``--ckpt_path best|last|FILE`` resumes from that checkpoint, or refuses: never a silent restart.
            ``sync_batchnorm`` with several CPU processes is refused (torch's SyncBatchNorm needs GPUs)."""
            from pytorch_lightning.accelerators import CPUAccelerator

            from fpenc.pipeline import FIT_SETS

            cfg = self.config_init[self.subcommand]
            ckpt = cfg.get("ckpt_path")
            sync_bn = self._get(self.config, "trainer", default={}).get("sync_batchnorm")
            if sync_bn and self.trainer.world_size > 1 and isinstance(self.trainer.accelerator, CPUAccelerator):
                raise ConfigError(
                    "--trainer.sync_batchnorm needs GPUs (torch's SyncBatchNorm does not run on CPU): drop it"
                )
            if not ckpt:
                self._run_stages(FIT_SETS)
                return
            if ckpt in ("best", "last"):
                ckpt = str(RunDir(self.datamodule.run_dir).checkpoint(ckpt))
            if not Path(ckpt).is_file():
                raise ConfigError(
                    f"cannot resume: checkpoint {ckpt} does not exist; drop --ckpt_path to train from the start"
                )
            cfg["ckpt_path"] = _checked_checkpoint(ckpt)
            self._run_stages(FIT_SETS)

        def before_test(self) -> None:
            cfg = self.config_init[self.subcommand]
            ckpt = cfg.get("ckpt_path")
            transfer = self._get(self.config, "model", default={}).get("init_from")
            if transfer and ckpt:
                raise ConfigError(
                    f"--model.init_from {transfer} and --ckpt_path {ckpt} both give the encoder's weights; "
                    "pass --ckpt_path to test a trained run, --model.init_from alone to test a transferred encoder"
                )
            if transfer:  # encoder transfer: the bundle's trained encoder, nothing of this run's
                self._run_stages()
                return
            if not ckpt:
                raise ConfigError(
                    "test needs trained weights: pass --ckpt_path runs/<name>/encoder/best.ckpt (or --ckpt_path best); "
                    "without it Lightning would test an untrained encoder"
                )
            if ckpt in ("best", "last"):
                ckpt = str(RunDir(self.datamodule.run_dir).checkpoint(ckpt))
            if not Path(ckpt).is_file():
                raise ConfigError(f"checkpoint {ckpt} does not exist; run `fpenc fit` with the same --config first")
            cfg["ckpt_path"] = _checked_checkpoint(ckpt)
            self._run_stages()

        def before_validate(self) -> None:
            from fpenc.pipeline import FIT_SETS

            self._run_stages(FIT_SETS)

        def instantiate_trainer(self, **kwargs):
            """The config's trainer with, after the config's own callbacks, the encoder's checkpoints
            and the test callbacks (:func:`fpenc.callbacks.defaults.default_callbacks`)."""
            from fpenc.callbacks.defaults import default_callbacks

            def as_list(value) -> list:
                return list(value) if isinstance(value, (list, tuple)) else [] if value is None else [value]

            config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
            present = as_list(config.get("callbacks"))
            extra = default_callbacks(
                self.datamodule.run_dir,
                [*present, *as_list(self.trainer_defaults.get("callbacks"))],
                checkpoints=config.get("enable_checkpointing") is not False,
            )
            return super().instantiate_trainer(**{**kwargs, "callbacks": [*present, *extra]})

        def after_test(self) -> None:
            from fpenc.callbacks.defaults import find_callback
            from fpenc.callbacks.report import ReportCallback
            from fpenc.report import format_markdown

            reporter = find_callback(self.trainer, ReportCallback)
            report = reporter.report if reporter is not None else None
            if report is not None:
                print(format_markdown(report))
                print(f"report: {RunDir(self.datamodule.run_dir).report_json}")
                if report.get("bundle"):
                    print(f"bundle: {report['bundle']}")

    return FpencLightningCLI


def _checked_checkpoint(path: str) -> str:
    """``path`` if it is a PyTorch checkpoint (a zip archive), else a one-line ConfigError."""
    import zipfile

    if not zipfile.is_zipfile(path):
        raise ConfigError(
            f"checkpoint {path} is not a PyTorch checkpoint (damaged or truncated?); use "
            "runs/<name>/encoder/best.ckpt or last.ckpt, or rerun `fpenc fit`"
        )
    return path


def _check_ckpt_arg(args: list[str]) -> None:
    """LightningCLI reads a ``--ckpt_path`` file while parsing: refuse a damaged one first, in one line."""
    for i, a in enumerate(args):
        value = (
            a.split("=", 1)[1]
            if a.startswith("--ckpt_path=")
            else (args[i + 1] if a == "--ckpt_path" and i + 1 < len(args) else None)
        )
        if value and Path(value).is_file():
            _checked_checkpoint(value)


def run(args: list[str], callbacks: list | None = None) -> int:
    """Run ``fit``/``validate``/``test`` with LightningCLI; ``args`` start with the subcommand.
    ``callbacks``: extra Lightning callbacks for the trainer (added to the config's)."""
    from fpenc.config import load_pipeline_data

    if not args or args[0] not in SUBCOMMANDS:
        raise ValueError(f"args must start with one of {SUBCOMMANDS}")
    if any(a in ("-h", "--help", "--print_config") or a.startswith("--print_config=") for a in args[1:]):
        paths = []
    else:
        args = resolve_config_args(args)
        paths = config_paths(args[1:])
        pipeline = load_pipeline_data(paths)  # stacked, keys and types checked: one-line errors
        run_dir = Path(pipeline.get("runs_dir") or "runs") / pipeline["name"]
        # The stacked section goes in right after the last --config, so --pipeline.* options after it
        # still override; Lightning's own outputs (saved config, default logs) go to the run's folder.
        last = max(i for i, a in enumerate(args) if a in ("--config", "-c") or a.startswith("--config="))
        last += 1 if args[last].startswith("--config=") else 2
        args = [
            args[0],
            f"--trainer.default_root_dir={run_dir}",
            *args[1:last],
            f"--pipeline={json.dumps(pipeline)}",
            *args[last:],
        ]
    _check_ckpt_arg(args)
    import warnings

    from datamodules.fingerprints import FingerprintDataModule
    from fpenc.encoder.module import EncoderModule

    # run() is the command line: passing args= on purpose is not the mistake Lightning warns of.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    cli_class = _cli_class()
    cli_class(
        EncoderModule,
        FingerprintDataModule,
        args=args,
        seed_everything_default=0,
        trainer_defaults={"callbacks": list(callbacks)} if callbacks else None,
        save_config_kwargs={"overwrite": True},
        subclass_mode_model=False,
        subclass_mode_data=False,
    )
    return 0


def main(args: list[str] | None = None) -> int:
    """``python -m fpenc.lightning_cli fit --config ...``; errors as one line, exit 2."""
    args = list(sys.argv[1:] if args is None else args)
    from fpenc.allocator import tune_allocator

    tune_allocator()
    try:
        return run(args)
    except FpencError as err:
        print(f"fpenc {args[0] if args else ''}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
