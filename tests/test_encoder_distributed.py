"""The encoder across processes (:mod:`fpenc.encoder.distributed`): with 2 gloo processes on CPU,
the contrastive loss of the gathered batch and its gradients (averaged as DDP averages them) equal
the single-process loss and gradients of the whole batch, and the gathered validation
representations equal the single-process ones despite ``DistributedSampler``'s padding."""

from __future__ import annotations

import pytest
import torch

from fpenc.encoder.distributed import gather_batch, unique_samples, world_size

WORLD = 2
N_TRAIN, N_VAL, DIM = 12, 7, 6  # 7 validation samples: DistributedSampler pads one process's share


def tiny_module():
    from fpenc.encoder.module import EncoderModule

    torch.manual_seed(0)
    module = EncoderModule(input_dim=DIM, hidden_dim=8, embed_dim=4, proj_dim=3, dropout=0.0)
    return module.eval()  # BatchNorm on its running statistics: a per-sample forward, the same in any split


def tiny_data():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(N_TRAIN, DIM, generator=g)
    label = torch.tensor([0, 1] * (N_TRAIN // 2))
    val = torch.rand(N_VAL, DIM, generator=g)
    model = torch.tensor([3, 3, 3, 5, 5, 8, 8])
    pair = torch.tensor([0, 1, 2, 0, 1, 1, 0])
    return x, label, val, model, pair


def loss_grads_representations(module, x, label, val, model, pair):
    loss = module.contrastive_loss(x, label)
    loss.backward()
    grads = {}
    for name, p in module.named_parameters():
        grad = p.grad.clone()
        if world_size() > 1:  # what DDP does with the gradients
            torch.distributed.all_reduce(grad)
            grad /= world_size()
        grads[name] = grad
    with torch.no_grad():
        module._outputs = [(module.encoder.encode(val), model, pair)]
        reps = module._representations()
    return loss.detach(), grads, reps


def _worker(rank: int, folder: str) -> None:
    from torch.utils.data import DistributedSampler

    torch.distributed.init_process_group("gloo", init_method=f"file://{folder}/pg", rank=rank, world_size=WORLD)
    try:
        x, label, val, model, pair = tiny_data()
        mine = slice(rank * N_TRAIN // WORLD, (rank + 1) * N_TRAIN // WORLD)
        share = list(DistributedSampler(range(N_VAL), num_replicas=WORLD, rank=rank, shuffle=False))
        out = loss_grads_representations(tiny_module(), x[mine], label[mine], val[share], model[share], pair[share])
        torch.save(out, f"{folder}/rank{rank}.pt")
        # both ranks done before either tears down: a rank that leaves first closes the other's gloo
        # connections mid-teardown, which can abort it (SIGABRT, seen once under load)
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


def test_one_process_gathers_nothing():
    x = torch.rand(4, 3, requires_grad=True)
    assert world_size() == 1
    assert gather_batch(x, sync_grads=True) is x and gather_batch(x) is x


def test_unique_samples_drops_the_padding():
    model = torch.tensor([3, 3, 5, 3, 5, 3])  # two processes' shares, the last sample a repeat of the first
    pair = torch.tensor([1, 0, 0, 2, 1, 1])
    keep = unique_samples(model, pair)
    assert list(zip(model[keep].tolist(), pair[keep].tolist())) == [(3, 0), (3, 1), (3, 2), (5, 0), (5, 1)]
    assert keep.tolist() == [1, 0, 3, 2, 4]  # first occurrences


@pytest.mark.slow  # spawns 2 processes that import Lightning (10-20 s)
def test_two_processes_equal_one_on_the_whole_batch(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    loss, grads, reps = loss_grads_representations(tiny_module(), *tiny_data())
    for rank in range(WORLD):
        r_loss, r_grads, r_reps = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(r_loss, loss, rtol=1e-6, atol=1e-7)
        for name, grad in grads.items():
            torch.testing.assert_close(r_grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)
        assert r_reps.keys() == reps.keys()
        for idx, h in reps.items():
            torch.testing.assert_close(r_reps[idx], h, rtol=1e-5, atol=1e-6)
