"""fpenc bench: the metrics on hand-built inputs, and the command on a tiny zoo."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from conftest import REPO, tiny_config, tiny_grid
from fpenc.bench.metrics import method_metrics


def test_metrics_known_answers():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    positive = [True, True, False, True, False, False]
    p_values = [0.001, 0.2, 0.005, 0.002, 0.5, 0.9]
    kinds = ["prune", "extract", "indep", "prune", "indep", "indep"]
    m = method_metrics(scores, p_values, positive, kinds, alpha=0.01)
    # pairs (positive > negative): 0.9 > 3, 0.8 > 3, 0.6 > 2 of the negatives 0.7, 0.5, 0.4: 8 / 9
    assert m["auc"] == pytest.approx(8 / 9, abs=1e-4)
    assert m["detected"] == pytest.approx(2 / 3, abs=1e-4)  # p < 0.01: two of three positives
    assert m["false_accusations"] == 1 and m["negatives"] == 3  # the independent at p 0.005
    assert m["false_accusation_upper95"] == pytest.approx(0.9065, abs=1e-3)  # Clopper-Pearson, 1 of 3
    assert m["per_attack"]["prune"] == {
        "positive": True,
        "models": 2,
        "auc": pytest.approx(5 / 6, abs=1e-4),
        "detected": 1.0,
    }
    assert m["per_attack"]["extract"]["auc"] == 1.0
    assert m["per_attack"]["indep"] == {"positive": False, "models": 3, "accused": pytest.approx(1 / 3, abs=1e-4)}
    assert m["tpr_at_1pct_fpr"] == pytest.approx(2 / 3, abs=1e-4)  # above every negative (0.7): 0.9 and 0.8


def test_bench_command_on_a_tiny_zoo(tmp_path, tiny_fmnist):
    """Every method runs on the test set, calibrated on the reference set; the JSON has the layout
    the benchmark promises; the training and validation models never enter."""
    from fpenc.cli import main

    grids = [
        tiny_grid("piracy", "fmnist_a", "adam, sgd", "0, 1", more="options: {channels: [8, 8]}"),
        tiny_grid("homologous", "fmnist_a", "adam, sgd", "0, 1", more="options: {channels: [8, 8]}"),
        tiny_grid("homologous", "fmnist_a", "adam", "10, 11", more="split: reference, data: victim"),
        tiny_grid("piracy", "fmnist_c", "adam", "0"),
        tiny_grid("homologous", "fmnist_c", "adam, sgd", "0"),
    ]
    config = tiny_config(
        tmp_path,
        tiny_fmnist,
        "tinybench",
        grids,
        pipeline_extra="""
        uap: {num_uaps: 2, steps: 3, batch_size: 32, holdout: 50}
        key: {num_datapoints: 6, num_views: 2, neighbours: 3}
        sets: {train_models_per_role: 2}
    """,
    )
    out = tmp_path / "bench.json"
    args = [
        "bench",
        "-c",
        str(config),
        "--budgets",
        "5",
        "20",
        "--alpha",
        "0.05",
        "--out",
        str(out),
        "--no-progress",
        "--plots",
        str(tmp_path / "fig"),
    ]
    assert main(args) == 0
    r = json.loads(out.read_text())
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == [
        "bench_akh_labels_vs_accuracy.png",
        "bench_auc_vs_queries.png",
        "bench_fpenc_vs_accuracy.png",
    ]
    degenerate = {
        "degenerate-constant": 3,
        "degenerate-random-label": 3,
        "degenerate-untrained": 3,
        "degenerate-no-normalisation": 1,
    }
    assert r["positives"] == 1 and r["negatives"] == 2 + 10 and r["attack_kinds"] == ["extract-probs-other-arch"]
    assert r["negative_kinds"] == sorted([*degenerate, "independent-overlap0.5-other-arch"])
    assert {k: sum(m["kind"] == k for m in r["models"]) for k in degenerate} == degenerate
    assert r["reference_models"] == [
        "homologous-fmnist_a-adam-s10-victimdata",
        "homologous-fmnist_a-adam-s11-victimdata",
    ]
    assert {m["id"] for m in r["models"] if not m["kind"].startswith("degenerate")} == {
        "piracy-fmnist_c-adam-s0",
        "homologous-fmnist_c-adam-s0",
        "homologous-fmnist_c-sgd-s0",
    }
    for name in ("fpenc", "akh_labels"):  # a model that is not a model of the task is never accused
        scores = r["methods"][name]["budgets"]["20"]["scores"]
        assert all(scores[m["id"]][1] >= 0.05 for m in r["models"] if m["kind"].startswith("degenerate")), name
    assert set(r["methods"]) == {
        *("fpenc", "paper", "no_uap", "fpenc_ranked", "fpenc_ranked_clean", "fpenc_ranked_pool"),
        "fpenc_ranked_boundary",
        *("akh_labels", "akh_probs", "ipguard", "random", "cka"),
    }
    for name, entry in r["methods"].items():
        for b in ("5", "20"):
            row = entry["budgets"][b]
            assert row["queries"] <= int(b) and 0.0 <= row["auc"] <= 1.0, name
            for key in ("tpr_at_1pct_fpr", "tpr_at_5pct_fpr", "false_accusations", "false_accusation_upper95"):
                assert key in row
            assert set(row["per_attack"]) == {
                "extract-probs-other-arch",
                "independent-overlap0.5-other-arch",
                *degenerate,
            }
    assert main(["bench", "-c", str(config), "--methods", "akh", "--no-progress"]) == 2  # unknown method: one line
    sys.path.insert(0, str(REPO))
    try:
        from benchmarks.bench_tables import main as tables
    finally:
        sys.path.remove(str(REPO))
    assert tables(["--results", str(out), "--out", str(tmp_path / "t.md")]) == 0
    text = (tmp_path / "t.md").read_text()
    assert "## Per attack kind at 5 queries" in text and "## Per attack kind at 20 queries" in text
    assert "| extract-probs-other-arch |" in text and "| akh_labels | " in text


def test_merge_adds_methods_to_results_of_the_same_benchmark(tmp_path):
    from fpenc.bench.command import merge_results
    from fpenc.errors import ConfigError

    base = {"models": [{"id": "a"}], "reference_models": ["r"], "alpha": 0.01, "budgets": [20]}
    old = {**base, "methods": {"fpenc": 1, "akh_labels": 2}, "command": "fpenc bench -c x"}
    new = {**base, "methods": {"fpenc": 3, "fpenc_ranked": 4}, "command": "fpenc bench -c x --methods fpenc --merge"}
    merged = merge_results(old, new, tmp_path / "b.json")
    assert merged["methods"] == {"fpenc": 3, "akh_labels": 2, "fpenc_ranked": 4}
    assert merged["command"] == "fpenc bench -c x && fpenc bench -c x --methods fpenc --merge"
    with pytest.raises(ConfigError, match="holds another benchmark \\(models differ\\)"):
        merge_results({**old, "models": []}, new, tmp_path / "b.json")


def combine_tests_main():
    """``benchmarks/combine_tests.py``'s ``main`` (benchmarks/ is not a package on the path)."""
    sys.path.insert(0, str(REPO))
    try:
        from benchmarks.combine_tests import main
    finally:
        sys.path.remove(str(REPO))
    return main


def test_intersection_union_accuses_only_what_both_tests_accuse(tmp_path):
    iut = combine_tests_main()
    models = [
        {"id": "copy", "positive": True, "kind": "prune"},
        {"id": "copy2", "positive": True, "kind": "prune"},
        {"id": "ind", "positive": False, "kind": "independent"},
        {"id": "ind2", "positive": False, "kind": "independent"},
    ]

    def results(p_by_id: dict) -> dict:
        entry = {"queries": 10, "scores": {i: [0.0, p] for i, p in p_by_id.items()}}
        return {"models": models, "alpha": 0.01, "budgets": [20], "methods": {"m": {"budgets": {"10": entry}}}}

    # copy: both accuse; copy2: only a; ind: only b accuses (a false accusation of b alone)
    (tmp_path / "a.json").write_text(json.dumps(results({"copy": 0.001, "copy2": 0.002, "ind": 0.5, "ind2": 0.9})))
    (tmp_path / "b.json").write_text(json.dumps(results({"copy": 0.003, "copy2": 0.2, "ind": 0.004, "ind2": 0.8})))
    out = tmp_path / "iut.json"
    assert iut(["--a", f"{tmp_path / 'a.json'}:m", "--b", f"{tmp_path / 'b.json'}:m", "--out", str(out)]) == 0
    r = json.loads(out.read_text())["budgets"]["20"]
    assert r["queries"] == 20 and r["false_accusations"] == 0 and r["detected"] == 0.5
    assert r["scores"]["ind"][1] == 0.5 and r["scores"]["copy2"][1] == 0.2  # max(p_a, p_b)
    assert r["auc"] == 1.0  # -log10 max p: copies 2.52, 0.70 above independents 0.30, 0.05


def test_zsum_standardises_each_test_by_its_references_and_tests_the_sum(tmp_path):
    combine = combine_tests_main()
    from fpenc.verdict import prediction_pvalue

    models = [
        {"id": "copy", "positive": True, "kind": "prune"},
        {"id": "ind", "positive": False, "kind": "independent"},
    ]

    def results(budget: int, scores: dict, ref: list) -> dict:
        entry = {"queries": budget, "scores": {i: [s, 0.5] for i, s in scores.items()}, "reference_scores": ref}
        return {
            "models": models,
            "alpha": 0.01,
            "budgets": [budget],
            "methods": {"m": {"budgets": {str(budget): entry}}},
        }

    ra, rb = [0.2, 0.3, 0.4, 0.3], [0.5, 0.7, 0.6, 0.6]
    (tmp_path / "a.json").write_text(json.dumps(results(100, {"copy": 0.8, "ind": 0.35}, ra)))
    (tmp_path / "b.json").write_text(json.dumps(results(200, {"copy": 0.9, "ind": 0.55}, rb)))
    out = tmp_path / "z.json"
    args = ["--a", f"{tmp_path / 'a.json'}:m", "--b", f"{tmp_path / 'b.json'}:m", "--rule", "zsum"]
    assert combine([*args, "--pairs", "100:200", "--out", str(out)]) == 0
    r = json.loads(out.read_text())["budgets"]["100:200"]
    # naive reference: z by hand (sample sd), the same prediction test on the references' sums
    za = [(x - 0.3) / np.std(ra, ddof=1) for x in (0.8, 0.35, *ra)]
    zb = [(x - 0.6) / np.std(rb, ddof=1) for x in (0.9, 0.55, *rb)]
    sums = [x + y for x, y in zip(za, zb)]
    assert r["scores"]["copy"][0] == pytest.approx(sums[0], abs=1e-4)
    assert r["scores"]["ind"][1] == pytest.approx(prediction_pvalue(sums[1], sums[2:]), rel=1e-3)
    assert r["queries"] == 300 and r["auc"] == 1.0
