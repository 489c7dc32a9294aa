"""How far apart are piracy and homologous models in their raw fingerprints, before any encoder?

For every suspect of the given zoo runs (fingerprints computed: `fpenc fingerprint`), compares
its fingerprints with the victim's on the same (UAP, view) pairs and reports simple statistics:

* ``clean_agree`` / ``adv_agree``: share of key datapoints where suspect and victim predict the
  same class, on ``x`` / on ``x + v``;
* ``clean_kl`` / ``adv_kl``: minus the mean KL(victim || suspect) of the probability vectors;
* ``flip_follow``: of the datapoints the UAP flips for the victim, the share where the suspect
  predicts the victim's new class;
* ``fooled``: the suspect's own fooling rate on the key.

Each is "higher = closer to the victim"; the AUC of each (piracy = positive) over the suspects of
the chosen architectures says whether that statistic alone separates the roles. An encoder can
only generalise to unseen architectures if some such signal beats the spread between
architectures. Usage (results in README.md, "Where the signal is"):

    python experiments/role_signal.py runs/fmnist_demo [more runs ...] --exclude fmnist_b \
        --out experiments/results/role_signal_demo.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import write_results

STATS = ("clean_agree", "clean_kl", "adv_agree", "adv_kl", "flip_follow", "fooled")


def _fingerprints(run, model_id: str, key_n: int) -> torch.Tensor:
    """A model's cached fingerprints (``fpenc fingerprint``) of the RunDir ``run``, as ``[U, V, N, 2, K]``."""
    from fpenc.fingerprint.zoo import FORMAT
    from fpenc.io import load_tensors

    payload = load_tensors(
        run.fingerprint(model_id), FORMAT, what="fingerprint file", remedy="run `fpenc fingerprint` on this run first"
    )
    fp = payload["fingerprints"].double()  # [U, V, 2 N K]
    u, v, d = fp.shape
    return fp.reshape(u, v, key_n, 2, d // (2 * key_n))  # [U, V, N, clean/adv, K]


def statistics(victim: torch.Tensor, suspect: torch.Tensor) -> dict[str, float]:
    """The statistics above for fingerprints ``[U, V, N, 2, K]`` of the victim and a suspect."""
    out = {}
    for j, name in ((0, "clean"), (1, "adv")):
        a, b = victim[..., j, :], suspect[..., j, :]
        out[f"{name}_agree"] = (a.argmax(-1) == b.argmax(-1)).double().mean().item()
        kl = (a * (a.clamp_min(1e-12).log() - b.clamp_min(1e-12).log())).sum(-1)
        out[f"{name}_kl"] = -kl.mean().item()
    vc, va = victim[..., 0, :].argmax(-1), victim[..., 1, :].argmax(-1)
    sc, sa = suspect[..., 0, :].argmax(-1), suspect[..., 1, :].argmax(-1)
    flipped = va != vc
    out["flip_follow"] = ((sa == va) & flipped).double().sum().item() / max(1, int(flipped.sum()))
    out["fooled"] = (sa != sc).double().mean().item()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run dirs; the victim's fingerprints are read from the first")
    ap.add_argument("--exclude", nargs="*", default=[], help="architectures to leave out (e.g. the encoder's)")
    ap.add_argument("--out", default=None, help="write the table and AUCs to this JSON file")
    args = ap.parse_args(argv)

    from fpenc.fingerprint.key import load_key
    from fpenc.rundir import RunDir

    runs = [RunDir(r) for r in args.runs]
    key = load_key(runs[0].key)
    n = int(key["datapoints"].shape[0])
    victim = _fingerprints(runs[0], "victim", n)
    rows, seen = [], set()
    for run in runs:
        for m in run.load_manifest()["models"]:
            if m["role"] == "victim" or m["architecture"] in args.exclude or m["id"] in seen:
                continue
            seen.add(m["id"])
            stats = statistics(victim, _fingerprints(run, m["id"], n))
            rows.append(
                {
                    "id": m["id"],
                    "run": str(run),
                    "role": m["role"],
                    "architecture": m["architecture"],
                    "optimizer": m["optimizer"],
                    "epochs": m["epochs"],
                    "test_accuracy": m["test_accuracy"],
                    "agreement": m["agreement"],
                    **{k: round(v, 4) for k, v in stats.items()},
                }
            )
    rows.sort(key=lambda r: (r["architecture"], r["optimizer"], r["role"]))
    from fpenc.report import roc_metrics

    positive = [r["role"] == "piracy" for r in rows]
    aucs = {s: round(roc_metrics([r[s] for r in rows], positive)["auc"], 3) for s in STATS}
    print(f"{'model':30s} {'ep':>3s} {'acc':>6s} " + " ".join(f"{s:>11s}" for s in STATS))
    for r in rows:
        print(f"{r['id']:30s} {r['epochs']:3d} {r['test_accuracy']:6.4f} " + " ".join(f"{r[s]:11.4f}" for s in STATS))
    print(f"{'AUC (piracy > homologous)':41s} " + " ".join(f"{aucs[s]:11.3f}" for s in STATS))
    if args.out:
        write_results(
            args.out,
            {"runs": [str(r) for r in runs], "excluded": args.exclude, "auc": aucs, "models": rows},
            seed=None,
            argv=argv,
        )  # deterministic: no random draw


if __name__ == "__main__":
    main()
