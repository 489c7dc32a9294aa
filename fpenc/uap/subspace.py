"""UAP subspace analysis (paper §4.1, eq. 5, Figure 2).

The victim's UAPs span a low-dimensional subspace. With ``U_V [n, d]`` the victim's UAPs (rows
flattened, unit norm) and ``B [d, r]`` the right singular vectors of ``U_V`` (r its rank), a
model M's UAPs ``U_M`` project onto that basis as ``P_M = U_M B [n, r]``. The text of eq. (5) is
not in our copy of the paper, so we state our reading: the *profile* of M is the share of its
UAP energy along each principal direction, ``p_M = mean_i P_M[i]^2`` normalised to sum 1, and

    D(M, V) = || p_M - p_V ||_1                                   (0 = same distribution)

measured against the profile of a second, independently seeded set of victim UAPs (the
victim's own sampling noise is reported as "victim" for reference). The paper finds the
homologous inconsistency about 3x the piracy one on FMNIST.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fpenc.uap.projection import project


def batched_sgd_uaps(net: torch.nn.Module, images: torch.Tensor, num_uaps: int, eps: float, norm: str,
                     steps: int, batch_size: int = 32, lr: float = 0.01, seed: int = 0,
                     progress: bool = False, desc: str = "uaps") -> torch.Tensor:
    """``num_uaps`` SGD-UAPs of ``net`` at once, ``[n, C, H, W]``; each sees its own random
    mini-batches of ``images`` (uint8 ``[N, C, H, W]``) and starts from its own random point."""
    g = torch.Generator().manual_seed(seed)
    net = net.eval().requires_grad_(False)
    shape = images.shape[1:]
    v = project((torch.rand((num_uaps, *shape), generator=g) * 2 - 1) * eps, eps, norm).requires_grad_(True)
    opt = torch.optim.Adam([v], lr=lr)
    for _ in tqdm(range(steps), desc=desc, leave=False, disable=not progress):
        idx = torch.randint(len(images), (num_uaps, batch_size), generator=g)
        x = images[idx].float() / 255.0  # [n, B, C, H, W]
        with torch.no_grad():
            clean = net(x.flatten(0, 1)).argmax(1)
        logits = net((x + v.unsqueeze(1)).clamp(0, 1).flatten(0, 1))
        loss = -F.cross_entropy(logits, clean, reduction="none").clamp(max=10).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            v.copy_(project(v, eps, norm))
    return v.detach()


def principal_basis(uaps: torch.Tensor) -> torch.Tensor:
    """Right singular vectors ``[d, r]`` of the unit-normalised UAP matrix (r = numerical rank)."""
    m = F.normalize(uaps.flatten(1).double(), dim=1)
    _, s, vh = torch.linalg.svd(m, full_matrices=False)
    r = int((s > s[0] * 1e-6).sum())
    return vh[:r].T


def profile(uaps: torch.Tensor, basis: torch.Tensor) -> np.ndarray:
    """Share of the (unit-normalised) UAPs' energy along each basis direction, ``[r]``, sums to 1."""
    p = (F.normalize(uaps.flatten(1).double(), dim=1) @ basis).pow(2).mean(0)
    return (p / p.sum()).numpy()


def inconsistency(uaps_m: torch.Tensor, reference_profile: np.ndarray, basis: torch.Tensor) -> float:
    """``D(M, V) = || p_M - p_V ||_1`` (see the module docstring)."""
    return float(np.abs(profile(uaps_m, basis) - reference_profile).sum())


def subspace_analysis(cfg, num_uaps: int = 64, steps: int = 60, progress: bool = True) -> list[dict]:
    """Inconsistency of a second victim UAP set, and of each piracy/homologous model of the
    first piracy model's architecture and optimizer, against the victim's UAP subspace."""
    from datamodules.datasets import load_dataset
    from datamodules.splits import load_splits
    from fpenc.zoo.builder import load_zoo_model
    from fpenc.zoo.manifest import load_manifest

    run_dir = cfg.run_dir
    models = load_manifest(run_dir / "manifest.json")["models"]
    victim = next(m for m in models if m["role"] == "victim")
    first = next((m for m in models if m["role"] == "piracy"), None)
    if first is None:
        raise ValueError("the zoo has no piracy model")
    chosen = [m for m in models if m["role"] in ("piracy", "homologous")
              and m["architecture"] == first["architecture"] and m["optimizer"] == first["optimizer"]]
    arrays = load_dataset(cfg.data.dataset, root=cfg.data.root, download=cfg.data.download)
    splits, _ = load_splits(run_dir / "splits.npz")
    images = arrays.train_x[torch.as_tensor(splits["victim"])]
    u = cfg.uap
    run = lambda net, seed, desc: batched_sgd_uaps(net, images, num_uaps, u.eps, u.norm, steps, lr=u.lr,  # noqa: E731
                                                   seed=seed, progress=progress, desc=desc)
    vnet = load_zoo_model(victim, run_dir)
    basis_uaps = run(vnet, 1000, "victim UAPs")
    basis = principal_basis(basis_uaps)
    ref = profile(basis_uaps, basis)
    rows = [{"id": "victim (2nd UAP set)", "role": "victim", "D": inconsistency(run(vnet, 2000, "victim UAPs 2"), ref, basis)}]
    for m in chosen:
        rows.append({"id": m["id"], "role": m["role"], "D": inconsistency(run(load_zoo_model(m, run_dir), 3000, m["id"]), ref, basis)})
    for r in rows:
        r.update(num_uaps=num_uaps, rank=int(basis.shape[1]))
    return rows


def format_subspace(rows: list[dict]) -> str:
    lines = [f"{'model':<32} {'role':<11} inconsistency D (eq. 5, our reading)"]
    lines += [f"{r['id']:<32} {r['role']:<11} {r['D']:.4f}" for r in rows]
    pir = [r["D"] for r in rows if r["role"] == "piracy"]
    hom = [r["D"] for r in rows if r["role"] == "homologous"]
    if pir and hom:
        lines.append(f"homologous / piracy = {np.mean(hom) / max(np.mean(pir), 1e-12):.2f} (paper, FMNIST: about 3)")
    lines.append(f"({rows[0]['num_uaps']} UAPs per model, victim subspace rank {rows[0]['rank']})")
    return "\n".join(lines)
