"""The layout of a run directory ``runs/<name>/``, and the readers of the zoo it holds.

Every file name of a run is spelled here and nowhere else::

    manifest.json              the zoo: one entry per model (fpenc.zoo.manifest)
    splits.npz                 victim / attacker / homologous indices (fpenc.data.splits)
    models/<id>.pt             each zoo model's weights (the manifest stores this relative path)
    uaps.pt                    the victim's UAP bank (fpenc.uap.bank)
    uap_transfer.json          how the bank transfers to the zoo (`fpenc uap`)
    key.pt                     the fingerprint key (fpenc.fingerprint.key)
    fingerprints/<id>.pt       each model's fingerprints (fpenc.fingerprint.zoo)
    encoder/{best,last}.ckpt   the encoder's checkpoints (`fpenc fit`)
    report.json, report.md, similarity_cdf.png   the test report (`fpenc test`)
    verdict_margins.png                          every model's margin above the decision threshold
    subspace/                  `fpenc subspace`: cached UAPs and results
    verdict_suite/             experiments/verdict_suite.py's suspects
    bench.json                 `fpenc bench`: every method on the test models at query budgets

Readers (:func:`load_zoo_model`, :func:`victim_entry`) live here rather than next to the zoo's
training code, so that verifying and reporting never import the zoo builder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from fpenc.errors import FpencError
from fpenc.io import load_weights
from fpenc.zoo.manifest import load_manifest

if TYPE_CHECKING:
    import torch

MANIFEST = "manifest.json"
SPLITS = "splits.npz"  # stored as is in the manifest's "splits"
MODELS = "models"
UAPS = "uaps.pt"
UAP_TRANSFER = "uap_transfer.json"
KEY = "key.pt"
FINGERPRINTS = "fingerprints"
ENCODER = "encoder"
REPORT_JSON, REPORT_MD, SIMILARITY_CDF = "report.json", "report.md", "similarity_cdf.png"
VERDICT_MARGINS = "verdict_margins.png"  # named in report.md's image link too (fpenc/report.py)
SUBSPACE = "subspace"
VERDICT_SUITE = "verdict_suite"
BENCH = "bench.json"
PROTECT_CONFIG, OWNER_WEIGHTS = "protect.yaml", "owner_weights.pt"  # fpenc protect: its overlay, the owner's weights


class RunDir:
    """The paths of one run directory. ``RunDir(path)`` accepts a str, a Path or a RunDir;
    ``run_dir / "x"`` and ``Path(run_dir)`` work as for a Path."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __truediv__(self, other: str | os.PathLike) -> Path:
        return self.path / other

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, RunDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    # -- files ------------------------------------------------------------------------------------
    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    @property
    def splits(self) -> Path:
        return self.path / SPLITS

    @staticmethod
    def model_weights(model_id: str) -> str:
        """The weights file of a zoo model relative to the run directory, as the manifest stores it."""
        return f"{MODELS}/{model_id}.pt"

    def weights(self, entry: dict) -> Path:
        """The weights file of a manifest entry."""
        return self.path / entry["weights"]

    @property
    def uaps(self) -> Path:
        return self.path / UAPS

    @property
    def uap_transfer(self) -> Path:
        return self.path / UAP_TRANSFER

    @property
    def key(self) -> Path:
        return self.path / KEY

    @property
    def bench(self) -> Path:
        return self.path / BENCH

    @property
    def protect_config(self) -> Path:
        """The overlay ``fpenc protect`` stacks on its base config (the owner's model as the victim)."""
        return self.path / PROTECT_CONFIG

    @property
    def owner_weights(self) -> Path:
        """The owner's state dict, saved by :func:`fpenc.protect` from a live model."""
        return self.path / OWNER_WEIGHTS

    @property
    def fingerprints_dir(self) -> Path:
        return self.path / FINGERPRINTS

    def fingerprint(self, model_id: str) -> Path:
        return self.fingerprints_dir / f"{model_id}.pt"

    @property
    def encoder_dir(self) -> Path:
        return self.path / ENCODER

    def checkpoint(self, name: str) -> Path:
        """``encoder/<name>.ckpt`` (``best`` or ``last``)."""
        return self.encoder_dir / f"{name}.ckpt"

    @property
    def report_json(self) -> Path:
        return self.path / REPORT_JSON

    @property
    def report_md(self) -> Path:
        return self.path / REPORT_MD

    @property
    def verdict_margins(self) -> Path:
        return self.path / VERDICT_MARGINS

    @property
    def similarity_cdf(self) -> Path:
        return self.path / SIMILARITY_CDF

    @property
    def subspace_dir(self) -> Path:
        return self.path / SUBSPACE

    def subspace_cache(self, label: str, tag: str) -> Path:
        """One model's cached UAP set of ``fpenc subspace``."""
        return self.subspace_dir / f"{label}-{tag}.pt"

    def subspace_results(self, norm: str, eps: float, num_uaps: int) -> dict[str, Path]:
        """``{"json", "png"}``: the result and Figure 2 of ``fpenc subspace`` for these settings."""
        stem = f"{SUBSPACE}_{norm}_eps{eps:g}_n{num_uaps}"
        return {"json": self.subspace_dir / f"{stem}.json", "png": self.subspace_dir / f"{stem}.png"}

    @property
    def verdict_suite_dir(self) -> Path:
        return self.path / VERDICT_SUITE

    def share_zoo_of(self, other: RunDir | str | os.PathLike) -> list[Path]:
        """Give this run another run's zoo and UAP bank (splits, manifest, model weights, UAPs), as
        hard links (copies across file systems), so that a variant of a config (another key, API or
        encoder) reuses them instead of retraining. Files this run has already are kept; the stages
        rewrite files atomically (a new file), never through a link. Returns the files added."""
        import shutil

        other, added = RunDir(other), []
        sources = [other.splits, other.manifest, other.uaps, other.uap_transfer]
        sources += sorted((other / MODELS).glob("*.pt")) if (other / MODELS).is_dir() else []
        for src in sources:
            dst = self.path / src.relative_to(other.path)
            if not src.is_file() or dst.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
            added.append(dst)
        return added

    # -- readers ----------------------------------------------------------------------------------
    def load_manifest(self) -> dict:
        """The zoo's manifest (an empty one if there is none yet)."""
        return load_manifest(self.manifest)

    def victim_entry(self) -> dict:
        """The victim's manifest entry (clear error if there is none)."""
        for m in self.load_manifest()["models"]:
            if m["role"] == "victim":
                return m
        raise FpencError(f"no victim in {self.manifest}: run `fpenc zoo --config ...` first")

    def load_model(self, entry: dict) -> torch.nn.Module:
        """Rebuild a manifest entry's network from its weights file (hash-checked, no unpickling)."""
        from fpenc.models import build_model
        from fpenc.models.quantized import QUANTIZED, load_plain_state_dict, rebuild_int8

        payload = load_weights(self.weights(entry), expected_sha256=entry.get("sha256"))
        config = payload["config"]
        net = build_model(**{k: v for k, v in config.items() if k != QUANTIZED})
        if config.get(QUANTIZED):  # a real INT8 model: its quantized structure, then its plain tensors
            net = rebuild_int8(net, config)
            load_plain_state_dict(net, payload["state_dict"])  # strict too
        else:
            net.load_state_dict(payload["state_dict"])  # strict: a mismatch is an error, never ignored
        return net.eval()


def load_zoo_model(entry: dict, run_dir: str | os.PathLike) -> torch.nn.Module:
    """Rebuild a manifest entry's network from its weights file in ``run_dir`` (see :meth:`RunDir.load_model`)."""
    return RunDir(run_dir).load_model(entry)


def victim_entry(run_dir: str | os.PathLike) -> dict:
    """The victim's manifest entry of the zoo in ``run_dir`` (see :meth:`RunDir.victim_entry`)."""
    return RunDir(run_dir).victim_entry()
