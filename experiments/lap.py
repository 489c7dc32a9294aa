"""UAP vs local adversarial perturbations (paper §5.3, Fig. 7: "AP based fingerprints have worse
performance than UAP based one"): the same fingerprints, encoder and training, with the
perturbed half made by one of the victim's UAPs (the paper's method) or by each image's own
DeepFool perturbation of the same L-inf norm (LAP).

For the demo run's key (N datapoints x V views) and the victim:

* ``uap``: ``F = [M(x_1), M(x_1 + v), ...]`` with the bank's first UAP ``v`` (L-inf ``uap.eps``);
* ``lap``: ``F = [M(x_1), M(x_1 + d_1), ...]`` with ``d_i`` the victim's L-inf DeepFool perturbation
  of ``x_i`` (:func:`fpenc.uap.deepfool.deepfool`), rescaled to L-inf norm ``uap.eps``.

One fingerprint per view and model (U = 1 in both arms, so both have the same V pairs), under the
run's API. For each arm the run's encoder architecture (:class:`FingerprintEncoder`) is trained
with the supervised contrastive loss on the training models and the victim (AdamW, full batch,
``--epochs``, seed 0); the epoch with the best validation separation (mean similarity of the
validation copies minus the validation independents, every 10 epochs) is kept; the test models'
cosine similarities to the victim give the AUCs and the gap.

    python experiments/lap.py -c configs/fmnist_demo.yaml \\
        --out experiments/results/lap_fmnist_demo.json --plot experiments/results/lap_fmnist_demo.png
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, save_figure, write_results
from experiments.encoder_ablation import load_setting, scores, summary


def lap_perturbations(victim, x: torch.Tensor, eps: float, batch_size: int = 250) -> torch.Tensor:
    """``[B, C, H, W]``: each image's L-inf DeepFool perturbation on ``victim``, rescaled to L-inf ``eps``."""
    from fpenc.uap.deepfool import deepfool

    out = []
    for i in range(0, len(x), batch_size):
        r = deepfool(victim, x[i : i + batch_size], norm="linf")
        scale = r.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, *[1] * (r.ndim - 1))
        out.append(r / scale * eps)
    return torch.cat(out)


def arm_fingerprints(net, clean: torch.Tensor, perturbed: torch.Tensor, api: str) -> torch.Tensor:
    """Fingerprints ``[V, 2NK]`` of ``net``: clean images ``[V, N, C, H, W]`` and their perturbed twins."""
    from fpenc.api import apply_api

    v, n = clean.shape[:2]
    with torch.no_grad():
        a, b = (apply_api(torch.softmax(net(t.flatten(0, 1)), 1), api) for t in (clean, perturbed))
    return torch.stack([a.reshape(v, n, -1), b.reshape(v, n, -1)], 2).reshape(v, -1)


def train_encoder(fps, train_ids, val_ids, roles, victim, epochs, seed, sizes):
    """SupCon on the training models + victim; the encoder of the best validation separation."""
    from fpenc.encoder.loss import supcon_loss
    from fpenc.encoder.network import FingerprintEncoder

    torch.manual_seed(seed)
    ids = [victim, *train_ids]
    x = torch.cat([fps[i] for i in ids])
    y = torch.cat([torch.full((len(fps[i]),), int(roles[i] == "homologous")) for i in ids])
    enc = FingerprintEncoder(x.shape[1], **sizes)
    opt = torch.optim.AdamW(enc.parameters(), lr=1e-3)
    best, best_sep = copy.deepcopy(enc), -np.inf
    for epoch in range(1, epochs + 1):
        enc.train()
        opt.zero_grad()
        supcon_loss(enc(x), y, temperature=0.1).backward()
        opt.step()
        if epoch % 10 == 0:
            enc.eval()
            sims = {i: float(np.mean(s)) for i, s in scores(enc.encode, fps, victim, val_ids).items()}
            sep = np.mean([s for i, s in sims.items() if roles[i] == "piracy"]) - np.mean(
                [s for i, s in sims.items() if roles[i] == "homologous"]
            )
            if sep > best_sep + 1e-9:
                best, best_sep = copy.deepcopy(enc), sep
    return best.eval(), float(best_sep)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap)
    ap.add_argument("--epochs", type=int, default=300, help="encoder epochs per arm (full batch; default 300)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--plot", type=Path, default=None)
    args = ap.parse_args(argv)
    from fpenc.fingerprint.key import load_key
    from fpenc.uap.bank import load_bank

    t0 = time.perf_counter()
    cfg, run, api, sizes, sets, roles = load_setting(args.config)
    entries = {m["id"]: m for m in run.load_manifest()["models"]}
    victim_id = next(i for i, r in roles.items() if r == "victim")
    ids = {s: [i for i, t in sets.items() if t == s] for s in ("train", "val", "test")}
    clean = load_key(run.key)["view_images"].float() / 255.0  # [V, N, C, H, W]
    uap = load_bank(run.uaps)["uaps"][0].float()
    victim = run.load_model(entries[victim_id]).eval().requires_grad_(False)
    eps = float(cfg.uap.eps)
    lap = lap_perturbations(victim, clean.flatten(0, 1), eps).reshape(clean.shape)
    with torch.no_grad():
        flips = float(
            (victim((clean + lap).clamp(0, 1).flatten(0, 1)).argmax(1) != victim(clean.flatten(0, 1)).argmax(1))
            .double()
            .mean()
        )
    perturbed = {"uap": (clean + uap).clamp(0, 1), "lap": (clean + lap).clamp(0, 1)}
    nets = {i: run.load_model(entries[i]).eval() for i in [victim_id, *ids["train"], *ids["val"], *ids["test"]]}
    arms = {}
    for arm, pert in perturbed.items():
        fps = {i: arm_fingerprints(net, clean, pert, api) for i, net in nets.items()}
        enc, sep = train_encoder(fps, ids["train"], ids["val"], roles, victim_id, args.epochs, cfg.seed, sizes)
        sims = scores(enc.encode, fps, victim_id, ids["test"])
        arms[arm] = summary(sims, roles) | {"val_separation": round(sep, 4)}
        arms[arm]["pairs"] = {i: s.round(4).tolist() for i, s in sims.items()}
        print(
            f"{arm}: AUC pairs {arms[arm]['auc_pairs']:.3f} models {arms[arm]['auc_models']:.3f} gap {arms[arm]['gap']:+.3f}"
        )
    result = {
        "experiment": "uap_vs_lap",
        "api": api,
        "eps": eps,
        "norm": cfg.uap.norm,
        "lap_victim_flip_rate": round(flips, 4),
        "views": int(clean.shape[0]),
        "test_models": len(ids["test"]),
        "arms": arms,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_results(args.out, result, seed=cfg.seed, argv=argv)
    if args.plot:
        plot(arms, roles, args.plot)
    return 0


def plot(arms: dict, roles: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, (arm, r) in zip(axes, arms.items()):
        for role, color in (("piracy", "tab:red"), ("homologous", "tab:blue")):
            vals = [s for i, ss in r["pairs"].items() if roles[i] == role for s in ss]
            ax.hist(vals, bins=30, range=(-1, 1), alpha=0.6, color=color, label=f"{role} ({len(vals)} pairs)")
        ax.set_title(f"{arm.upper()}: AUC {r['auc_pairs']:.2f} (pairs), gap {r['gap']:+.2f}", fontsize=9)
        ax.set_xlabel("similarity to the victim, test models")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fingerprint pairs")
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
