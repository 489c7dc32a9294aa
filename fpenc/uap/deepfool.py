"""DeepFool (Moosavi-Dezfooli et al., CVPR 2016), batched: the minimal L2 (or L-inf) perturbation
that moves each image across its nearest (linearised) decision boundary. For L-inf (the paper's
``p = inf`` case) the distance to boundary ``l`` is ``|f_l| / ||w_l||_1`` and the step is along
``sign(w_l)``; for L2, ``|f_l| / ||w_l||_2`` along ``w_l``.

Used for the paper's "local adversarial perturbation" (LAP) ablation (§5.3) and inside the
DeepFool-based UAP (Moosavi-Dezfooli et al., CVPR 2017).
"""

from __future__ import annotations

import torch


def deepfool(
    model: torch.nn.Module,
    x: torch.Tensor,
    num_candidates: int = 10,
    overshoot: float = 0.02,
    max_iter: int = 50,
    norm: str = "l2",
) -> torch.Tensor:
    """Per-image DeepFool perturbations.

    Args:
        model: maps images ``[B, C, H, W]`` in [0, 1] to logits ``[B, K]`` (eval mode).
        x: images ``[B, C, H, W]`` in [0, 1].
        num_candidates: how many of the top classes are considered as targets.
        overshoot: the final perturbation is ``(1 + overshoot) * r``.
        max_iter: iterations per image at most.
        norm: "l2" or "linf": the norm in which the perturbation is minimal.

    Returns:
        ``r`` of shape ``[B, C, H, W]`` such that ``argmax model(clamp(x + r))`` differs from the
        clean prediction for (almost) every image; images that never flip keep their last ``r``.
    """
    if overshoot < 0 or max_iter < 1 or num_candidates < 2 or norm not in ("l2", "linf"):
        raise ValueError("need overshoot >= 0, max_iter >= 1, num_candidates >= 2 and norm l2 or linf")
    x = x.detach()
    with torch.no_grad():
        logits0 = model(x)
    k = min(num_candidates, logits0.shape[1])
    candidates = logits0.topk(k, dim=1).indices  # [B, k]; column 0 is the clean label
    label = candidates[:, 0]
    r_total = torch.zeros_like(x)
    active = torch.ones(len(x), dtype=torch.bool, device=x.device)
    flat = lambda t: t.reshape(t.shape[0], -1)  # noqa: E731
    for _ in range(max_iter):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        xi = (x[idx] + (1 + overshoot) * r_total[idx]).clamp(0, 1).requires_grad_(True)
        logits = model(xi)
        cand = candidates[idx]
        picked = logits.gather(1, cand)  # [b, k]
        grads = []
        for j in range(k):
            (g,) = torch.autograd.grad(picked[:, j].sum(), xi, retain_graph=j < k - 1)
            grads.append(g)
        grads = torch.stack(grads, 1)  # [b, k, C, H, W]
        w = grads[:, 1:] - grads[:, :1]  # [b, k-1, ...]
        f = (picked[:, 1:] - picked[:, :1]).detach()  # [b, k-1]
        dual = 1 if norm == "linf" else 2  # the distance to a hyperplane in norm p is |f| / ||w||_q, 1/p + 1/q = 1
        w_norm = w.reshape(w.shape[0], w.shape[1], -1).norm(p=dual, dim=2).clamp_min(1e-8)
        dist = f.abs() / w_norm
        best = dist.argmin(1)
        ar = torch.arange(len(idx), device=x.device)
        wb = flat(w[ar, best])
        if norm == "linf":
            step = (dist[ar, best] + 1e-4)[:, None] * wb.sign()
        else:
            step = (dist[ar, best] + 1e-4)[:, None] / w_norm[ar, best][:, None] * wb
        fooled = logits.argmax(1) != label[idx]
        step[fooled] = 0
        r_total[idx] = r_total[idx] + step.reshape(xi.shape)
        active[idx[fooled]] = False
    return ((1 + overshoot) * r_total).detach()
