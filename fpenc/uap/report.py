"""How strongly the victim's UAP bank fools every zoo model (the basis of the paper's §4.1 observation)."""

from __future__ import annotations

import numpy as np
import torch

from fpenc.uap.bank import fooling_rate


def zoo_fooling(cfg, bank: dict, holdout: torch.Tensor) -> list[dict]:
    """Per model: mean and std over the bank of its fooling rate on ``holdout``."""
    from fpenc.zoo.builder import load_zoo_model
    from fpenc.zoo.manifest import load_manifest

    rows = []
    for entry in load_manifest(cfg.run_dir / "manifest.json")["models"]:
        net = load_zoo_model(entry, cfg.run_dir)
        rates = [fooling_rate(net, v, holdout) for v in bank["uaps"]]
        rows.append({"id": entry["id"], "role": entry["role"], "architecture": entry["architecture"],
                     "fooling_mean": float(np.mean(rates)), "fooling_std": float(np.std(rates))})
    return rows


def format_fooling(rows: list[dict]) -> str:
    lines = [f"{'model':<30} {'role':<11} {'fooling (mean ± std over the bank)'}"]
    for r in rows:
        lines.append(f"{r['id']:<30} {r['role']:<11} {r['fooling_mean']:.3f} ± {r['fooling_std']:.3f}")
    for role in ("piracy", "homologous"):
        vals = [r["fooling_mean"] for r in rows if r["role"] == role]
        if vals:
            lines.append(f"{'mean of ' + role:<42} {np.mean(vals):.3f}")
    return "\n".join(lines)
