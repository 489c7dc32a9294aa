"""The victim's UAP bank: several seeded UAPs, each saved with its eps, norm and fooling rate.

``runs/<name>/uaps.pt`` holds ``uaps [U, C, H, W]`` and per-member metadata. It is keyed by the
victim's weights hash and the UAP config; members are computed one by one and the file is
rewritten atomically after each, so an interrupted run resumes at the next member.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict

import torch
from tqdm.auto import tqdm

from fpenc.config import PipelineConfig, UAPConfig
from fpenc.io import load_tensors, save_tensors
from fpenc.models.classifier import module_device

FORMAT = "fpenc-uaps/1"
TARGET_FOOLING = 0.8  # "the UAPs used in this work achieve >= 80% attack success" (§5.1)
SELECTION_IMAGES = 1024  # DeepFool-UAP: training images each iterate is scored on (DeepFoolUAPModule)


@torch.inference_mode()
def fooling_rate(net: torch.nn.Module, v: torch.Tensor, images: torch.Tensor, batch_size: int = 1000) -> float:
    """Share of ``images`` (uint8 or [0, 1] float ``[N, C, H, W]``) whose class under ``net``
    changes when the perturbation ``v`` (``[C, H, W]``) is added (and the result clamped)."""
    net.eval()
    device = module_device(net)
    v = v.to(device)
    changed = 0
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        changed += (net(x).argmax(1) != net((x + v).clamp(0, 1)).argmax(1)).sum().item()
    return changed / len(images)


def holdout_images(arrays, n: int, seed: int = 0) -> torch.Tensor:
    """A seeded subset of ``n`` test images (uint8): never seen while computing the UAP."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(arrays.test_x), generator=g)[: min(n, len(arrays.test_x))]
    return arrays.test_x[idx]


def selection_images(arrays, splits, split: str, n: int = SELECTION_IMAGES, seed: int = 0) -> torch.Tensor:
    """A seeded subset of ``n`` images (uint8) of the train set's ``split``: the data the UAP is
    computed on, where DeepFool-UAP scores its iterates (the original algorithm's stopping test)."""
    from fpenc.data.images import split_indices

    idx = split_indices(arrays, split, splits)
    g = torch.Generator().manual_seed(seed)
    return arrays.train_x[idx[torch.randperm(len(idx), generator=g)[: min(n, len(idx))]]]


def _tracker(victim, holdout, every: int, bar):
    import pytorch_lightning as pl

    class FoolingTracker(pl.Callback):
        """Every ``every`` steps: the held-out fooling rate of the perturbation the module would
        return if stopped there (DeepFool-UAP's best-scored iterate, SGD-UAP's ``v``), with the
        elapsed time."""

        def on_train_start(self, trainer, pl_module):
            self.t0, self.history = time.perf_counter(), []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            bar.update(1)
            step = trainer.global_step
            if step % every == 0 or step >= trainer.max_steps:
                fr = fooling_rate(victim, pl_module.perturbation(), holdout)
                self.history.append(
                    {"step": step, "seconds": round(time.perf_counter() - self.t0, 2), "fooling_rate": round(fr, 4)}
                )
                bar.set_postfix(fooling=f"{fr:.3f}", refresh=False)

    return FoolingTracker()


def compute_uap(
    victim: torch.nn.Module,
    data,
    holdout: torch.Tensor,
    input_shape,
    cfg: UAPConfig,
    seed: int,
    progress: bool = True,
    desc: str = "uap",
    selection: torch.Tensor | None = None,
) -> dict:
    """Train one UAP of ``victim`` on ``data`` (a train DataLoader of ``(x, y, idx)`` batches, or a
    LightningDataModule); returns ``{"uap": [C,H,W], "fooling_rate", "seconds", "history"}``.
    ``selection`` (images of ``data``'s split, :func:`selection_images`): where the deepfool
    method scores its iterates; ignored by sgd."""
    from fpenc.uap.module import DeepFoolUAPModule, SGDUAPModule
    from fpenc.zoo.training import quiet_trainer

    torch.manual_seed(seed)
    if cfg.method == "sgd":
        module = SGDUAPModule(victim, input_shape, eps=cfg.eps, norm=cfg.norm, lr=cfg.lr, seed=seed)
    else:
        module = DeepFoolUAPModule(victim, input_shape, eps=cfg.eps, norm=cfg.norm, selection=selection, seed=seed)
    bar = tqdm(
        total=cfg.steps,
        desc=desc,
        unit="step",
        leave=False,
        disable=not progress,
        mininterval=0.5 if sys.stderr.isatty() else 15,
    )
    tracker = _tracker(victim, holdout, max(1, cfg.steps // 12), bar)
    trainer = quiet_trainer(max_steps=cfg.steps, max_epochs=-1, limit_val_batches=0, callbacks=[tracker])
    t0 = time.perf_counter()
    trainer.fit(module, data)  # a DataLoader or a LightningDataModule, as Trainer.fit takes either
    seconds = time.perf_counter() - t0
    bar.close()
    v = module.perturbation()
    victim.cpu()
    return {
        "uap": v,
        "fooling_rate": fooling_rate(victim, v, holdout),
        "seconds": round(seconds, 2),
        "history": tracker.history,
    }


def load_bank(path) -> dict:
    return load_tensors(path, FORMAT, what="UAP bank", remedy="delete it and rerun `fpenc uap` to recompute it")


def build_uap_bank(cfg: PipelineConfig, progress: bool = True, log=print) -> dict:
    """Compute (or finish) the victim's UAP bank for ``cfg``; returns the bank payload."""
    from fpenc.io import lock_run_dir

    lock_run_dir(cfg.run_dir)
    from fpenc.data.datasets import load_data
    from fpenc.data.images import train_loader
    from fpenc.data.splits import load_splits
    from fpenc.rundir import RunDir
    from fpenc.zoo.training import quiet_lightning

    quiet_lightning()
    run_dir = RunDir(cfg.run_dir)
    victim_e = run_dir.victim_entry()
    victim = run_dir.load_model(victim_e)
    arrays = load_data(cfg.data)
    splits, _ = load_splits(run_dir.splits)
    holdout = holdout_images(arrays, cfg.uap.holdout, cfg.seed)
    path = run_dir.uaps
    key = {"victim_sha256": victim_e["sha256"], "config": asdict(cfg.uap), "seed": cfg.seed}
    members: list[dict] = []
    if path.exists():
        old = load_bank(path)
        if {k: old.get(k) for k in key} == key:
            members = [
                {
                    "uap": old["uaps"][i],
                    "fooling_rate": old["fooling_rates"][i],
                    "seconds": old["seconds"][i],
                    "history": old["histories"][i],
                }
                for i in range(len(old["fooling_rates"]))
            ][: cfg.uap.num_uaps]
            if members:
                log(f"[skip] {len(members)} UAP(s) already in {path}")
        else:
            log(f"{path} was made for another victim or UAP config: recomputing")
    for i in range(len(members), cfg.uap.num_uaps):
        loader = train_loader(arrays, splits, "victim", cfg.uap.batch_size, cfg.seed + i)
        m = compute_uap(
            victim,
            loader,
            holdout,
            tuple(arrays.input_shape),
            cfg.uap,
            cfg.seed + i,
            progress,
            f"uap {i + 1}/{cfg.uap.num_uaps}",
            selection_images(arrays, splits, "victim", seed=cfg.seed + i),
        )
        tqdm.write(
            f"[done] UAP {i + 1}/{cfg.uap.num_uaps}: fooling rate {m['fooling_rate']:.3f} "
            f"({cfg.uap.norm} eps {cfg.uap.eps}) in {m['seconds']:.1f}s",
            file=sys.stderr,
        )
        members.append(m)
        _save_bank(path, key, members, tuple(arrays.input_shape))
    return load_bank(path)


def _save_bank(path, key: dict, members: list[dict], input_shape) -> None:
    save_tensors(
        path,
        {
            **key,
            "uaps": torch.stack([m["uap"] for m in members]),
            "fooling_rates": [float(m["fooling_rate"]) for m in members],
            "seconds": [float(m["seconds"]) for m in members],
            "histories": [m["history"] for m in members],
            "input_shape": list(input_shape),
        },
        FORMAT,
    )


def time_to_target(history: list[dict], target: float = TARGET_FOOLING) -> float | None:
    """Seconds until the held-out fooling rate first reached ``target`` (None if never)."""
    for h in history:
        if h["fooling_rate"] >= target:
            return h["seconds"]
    return None
