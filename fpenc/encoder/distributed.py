"""The encoder's batches across processes when it trains with several (``--trainer.strategy ddp``).

Under DDP each process sees only its share of a batch. The supervised contrastive loss contrasts
every sample with every other one, so, as SimCLR and solo-learn do, each process gathers the
projections (with their gradients) and the labels of every process and computes the loss on the
global batch: :func:`gather_batch`. The gather's backward sums the gradients of all processes'
(identical) losses, and DDP averages the parameters' gradients, so a step equals one on the whole
global batch on a single device (BatchNorm's batch statistics stay per process unless the
trainer has ``sync_batchnorm: true``, on GPUs). Validation and test gather the representations the
same way and drop the duplicates that ``DistributedSampler`` pads a split with: :func:`unique_samples`.

With one process (no process group, or a group of one) :func:`gather_batch` returns its input as it
is, and the encoder module gathers nothing: single-device training is unchanged.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """The number of processes of the default process group (1 when there is none)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_batch(x: torch.Tensor, sync_grads: bool = False) -> torch.Tensor:
    """``x [B, ...]`` of every process, concatenated in rank order: ``[W * B, ...]``.

    Every process must pass the same shape. ``sync_grads``: gradients flow back to each process's
    own ``x`` (the sum over processes of the gradients of their results); otherwise the result is
    detached. With one process, ``x`` itself (no copy, no communication).
    """
    size = world_size()
    if size == 1:
        return x
    if sync_grads:
        return _GatherWithGrads.apply(x)
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts)


class _GatherWithGrads(torch.autograd.Function):
    """``x [B, ...]`` -> ``[W * B, ...]``; backward: the sum over processes of the gradients of the
    result, this process's rows (what solo-learn's GatherLayer does; every backend has all_reduce)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def unique_samples(model: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
    """Indices of the first occurrence of each ``(model, pair)`` among the integer ``model [N]`` and
    ``pair [N]`` (ascending by model, then pair): one row per sample after a gather, without the
    samples ``DistributedSampler`` repeats to give every process as many."""
    key = model.long() * (int(pair.max()) + 1) + pair.long()
    order = torch.argsort(key, stable=True)
    first = torch.ones(len(key), dtype=torch.bool)
    first[1:] = key[order][1:] != key[order][:-1]
    return order[first]
