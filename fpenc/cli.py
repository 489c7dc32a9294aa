"""The ``fpenc`` command. Stage commands parse their own flags; heavy imports happen lazily, so
``fpenc --help`` answers without importing torch or Lightning.

    fpenc zoo --config configs/fmnist_demo.yaml     # build the model zoo, print its table
"""

from __future__ import annotations

import argparse
import os
import sys

from fpenc import __version__


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", action="append", required=True, metavar="YAML",
                   help="pipeline config; repeat to stack overlays (later files win)")
    p.add_argument("--runs-dir", default=None, help="where runs/<name>/ lives (default: the config's runs_dir, 'runs')")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fpenc",
        description="Prove that a suspect model was derived from yours: UAP fingerprints + a contrastive "
        "fingerprint encoder (Peng et al., CVPR 2022).",
    )
    parser.add_argument("--version", action="version", version=f"fpenc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("zoo", help="build the model zoo (victim, piracy, homologous models) of a config",
                       description="Train the victim, piracy (extracted) and homologous models a config "
                       "describes; skips finished models; writes runs/<name>/manifest.json.")
    _add_config(p)
    return parser


def _pipeline_config(args):
    from fpenc.config import load_pipeline_config

    overrides = {"runs_dir": args.runs_dir} if args.runs_dir else None
    return load_pipeline_config(args.config, overrides)


def cmd_zoo(args) -> int:
    cfg = _pipeline_config(args)
    from fpenc.zoo.builder import build_zoo
    from fpenc.zoo.manifest import format_table

    print(f"fpenc zoo: {cfg.name} -> {cfg.run_dir}/", file=sys.stderr)
    manifest = build_zoo(cfg, progress=not args.no_progress)
    print(format_table(manifest["models"]))
    print(f"\nmanifest: {cfg.run_dir / 'manifest.json'}")
    return 0


COMMANDS = {"zoo": cmd_zoo}


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``fpenc`` console script; returns the exit code."""
    os.environ.setdefault("WANDB_MODE", "offline")
    parser = build_parser()
    ns = parser.parse_args(args)
    if ns.command is None:
        parser.print_help()
        return 2
    from fpenc.errors import FpencError

    try:
        return COMMANDS[ns.command](ns)
    except FpencError as err:
        print(f"fpenc {ns.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fpenc {ns.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
