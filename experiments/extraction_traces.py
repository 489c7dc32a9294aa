"""What trace of the victim an extracted copy carries, next to independent models, in black-box outputs.

A verdict can only call a copy ``derived`` if something in its answers is closer to the victim
than an independent model's answers are. This measures five such statistics for every model of
one or more zoos (the victim's queries only, as ``fpenc verify`` sees a suspect):

* ``fidelity``: top-1 agreement with the victim on 3,000 test images outside the key;
* ``key_clean``: agreement on the key's clean images, test images the victim gets wrong (its own
  errors: the Anna-Karenina statistic of QuRD / AKH, restricted to idiosyncratic errors);
* ``key_uap``: agreement on the key's images plus a victim UAP (the bank's first 4);
* ``neg_kl``: minus the mean KL(victim || suspect) of the output probabilities on the 3,000 images
  (higher: closer; needs a probability API);
* ``adv_follow``: of 600 test images pushed by targeted PGD on the victim (L-inf 0.06, 30 steps)
  to the victim's runner-up class, the share where the suspect also answers that class.

Models are grouped as copies (``piracy``: trained on the victim's API answers), independents on
the victim's own training data, and independents on other data; the ``separation`` table gives
for each statistic and each extraction effort (epochs) the AUC of copies against independents
trained on the victim's data (the key-choosing models apart: the key is where they disagree). The test models of the
run (architectures the encoder neither trains on nor is validated on, outside the reference
grids) are left out unless ``--include-test``: design choices are made without them.

    python experiments/extraction_traces.py -c configs/fmnist_demo.yaml \\
        --extra-config experiments/configs/negatives_fmnist.yaml \\
        --extra-config experiments/configs/extraction_fidelity_fmnist.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository: fpenc, datamodules, benchmarks.harness
from benchmarks.harness import config_args, load_run, write_results
from fpenc.executor import add_executor_flags, executor_options

STATS = ("fidelity", "key_clean", "key_uap", "neg_kl", "adv_follow")


def logits_of(net, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([net(x[i : i + 1000]) for i in range(0, len(x), 1000)]).double()


def targeted_pgd(victim, x0: torch.Tensor, eps: float, steps: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[B, C, H, W]`` within L-inf ``eps`` of ``x0`` pushed to the victim's runner-up class."""
    target = logits_of(victim, x0).topk(2, 1).indices[:, 1]
    x = x0.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(victim(x), target)
        (g,) = torch.autograd.grad(loss, x)
        x = torch.minimum(torch.maximum(x.detach() - eps / 10 * g.sign(), x0 - eps), x0 + eps).clamp(0, 1)
    return x.detach(), target


class Probe:
    """The victim's answers on the probe images, and the statistics of a suspect against them."""

    def __init__(self, victim, run_dir, arrays, seed: int = 0):
        from fpenc.fingerprint.key import load_key
        from fpenc.uap.bank import load_bank

        key, bank = load_key(run_dir.key), load_bank(run_dir.uaps)
        self.key_images = key["view_images"].reshape(-1, *key["view_images"].shape[2:]).float() / 255.0
        uaps = bank["uaps"][:4].float()
        self.uap_images = (self.key_images.unsqueeze(0) + uaps.unsqueeze(1)).clamp(0, 1).reshape(-1, *uaps.shape[1:])
        rng = np.random.default_rng(seed)
        in_key = set(key["views"].reshape(-1).tolist()) if key["config"]["pool"] == "test" else set()
        order = [int(i) for i in rng.permutation(len(arrays.test_y)) if int(i) not in in_key]
        self.generic = arrays.test_x[torch.as_tensor(order[:3000])].float() / 255.0
        victim = victim.eval().requires_grad_(False)
        self.adv, self.adv_target = targeted_pgd(
            victim, arrays.test_x[torch.as_tensor(order[3000:3600])].float() / 255.0, eps=0.06
        )
        self.victim_hits = logits_of(victim, self.adv).argmax(1) == self.adv_target
        self.v = {name: logits_of(victim, x) for name, x in self._sets().items()}

    def _sets(self) -> dict:
        return {"generic": self.generic, "key": self.key_images, "uap": self.uap_images}

    def stats(self, net) -> dict:
        s = {name: logits_of(net, x) for name, x in self._sets().items()}

        def agree(name):
            return float((s[name].argmax(1) == self.v[name].argmax(1)).double().mean())

        lv, ls = torch.log_softmax(self.v["generic"], 1), torch.log_softmax(s["generic"], 1)
        follow = logits_of(net, self.adv[self.victim_hits]).argmax(1) == self.adv_target[self.victim_hits]
        return {
            "fidelity": agree("generic"),
            "key_clean": agree("key"),
            "key_uap": agree("uap"),
            "neg_kl": -float((lv.exp() * (lv - ls)).sum(1).mean()),
            "adv_follow": float(follow.double().mean()),
        }


def group_of(entry: dict, key_reference=()) -> str:
    """``copy, E epochs`` for a piracy model; for an independent one, whether it chose the key
    (``key.reference``: its agreement on the key is low by construction) and on which data it trained."""
    if entry["role"] == "piracy":
        return f"copy, {entry['epochs']} epochs"
    if entry["id"] in key_reference:
        return "independent, chose the key"
    return "independent, victim's data" if entry["split"] == "victim" else "independent, other data"


def auc(pos, neg) -> float:
    """P(a copy scores above a victim-data independent), ties counting half."""
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap)
    ap.add_argument(
        "--extra-config",
        action="append",
        default=[],
        help="a further zoo (config stacked on --config) whose models join the table",
    )
    ap.add_argument("--include-test", action="store_true", help="also the run's test models")
    ap.add_argument("--out", type=Path, default=None)
    add_executor_flags(ap)  # the extra zoos: one model after another here, or Ray tasks
    args = ap.parse_args(argv)
    from fpenc.data.datasets import load_data
    from fpenc.rundir import load_zoo_model
    from fpenc.zoo.builder import build_zoo
    from fpenc.zoo.sets import assign_sets

    torch.manual_seed(0)
    cfg, run_dir = load_run(args.config)
    manifest = run_dir.load_manifest()
    arrays = load_data(cfg.data)
    victim_entry = next(m for m in manifest["models"] if m["role"] == "victim")
    victim = load_zoo_model(victim_entry, run_dir)
    start = time.perf_counter()
    probe = Probe(victim, run_dir, arrays, seed=cfg.seed)
    splits = assign_sets(cfg)
    rows = []
    zoos = [(run_dir, manifest, "run")]
    same_victim = {}
    for extra in args.extra_config:
        ecfg, _ = load_run(args.config + [extra])
        zman = build_zoo(ecfg, executor=executor_options(args))
        zoos.append((ecfg.run_dir, zman, Path(extra).stem))
        # its copies must be copies of this very victim (weights hashed by content)
        same_victim[Path(extra).stem] = (
            next(m for m in zman["models"] if m["role"] == "victim")["sha256"] == victim_entry["sha256"]
        )
    for zdir, zman, source in zoos:
        for m in zman["models"]:
            if m["role"] == "victim":
                continue
            split = splits.get(m["id"], "extra") if source == "run" else "extra"
            if split == "test" and not args.include_test:
                continue
            rows.append(
                {
                    "id": m["id"],
                    "zoo": source,
                    "split": split,
                    "group": group_of(m, cfg.key.reference if source == "run" else ()),
                    "architecture": m["architecture"],
                    "epochs": m["epochs"],
                    "test_accuracy": m["test_accuracy"],
                    **{k: round(v, 4) for k, v in probe.stats(load_zoo_model(m, zdir)).items()},
                }
            )
    groups = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    summary = {
        g: {
            s: {
                "mean": round(float(np.mean([r[s] for r in rs])), 4),
                "min": min(r[s] for r in rs),
                "max": max(r[s] for r in rs),
            }
            for s in STATS
        }
        | {"n": len(rs)}
        for g, rs in groups.items()
    }
    same_data = groups.get("independent, victim's data", [])
    separation = {
        g: {s: round(auc([r[s] for r in rs], [r[s] for r in same_data]), 3) for s in STATS}
        for g, rs in sorted(groups.items())
        if g.startswith("copy") and same_data
    }
    result = {
        "experiment": "extraction_traces",
        "seed": cfg.seed,
        "run": cfg.name,
        "victim_test_accuracy": victim_entry["test_accuracy"],
        "extra_zoo_victim_identical": same_victim,
        "seconds": round(time.perf_counter() - start, 1),
        "statistics": list(STATS),
        "separation_auc_vs_victim_data_independents": separation,
        "groups": summary,
        "models": rows,
    }
    out = args.out or REPO / "experiments/results" / f"extraction_traces_{cfg.name}.json"
    write_results(out, result, seed=cfg.seed, argv=argv)
    print(
        json.dumps(
            {"separation": separation, "groups": {g: {s: v[s]["mean"] for s in STATS} for g, v in summary.items()}},
            indent=1,
        )
    )
    return result


if __name__ == "__main__":
    main()
