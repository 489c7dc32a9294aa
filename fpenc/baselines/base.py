"""What every ownership test shares: the defender's holdings and the query-prefix scoring.

A black-box method fixes, once per victim, an ordered list of query images (:meth:`Method.prepare`);
a verdict at a budget of ``b`` queries uses the first ``b`` of them. So a suspect is queried once,
on the longest list, and every budget is scored from a prefix of its answers: the score at ``b``
is exactly what a verifier who spent ``b`` queries would compute.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Defender:
    """What the model owner holds.

    Attributes:
        victim: the owner's model (white box to its owner), images ``[B, C, H, W]`` in [0, 1] in,
            logits ``[B, K]`` out.
        images: labelled held-out images, uint8 ``[M, C, H, W]`` (e.g. the test set).
        labels: their classes, int64 ``[M]``.
        num_classes: K.
        key_images: the fingerprint key's view images, uint8 ``[V, N, C, H, W]`` (fpenc's key), or None.
        uaps: the victim's UAP bank, float ``[U, C, H, W]``, or None.
        kmeans_images: datapoints chosen by k-means on the victim's features over its training
            data (the paper's key, §4.2), uint8 ``[N, C, H, W]``, or None.
        seed: seeds every random choice of the methods.
        train_copies, train_independents: the owner's own copies of the victim and independent
            models that train fpenc's encoder (its design data; never a suspect, a reference or a
            test model): methods that learn which queries tell them apart read them.
    """

    victim: torch.nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    key_images: torch.Tensor | None = None
    uaps: torch.Tensor | None = None
    seed: int = 0
    kmeans_images: torch.Tensor | None = None
    train_copies: tuple = ()
    train_independents: tuple = ()
    bundle: object | None = None

    @torch.inference_mode()
    def victim_probs(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """The victim's probabilities ``[B, K]`` on float images ``[B, C, H, W]``."""
        self.victim.eval()
        if len(x) == 0:
            return torch.zeros(0, self.num_classes)
        return torch.cat(
            [torch.softmax(self.victim(x[i : i + batch_size]).float(), 1) for i in range(0, len(x), batch_size)]
        )


class Method:
    """A black-box ownership test: query images fixed per victim, a similarity per prefix of answers.

    Subclasses set :attr:`name` and :attr:`answers` ("label": the suspect's arg-max class is all
    it needs; "probs": its probabilities) and implement :meth:`build_queries` and, unless it is
    label agreement, :meth:`similarity`.
    """

    name = "method"
    answers = "label"
    black_box = True
    needs_bundle = False  # reads Defender.bundle (fpenc bench runs it only with --bundle)
    in_default = True  # False: fpenc bench runs it only when named in --methods

    def __init__(self, max_queries: int = 4000):
        self.max_queries = int(max_queries)
        self.queries: torch.Tensor | None = None
        self.victim_answers: torch.Tensor | None = None

    def build_queries(self, defender: Defender, n: int) -> torch.Tensor:
        """Float images ``[n', C, H, W]`` in [0, 1], ``n' <= n``, in the order they are spent."""
        raise NotImplementedError

    def prepare(self, defender: Defender) -> Method:
        """Fix the query list and the victim's answers on it."""
        self.queries = self.build_queries(defender, self.max_queries).float().clamp(0, 1)
        self.victim_answers = defender.victim_probs(self.queries)
        return self

    @property
    def available(self) -> int:
        """How many queries the method can spend (its list may be shorter than ``max_queries``)."""
        return 0 if self.queries is None else len(self.queries)

    def observe(self, net: torch.nn.Module, batch_size: int = 1000) -> tuple[torch.Tensor, int]:
        """A suspect network's answers on :attr:`queries` through the method's API (``[available, K]``,
        restricted to labels for label methods), and the queries it answered (counted by
        :class:`fpenc.suspects.Suspect`)."""
        from fpenc.suspects import from_module

        suspect = from_module(net, api="label" if self.answers == "label" else "probs")
        if self.available == 0:
            return torch.zeros(0, self.victim_answers.shape[1]), 0
        out = torch.cat([suspect(self.queries[i : i + batch_size]) for i in range(0, self.available, batch_size)])
        return out, suspect.queries

    def spent(self, budget: int) -> int:
        """The queries a verdict at ``budget`` spends: the budget, or all the method has."""
        return min(int(budget), self.available)

    def similarity(self, suspect_probs: torch.Tensor, victim_probs: torch.Tensor) -> float:
        """Label agreement of two ``[b, K]`` answer sets (overridden by probability methods)."""
        return float((suspect_probs.argmax(1) == victim_probs.argmax(1)).float().mean())

    def score(self, suspect_probs: torch.Tensor, budget: int) -> float:
        """The suspect's similarity to the victim from the first ``spent(budget)`` of its answers
        (``suspect_probs [available, K]``: its answers on :attr:`queries`)."""
        b = self.spent(budget)
        if b < 1:
            raise ValueError(f"{self.name}: no queries to score")
        return self.similarity(suspect_probs[:b], self.victim_answers[:b])
