"""Conferrable adversarial examples as key images (Lukas et al., "Deep Neural Network
Fingerprinting by Conferrable Adversarial Examples", ICLR 2021).

An adversarial example of the victim is *conferrable* when it transfers to the victim's copies
(surrogates) and not to independently trained models (references). Crafted with the defender's
own copies and independent models (the encoder's training set), its label is a trace of the
victim that an extracted copy inherits, where the victim's clean errors are not inherited
(``experiments/extraction_traces.py``).

For images ``x0 [M, C, H, W]`` in [0, 1] and the victim's runner-up class ``t [M]``, targeted
L-inf PGD (``eps``, ``steps`` sign steps of ``eps / 8``) minimises per image

    -( log p_victim(t | x) + log mean_s p_s(t | x) + log(1 - mean_r p_r(t | x)) )

(:func:`conferrable_loss`, a simplification of Lukas et al.'s eq. 4 to a targeted attack).
"""

from __future__ import annotations

import torch

from fpenc.models.classifier import module_device


def conferrable_loss(
    victim_logits: torch.Tensor, surrogate_probs: torch.Tensor, reference_probs: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Per-image loss ``[M]``: ``victim_logits [M, K]``, ``surrogate_probs [S, M, K]`` and
    ``reference_probs [R, M, K]`` (softmax outputs), ``target [M]`` class indices."""
    rows = torch.arange(len(target), device=target.device)
    log_pv = torch.log_softmax(victim_logits, 1)[rows, target]
    ps = surrogate_probs[:, rows, target].mean(0)
    pr = reference_probs[:, rows, target].mean(0)
    return -(log_pv + torch.log(ps + 1e-6) + torch.log1p(-pr + 1e-6))


def _probs(models, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.softmax(m(x), 1) for m in models])


def _target_share(models, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[M]``: the share of ``models`` answering ``target [M]`` on ``x [M, C, H, W]``."""
    if not models:
        return torch.zeros(len(x), device=x.device)
    return torch.stack([m(x).argmax(1) == target for m in models]).float().mean(0)


def conferrable_examples(
    victim, surrogates: list, references: list, images: torch.Tensor, eps: float, steps: int, batch_size: int = 500
) -> dict[str, torch.Tensor]:
    """Craft conferrable examples of ``images [M, C, H, W]`` (uint8 or float in [0, 1]).

    Returns ``images`` ``[M, C, H, W]`` uint8 (rounded: what the key stores and a suspect sees),
    ``target [M]`` (the victim's runner-up class on the original), ``victim_hit [M]`` (the victim
    answers ``target`` on the rounded image), ``surrogate_share [M]`` and ``reference_share [M]``
    (the share of surrogates / references answering ``target``).
    """
    if eps <= 0 or steps < 1:
        raise ValueError(f"need eps > 0 and steps >= 1, got {eps} and {steps}")
    device = module_device(victim)
    nets = [victim, *surrogates, *references]
    for net in nets:
        net.eval().requires_grad_(False)
    out = {k: [] for k in ("images", "target", "victim_hit", "surrogate_share", "reference_share")}
    for start in range(0, len(images), batch_size):
        x0 = images[start : start + batch_size].to(device)
        x0 = x0.float() / 255.0 if x0.dtype == torch.uint8 else x0.float()
        with torch.no_grad():
            target = victim(x0).topk(2, 1).indices[:, 1]
        x = x0.clone()
        for _ in range(steps):
            x.requires_grad_(True)
            loss = conferrable_loss(victim(x), _probs(surrogates, x), _probs(references, x), target).sum()
            (grad,) = torch.autograd.grad(loss, x)
            x = torch.minimum(torch.maximum(x.detach() - eps / 8 * grad.sign(), x0 - eps), x0 + eps).clamp(0, 1)
        rounded = (x * 255).round().to(torch.uint8)
        with torch.no_grad():
            xr = rounded.float() / 255.0
            out["victim_hit"].append(victim(xr).argmax(1) == target)
            out["surrogate_share"].append(_target_share(surrogates, xr, target))
            out["reference_share"].append(_target_share(references, xr, target))
        out["images"].append(rounded)
        out["target"].append(target)
    return {k: torch.cat(v).cpu() for k, v in out.items()}
