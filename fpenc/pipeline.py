"""The pipeline's spine: its stages in order, each a function of the pipeline config that reads
its inputs from the run directory (:class:`fpenc.rundir.RunDir`) and writes its outputs there,
cached and resumable (a stage whose outputs are valid for its inputs does nothing).

    data + zoo  ->  UAP bank  ->  key  ->  fingerprints  ->  encoder (fit)  ->  report + bundle (test)

The first four are here; the encoder, its report and the bundle are the LightningCLI's ``fit`` and
``test`` (:mod:`fpenc.lightning_cli`), which call :func:`run_stages` first, so ``fpenc fit`` works
from nothing. The stage commands (``fpenc zoo``, ``uap``, ``fingerprint``) run the stages up to
theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One stage: its name, the run-directory artifacts it reads and writes (``RunDir`` attribute
    names) and what runs it: ``run(cfg, api, progress) -> its result``."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    run: Callable


def _zoo(cfg, api: str, progress: bool, executor=None):
    from fpenc.zoo.builder import build_zoo

    return build_zoo(cfg, progress=progress, executor=executor)


def _uap(cfg, api: str, progress: bool):
    from fpenc.uap.bank import build_uap_bank

    return build_uap_bank(cfg, progress=progress)


def _key(cfg, api: str, progress: bool):
    from fpenc.fingerprint.key import build_key

    return build_key(cfg)


def _fingerprints(cfg, api: str, progress: bool, sets=None):
    from fpenc.fingerprint.zoo import fingerprint_zoo

    if sets is None:
        return fingerprint_zoo(cfg, api=api)
    from fpenc.zoo.sets import assign_sets

    return fingerprint_zoo(cfg, api=api, ids=[i for i, s in assign_sets(cfg).items() if s in sets])


STAGES = (
    Stage("zoo", inputs=(), outputs=("splits", "manifest"), run=_zoo),
    Stage("uap", inputs=("splits", "manifest"), outputs=("uaps",), run=_uap),
    Stage("key", inputs=("splits", "manifest", "uaps"), outputs=("key",), run=_key),
    Stage("fingerprints", inputs=("manifest", "uaps", "key"), outputs=("fingerprints_dir",), run=_fingerprints),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


FIT_SETS = ("victim", "train", "val")
"""The sets ``fpenc fit`` reads: the encoder never sees (nor queries) a reference or test model."""


def run_stages(
    cfg, until: str = "fingerprints", api: str = "probs", progress: bool = True, sets=None, executor=None
) -> dict:
    """Run the stages of :data:`STAGES` up to and including ``until`` (each cached: a finished
    stage only checks its outputs); returns ``{stage name: its result}``. ``sets``: fingerprint only
    the models of these sets (:data:`FIT_SETS` for ``fpenc fit``; default every model); ``executor``:
    where the zoo's models train (:class:`fpenc.executor.ExecutorOptions`; default this process)."""
    if until not in STAGE_NAMES:
        raise ValueError(f"until must be one of {STAGE_NAMES}, got {until!r}")
    results = {}
    for stage in STAGES:
        extra = {"sets": sets} if stage.name == "fingerprints" and sets is not None else {}
        if stage.name == "zoo" and executor is not None:
            extra = {"executor": executor}
        results[stage.name] = stage.run(cfg, api, progress, **extra)
        if stage.name == until:
            break
    return results
