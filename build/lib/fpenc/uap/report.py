"""How the victim's UAP bank transfers to every zoo model (the basis of the paper's §4.1 observation).

Two numbers per model and UAP ``v``, on the held-out images ``x`` (never used to compute ``v``):

* ``fooling``: share of ``x`` whose class under the model changes when ``v`` is added (the
  model's own fooling rate);
* ``follows``: of the images ``v`` fools the *victim* on, the share where the model predicts the
  victim's new class on ``x + v``: whether it is fooled *the same way*, which is what a
  fingerprint ``[M(x), M(x + v)]`` records.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fpenc.io import write_json
from fpenc.zoo.evaluate import predict_probs


def predictions(net: torch.nn.Module, images: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
    """Classes ``[N]`` of ``net`` on uint8 images ``[N, C, H, W]``, plus ``v`` (``[C, H, W]``, clamped) if given."""
    x = images if v is None else (images.float() / 255.0 + v).clamp(0, 1)
    return predict_probs(net, x).argmax(1)


def transfer(victim_clean: torch.Tensor, victim_adv: torch.Tensor, clean: torch.Tensor, adv: torch.Tensor) -> dict:
    """``fooling`` and ``follows`` (module docstring) from predicted classes ``[N]`` each."""
    fooled_victim = victim_adv != victim_clean
    follows = (
        (adv[fooled_victim] == victim_adv[fooled_victim]).float().mean().item() if fooled_victim.any() else float("nan")
    )
    return {"fooling": (adv != clean).float().mean().item(), "follows": follows}


def zoo_fooling(cfg, bank: dict, holdout: torch.Tensor) -> list[dict]:
    """Per model: mean and std over the bank of its ``fooling`` and ``follows`` on ``holdout``."""
    from fpenc.rundir import RunDir

    run_dir = RunDir(cfg.run_dir)
    entries = run_dir.load_manifest()["models"]
    victim = run_dir.load_model(next(e for e in entries if e["role"] == "victim"))
    v_clean = predictions(victim, holdout)
    v_adv = [predictions(victim, holdout, v) for v in bank["uaps"]]
    rows = []
    for entry in entries:
        net = run_dir.load_model(entry)
        clean = predictions(net, holdout)
        per_uap = [transfer(v_clean, va, clean, predictions(net, holdout, v)) for v, va in zip(bank["uaps"], v_adv)]
        row = {
            "id": entry["id"],
            "role": entry["role"],
            "architecture": entry["architecture"],
            "optimizer": entry["optimizer"],
        }
        for k in ("fooling", "follows"):  # follows is undefined (nan) for a UAP that fools the victim nowhere
            vals = [p[k] for p in per_uap if not np.isnan(p[k])]
            row[f"{k}_mean"], row[f"{k}_std"] = (float(np.mean(vals)), float(np.std(vals))) if vals else (None, None)
        rows.append(row)
    return rows


def role_summary(rows: list[dict]) -> list[dict]:
    """Per (architecture, optimizer): mean ``fooling``/``follows`` of its piracy and homologous models."""
    groups: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for r in rows:
        if r["role"] in ("piracy", "homologous"):
            groups.setdefault((r["architecture"], r["optimizer"]), {}).setdefault(r["role"], []).append(r)
    out = []
    for (arch, opt), by_role in sorted(groups.items()):
        row = {"architecture": arch, "optimizer": opt}
        for role in ("piracy", "homologous"):
            for k in ("fooling", "follows"):
                ms = by_role.get(role, [])
                vals = [m[f"{k}_mean"] for m in ms if m[f"{k}_mean"] is not None]
                row[f"{role}_{k}"] = float(np.mean(vals)) if vals else None
        out.append(row)
    return out


def format_fooling(rows: list[dict]) -> str:
    lines = [f"{'model':<30} {'role':<11} {'fooling':<15} {'follows the victim':<15}   (mean ± std over the bank)"]

    def pm(mean, std):
        return "    -         " if mean is None else f"{mean:.3f} ± {std:.3f}"

    for r in rows:
        lines.append(
            f"{r['id']:<30} {r['role']:<11} {pm(r['fooling_mean'], r['fooling_std'])}  "
            f"{pm(r['follows_mean'], r['follows_std'])}"
        )
    for role in ("piracy", "homologous"):
        ms = [r for r in rows if r["role"] == role and r["follows_mean"] is not None]
        if ms:
            lines.append(
                f"{'mean of ' + role:<42} {np.mean([m['fooling_mean'] for m in ms]):.3f}          "
                f"{np.mean([m['follows_mean'] for m in ms]):.3f}"
            )
    summary = role_summary(rows)
    paired = [
        s
        for s in summary
        if None not in (s["piracy_fooling"], s["homologous_fooling"], s["piracy_follows"], s["homologous_follows"])
    ]
    if paired:
        lines += [
            "",
            f"{'architecture / optimizer':<26} {'fooling: piracy vs homologous':<32} follows: piracy vs homologous",
        ]
        for s in paired:
            lines.append(
                f"{s['architecture'] + ' / ' + s['optimizer']:<26} {s['piracy_fooling']:.3f} vs {s['homologous_fooling']:.3f}"
                f"{'':<18} {s['piracy_follows']:.3f} vs {s['homologous_follows']:.3f}"
            )
        for k in ("fooling", "follows"):
            above = sum(s[f"piracy_{k}"] > s[f"homologous_{k}"] for s in paired)
            lines.append(f"piracy above homologous in {k}: {above} of {len(paired)} architecture/optimizer pairs")
    return "\n".join(lines)


def write_fooling(path: str | Path, rows: list[dict], bank_info: dict) -> Path:
    """``uap_transfer.json``: the rows, the per-pair summary and how the bank was made (atomically)."""
    write_json(path, {"bank": bank_info, "models": rows, "pairs": role_summary(rows)})
    return Path(path)
