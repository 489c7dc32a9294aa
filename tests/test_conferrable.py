"""Conferrable adversarial examples (Lukas et al., ICLR 2021) as key images."""

from __future__ import annotations

import math

import pytest
import torch


def _naive_loss(victim_logits, surrogate_probs, reference_probs, target):
    out = []
    for i, t in enumerate(target.tolist()):
        pv = math.exp(victim_logits[i, t]) / sum(math.exp(v) for v in victim_logits[i].tolist())
        ps = sum(float(p[i, t]) for p in surrogate_probs) / len(surrogate_probs)
        pr = sum(float(p[i, t]) for p in reference_probs) / len(reference_probs)
        out.append(-(math.log(pv) + math.log(ps + 1e-6) + math.log(1 - pr + 1e-6)))
    return torch.tensor(out)


def test_conferrable_loss_matches_a_naive_loop():
    from fpenc.fingerprint.conferrable import conferrable_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 10, generator=g)
    sp = torch.softmax(torch.randn(3, 6, 10, generator=g), -1)
    rp = torch.softmax(torch.randn(4, 6, 10, generator=g), -1)
    target = torch.randint(0, 10, (6,), generator=g)
    got = conferrable_loss(logits.double(), sp.double(), rp.double(), target)
    assert torch.allclose(got, _naive_loss(logits.double(), sp.double(), rp.double(), target).double(), atol=1e-9)
    # the loss falls as the copies follow the target and rises as the references do
    sp_t, rp_t = sp.clone(), rp.clone()
    sp_t[:, torch.arange(6), target] += 0.5
    rp_t[:, torch.arange(6), target] += 0.5
    assert (conferrable_loss(logits, sp_t, rp, target) < conferrable_loss(logits, sp, rp, target)).all()
    assert (conferrable_loss(logits, sp, rp_t, target) > conferrable_loss(logits, sp, rp, target)).all()


def _net(seed: int):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(4)  # decisive logits: a perturbation within eps flips classes
    return net


def test_conferrable_examples_transfer_to_copies_more_than_to_references():
    """Copies here are the victim with small weight noise; references are other random networks."""
    from fpenc.fingerprint.conferrable import conferrable_examples

    victim = _net(0)
    copies = []
    for s in (1, 2, 3):
        c = _net(0)
        with torch.no_grad():
            for p in c.parameters():
                p.add_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(s)))
        copies.append(c)
    references = [_net(s) for s in (10, 11, 12)]
    images = (torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(5)) * 255).to(torch.uint8)
    out = conferrable_examples(victim, copies, references, images, eps=0.2, steps=20, batch_size=64)
    assert out["images"].dtype == torch.uint8 and out["images"].shape == images.shape
    diff = (out["images"].int() - images.int()).abs()
    assert diff.max() <= round(0.2 * 255) + 1 and diff.float().mean() > 1  # within eps, and perturbed
    with torch.no_grad():
        clean_top2 = victim(images.float() / 255).topk(2, 1).indices[:, 1]
    assert torch.equal(out["target"], clean_top2)
    assert out["victim_hit"].float().mean() > 0.8
    assert out["surrogate_share"].mean() > out["reference_share"].mean() + 0.3
    with pytest.raises(ValueError, match="eps > 0"):
        conferrable_examples(victim, copies, references, images, eps=0.0, steps=1)
