"""Protect a model owner's own classifier with one command, then verify copies and independent models.

1. Trains :class:`benchmarks.own_model.OwnerNet` (an architecture fpenc does not define) on a seeded
   half of Fashion-MNIST with plain PyTorch and saves its ``state_dict`` — what a user has before fpenc.
2. Times ``fpenc protect --model mine.pt --class-path benchmarks.own_model.OwnerNet --init-args ...``
   (the shipped ``fmnist_demo`` zoo around her model, never retraining it) to the bundle.
3. Makes, again with plain PyTorch, copies of her model (pruned; INT8-rounded weights; fine-tuned on
   the attacker's half, briefly or for an epoch and then pruned) and independent models (her class
   with her recipe and another seed on the other half; another family), exports them to ONNX and runs
   ``fpenc verify --bundle B *.onnx --format json``.

    python benchmarks/protect_own_model.py --out benchmarks/results/protect_own_model.json
    python benchmarks/protect_own_model.py --reuse ...   # her model and bundle from an earlier run: step 3 only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import ROOT, write_results


def train(net, x, y, epochs: int, lr: float, seed: int, batch: int = 128):
    import torch

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx].float() / 255), y[idx]).backward()
            opt.step()
    return net.eval()


def accuracy(net, x, y) -> float:
    import torch

    with torch.no_grad():
        return float((net(x.float() / 255).argmax(1) == y).float().mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/protect_own_model.json")
    ap.add_argument("--work", default="runs/own_model_bench", help="where her files and the suspects go")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true", help="reuse her model and the bundle of an earlier run (its --out)")
    args = ap.parse_args(argv)
    import torch

    from benchmarks.own_model import OwnerNet
    from fpenc.data.datasets import load_dataset
    from fpenc.suspect_export import export_model

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = load_dataset("fashion_mnist")
    x, y, tx, ty = data.train_x, data.train_y, data.test_x, data.test_y
    half = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed))
    mine_idx, other_idx = half[: len(x) // 2], half[len(x) // 2 :]
    init_args = {"width": 24}

    weights = work / "mine.pt"
    previous = json.loads(Path(args.out).read_text()) if args.reuse and Path(args.out).is_file() else None
    if previous is not None and weights.is_file():  # --reuse: her model and bundle as the earlier run made them
        mine = OwnerNet(**init_args)
        mine.load_state_dict(torch.load(weights, weights_only=True))
        mine.eval()
        own_seconds, protect_seconds = previous["victim"]["train_seconds"], previous["protect_seconds"]
        bundle, cmd = previous["bundle"], previous["protect_command"].split()
    else:
        t0 = time.perf_counter()  # 1. her model, plain PyTorch
        torch.manual_seed(args.seed)
        mine = train(OwnerNet(**init_args), x[mine_idx], y[mine_idx], args.epochs, 1e-3, args.seed)
        own_seconds = time.perf_counter() - t0
        torch.save(mine.state_dict(), weights)
        cmd = [  # 2. one command
            sys.executable, "-m", "fpenc.cli", "protect", "--model", str(weights),
            "--class-path", "benchmarks.own_model.OwnerNet", "--init-args", json.dumps(init_args),
            "--name", "own_model",
        ]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        protect_seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        bundle = next(line.split(":", 1)[1].strip() for line in proc.stdout.splitlines() if line.startswith("bundle:"))
        cmd = ["fpenc", *cmd[3:]]

    import copy  # 3. copies of hers and independent models, plain PyTorch, exported to ONNX

    import torch.nn.utils.prune

    from benchmarks.own_model import OtherNet

    def pruned(net, amount: float):
        net = copy.deepcopy(net)
        params = [(m, "weight") for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        torch.nn.utils.prune.global_unstructured(params, torch.nn.utils.prune.L1Unstructured, amount=amount)
        for m, name in params:
            torch.nn.utils.prune.remove(m, name)
        return net.eval()

    def int8_rounded(net):
        net = copy.deepcopy(net)
        with torch.no_grad():
            for p in net.parameters():
                scale = p.abs().max().clamp_min(1e-12) / 127
                p.copy_(torch.round(p / scale) * scale)
        return net.eval()

    def finetuned(net, n_images: int, seed: int):
        idx = other_idx[torch.randperm(len(other_idx), generator=torch.Generator().manual_seed(seed))[:n_images]]
        return train(copy.deepcopy(net), x[idx], y[idx], 1, 1e-4, seed)

    torch.manual_seed(args.seed + 100)
    same_recipe = train(OwnerNet(**init_args), x[other_idx], y[other_idx], args.epochs, 1e-3, args.seed + 100)
    torch.manual_seed(args.seed + 200)
    other_family = train(OtherNet(), x[other_idx], y[other_idx], args.epochs, 1e-3, args.seed + 200)
    suspects = {
        "copy-pruned": (True, "30% global magnitude pruning", pruned(mine, 0.3)),
        "copy-int8": (True, "weights rounded to 8 bits per tensor", int8_rounded(mine)),
        "copy-finetuned": (True, "fine-tuned on 3,000 of the attacker's images at lr 1e-4", finetuned(mine, 3000, 1)),
        "copy-finetuned-pruned": (
            True,
            "fine-tuned one epoch on the attacker's half (30,000 images) at lr 1e-4, then 30% pruning",
            pruned(finetuned(mine, len(other_idx), 1), 0.3),
        ),
        "independent-same-class": (False, "her class and recipe, another seed, the other half", same_recipe),
        "independent-other-family": (False, "an MLP (OtherNet), the other half", other_family),
    }
    files = [str(export_model(net, (1, 28, 28), work / f"{name}.onnx")) for name, (_, _, net) in suspects.items()]
    verify = subprocess.run(
        [sys.executable, "-m", "fpenc.cli", "verify", "--bundle", bundle, *files, "--format", "json"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    doc = json.loads(verify.stdout)
    result = {
        "benchmark": "protect_own_model",
        "victim": {"class_path": "benchmarks.own_model.OwnerNet", "init_args": init_args,
                   "test_accuracy": round(accuracy(mine, tx, ty), 4), "train_seconds": round(own_seconds, 1)},
        "protect_command": " ".join(cmd),
        "protect_seconds": round(protect_seconds, 1),
        "bundle": bundle,
        "verify_exit_code": verify.returncode,
        "suspects": {
            name: {
                "derived_from_her_model": positive,
                "how": how,
                "test_accuracy": round(accuracy(net, tx, ty), 4),
                **{k: r.get(k) for k in ("verdict", "p_value", "agreement", "similarity", "margin", "reasons")},
            }
            for (name, (positive, how, net)), r in zip(suspects.items(), doc["results"])
        },
    }  # fmt: skip
    write_results(args.out, result, seed=args.seed, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
