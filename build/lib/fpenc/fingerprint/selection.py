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

from fpenc.models.classifier import module_device

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
    device = module_device(net)
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


def kmeanspp_init(reps: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): ``[k, D]`` initial centroids.

    FAISS seeds k-means with k random points, which on well-separated data often leaves two
    centroids in one cluster and none in another; D^2 sampling makes that unlikely.
    """
    n = len(reps)
    centroids = np.empty((k, reps.shape[1]), dtype=np.float32)
    centroids[0] = reps[rng.integers(n)]
    dist = ((reps - centroids[0]) ** 2).sum(1)
    for j in range(1, k):
        total = float(dist.sum())
        i = int(rng.choice(n, p=dist / total)) if total > 0 else int(rng.integers(n))
        centroids[j] = reps[i]
        dist = np.minimum(dist, ((reps - centroids[j]) ** 2).sum(1))
    return centroids


def kmeans_select(reps: np.ndarray, n_clusters: int, seed: int = 0, niter: int = 25, nredo: int = 3) -> np.ndarray:
    """Indices ``[n_clusters]`` into ``reps [N, D]``: for each FAISS k-means centroid, the nearest
    not-yet-chosen point (so the datapoints are distinct).

    k-means++ seeding, ``nredo`` restarts, the lowest final objective kept.
    """
    import faiss

    reps = np.ascontiguousarray(reps, dtype=np.float32)
    n, d = reps.shape
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be in [1, {n}], got {n_clusters}")
    if nredo < 1:
        raise ValueError(f"nredo must be >= 1, got {nredo}")
    rng = np.random.default_rng(seed)
    best, best_obj = None, float("inf")
    for redo in range(nredo):
        km = faiss.Kmeans(
            d,
            n_clusters,
            niter=niter,
            seed=seed + redo,
            verbose=False,
            max_points_per_centroid=10_000_000,
            min_points_per_centroid=1,
        )
        obj = km.train(reps, init_centroids=kmeanspp_init(reps, n_clusters, rng))
        if obj < best_obj:
            best, best_obj = km.centroids.copy(), obj
    index = faiss.IndexFlatL2(d)
    index.add(reps)
    _, near = index.search(best, min(n, 32))
    chosen: list[int] = []
    taken: set[int] = set()
    for row in near:
        pick = next((int(i) for i in row if i >= 0 and int(i) not in taken), None)
        if pick is None:  # all 32 nearest taken: fall back to any free point
            pick = next(i for i in range(n) if i not in taken)
        chosen.append(pick)
        taken.add(pick)
    return np.asarray(chosen, dtype=np.int64)


def sample_views(
    out_reps: np.ndarray, selected: np.ndarray, num_views: int, neighbours: int, seed: int = 0
) -> np.ndarray:
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
