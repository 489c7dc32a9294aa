"""Attacks that start from the victim's own weights: what a thief who holds the model ships
(paper §5.4; the fine-tuning modes of Adi et al., USENIX Security 2018; fine-pruning, Liu et al.,
RAID 2018; adversarial training, Madry et al., ICLR 2018; universal adversarial training, Shafahi
et al., AAAI 2020). Each is named by a short spec, as zoo grids list them (``attacks: [...]``):

=================  =====================================================================
``finetune:MODE``  MODE one of FTLL (last layer), FTAL (all layers), RTLL (last layer
                   re-initialised, only it trained), RTAL (re-initialised, all trained)
``prune:A``        global magnitude pruning of a share A of the conv and linear weights
``fineprune:A``    pruning A, then fine-tuning all layers with the pruned weights held at 0
``int8``           INT8 weights (symmetric, per output channel), stored dequantized
``int8static``     a real INT8 model: torch's quantized kernels, INT8 weights and
                   activations (calibrated on 1,024 of the attacker's images)
``fp16``           weights rounded to float16
``advtrain:EPS``   PGD adversarial fine-tuning (L-inf EPS, 5 steps of EPS/2)
``uat:EPS``        universal adversarial training: fine-tuning against a universal
                   perturbation (L-inf EPS) that is updated on every batch
=================  =====================================================================

Training attacks use the attacker's half of the data with its true labels (never the key's test
images), the grid's optimizer, learning rate (default: a tenth of the optimizer's default) and
epochs. ``extract`` (the default of piracy grids) is :mod:`fpenc.zoo.extraction`, not here.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from fpenc.config.attack_spec import TRAINING, Attack, parse_attack  # noqa: F401 (re-exported)
from fpenc.errors import ConfigError
from fpenc.zoo.recipe import pgd


# -- training loops (plain PyTorch: one epoch over a few thousand images, no Lightning needed) ----------
def _train(net, attack: Attack, loader, optimizer: str, lr: float, epochs: int, masks=None) -> None:
    from fpenc.zoo.optim import make_optimizer

    params = net.head.parameters() if attack.mode in ("FTLL", "RTLL") else net.parameters()
    opt = make_optimizer(optimizer, params, lr)
    uap = None
    net.train()
    for _ in range(epochs):
        for batch in loader:
            x, y = batch[0], batch[1]
            if attack.kind == "advtrain":
                net.eval()  # the attack sees the model as served
                x = pgd(net, x, y, attack.amount)
                net.train()
            elif attack.kind == "uat":
                uap = torch.zeros_like(x[:1]) if uap is None else uap
                uap.requires_grad_(True)
                (grad,) = torch.autograd.grad(F.cross_entropy(net((x + uap).clamp(0, 1)), y), uap)
                uap = (uap.detach() + attack.amount / 4 * grad.sign()).clamp(-attack.amount, attack.amount)
                x = (x + uap).clamp(0, 1)
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
            if masks:
                with torch.no_grad():
                    for p, m in masks:
                        p.mul_(m)
    net.eval()


def apply_attack(
    victim: torch.nn.Module,
    attack: Attack,
    loader=None,
    optimizer: str = "adam",
    lr: float | None = None,
    epochs: int = 1,
) -> torch.nn.Module:
    """A copy of ``victim`` after ``attack`` (the victim is left untouched). Training attacks need
    ``loader`` (batches ``(x, y, ...)`` of the attacker's data)."""
    from fpenc.zoo.modifications import PRUNABLE, int8_copy, pruned_copy
    from fpenc.zoo.optim import DEFAULT_LR

    if attack.kind == "prune":
        return pruned_copy(victim, attack.amount)
    if attack.kind == "int8":
        return int8_copy(victim)
    if attack.kind == "int8static":
        from fpenc.models.quantized import quantize_int8

        if loader is None:
            raise ValueError("attack int8static calibrates: pass the attacker's data loader")
        images, n = [], 0
        for batch in loader:
            images.append(batch[0])
            n += len(batch[0])
            if n >= 1024:
                break
        return quantize_int8(victim, torch.cat(images)[:1024])
    if attack.kind == "fp16":
        out = copy.deepcopy(victim).eval()
        with torch.no_grad():
            for p in out.parameters():
                p.copy_(p.half().float())
        return out
    if attack.kind not in TRAINING:
        raise ConfigError(f"attack '{attack.kind}' does not start from the victim's weights")
    if loader is None:
        raise ValueError(f"attack {attack.slug} trains: pass the attacker's data loader")
    lr = DEFAULT_LR[optimizer] / 10 if lr is None else lr
    net = pruned_copy(victim, attack.amount) if attack.kind == "fineprune" else copy.deepcopy(victim)
    net.requires_grad_(True)  # the victim may be frozen (an extraction's teacher): its copy trains
    masks = None
    if attack.kind == "fineprune":  # the pruned weights stay pruned while fine-tuning
        masks = [(m.weight, (m.weight != 0).float()) for m in net.modules() if isinstance(m, PRUNABLE)]
    if attack.mode in ("RTLL", "RTAL"):
        net.head.reset_parameters()
    _train(net, attack, loader, optimizer, lr, epochs, masks)
    return net
