"""Benchmark metrics of one method at one budget, from per-model scores and p-values.

* ``auc``, ``tpr_at_1pct_fpr``, ``tpr_at_5pct_fpr``: from the scores (positives: derived models);
* ``detected``: the share of positives with ``p < alpha`` (the verdict at alpha);
* ``false_accusations``: negatives with ``p < alpha``, and ``false_accusation_upper95``, the
  Clopper-Pearson 95% upper bound of their rate;
* ``per_attack``: for each attack kind of the positives, the AUC of its models against all
  negatives and the share detected; for each kind of negative, the share accused.
"""

from __future__ import annotations

import numpy as np


def method_metrics(scores, p_values, positive, kinds, alpha: float) -> dict:
    """Metrics of ``scores [M]`` / ``p_values [M]`` for models with ``positive [M]`` (bool) of ``kinds [M]``."""
    from fpenc.calibration import clopper_pearson
    from fpenc.report import roc_metrics

    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(p_values, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    kinds = np.asarray(kinds, dtype=object)
    accused = p < alpha
    n_neg = int((~pos).sum())
    fa = int((accused & ~pos).sum())
    out = {
        **roc_metrics(s, pos.astype(int)),
        "detected": round(float(accused[pos].mean()), 4),
        "false_accusations": fa,
        "negatives": n_neg,
        "false_accusation_upper95": round(clopper_pearson(fa, n_neg)[1], 4),
        "per_attack": {},
    }
    for kind in sorted(set(kinds.tolist())):
        mine = kinds == kind
        if pos[mine].all():
            sel = mine | ~pos
            out["per_attack"][kind] = {
                "positive": True,
                "models": int(mine.sum()),
                "auc": round(roc_metrics(s[sel], pos[sel].astype(int))["auc"], 4),
                "detected": round(float(accused[mine].mean()), 4),
            }
        else:
            out["per_attack"][kind] = {
                "positive": False,
                "models": int(mine.sum()),
                "accused": round(float(accused[mine].mean()), 4),
            }
    for key in ("auc", "tpr_at_1pct_fpr", "tpr_at_5pct_fpr"):
        out[key] = round(out[key], 4)
    return out
