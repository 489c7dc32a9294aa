"""The Python API's verdict: :func:`verify` judges a suspect against a bundle and returns a typed
:class:`Verdict` (the CLI's JSON result, with its main fields as attributes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Verdict:
    """One suspect's verdict.

    Attributes:
        outcome: "derived", "not shown" or "not assessable".
        p_value: the calibrated test's p-value (None when not assessable before any test).
        reasons: sentences that say why.
        agreement: share of the key's answers that are the victim's labels.
        similarity: the encoder's mean cosine similarity to the victim's fingerprints.
        accuracy: the suspect's accuracy on the bundle's labelled images.
        margin: agreement above the agreement at which p = alpha (negative: below).
        alpha: the significance level used.
        queries: images the suspect answered.
        details: everything ``fpenc verify --format json`` reports for it.
    """

    outcome: str
    p_value: float | None
    reasons: tuple[str, ...]
    agreement: float
    similarity: float
    accuracy: float
    margin: float | None
    alpha: float
    queries: int
    details: dict = field(repr=False, compare=False)

    @property
    def derived(self) -> bool:
        """Whether the suspect is shown to come from the victim."""
        from fpenc.verdict import DERIVED

        return self.outcome == DERIVED

    @property
    def exit_code(self) -> int:
        """``fpenc verify``'s exit code for this outcome."""
        from fpenc.verdict import EXIT_CODES

        return EXIT_CODES[self.outcome]

    def to_dict(self) -> dict:
        return dict(self.details)

    @classmethod
    def from_result(cls, r: dict) -> Verdict:
        return cls(
            outcome=r["verdict"],
            p_value=r["p_value"],
            reasons=tuple(r["reasons"]),
            agreement=r["agreement"],
            similarity=r["similarity"],
            accuracy=r["sanity"]["accuracy"],
            margin=r.get("margin"),
            alpha=r["alpha"],
            queries=r["queries"],
            details=r,
        )


def as_suspect(suspect, api: str | None = None, outputs: str = "auto", trusted: bool = False):
    """A :class:`fpenc.suspects.Suspect` from a Suspect, an ``nn.Module``, a model file or a callable."""
    import torch

    from fpenc.suspects import Suspect, from_file

    if isinstance(suspect, Suspect):
        return suspect
    if isinstance(suspect, torch.nn.Module):
        return Suspect.from_module(suspect, api=api or "probs")
    if isinstance(suspect, (str, Path)):
        return from_file(suspect, api=api or "probs", outputs=outputs, trusted=trusted)
    if callable(suspect):
        return Suspect.from_callable(suspect, api=api or "probs", outputs=outputs)
    raise TypeError(f"a suspect is a Suspect, an nn.Module, a model file or a callable, not {type(suspect).__name__}")


def verify(
    bundle,
    suspect,
    *,
    alpha: float | None = None,
    api: str | None = None,
    num_fingerprints: int | None = None,
    seed: int = 0,
) -> Verdict:
    """Judge ``suspect`` against ``bundle`` (a :class:`fpenc.bundle.Bundle` or its file).

    ``suspect``: a :class:`fpenc.suspects.Suspect` (e.g. ``Suspect.from_callable(fn, api="label")`` for a
    model behind any API), an ``nn.Module``, or a model file (ONNX, TorchScript). ``alpha``: default
    the bundle's; ``api``: what the suspect reveals (default: the bundle's; ignored for a Suspect).
    Images go to the suspect as float ``[B, C, H, W]`` in [0, 1]; it returns ``[B, K]`` logits or
    probabilities.
    """
    from fpenc.bundle import Bundle, load_bundle
    from fpenc.verdict import DEFAULT_ALPHA
    from fpenc.verification import verify_suspect

    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    alpha = alpha if alpha is not None else float(bundle.meta.get("alpha", DEFAULT_ALPHA))
    s = as_suspect(suspect, api=api or bundle.meta.get("api", "probs"))
    return Verdict.from_result(verify_suspect(bundle, s, num_fingerprints=num_fingerprints, alpha=alpha, seed=seed))
