"""The training recipe of a zoo grid's independent models (``training:``), parsed and checked; the
training itself is :mod:`fpenc.zoo.recipe`. A benchmark's negatives vary their recipe: a verdict
calibrated on plain-recipe models must not accuse a model trained another way.

=====================  ==============================================================
``augment: true``      random shifts of up to 2 pixels (zero padding) and, for images
                       wider than 28 pixels, horizontal flips
``label_smoothing: S`` cross-entropy against labels smoothed by S (Szegedy et al., 2016)
``adversarial_eps: E`` PGD adversarial training (Madry et al., ICLR 2018): every batch is
                       replaced by its L-inf E PGD examples (5 steps of E/2, random start)
=====================  ==============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from fpenc.errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    """One grid's training recipe (defaults: plain cross-entropy on unaugmented images)."""

    augment: bool = False
    label_smoothing: float = 0.0
    adversarial_eps: float = 0.0

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "training") -> Recipe:
        """A recipe from a grid's ``training:`` mapping; unknown keys and out-of-range values refused."""
        d = dict(d or {})
        known = [f.name for f in fields(cls)]
        for key in d:
            if key not in known:
                raise ConfigError(f"{where}: unknown training option '{key}'; known: {', '.join(known)}")
        r = cls(**d)
        if not isinstance(r.augment, bool):
            raise ConfigError(f"{where}.augment must be true or false, got {r.augment!r}")
        if not 0.0 <= float(r.label_smoothing) < 1.0:
            raise ConfigError(f"{where}.label_smoothing must be in [0, 1), got {r.label_smoothing}")
        if not 0.0 <= float(r.adversarial_eps) <= 1.0:
            raise ConfigError(f"{where}.adversarial_eps must be in [0, 1] (pixel scale), got {r.adversarial_eps}")
        return r
