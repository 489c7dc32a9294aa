"""One suspect file judged against several bundles from one set of answers (``fpenc verify --suspects``).

The suspect's model is asked each distinct image once: the union of the images that every bundle's
verdict reads (labelled images, clean views, perturbed images of the chosen pairs), deduplicated by
content with the remote answer log's key (the SHA-256 of the float32 image), in batches of
``batch_size``. Each bundle's verdict is then :func:`fpenc.verification.verify_suspect` on the same
:class:`~fpenc.suspects.Suspect` a plain ``fpenc verify`` builds, its model replaced by the table of
answers: the same calls, the same checks, the same numbers, for any model whose answer to an image
does not depend on the other images of its batch (ONNX Runtime's CPU kernels; torch's CPU
convolutions can move the last bits of a probability with the batch's size).

:func:`judge_file` is the task an executor (:mod:`fpenc.executor`) runs per suspect; it returns the
result lines and never raises for a bad suspect (each bundle gets an error line). Bundles come as
handles (:meth:`put`) wrapped in a one-item list, so that Ray hands them over unresolved: a worker
resolves and keeps each bundle, its encoder and the union of images once, keyed by SHA-256.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fpenc.errors import FpencError

SCHEMA = "fpenc-verify-batch/1"
"""The ``schema`` value of every line of a batch verification's results file."""


@dataclass(frozen=True)
class BundleJob:
    """One bundle of a batch and how to judge against it: ``label`` (the bundle as named on the
    command line), ``sha256`` (its file, the workers' cache key), ``commitment``, ``handle`` (a
    one-item list holding the :class:`~fpenc.bundle.Bundle` or an executor handle to it) and the
    verdict's settings (``api`` resolved to the bundle's when not given)."""

    label: str
    sha256: str
    commitment: str
    handle: list
    api: str
    alpha: float
    num_fingerprints: int | None = None
    seed: int = 0

    def settings(self, outputs: str) -> dict:
        """What a line's verdict depends on besides the suspect and the bundle: written on every
        line, so that a rerun with other settings never takes lines made with these as its own."""
        return {
            "api": self.api,
            "alpha": self.alpha,
            "fingerprints": self.num_fingerprints,
            "seed": self.seed,
            "outputs": outputs,
        }


_BUNDLES: dict[str, Any] = {}  # this process's bundles, by SHA-256 (a worker loads each once)
_UNIONS: dict[tuple, list] = {}  # this process's union of images per set of bundles and settings


def _resolve(job: BundleJob):
    bundle = _BUNDLES.get(job.sha256)
    if bundle is None:
        bundle = job.handle[0]
        if type(bundle).__module__.startswith("ray") and type(bundle).__name__ == "ObjectRef":
            import ray

            bundle = ray.get(bundle)
        if len(_BUNDLES) >= 16:
            _BUNDLES.clear()
        _BUNDLES[job.sha256] = bundle
    return bundle


def image_key(image: np.ndarray) -> str:
    """The content key of one image (the remote client's: SHA-256 of its float32 bytes)."""
    from fpenc.remote_client import AnswerLog

    return AnswerLog.key(image)


def bundle_images(bundle, num_fingerprints: int | None = None, seed: int = 0) -> torch.Tensor:
    """Every image one verdict on ``bundle`` reads, computed as :func:`verify_suspect` computes them
    (float ``[M, C, H, W]``): the labelled images, the chosen views' clean images, then the
    perturbed image of each chosen (UAP, view) pair."""
    from fpenc.verification import choose_pairs

    pairs = choose_pairs(bundle.num_uaps, bundle.num_views, num_fingerprints, seed)
    chosen, row = torch.unique(pairs[:, 1], sorted=True, return_inverse=True)
    x = bundle.view_images[chosen].float() / 255.0
    adv = (x[row] + bundle.uaps.float()[pairs[:, 0]].unsqueeze(1)).clamp(0, 1)
    return torch.cat([bundle.sanity_images.float() / 255.0, x.flatten(0, 1), adv.flatten(0, 1)])


def union_images(jobs: list[BundleJob]) -> list[tuple[list[BundleJob], torch.Tensor, list[str]]]:
    """Per input shape: the jobs of that shape and the distinct images all their verdicts read
    (first occurrence order) with their keys. Cached in this process."""
    cache_key = tuple((j.sha256, j.num_fingerprints, j.seed) for j in jobs)
    if cache_key not in _UNIONS:
        groups: dict[tuple, tuple[list, list, list, set]] = {}
        for job in jobs:
            bundle = _resolve(job)
            g = groups.setdefault(tuple(bundle.input_shape), ([], [], [], set()))
            g[0].append(job)
            images = bundle_images(bundle, job.num_fingerprints, job.seed)
            for image in images:
                k = image_key(image.numpy())
                if k not in g[3]:
                    g[3].add(k)
                    g[1].append(image)
                    g[2].append(k)
        if len(_UNIONS) >= 16:
            _UNIONS.clear()
        _UNIONS[cache_key] = [(g[0], torch.stack(g[1]), g[2]) for g in groups.values()]
    return _UNIONS[cache_key]


def _scores(out, rows: int) -> torch.Tensor:
    """A model's raw answer as a float ``[rows, K]`` tensor (the first thing :class:`Suspect` does)."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    out = torch.as_tensor(np.asarray(out) if isinstance(out, list) else out).float().cpu()
    if out.dim() != 2 or out.shape[0] != rows:
        raise FpencError(f"the model returned shape {tuple(out.shape)} for {rows} images; expected [B, classes]")
    return out


class AnswerTable:
    """``fn(x) -> scores``: the raw answers of ``model`` by image content; an image not yet answered
    is asked (once, however often it appears); ``asked`` counts the images the model was asked."""

    def __init__(self, model, batch_size: int = 2000):
        self.model, self.batch_size = model, batch_size
        self.answers: dict[str, torch.Tensor] = {}
        self.asked = 0

    def ask(self, images: torch.Tensor, keys: list[str]) -> None:
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in self.answers:
                first.setdefault(k, i)
        todo = sorted(first.values())
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start : start + self.batch_size]
            out = _scores(self.model(images[idx]), len(idx))
            self.asked += len(idx)
            for i, row in zip(idx, out):
                self.answers[keys[i]] = row

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        keys = [image_key(im) for im in x.detach().cpu().float().numpy()]
        self.ask(x, keys)
        return torch.stack([self.answers[k] for k in keys])


def error_line(suspect: str, job: BundleJob, message: str) -> dict:
    from fpenc.verify_output import error_row

    return {"schema": SCHEMA, "bundle": job.label, "bundle_commitment": job.commitment, **error_row(suspect, message)}


def _one_line(err: BaseException) -> str:
    """An error as one line: fpenc's own message as the plain command prints it, else its type and first line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if isinstance(err, FpencError) and lines:
        return " ".join(lines)
    return f"{type(err).__name__}: {lines[0][:240]}" if lines else type(err).__name__


def judge(model, name: str, suspect: str, jobs: list[BundleJob], outputs: str = "auto", batch_size: int = 2000):
    """The result lines of the model ``model`` (a callable: images -> scores) against every job's
    bundle, asking it each distinct image once (see the module docstring). Returns ``(lines, asked)``."""
    from fpenc.suspects import Suspect
    from fpenc.verification import verify_suspect

    table, direct = AnswerTable(model, batch_size), set()
    for group, images, keys in union_images(jobs):
        try:
            table.ask(images, keys)
        except Exception:  # noqa: BLE001 - judged without the table, so each verdict fails as a plain one does
            direct.update(j.label for j in group)
    lines, plain_queries = [], 0
    for job in jobs:
        bundle = _resolve(job)
        fn = model if job.label in direct else table
        s = Suspect(fn, api=job.api, outputs=outputs, num_classes=bundle.num_classes, name=name)
        try:
            r = verify_suspect(bundle, s, num_fingerprints=job.num_fingerprints, alpha=job.alpha, seed=job.seed)
            head = {"schema": SCHEMA, "suspect": suspect, "bundle": job.label, "bundle_commitment": job.commitment}
            lines.append({**head, "api": str(s.api), **r})
        except Exception as err:  # noqa: BLE001 - a bad suspect is a line, the batch goes on
            lines.append(error_line(suspect, job, _one_line(err)))
        plain_queries += s.queries if fn is model else 0
    return lines, table.asked + plain_queries


def judge_file(path: str, jobs: list[BundleJob], outputs: str = "auto", trusted: bool = False, batch_size: int = 2000):
    """The result lines (one per job) of the suspect file ``path``: :func:`judge` on its model, loaded
    as ``fpenc verify`` loads one (never unpickled); a file that cannot be loaded is an error line
    per job. Each line gains ``images_asked`` (the distinct images the model answered, for all
    bundles together) and ``suspect_seconds`` (load, questions and every verdict)."""
    from fpenc.remote_client import is_url
    from fpenc.suspects import load_model_file

    t0 = time.perf_counter()
    model = None
    try:
        if is_url(path):
            raise FpencError(f"{path}: a batch takes model files; verify a URL with fpenc verify --bundle B URL")
        model = load_model_file(path, trusted)
        lines, asked = judge(model, Path(path).name, path, jobs, outputs, batch_size)
    except Exception as err:  # noqa: BLE001 - one line per bundle, the batch goes on
        lines, asked = [error_line(path, job, _one_line(err)) for job in jobs], 0
    finally:
        sandbox = getattr(model, "sandbox", None)
        if sandbox is not None:
            sandbox.close()
    seconds = round(time.perf_counter() - t0, 4)
    return [
        {**line, "settings": job.settings(outputs), "images_asked": asked, "suspect_seconds": seconds}
        for line, job in zip(lines, jobs)
    ]
