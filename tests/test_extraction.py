"""ExtractionModule: what the attacker pays (queries) and what the student trains on."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fpenc.zoo.extraction import ExtractionModule, soft_cross_entropy


class CountingVictim(nn.Module):
    """A fixed linear classifier on 1x4x4 images that counts the images it answers."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        self.answered = 0

    def forward(self, x):
        self.answered += len(x)
        return self.net(x)


def _pool(n=40, offset=100):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 4, 4, generator=g)
    idx = torch.arange(offset, offset + n)  # indices into a larger train set, as ImageDataModule serves them
    return TensorDataset(x, torch.zeros(n, dtype=torch.long), idx)


def _fit(module, data, epochs=3, batch_size=8):
    import pytorch_lightning as pl

    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(module, loader)


def test_each_pool_image_is_queried_once_and_its_answer_reused():
    victim, data = CountingVictim(), _pool()
    module = ExtractionModule(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), victim, api="probs", optimizer="sgd")
    _fit(module, data, epochs=3)
    assert victim.answered == len(data)  # 3 epochs, one query per pool image
    assert module.queries == len(data)
    x, _, idx = data.tensors
    expected = torch.softmax(victim.net(x), 1)
    assert torch.allclose(module._answers[idx], expected, atol=1e-6)
    assert not module._answered[: idx.min()].any()  # nothing outside the pool was counted


def test_adversarial_queries_spend_exactly_the_budget_near_the_pool():
    victim, data = CountingVictim(), _pool()
    module = ExtractionModule(
        nn.Sequential(nn.Flatten(), nn.Linear(16, 3)),
        victim,
        api="topk:1",
        optimizer="adam",
        adversarial_queries=25,
        adversarial_eps=0.05,
    )
    _fit(module, data, epochs=3)
    assert module.adv_used == 25
    assert module.queries == len(data) + 25
    assert victim.answered == len(data) + 25
    bank = module._bank_x[:25]
    assert bank.min() >= 0 and bank.max() <= 1
    # every crafted query is one FGSM step (L-inf 0.05) away from some pool image
    dist = (bank.flatten(1)[:, None] - data.tensors[0].flatten(1)[None]).abs().amax(-1).min(1).values
    assert dist.max() <= 0.05 + 1e-6
    assert ((module._bank_t[:25] > 0).sum(1) == 1).all()  # through the top-1 API: one class answered


def test_soft_cross_entropy_renormalises_partial_answers():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    full = soft_cross_entropy(logits, torch.tensor([[0.5, 0.5, 0.0]]))
    assert torch.allclose(full, soft_cross_entropy(logits, torch.tensor([[0.3, 0.3, 0.0]])))
    assert torch.allclose(full, -torch.log_softmax(logits, 1)[0, :2].mean())


def test_negative_budget_is_refused():
    with pytest.raises(ValueError, match="adversarial_queries"):
        ExtractionModule(nn.Linear(2, 2), nn.Linear(2, 2), adversarial_queries=-1)
