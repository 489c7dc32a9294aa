"""Datapoint selection and multi-view augmentation with FAISS (paper §4.2 and §4.3).

* Selection: k-means with N clusters on the victim's last-layer representation of its training
  split; from each cluster the datapoint nearest to the centroid. The datapoints then spread
  over source classes and decision regions ("uniformly selected from different source classes").
* Views: for each selected datapoint, its K nearest neighbours in the victim's *output* space;
  sampling them without replacement gives V view sets X^(1..V), each holding one neighbour per
  datapoint. A view set is a positive "view" of the same fingerprint for contrastive training.
"""

from __future__ import annotations

import numpy as np
import torch

LAYERS = ("features", "logits", "probs")


@torch.inference_mode()
def representations(net, images: torch.Tensor, layer: str = "features", batch_size: int = 1000) -> np.ndarray:
    """``[N, D]`` float32 representations of uint8 images ``[N, C, H, W]``.

    ``features``: the penultimate layer (``net.features``), ``logits``: the last layer before
    softmax, ``probs``: the output probabilities.
    """
    if layer not in LAYERS:
        raise ValueError(f"unknown layer '{layer}'; use one of {', '.join(LAYERS)}")
    net.eval()
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device).float() / 255.0
        if layer == "features":
            r = net.features(x)
        else:
            r = net(x)
            r = torch.softmax(r, 1) if layer == "probs" else r
        out.append(r.float().cpu())
    return np.ascontiguousarray(torch.cat(out).numpy(), dtype=np.float32)


def kmeans_select(reps: np.ndarray, n_clusters: int, seed: int = 0, niter: int = 25) -> np.ndarray:
    """Indices ``[n_clusters]`` into ``reps [N, D]``: for each FAISS k-means centroid, the nearest
    not-yet-chosen point (so the datapoints are distinct)."""
    import faiss

    n, d = reps.shape
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be in [1, {n}], got {n_clusters}")
    km = faiss.Kmeans(d, n_clusters, niter=niter, nredo=3, seed=seed, verbose=False, max_points_per_centroid=10_000_000)
    km.train(reps)
    index = faiss.IndexFlatL2(d)
    index.add(reps)
    _, near = index.search(km.centroids, min(n, 32))
    chosen: list[int] = []
    taken: set[int] = set()
    for row in near:
        pick = next((int(i) for i in row if i >= 0 and int(i) not in taken), None)
        if pick is None:  # all 32 nearest taken: fall back to any free point
            pick = next(i for i in range(n) if i not in taken)
        chosen.append(pick)
        taken.add(pick)
    return np.asarray(chosen, dtype=np.int64)


def sample_views(out_reps: np.ndarray, selected: np.ndarray, num_views: int, neighbours: int, seed: int = 0) -> np.ndarray:
    """View sets ``[V, N]`` of indices into ``out_reps [M, D]``.

    Each selected datapoint's ``neighbours`` nearest points (itself included) in ``out_reps``
    are sampled without replacement: view ``j`` takes the ``j``-th draw of every datapoint.
    """
    import faiss

    if not 1 <= num_views <= neighbours:
        raise ValueError(f"need 1 <= num_views <= neighbours, got {num_views} and {neighbours}")
    if neighbours > len(out_reps):
        raise ValueError(f"neighbours ({neighbours}) exceeds the number of points ({len(out_reps)})")
    index = faiss.IndexFlatL2(out_reps.shape[1])
    index.add(out_reps)
    _, nn_idx = index.search(out_reps[selected], neighbours)  # [N, K], nearest first
    rng = np.random.default_rng(seed)
    views = np.stack([row[rng.permutation(neighbours)[:num_views]] for row in nn_idx], axis=1)
    return views.astype(np.int64)  # [V, N]
