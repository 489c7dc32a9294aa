"""UAPs stay in their epsilon ball and fool; DeepFool flips images; the bank caches and resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fpenc.uap.deepfool import deepfool
from fpenc.uap.projection import perturbation_norm, project


def fit_steps(module, loader, steps: int):
    """Fit a UAP module for ``steps`` steps on CPU, quietly; returns the trainer."""
    import pytorch_lightning as pl

    trainer = pl.Trainer(
        max_steps=steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, train_dataloaders=loader)
    return trainer


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5)
    ).eval()


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.5)])
def test_project_is_a_projection(norm, eps):
    v = torch.randn(6, 1, 8, 8)
    p = project(v, eps, norm)
    for row in p:
        assert perturbation_norm(row, norm) <= eps + 1e-6
    assert torch.allclose(project(p, eps, norm), p)  # idempotent
    small = v * 1e-4
    assert torch.allclose(project(small, eps, norm), small)  # inside the ball: unchanged


def test_project_rejects_bad_arguments():
    with pytest.raises(ValueError):
        project(torch.zeros(1, 1, 2, 2), -1.0, "linf")
    with pytest.raises(ValueError, match="unknown norm"):
        project(torch.zeros(1, 1, 2, 2), 1.0, "l1")


def test_deepfool_flips_almost_every_image_with_small_perturbations():
    net = tiny_net()
    x = torch.rand(64, 1, 8, 8)
    r = deepfool(net, x, num_candidates=5, max_iter=50)
    with torch.no_grad():
        flipped = (net((x + r).clamp(0, 1)).argmax(1) != net(x).argmax(1)).float().mean()
    assert flipped >= 0.9
    assert r.flatten(1).norm(dim=1).median() < x.flatten(1).norm(dim=1).median()


def _sgd_uap(eps, norm, steps=60):
    from torch.utils.data import DataLoader, TensorDataset

    from fpenc.uap.module import SGDUAPModule

    net = tiny_net()
    x = torch.rand(512, 1, 8, 8)
    dl = DataLoader(TensorDataset(x, torch.zeros(512, dtype=torch.long)), batch_size=64, shuffle=True)
    module = SGDUAPModule(net, (1, 8, 8), eps=eps, norm=norm, lr=0.05)
    fit_steps(module, dl, steps)
    return module, net, x


@pytest.mark.parametrize("norm, eps", [("linf", 0.3), ("l2", 2.0)])
def test_sgd_uap_stays_in_ball_and_fools(norm, eps):
    from fpenc.uap.bank import fooling_rate

    module, net, x = _sgd_uap(eps, norm)
    v = module.perturbation()
    assert v.shape == (1, 8, 8)
    assert perturbation_norm(v, norm) <= eps + 1e-5
    assert module.victim.training is False and not any(p.requires_grad for p in net.parameters())
    fooled = fooling_rate(net, v, x)
    random_v = project(torch.randn(1, 1, 8, 8), eps, norm)[0]
    assert fooled > 0.5 and fooled > 2 * fooling_rate(net, random_v, x)


def test_uap_bank_on_tiny_zoo_caches(tmp_path, tiny_fmnist):
    from conftest import tiny_zoo_config
    from fpenc.cli import main

    config = tiny_zoo_config(tmp_path, tiny_fmnist)
    overlay = tmp_path / "uap.yaml"
    overlay.write_text(
        "pipeline:\n  name: tiny\n  uap: {num_uaps: 2, steps: 10, batch_size: 32, holdout: 50, eps: 0.3, lr: 0.1}\n"
    )
    args = ["uap", "--config", str(config), "--config", str(overlay), "--no-progress"]
    assert main(args) == 0
    from fpenc.uap.bank import load_bank

    bank = load_bank(tmp_path / "runs/tiny/uaps.pt")
    assert bank["uaps"].shape == (2, 1, 28, 28)
    assert bank["uaps"].abs().max() <= 0.3 + 1e-6
    assert not torch.equal(bank["uaps"][0], bank["uaps"][1])  # seeded members differ
    assert len(bank["fooling_rates"]) == 2 and all(0 <= f <= 1 for f in bank["fooling_rates"])
    transfer = json.loads((tmp_path / "runs/tiny/uap_transfer.json").read_text())
    rows = {r["id"]: r for r in transfer["models"]}
    assert len(rows) == 5 and transfer["bank"]["eps"] == 0.3
    assert rows["victim"]["follows_mean"] == 1.0  # the victim is fooled exactly its own way
    assert rows["victim"]["fooling_mean"] == pytest.approx(np.mean(bank["fooling_rates"]), abs=1e-6)
    assert all(0 <= r[k] <= 1 for r in rows.values() for k in ("fooling_mean", "follows_mean"))
    assert {p["architecture"] for p in transfer["pairs"]} == {"fmnist_b", "fmnist_c"}
    mtime = (tmp_path / "runs/tiny/uaps.pt").stat().st_mtime_ns
    assert main(args) == 0
    assert (tmp_path / "runs/tiny/uaps.pt").stat().st_mtime_ns == mtime  # cached, not recomputed


def test_uap_bank_with_deepfool_ends_and_fools(tmp_path, tiny_fmnist):
    """`uap.method: deepfool` through the stage: a max_steps run ends, the member stays in the
    ball and fools held-out images (the bank passes it the victim split's selection images)."""
    from conftest import tiny_zoo_config
    from fpenc.cli import main
    from fpenc.uap.bank import load_bank

    config = tiny_zoo_config(tmp_path, tiny_fmnist)
    overlay = tmp_path / "uap.yaml"
    overlay.write_text(
        "pipeline:\n  name: tiny\n  uap: {method: deepfool, num_uaps: 1, steps: 6, batch_size: 32, holdout: 50,"
        " eps: 0.3}\n"
    )
    assert main(["uap", "--config", str(config), "--config", str(overlay), "--no-progress"]) == 0
    bank = load_bank(tmp_path / "runs/tiny/uaps.pt")
    assert bank["config"]["method"] == "deepfool" and bank["uaps"].abs().max() <= 0.3 + 1e-6
    assert bank["fooling_rates"][0] > 0.2


def test_transfer_matches_a_naive_count():
    from fpenc.uap.report import transfer

    g = torch.Generator().manual_seed(0)
    vc, va, c, a = (torch.randint(0, 4, (200,), generator=g) for _ in range(4))
    got = transfer(vc, va, c, a)
    fooled = [i for i in range(200) if va[i] != vc[i]]
    assert got["fooling"] == pytest.approx(sum(int(a[i] != c[i]) for i in range(200)) / 200)
    assert got["follows"] == pytest.approx(sum(int(a[i] == va[i]) for i in fooled) / len(fooled))


def test_uap_ascent_loss_matches_a_per_image_reference():
    from fpenc.uap.loss import uap_ascent_loss

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5))
    x = torch.rand(7, 1, 4, 4)
    xp = (x + torch.randn(1, 1, 4, 4) * 3).clamp(0, 1)
    with torch.no_grad():
        plain = torch.stack(
            [-torch.log_softmax(net(xp[i : i + 1])[0], 0)[net(x[i : i + 1])[0].argmax()] for i in range(7)]
        )
    clip = float(plain.median())  # binds on some images, not on all
    got = uap_ascent_loss(net, x, xp, clip=clip)
    assert got.shape == (7,) and torch.allclose(got, plain.clamp(max=clip), atol=1e-6)
    assert (got == clip).sum() >= 3 and (got < clip).sum() >= 3
    got.sum().backward()  # differentiable in the perturbed images' path (and only there)
    assert next(net.parameters()).grad is not None


def test_deepfool_uap_ends_at_max_steps_and_fools():
    """DeepFool-UAP (manual optimisation) advances Lightning's global_step, so a max_steps run ends;
    its UAP stays in the ball and fools most images, far more than a random vector of its norm."""
    from torch.utils.data import DataLoader, TensorDataset

    from fpenc.uap.bank import fooling_rate
    from fpenc.uap.module import DeepFoolUAPModule

    net = tiny_net()
    x = torch.rand(256, 1, 8, 8)
    dl = DataLoader(TensorDataset(x, torch.zeros(256, dtype=torch.long)), batch_size=32, shuffle=True)
    module = DeepFoolUAPModule(net, (1, 8, 8), eps=2.0, norm="l2", num_candidates=5)
    trainer = fit_steps(module, dl, 12)  # never returned before: global_step stayed 0
    assert trainer.global_step == 12
    v = module.perturbation()
    assert perturbation_norm(v, "l2") <= 2.0 + 1e-5
    fooled = fooling_rate(net, v, x)
    random_v = project(torch.randn(1, 1, 8, 8), 2.0, "l2")[0]
    assert fooled > 0.5 and fooled > 2 * fooling_rate(net, random_v, x)


def test_deepfool_uap_update_is_the_projected_sum_of_deepfool_steps():
    """One update against a naive loop: each unfooled image's DeepFool step at the current v,
    summed, divided by n ** step_exponent (0: the original additive update), projected."""
    from fpenc.uap.module import DeepFoolUAPModule

    net = tiny_net()
    x = torch.rand(24, 1, 8, 8)
    for exponent in (0.0, 0.5):
        module = DeepFoolUAPModule(net, (1, 8, 8), eps=0.2, norm="linf", num_candidates=5, step_exponent=exponent)
        v0 = module.v.detach().clone()
        with torch.no_grad():
            todo = net((x + v0).clamp(0, 1)).argmax(1) == net(x).argmax(1)
        steps = [deepfool(net, (x[i : i + 1] + v0).clamp(0, 1), 5, 0.02, 20, "linf") for i in range(24) if todo[i]]
        expected = project(v0 + torch.cat(steps).sum(0, keepdim=True) / len(steps) ** exponent, 0.2, "linf")
        got, got_todo = module.updated(x)
        assert torch.equal(got_todo, todo)
        assert torch.allclose(got, expected, atol=1e-5)
    with pytest.raises(ValueError, match="step_exponent"):
        DeepFoolUAPModule(net, (1, 8, 8), eps=0.2, norm="linf", step_exponent=-1)


def test_deepfool_uap_returns_the_iterate_that_fools_most_selection_images():
    """With selection images, every iterate (the last one too) is scored on them and the best is
    returned: its fooling rate there is the best rate seen, and no lower than the final v's."""
    from torch.utils.data import DataLoader, TensorDataset

    from fpenc.uap.bank import fooling_rate
    from fpenc.uap.module import DeepFoolUAPModule

    net = tiny_net(1)
    x = torch.rand(256, 1, 8, 8)
    selection = (torch.rand(64, 1, 8, 8) * 255).to(torch.uint8)  # uint8, as the bank passes them
    dl = DataLoader(TensorDataset(x, torch.zeros(256, dtype=torch.long)), batch_size=32, shuffle=True)
    module = DeepFoolUAPModule(net, (1, 8, 8), eps=0.3, norm="linf", num_candidates=5, selection=selection)
    scored = []
    original = module._consider
    module._consider = lambda batch: (original(batch), scored.append(module.v.detach().clone()))
    fit_steps(module, dl, 10)
    assert len(scored) == 11  # 10 steps, each scoring the v it starts from, then the last v
    rates = [fooling_rate(net, v[0], selection) for v in scored]
    v = module.perturbation()
    assert fooling_rate(net, v, selection) == pytest.approx(max(rates)) == pytest.approx(module.best_rate)
    assert max(rates) >= rates[-1] and max(rates) > 0.3
    assert perturbation_norm(v, "linf") <= 0.3 + 1e-6


def test_deepfool_linf_steps_along_the_gradient_sign_and_flips():
    """The L-inf variant (p = inf): smaller L-inf perturbations than the L2 one needs, for the same flips."""
    net = tiny_net()
    x = torch.rand(64, 1, 8, 8)
    r_inf = deepfool(net, x, num_candidates=5, max_iter=50, norm="linf")
    r_2 = deepfool(net, x, num_candidates=5, max_iter=50, norm="l2")
    with torch.no_grad():
        flipped = (net((x + r_inf).clamp(0, 1)).argmax(1) != net(x).argmax(1)).float().mean()
    assert flipped >= 0.9
    linf = lambda r: r.flatten(1).abs().max(1).values  # noqa: E731
    assert linf(r_inf).median() < linf(r_2).median()
    with pytest.raises(ValueError, match="norm l2 or linf"):
        deepfool(net, x, norm="l1")
