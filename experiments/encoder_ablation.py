"""The encoder's contribution (paper App. C.1: contrastive encoder vs auto-encoder): the test
models' similarity to the victim from three representations of the same fingerprints:

* ``supcon``: the run's contrastive encoder (its ``fpenc test`` report: every fingerprint pair,
  as ``fpenc verify`` scores a suspect);
* ``autoencoder``: the same MLP (:class:`fpenc.encoder.network.FingerprintEncoder`'s encoder)
  trained to reconstruct the training models' fingerprints (MSE through a mirrored decoder, Adam,
  full batch, ``--epochs``), cosine similarity of its representation ``h``;
* ``raw``: no encoder, the cosine similarity of the fingerprints themselves (under the run's API;
  for labels, the share of the key's answers that agree, i.e. the verdict's agreement).

Similarity of a pair = cosine(suspect's fingerprint (u, v), victim's fingerprint (u, v)); of a
model = the mean over the U x V pairs. Reported per representation: AUC over fingerprint pairs
and over models (copies vs independent test models), and the gap between copies' and
independents' mean similarities.

    python experiments/encoder_ablation.py -c configs/fmnist_demo.yaml \\
        --out experiments/results/encoder_ablation_fmnist_demo.json --plot experiments/results/encoder_ablation_fmnist_demo.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, load_run, save_figure, write_results


def as_api(fps: torch.Tensor, api: str, num_classes: int) -> torch.Tensor:
    """Fingerprints ``[U, V, 2NK]`` of probabilities restricted to ``api``, flattened to ``[U*V, 2NK]``."""
    from fpenc.api import apply_api

    flat = fps.reshape(-1, num_classes).float()
    return apply_api(flat, api).reshape(fps.shape[0] * fps.shape[1], -1)


def train_autoencoder(x: torch.Tensor, epochs: int, seed: int, **sizes) -> torch.nn.Module:
    """The encoder MLP of :class:`FingerprintEncoder` and a mirrored decoder, trained on ``x [M, D]``
    to reconstruct its (log-transformed) input; returns the encoder network (``h`` = ``net(x)``)."""
    from fpenc.encoder.network import FingerprintEncoder

    torch.manual_seed(seed)
    enc = FingerprintEncoder(x.shape[1], **sizes)
    dec = torch.nn.Sequential(
        torch.nn.Linear(enc.embed_dim, enc.hidden_dim), torch.nn.ReLU(), torch.nn.Linear(enc.hidden_dim, x.shape[1])
    )
    target = torch.log(x.clamp_min(1e-6))  # what the encoder sees (input_transform "log")
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)
    enc.train()
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(dec(enc.encoder(target)), target)
        loss.backward()
        opt.step()
    enc.eval()
    return enc


def scores(rep, fps: dict, victim: str, ids: list[str]) -> dict[str, np.ndarray]:
    """``{id: [U*V] cosine similarities}`` of each model's pairs to the victim's under ``rep``."""
    with torch.no_grad():
        hv = rep(fps[victim])
        return {i: torch.nn.functional.cosine_similarity(rep(fps[i]), hv, dim=1).numpy() for i in ids}


def summary(sims: dict[str, np.ndarray], roles: dict[str, str]) -> dict:
    from fpenc.report import roc_metrics

    ids = sorted(sims)
    pos = [roles[i] == "piracy" for i in ids]
    pairs = np.concatenate([sims[i] for i in ids])
    pair_pos = np.concatenate([np.full(len(sims[i]), roles[i] == "piracy") for i in ids])
    means = {i: float(np.mean(sims[i])) for i in ids}
    copies = [means[i] for i in ids if roles[i] == "piracy"]
    indep = [means[i] for i in ids if roles[i] != "piracy"]
    return {
        "auc_pairs": round(roc_metrics(pairs, pair_pos)["auc"], 4),
        "auc_models": round(roc_metrics([means[i] for i in ids], pos)["auc"], 4),
        "similarity_copies": round(float(np.mean(copies)), 4),
        "similarity_independent": round(float(np.mean(indep)), 4),
        "gap": round(float(np.mean(copies) - np.mean(indep)), 4),
        "models": {i: round(means[i], 4) for i in ids},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap)
    ap.add_argument("--epochs", type=int, default=300, help="auto-encoder epochs (full batch; default 300)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--plot", type=Path, default=None)
    args = ap.parse_args(argv)
    from fpenc.fingerprint.zoo import fingerprint_zoo

    t0 = time.perf_counter()
    cfg, run, api, sizes, sets, roles = load_setting(args.config)
    report = json.loads(run.report_json.read_text())
    victim = next(i for i, r in roles.items() if r == "victim")
    test = [i for i, s in sets.items() if s == "test"]
    train = [i for i, s in sets.items() if s == "train"]
    raw_fps = fingerprint_zoo(cfg, api="probs", log=lambda *_: None)
    num_classes = raw_fps[victim].shape[-1] // (2 * cfg.key.num_datapoints)  # fingerprints: [U, V, 2NK]
    fps = {i: as_api(raw_fps[i], api, num_classes) for i in [victim, *train, *test]}
    x_train = torch.cat([fps[i] for i in [victim, *train]])
    enc = train_autoencoder(x_train, args.epochs, cfg.seed, **sizes)
    rows = {
        "autoencoder": summary(scores(enc.encode, fps, victim, test), roles),
        "raw": summary(scores(lambda x: x, fps, victim, test), roles),
    }
    rep_models = {m["id"]: m for m in report["models"] if m["id"] in test}
    sup = {i: rep_models[i]["similarity"] for i in test}
    copies = [v for i, v in sup.items() if roles[i] == "piracy"]
    indep = [v for i, v in sup.items() if roles[i] != "piracy"]
    rows["supcon"] = {
        "auc_pairs": round(report["auc"], 4),
        "auc_models": round(report["auc_models"], 4),
        "similarity_copies": round(float(np.mean(copies)), 4),
        "similarity_independent": round(float(np.mean(indep)), 4),
        "gap": round(float(np.mean(copies) - np.mean(indep)), 4),
        "models": {i: round(v, 4) for i, v in sorted(sup.items())},
    }
    for name, r in rows.items():
        print(f"{name:12s} AUC pairs {r['auc_pairs']:.3f} models {r['auc_models']:.3f} gap {r['gap']:+.3f}")
    result = {"experiment": "encoder_ablation", "api": api, "test_models": len(test), "representations": rows}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    write_results(args.out, result, seed=cfg.seed, argv=argv)
    if args.plot:
        plot(rows, roles, args.plot)
    return 0


def load_setting(paths: list[str]):
    """``(cfg, run dir, API, encoder sizes, {id: set}, {id: role})`` of a run's stacked configs: the
    encoder's API (``data.api``) and sizes (``model.hidden_dim / embed_dim / proj_dim``) included."""
    from fpenc.zoo.sets import assign_sets

    cfg, run = load_run(paths)
    lcfg = _lightning_config(paths)
    sizes = {k: v for k, v in lcfg.get("model", {}).items() if k in ("hidden_dim", "embed_dim", "proj_dim")}
    roles = {m["id"]: m["role"] for m in run.load_manifest()["models"]}
    return cfg, run, lcfg.get("data", {}).get("api", "probs"), sizes, assign_sets(cfg), roles


def _lightning_config(paths: list[str]) -> dict:
    """The ``data`` and ``model`` sections of the stacked configs (the encoder's API and sizes)."""
    from fpenc.config.loader import load_yaml
    from fpenc.config.parse import merge

    out: dict = {}
    for p in paths:
        out = merge(out, {k: v for k, v in load_yaml(p).items() if k in ("data", "model")})
    return out


def plot(rows: dict, roles: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    for x, name in enumerate(("supcon", "autoencoder", "raw")):
        for i, s in rows[name]["models"].items():
            copy = roles[i] == "piracy"
            ax.plot(x + (0.08 if copy else -0.08), s, "o" if copy else "x", c="tab:red" if copy else "tab:blue")
    ax.plot([], [], "o", c="tab:red", label="copies")
    ax.plot([], [], "x", c="tab:blue", label="independent")
    ax.set_xticks(range(3), ["contrastive (SupCon)", "auto-encoder", "no encoder (raw cosine)"])
    ax.set_ylabel("similarity to the victim, test models")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
