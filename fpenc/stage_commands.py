"""The ``fpenc`` commands that run the pipeline's stages on a run directory: ``zoo``, ``uap``,
``fingerprint`` and ``subspace`` (their flags are parsed by :mod:`fpenc.cli`). Each builds the
stages it needs first; every stage is cached and resumes after an interruption."""

from __future__ import annotations

import sys


def _pipeline_config(args):
    from fpenc.config import load_pipeline_config

    overrides = {"runs_dir": args.runs_dir} if args.runs_dir else None
    return load_pipeline_config(args.config, overrides)


def _executor(args):
    from fpenc.executor import executor_options

    return executor_options(args)


def cmd_zoo(args) -> int:
    cfg = _pipeline_config(args)
    from fpenc.pipeline import run_stages
    from fpenc.rundir import RunDir
    from fpenc.zoo.manifest import format_table

    print(f"fpenc zoo: {cfg.name} -> {cfg.run_dir}/", file=sys.stderr)
    manifest = run_stages(cfg, until="zoo", progress=not args.no_progress, executor=_executor(args))["zoo"]
    print(format_table(manifest["models"]))
    print(f"\nmanifest: {RunDir(cfg.run_dir).manifest}")
    return 0


def _stages_up_to_uap(cfg, args):
    from fpenc.pipeline import run_stages

    return run_stages(cfg, until="uap", progress=not args.no_progress, executor=_executor(args))["uap"]


def cmd_uap(args) -> int:
    cfg = _pipeline_config(args)
    from dataclasses import asdict

    from fpenc.data.datasets import load_data
    from fpenc.rundir import RunDir
    from fpenc.uap.bank import holdout_images, time_to_target
    from fpenc.uap.report import format_fooling, write_fooling, zoo_fooling

    bank = _stages_up_to_uap(cfg, args)
    u = cfg.uap
    print(f"UAP bank: {len(bank['uaps'])} x {u.method} UAP, {u.norm} eps {u.eps}, {u.steps} steps of {u.batch_size}")
    for i, (fr, sec, hist) in enumerate(zip(bank["fooling_rates"], bank["seconds"], bank["histories"])):
        t80 = time_to_target(hist)
        reach = f"{t80:.1f}s to 80%" if t80 is not None else "never reached 80%"
        print(f"  uap {i}: victim fooling rate {fr:.3f} on held-out images, {sec:.1f}s ({reach})")
    arrays = load_data(cfg.data)
    rows = zoo_fooling(cfg, bank, holdout_images(arrays, u.holdout, cfg.seed))
    print(format_fooling(rows))
    path = write_fooling(
        RunDir(cfg.run_dir).uap_transfer,
        rows,
        {**asdict(u), "seed": cfg.seed, "victim_fooling_rates": [float(f) for f in bank["fooling_rates"]]},
    )
    print(f"wrote {path}")
    return 0


def cmd_fingerprint(args) -> int:
    cfg = _pipeline_config(args)
    from fpenc.api import parse_api
    from fpenc.pipeline import run_stages

    run_stages(
        cfg, until="fingerprints", api=str(parse_api(args.api)), progress=not args.no_progress, executor=_executor(args)
    )
    return 0


def cmd_subspace(args) -> int:
    cfg = _pipeline_config(args)
    from fpenc.uap.subspace import format_subspace, subspace_analysis
    from fpenc.zoo.builder import build_zoo

    build_zoo(cfg, progress=not args.no_progress, executor=_executor(args))
    print(
        format_subspace(
            subspace_analysis(
                cfg,
                args.num_uaps,
                args.steps,
                norm=args.norm,
                eps=args.eps,
                lr=args.lr,
                batch_size=args.batch_size,
                init_scale=args.init_scale,
                chunk=args.chunk,
                models=args.models,
                progress=not args.no_progress,
                reading=args.reading,
                energy_share=args.energy_share,
            )
        )
    )
    return 0
