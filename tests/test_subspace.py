"""UAP subspace analysis (paper §4.1, eq. 5): the measure, its cache and the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fpenc.uap.subspace import batched_sgd_uaps, principal_basis
from fpenc.uap.subspace_readings import profile
from fpenc.uap.subspace_readings import profile_distance as inconsistency


def _structured(n: int, d: int, k: int, seed: int) -> torch.Tensor:
    """``n`` vectors in R^d drawn mostly from a fixed k-dim subspace (plus a little noise)."""
    g = torch.Generator().manual_seed(0)
    sub = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64))[0]  # shared by every seed
    h = torch.Generator().manual_seed(seed)
    scales = torch.linspace(3, 1, k, dtype=torch.float64)
    return torch.randn(n, k, generator=h, dtype=torch.float64) * scales @ sub.T + 0.05 * torch.randn(
        n, d, generator=h, dtype=torch.float64
    )


def test_basis_is_orthonormal_and_profile_is_a_distribution():
    u = _structured(40, 30, 5, seed=1)
    basis, s = principal_basis(u)
    assert basis.shape == (30, 30) and torch.all(s[:-1] >= s[1:])
    assert torch.allclose(basis.T @ basis, torch.eye(30, dtype=torch.float64), atol=1e-8)
    p = profile(u, basis)
    assert p.shape == (30,) and np.isclose(p.sum(), 1) and (p >= 0).all()
    assert p[:5].sum() > 0.9  # the UAPs' energy lies in the first directions


def _naive_inconsistency(uaps: torch.Tensor, ref_uaps: torch.Tensor, basis: torch.Tensor) -> float:
    """Eq. 5 as our reading states it, one direction and one UAP at a time."""

    def shares(m):
        energy = []
        for j in range(basis.shape[1]):
            e = 0.0
            for row in m:
                e += float(row @ basis[:, j] / row.norm()) ** 2
            energy.append(e / len(m))
        return [e / sum(energy) for e in energy]

    return sum(abs(a - b) for a, b in zip(shares(uaps), shares(ref_uaps)))


def test_inconsistency_matches_naive_and_separates_same_subspace_from_another():
    victim, same, other = _structured(60, 30, 5, 1), _structured(60, 30, 5, 2), torch.randn(60, 30, dtype=torch.float64)
    basis, _ = principal_basis(victim)
    ref = profile(victim, basis)
    assert inconsistency(victim, ref, basis) == pytest.approx(0, abs=1e-12)
    d_same, d_other = inconsistency(same, ref, basis), inconsistency(other, ref, basis)
    assert d_same == pytest.approx(_naive_inconsistency(same, victim, basis), rel=1e-9)
    assert d_other == pytest.approx(_naive_inconsistency(other, victim, basis), rel=1e-9)
    assert 3 * d_same < d_other  # same subspace, other draw: far closer than an unrelated one


def test_subspace_readings_match_naive_references_and_separate():
    """principal_angles against scipy's subspace angles; projection_energy one UAP at a time;
    both ~0 for the victim's own subspace, and small for the same subspace drawn again."""
    from scipy.linalg import subspace_angles

    from fpenc.uap.subspace_readings import energy_rank, principal_angle_distance, projection_deficit, readings

    victim, same, other = _structured(60, 30, 5, 1), _structured(60, 30, 5, 2), torch.randn(60, 30, dtype=torch.float64)
    basis, s = principal_basis(victim)
    k = energy_rank(s, 0.9)
    assert 1 <= k <= 5 and energy_rank(s, 1.0) == len(s)
    assert (s[:k] ** 2).sum() / (s**2).sum() >= 0.9 > (s[: k - 1] ** 2).sum() / (s**2).sum()
    for m in (same, other):
        own = torch.linalg.svd(torch.nn.functional.normalize(m, dim=1), full_matrices=False)[2][:k].T
        naive = float(np.mean(np.sin(subspace_angles(basis[:, :k].numpy(), own.numpy())) ** 2))
        assert principal_angle_distance(m, basis[:, :k]) == pytest.approx(naive, abs=1e-9)
        outside = np.mean([1 - float(((r / r.norm()) @ basis[:, :k]).pow(2).sum()) for r in m])
        assert projection_deficit(m, basis[:, :k]) == pytest.approx(outside, abs=1e-9)
    own_values = readings(victim, basis, 30, profile(victim, basis))
    assert all(v == pytest.approx(0, abs=1e-9) for v in own_values.values())  # the full basis explains it
    near, far = readings(same, basis, k, profile(victim, basis)), readings(other, basis, k, profile(victim, basis))
    assert all(3 * near[n] < far[n] for n in near)
    with pytest.raises(ValueError, match="energy share"):
        energy_rank(s, 0.0)


def test_batched_uaps_stay_in_ball_and_differ():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    images = torch.randint(0, 256, (50, 1, 8, 8), dtype=torch.uint8)
    for norm, eps in (("linf", 0.2), ("l2", 1.5)):
        v = batched_sgd_uaps(net, images, 4, eps, norm, steps=5, batch_size=8, seed=0, init_scale=0.1)
        size = v.flatten(1).abs().amax(1) if norm == "linf" else v.flatten(1).norm(dim=1)
        assert v.shape == (4, 1, 8, 8) and (size <= eps + 1e-5).all()
        assert not torch.equal(v[0], v[1])
        assert torch.equal(
            v, batched_sgd_uaps(net, images, 4, eps, norm, steps=5, batch_size=8, seed=0, init_scale=0.1)
        )
    with pytest.raises(ValueError, match="num_uaps"):
        batched_sgd_uaps(net, images, 0, 0.2, "linf", steps=5)


def test_subspace_command_writes_results_and_resumes(tmp_path, tiny_fmnist, capsys):
    from conftest import tiny_zoo_config
    from fpenc.cli import main

    config = tiny_zoo_config(tmp_path, tiny_fmnist)
    args = [
        "subspace",
        "--config",
        str(config),
        "--num-uaps",
        "6",
        "--chunk",
        "4",
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--no-progress",
    ]
    assert main(args) == 0
    assert "principal_angles" in capsys.readouterr().out
    sub = tmp_path / "runs/tiny/subspace"
    result = json.loads((sub / "subspace_linf_eps0.25_n6.json").read_text())
    assert (sub / "subspace_linf_eps0.25_n6.png").stat().st_size > 1000
    roles = [r["role"] for r in result["rows"]]
    assert roles[0] == "victim" and set(roles[1:]) <= {"piracy", "homologous"} and len(roles) > 1
    assert all(r["D"] >= 0 for r in result["rows"]) and 1 <= result["rank"] <= 6
    caches = sorted(sub.glob("*.pt"))
    assert len(caches) == len(roles) + 2  # the victim's basis, reference and check sets and each suspect
    mtimes = {p: p.stat().st_mtime_ns for p in caches}
    assert main(args) == 0  # everything cached: same numbers, no UAP file rewritten
    assert json.loads((sub / "subspace_linf_eps0.25_n6.json").read_text())["rows"][0]["D"] == result["rows"][0]["D"]
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    assert main(args + ["--models", "piracy-fmnist_b-adam-s0", "homologous-fmnist_c-sgd-s0"]) == 0
    both = json.loads((sub / "subspace_linf_eps0.25_n6.json").read_text())
    assert [r["role"] for r in both["rows"]] == ["victim", "piracy", "homologous"]
    assert both["ratio_homologous_to_piracy"] > 0 and "homologous / piracy" in capsys.readouterr().out
    assert set(both["ratios"]) == {"profile_l1", "principal_angles", "projection_energy"}
    assert both["ratio_homologous_to_piracy"] == both["ratios"]["profile_l1"]
    assert set(both["victim_noise"]) == set(both["ratios"]) and 1 <= both["subspace_dimension"] <= both["rank"]
    assert main(args + ["--reading", "projection_energy"]) == 0  # D is that reading now; the cache is reused
    other = json.loads((sub / "subspace_linf_eps0.25_n6.json").read_text())
    assert [r["D"] for r in other["rows"]] == [r["readings"]["projection_energy"] for r in other["rows"]]
    assert both["rows"][1]["D"] == result["rows"][1]["D"]  # the piracy model's UAPs came from the cache
    assert main(args + ["--models", "victim"]) == 2  # one clear line, no traceback
    assert "not suspects of the zoo" in capsys.readouterr().err
    assert main(args + ["--num-uaps", "1"]) == 2
    assert "need --num-uaps >= 2" in capsys.readouterr().err
    assert main(args + ["--steps", "0"]) == 2
