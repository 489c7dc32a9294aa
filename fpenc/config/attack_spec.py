"""The attack specs of zoo grids (``attacks: [finetune:FTAL, prune:0.5, ...]``), parsed without
torch; what each one does is :mod:`fpenc.zoo.attacks`."""

from __future__ import annotations

from dataclasses import dataclass

from fpenc.errors import ConfigError

FINETUNE_MODES = ("FTLL", "FTAL", "RTLL", "RTAL")
KINDS = ("extract", "finetune", "prune", "fineprune", "int8", "fp16", "advtrain", "uat")
TRAINING = ("finetune", "fineprune", "advtrain", "uat")


@dataclass(frozen=True)
class Attack:
    kind: str
    mode: str | None = None  # finetune
    amount: float | None = None  # prune, fineprune: share; advtrain, uat: eps

    @property
    def slug(self) -> str:
        """The attack in a model id: ``finetuneFTAL``, ``prune0p5``, ``int8``, ``advtrain0p03``."""
        tail = self.mode or ("" if self.amount is None else f"{self.amount:g}".replace(".", "p"))
        return f"{self.kind}{tail}"

    @property
    def trains(self) -> bool:
        return self.kind in TRAINING


def parse_attack(text: str) -> Attack:
    """``"finetune:FTAL"`` -> ``Attack("finetune", mode="FTAL")``, with one-line errors."""
    kind, _, arg = str(text).partition(":")
    if kind not in KINDS:
        raise ConfigError(f"unknown attack '{text}'; known: {', '.join(KINDS)} (e.g. finetune:FTAL, prune:0.5)")
    if kind == "finetune":
        if arg.upper() not in FINETUNE_MODES:
            raise ConfigError(f"attack '{text}': the mode must be one of {', '.join(FINETUNE_MODES)}")
        return Attack(kind, mode=arg.upper())
    if kind in ("prune", "fineprune", "advtrain", "uat"):
        try:
            amount = float(arg)
        except ValueError:
            raise ConfigError(f"attack '{text}' needs a number: {kind}:0.5") from None
        if not (0.0 < amount < 1.0):
            raise ConfigError(f"attack '{text}': the number must be in (0, 1)")
        return Attack(kind, amount=amount)
    if arg:
        raise ConfigError(f"attack '{text}' takes no argument: write '{kind}'")
    return Attack(kind)
