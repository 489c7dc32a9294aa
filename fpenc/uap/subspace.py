"""UAP subspace analysis (paper §4.1, eq. 5, Figure 2).

The victim's UAPs span a low-dimensional subspace. With ``U_V [n, d]`` the victim's UAPs (rows
flattened, unit norm) and ``B [d, r]`` the right singular vectors of ``U_V`` (r its rank), a
model M's UAPs ``U_M`` project onto that basis as ``P_M = U_M B [n, r]``. The text of eq. (5) is
not in our copy of the paper, so we state our reading: the *profile* of M is the share of its
UAP energy along each principal direction, ``p_M = mean_i P_M[i]^2`` normalised to sum 1, and

    D(M, V) = || p_M - p_V ||_1                                   (0 = same distribution)

where ``p_V`` is the profile of a second, independently seeded set of victim UAPs on the basis
of the first. (The basis set's own profile is its singular-value spectrum, fitted to it: every
other set, even the victim's, scatters away from it, so it would measure sampling noise.) A third
victim set gives the victim's own sampling noise, reported as "victim". The paper (n = d = 784
UAPs per model on FMNIST) finds the homologous inconsistency about 3x the piracy one. Two
other readings (principal angles between the subspaces, and the share of a model's UAP energy
outside the victim's subspace) are computed beside it: :mod:`fpenc.uap.subspace_readings`.

Every model's UAP matrix is cached in ``runs/<name>/subspace/`` chunk by chunk (atomically,
keyed by the model's weights and the settings), so an interrupted analysis resumes; the
result goes to ``subspace_<norm>_eps<eps>_n<num_uaps>.json`` and Figure 2's two panels to the
``.png`` of the same name.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fpenc.errors import ConfigError
from fpenc.io import load_tensors, save_tensors, write_json
from fpenc.models.classifier import module_device
from fpenc.uap.loss import uap_ascent_loss
from fpenc.uap.projection import check_norm, project
from fpenc.uap.subspace_readings import READINGS, energy_rank, profile, readings
from fpenc.uap.subspace_report import format_subspace, plot_subspace  # noqa: F401 (re-exported)

SUBSPACE_FORMAT = "fpenc-subspace-uaps/1"


def batched_sgd_uaps(
    net: torch.nn.Module | Sequence[torch.nn.Module],
    images: torch.Tensor,
    num_uaps: int,
    eps: float,
    norm: str,
    steps: int,
    batch_size: int = 32,
    lr: float = 0.01,
    seed: int = 0,
    progress: bool = False,
    desc: str = "uaps",
    init_scale: float = 1e-3,
) -> torch.Tensor:
    """``num_uaps`` SGD-UAPs of ``net`` at once, ``[n, C, H, W]``; each sees its own random
    mini-batches of ``images`` (uint8 ``[N, C, H, W]``) and starts from its own random point,
    uniform in ``[-1, 1]^d`` times ``init_scale * eps`` (projected onto the ball). Start near 0
    (the default, as :class:`~fpenc.uap.module.SGDUAPModule`): a start anywhere in the ball
    leaves a random component in every UAP (victim fooling 0.58 instead of 0.88 at L-inf 0.25
    on the demo victim) that hides the subspace the gradients span. ``net`` may be a sequence of
    networks (an ensemble, e.g. the victim and its modified copies): the UAPs then ascend the mean
    of their losses, each against its own clean classes."""
    if num_uaps < 1 or steps < 1 or batch_size < 1:
        raise ValueError(f"num_uaps, steps and batch_size must be >= 1, got {num_uaps}, {steps}, {batch_size}")
    g = torch.Generator().manual_seed(seed)
    nets = [n.eval().requires_grad_(False) for n in ([net] if isinstance(net, torch.nn.Module) else list(net))]
    if not nets:
        raise ValueError("batched_sgd_uaps needs at least one network")
    device = module_device(nets[0])
    shape = images.shape[1:]
    v0 = (torch.rand((num_uaps, *shape), generator=g) * 2 - 1) * eps * init_scale
    v = project(v0, eps, norm).to(device).requires_grad_(True)
    opt = torch.optim.Adam([v], lr=lr)
    for _ in tqdm(range(steps), desc=desc, leave=False, disable=not progress):
        idx = torch.randint(len(images), (num_uaps, batch_size), generator=g)
        x = (images[idx].float() / 255.0).to(device)  # [n, B, C, H, W]
        clean, perturbed = x.flatten(0, 1), (x + v.unsqueeze(1)).clamp(0, 1).flatten(0, 1)
        loss = -torch.stack([uap_ascent_loss(n, clean, perturbed).mean() for n in nets]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            v.copy_(project(v, eps, norm))
    return v.detach().cpu()


def principal_basis(uaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right singular vectors ``[d, r]`` of the unit-normalised UAP matrix (r = numerical rank),
    and its singular values ``[r]``, largest first."""
    m = F.normalize(uaps.flatten(1).double(), dim=1)
    _, s, vh = torch.linalg.svd(m, full_matrices=False)
    r = int((s > s[0] * 1e-6).sum())
    return vh[:r].T, s[:r]


def _settings_tag(model_sha: str, settings: dict, seed: int) -> str:
    blob = json.dumps({"model": model_sha, "seed": seed, **settings}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def cached_uaps(
    net: torch.nn.Module,
    images: torch.Tensor,
    path: Path,
    tag: str,
    settings: dict,
    seed: int,
    chunk: int,
    progress: bool,
    desc: str,
) -> torch.Tensor:
    """``settings['num_uaps']`` UAPs of ``net``, computed ``chunk`` at a time; each finished chunk is
    saved to ``path`` (atomically), so a killed run resumes where it stopped. Chunk ``c`` is
    seeded ``seed + c``, whatever the chunks before it did."""
    done = torch.empty(0)
    if path.is_file():
        payload = load_tensors(path, SUBSPACE_FORMAT, "subspace UAP cache")
        if payload.get("tag") == tag:
            done = payload["uaps"]
    n = settings["num_uaps"]
    while len(done) < n:
        c = len(done) // chunk
        k = min(chunk, n - len(done))
        new = batched_sgd_uaps(
            net,
            images,
            k,
            settings["eps"],
            settings["norm"],
            settings["steps"],
            settings["batch_size"],
            settings["lr"],
            seed=seed + c,
            progress=progress,
            desc=f"{desc} {len(done) + k}/{n}",
            init_scale=settings["init_scale"],
        )
        done = torch.cat([done.reshape(-1, *new.shape[1:]), new])
        save_tensors(path, {"tag": tag, "settings": settings, "seed": seed, "uaps": done}, SUBSPACE_FORMAT)
    return done[:n]


def subspace_analysis(
    cfg,
    num_uaps: int = 64,
    steps: int = 60,
    norm: str | None = None,
    eps: float | None = None,
    lr: float | None = None,
    batch_size: int = 32,
    init_scale: float = 1e-3,
    chunk: int = 64,
    models: list[str] | None = None,
    progress: bool = True,
    reading: str = "profile_l1",
    energy_share: float = 0.9,
) -> dict:
    """Inconsistency D of a second victim UAP set, and of each chosen suspect's UAPs, against the
    victim's UAP subspace. ``models``: zoo ids (default: the piracy and homologous models of the
    first piracy model's architecture and optimizer). ``norm``/``eps``/``lr`` default to ``cfg.uap``'s.
    Every reading of :mod:`fpenc.uap.subspace_readings` is computed; ``reading`` is the one shown as
    ``D`` (and in the figure); ``energy_share`` sets the victim subspace's dimension k for the
    subspace readings."""
    from fpenc.data.datasets import load_data
    from fpenc.data.splits import load_splits
    from fpenc.rundir import RunDir

    if reading not in READINGS:
        raise ConfigError(f"unknown subspace reading '{reading}'; known: {', '.join(READINGS)}")
    if num_uaps < 2 or chunk < 1 or steps < 1 or batch_size < 1:
        raise ConfigError(
            f"need --num-uaps >= 2 and --chunk, --steps, --batch-size >= 1; got {num_uaps}, "
            f"{chunk}, {steps}, {batch_size}"
        )
    run_dir = RunDir(cfg.run_dir)
    entries = run_dir.load_manifest()["models"]
    by_id = {m["id"]: m for m in entries}
    victim = next(m for m in entries if m["role"] == "victim")
    if models:
        unknown = [i for i in models if i not in by_id or by_id[i]["role"] == "victim"]
        if unknown:
            raise ConfigError(
                f"not suspects of the zoo in {run_dir}: {unknown}; choose among "
                f"{sorted(i for i, m in by_id.items() if m['role'] != 'victim')}"
            )
        chosen = [by_id[i] for i in models]
    else:
        first = next((m for m in entries if m["role"] == "piracy"), None)
        if first is None:
            raise ConfigError(f"the zoo in {run_dir} has no piracy model; pass the models to compare with --models")
        chosen = [
            m
            for m in entries
            if m["role"] in ("piracy", "homologous")
            and m["architecture"] == first["architecture"]
            and m["optimizer"] == first["optimizer"]
        ]
    u = cfg.uap
    settings = {
        "num_uaps": num_uaps,
        "steps": steps,
        "norm": check_norm(norm or u.norm),
        "eps": float(u.eps if eps is None else eps),
        "lr": float(u.lr if lr is None else lr),
        "batch_size": batch_size,
        "init_scale": float(init_scale),
    }
    arrays = load_data(cfg.data)
    splits, _ = load_splits(run_dir.splits)
    images = arrays.train_x[torch.as_tensor(splits["victim"])]
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def uaps_of(entry: dict, seed: int, label: str) -> tuple[torch.Tensor, float]:
        t0 = time.perf_counter()
        tag = _settings_tag(entry["sha256"], settings, seed)
        net = run_dir.load_model(entry).to(device)
        got = cached_uaps(net, images, run_dir.subspace_cache(label, tag), tag, settings, seed, chunk, progress, label)
        return got, time.perf_counter() - t0

    t_start = time.perf_counter()
    basis_uaps, _ = uaps_of(victim, 1000, "victim-basis")
    basis, singular = principal_basis(basis_uaps)
    k = energy_rank(singular, energy_share)
    ref = profile(uaps_of(victim, 2000, "victim-reference")[0], basis)
    jobs = [(victim, 4000, "victim-check", "victim (3rd UAP set)", "victim")]
    jobs += [(m, 3000, m["id"], m["id"], m["role"]) for m in chosen]
    rows, profiles = [], {"victim (basis set)": profile(basis_uaps, basis), "victim (reference set)": ref}
    for entry, seed, label, shown, role in jobs:
        got, sec = uaps_of(entry, seed, label)
        profiles[shown] = profile(got, basis)
        values = readings(got, basis, k, ref)
        rows.append(
            {
                "id": shown,
                "role": role,
                "architecture": entry["architecture"],
                "D": values[reading],
                "readings": values,
                "seconds": round(sec, 1),
            }
        )
    ratios = {name: _ratio(rows, name) for name in READINGS}
    result = {
        "settings": settings,
        "rank": int(basis.shape[1]),
        "reading": reading,
        "subspace_dimension": k,
        "energy_share": energy_share,
        "rows": rows,
        "ratio_homologous_to_piracy": ratios[reading],
        "ratios": ratios,
        "victim_noise": next(r["readings"] for r in rows if r["role"] == "victim"),
        "singular_values": singular.tolist(),
        "seconds": round(time.perf_counter() - t_start, 1),
        "device": device,
        "paper": "homologous / piracy about 3 on FMNIST (n = d = 784 UAPs per model)",
    }
    paths = run_dir.subspace_results(settings["norm"], settings["eps"], num_uaps)
    write_json(paths["json"], result)
    plot_subspace(profiles, rows, paths["png"], reading=reading)
    result["paths"] = {k: str(v) for k, v in paths.items()}
    return result


def _ratio(rows: list[dict], name: str) -> float | None:
    """Mean homologous over mean piracy value of reading ``name`` (None without both roles)."""
    pir = [r["readings"][name] for r in rows if r["role"] == "piracy"]
    hom = [r["readings"][name] for r in rows if r["role"] == "homologous"]
    return float(np.mean(hom) / max(np.mean(pir), 1e-12)) if pir and hom else None
