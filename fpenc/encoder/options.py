"""The ``model:`` options of ``fpenc fit`` / ``fpenc test``, checked as one-line
:class:`~fpenc.errors.ConfigError` s (never a traceback), and the verdict's settings among them.

The verdict and export settings (``alpha``, ``verdict_statistic``, the gates, ``export_dir``...)
stay ``model:`` options, so that existing configs keep working and a checkpoint records them;
the encoder itself never uses them: :class:`VerdictOptions` carries them to the test callbacks
(:mod:`fpenc.callbacks`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from fpenc.verdict import DEFAULT_ALPHA, DEFAULT_STATISTIC


@dataclass(frozen=True)
class VerdictOptions:
    """How ``fpenc test`` exports the bundle and verifies the zoo's models (see :class:`EncoderModule`)."""

    alpha: float = DEFAULT_ALPHA
    verdict_statistic: str = DEFAULT_STATISTIC
    num_fingerprints: int | None = None
    accuracy_share: float = 0.5
    entropy_share: float = 0.5
    ood_margin: float = 1.5
    sanity_images: int = 200
    export_dir: str | None = "checkpoints"

    @classmethod
    def from_hparams(cls, hparams) -> VerdictOptions:
        """The options among a module's hyperparameters (a mapping); missing ones get the defaults."""
        from dataclasses import fields

        return cls(**{f.name: hparams[f.name] for f in fields(cls) if f.name in hparams})


def check_args(
    *,
    lr,
    weight_decay,
    alpha,
    temperature,
    dropout,
    accuracy_share,
    entropy_share,
    ood_margin,
    sanity_images,
    num_fingerprints,
    verdict_statistic,
    dims,
) -> None:
    """The ``model:`` options, as one-line :class:`~fpenc.errors.ConfigError` s (never a traceback)."""
    from fpenc.errors import ConfigError
    from fpenc.verdict import STATISTICS

    floats = {
        "lr": lr,
        "weight_decay": weight_decay,
        "alpha": alpha,
        "temperature": temperature,
        "dropout": dropout,
        "accuracy_share": accuracy_share,
        "entropy_share": entropy_share,
        "ood_margin": ood_margin,
    }
    for name, value in floats.items():
        if not math.isfinite(value):
            raise ConfigError(f"model.{name} must be a finite number, got {value}")
    checks = [
        (lr > 0, "model.lr must be > 0"),
        (weight_decay >= 0, "model.weight_decay must be >= 0"),
        (0 < alpha < 1, "model.alpha must be in (0, 1)"),
        (temperature > 0, "model.temperature must be > 0"),
        (0 <= dropout < 1, "model.dropout must be in [0, 1)"),
        (
            0 <= accuracy_share <= 1 and 0 <= entropy_share <= 1,
            "model.accuracy_share and entropy_share must be in [0, 1]",
        ),
        (ood_margin >= 0, "model.ood_margin must be >= 0 (0: no out-of-distribution gate)"),
        (sanity_images >= 10, "model.sanity_images must be >= 10"),
        (num_fingerprints is None or num_fingerprints >= 2, "model.num_fingerprints must be >= 2 (or null: all)"),
        (verdict_statistic in STATISTICS, f"model.verdict_statistic must be one of {', '.join(STATISTICS)}"),
        (all(int(d) >= 1 for d in dims), "model.hidden_dim, embed_dim and proj_dim must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(
                f"{message}; got lr={lr}, weight_decay={weight_decay}, alpha={alpha}, temperature="
                f"{temperature}, dropout={dropout}, accuracy_share={accuracy_share}, entropy_share="
                f"{entropy_share}, ood_margin={ood_margin}, sanity_images={sanity_images}, "
                f"num_fingerprints={num_fingerprints}, verdict_statistic={verdict_statistic!r}"
            )
    if verdict_statistic == "agreement-or-similarity":
        warnings.warn(
            "model.verdict_statistic 'agreement-or-similarity' is experimental: on the demo's bundle it judged "
            "an independent model derived (docs/verdict.md); keep such a bundle for research, do not accuse with it",
            stacklevel=2,
        )
