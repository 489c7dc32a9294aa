"""fpenc's fingerprint encoder at a query budget: the cosine similarity of the suspect's and the
victim's encoder representations (Peng et al., CVPR 2022, §4.3), averaged over the fingerprint
pairs the budget pays for; the bundle's encoder, key and UAPs (``fpenc bench --bundle``).

A fingerprint pair ``(u, v)`` is the suspect's answers on view ``v``'s ``N`` images and on the
same images plus UAP ``u``: ``[M(x_1), M(x_1 + u), ..., M(x_N), M(x_N + u)]``
(:func:`fpenc.fingerprint.fingerprints.pair_fingerprints`). Query order (any budget a prefix): the
pairs ``(v mod U, v)`` for every view (``2N`` queries each: clean view and perturbed), then the
other UAPs of each view (``N`` each: the clean answers are reused). A budget below one pair
(``2N``) cannot be scored by this method.
"""

from __future__ import annotations

import torch

from fpenc.baselines.base import Defender, Method


def pair_order(num_uaps: int, num_views: int) -> torch.Tensor:
    """Every ``(u, v)`` pair ``[U V, 2]`` in the query order above."""
    first = [(v % num_uaps, v) for v in range(num_views)]
    rest = [((v + r) % num_uaps, v) for r in range(1, num_uaps) for v in range(num_views)]
    return torch.tensor(first + rest, dtype=torch.long)


class EncoderSimilarity(Method):
    name = "fpenc_encoder"
    needs_bundle = True

    def build_queries(self, defender: Defender, n: int) -> torch.Tensor:
        b = defender.bundle
        if b is None:
            raise ValueError("fpenc_encoder needs fpenc's bundle of this victim (fpenc bench --bundle)")
        self.answers = "label" if b.meta.get("api", "probs") == "label" else "probs"
        self.api = b.meta.get("api", "probs")
        x, u, n_img = b.view_images.float() / 255.0, b.uaps.float(), b.num_datapoints
        queries, clean_at, pairs, ends, size = [], {}, [], [], 0
        for uu, vv in pair_order(b.num_uaps, b.num_views).tolist():
            if vv not in clean_at:
                clean_at[vv] = size
                queries.append(x[vv])
                size += n_img
            queries.append((x[vv] + u[uu]).clamp(0, 1))
            pairs.append((uu, vv, clean_at[vv], size))
            size += n_img
            ends.append(size)
            if size >= n:
                break
        self.pairs, self.ends, self.n_img = pairs, torch.tensor(ends), n_img
        self.victim_fps = b.victim_fingerprints.float()
        self.encoder = b.encoder()
        return torch.cat(queries)[:n]

    def spent(self, budget: int) -> int:
        """The queries of the complete pairs within ``budget`` (0 below one pair)."""
        done = int((self.ends <= min(int(budget), self.available)).sum())
        return int(self.ends[done - 1]) if done else 0

    @torch.inference_mode()
    def score(self, suspect_probs: torch.Tensor, budget: int) -> float:
        from fpenc.api import apply_api
        from fpenc.verdict import pair_similarities

        b = self.spent(budget)
        if b < 1:
            raise ValueError(
                f"{self.name}: a budget of {budget} queries pays for no fingerprint pair ({2 * self.n_img})"
            )
        answers = apply_api(suspect_probs.float(), self.api)
        fps, victim = [], []
        for uu, vv, c, p in self.pairs[: int((self.ends <= b).sum())]:
            clean, adv = answers[c : c + self.n_img], answers[p : p + self.n_img]
            fps.append(torch.stack([clean, adv], 1).reshape(-1))
            victim.append(self.victim_fps[uu, vv])
        h = self.encoder.encode(torch.cat([torch.stack(fps), torch.stack(victim)]))
        return float(pair_similarities(h[: len(fps)], h[len(fps) :]).double().mean())
