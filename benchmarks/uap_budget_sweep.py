"""How victim UAPs at several budgets transfer to the demo zoo, by role and architecture.

Run from the repository root after `fpenc zoo --config configs/fmnist_demo.yaml`:
    .venv/bin/python benchmarks/uap_budget_sweep.py linf:0.25 linf:0.1 l2:3 l2:1.5
Prints, per architecture and role, the fooling rate, the agreement with the victim on x+v, and that
agreement on the images that fool the victim (3 UAPs per budget, seed 0, 2,000 test images).
"""
import sys, json, time, numpy as np, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from fpenc.config import load_pipeline_config
from fpenc.zoo.builder import load_zoo_model
from fpenc.uap.subspace import batched_sgd_uaps
from datamodules.datasets import load_dataset
from datamodules.splits import load_splits
cfg = load_pipeline_config(["configs/fmnist_demo.yaml"])

man = json.load(open(f"runs/fmnist_demo/manifest.json"))["models"]
nets = {m["id"]: load_zoo_model(m, "runs/fmnist_demo") for m in man}
arr = load_dataset("fashion_mnist")
splits, _ = load_splits("runs/fmnist_demo/splits.npz")
train = arr.train_x[torch.as_tensor(splits["victim"])]
hold = arr.test_x[:2000].float() / 255
victim = nets["victim"]
with torch.no_grad():
    pred = {i: n(hold).argmax(1) for i, n in nets.items()}
for norm, eps in [(a, float(b)) for a, b in (x.split(":") for x in sys.argv[1:])]:
    t = time.time()
    uaps = batched_sgd_uaps(victim, train, 3, eps, norm, steps=100, batch_size=256, lr=0.01 if norm == "linf" else 0.1, seed=0)
    rows = {}
    with torch.no_grad():
        for v in uaps:
            adv = (hold + v).clamp(0, 1)
            pv = victim(adv).argmax(1)
            for i, n in nets.items():
                pa = n(adv).argmax(1)
                fool = (pa != pred[i]).float().mean().item()
                agree = (pa == pv).float().mean().item()
                # agreement restricted to images where the victim is fooled
                fooled = pv != pred["victim"]
                agf = (pa[fooled] == pv[fooled]).float().mean().item()
                rows.setdefault(i, []).append((fool, agree, agf))
    print(f"== {norm} eps {eps}: {time.time()-t:.1f}s victim fool {np.mean([r[0] for r in rows['victim']]):.3f}")
    for a in ["fmnist_b", "fmnist_c", "fmnist_d", "fmnist_e"]:
        line = [a]
        for role in ("piracy", "homologous"):
            r = np.array([np.mean(rows[i], 0) for i in rows if i.startswith(role) and f"-{a}-" in i])
            line.append(f"{role[:3]} fool {r[:,0].mean():.3f} agree {r[:,1].mean():.3f} agree|fooled {r[:,2].mean():.3f}")
        print("  ", " | ".join(line))
