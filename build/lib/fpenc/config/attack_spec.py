"""The attack specs of zoo grids (``attacks: [finetune:FTAL, prune:0.5, ...]``), parsed without
torch; what each one does is :mod:`fpenc.zoo.attacks`.

A **composite** chains steps with ``+``, applied in order: ``finetune:FTAL+prune:0.5+int8`` from
the victim's weights, or ``extract+finetune:FTAL+prune:0.5+int8`` from a copy first extracted
through the victim's API (into the grid's architecture, with its extraction settings)."""

from __future__ import annotations

from dataclasses import dataclass

from fpenc.errors import ConfigError

FINETUNE_MODES = ("FTLL", "FTAL", "RTLL", "RTAL")
KINDS = ("extract", "finetune", "prune", "fineprune", "int8", "int8static", "fp16", "advtrain", "uat")
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

    @property
    def reads_data(self) -> bool:
        """Needs the attacker's images: training attacks, and INT8 calibration."""
        return self.trains or self.kind == "int8static"


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


def parse_attacks(text: str) -> tuple[Attack, ...]:
    """The steps of an attack spec, composite or not: ``"extract+prune:0.5"`` ->
    ``(Attack("extract"), Attack("prune", amount=0.5))``. ``extract`` may only come first, and no
    step twice in a row."""
    steps = tuple(parse_attack(part.strip()) for part in str(text).split("+"))
    if any(a.kind == "extract" for a in steps[1:]):
        raise ConfigError(f"attack '{text}': extract can only be the first step (extract+finetune:FTAL+...)")
    if any(a == b for a, b in zip(steps, steps[1:])):
        raise ConfigError(f"attack '{text}' repeats a step")
    return steps


def composite_slug(steps: tuple[Attack, ...]) -> str:
    """The attack in a model id: the steps' slugs joined by ``-`` (``extract-finetuneFTAL-prune0p5-int8``)."""
    return "-".join(a.slug for a in steps)


def composite_kind(steps: tuple[Attack, ...]) -> str:
    """The benchmark's kind of a copy: the attack's kind (``finetune-FTAL``, ``prune``), or
    ``composite`` / ``composite-extract`` for chains."""
    if len(steps) > 1:
        return "composite" + ("-extract" if steps[0].kind == "extract" else "")
    a = steps[0]
    return a.kind + (f"-{a.mode}" if a.mode else "")
