"""`configs/fmnist_paper.yaml` runs `fpenc zoo`, `fit` and `test` on its own: here with its grids
shrunk to tiny ones (same roles, data and splits; 1 epoch, tiny data) and a smaller key and
encoder, everything else (the key's reference models, the encoder's split, the verdict) as shipped."""

from __future__ import annotations

import json
import textwrap

import pytest

from conftest import REPO, make_fmnist_files, tiny_grid
from fpenc.cli import main

pytestmark = pytest.mark.slow  # runs zoo, fit and test end to end


def test_paper_config_runs_zoo_fit_and_test_on_its_own(tmp_path):
    data = make_fmnist_files(tmp_path / "fmnist")
    opts = "sgd, adam"
    grids = [
        tiny_grid("piracy", "fmnist_a", opts, "0, 1, 2"),
        tiny_grid("homologous", "fmnist_a", opts, "0, 1, 2", more="data: victim"),
        tiny_grid("homologous", "fmnist_a", "adam, sgd", "100, 101", more="split: reference, data: victim"),
        tiny_grid("homologous", "fmnist_b, fmnist_d", "adam", "100", more="split: reference"),
        tiny_grid("piracy", "fmnist_c", "adam", "0"),
        tiny_grid("homologous", "fmnist_c", "adam", "0"),
    ]
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(
        textwrap.dedent(f"""\
        pipeline:
          runs_dir: {tmp_path / "runs"}
          data: {{root: {data}}}
          zoo:
            victim: {{epochs: 2, batch_size: 64}}
            extraction: {{adversarial_queries: 50}}
            grids:
        """)
        + "".join(f"      - {g}\n" for g in grids)
        + textwrap.dedent(f"""\
          uap: {{num_uaps: 2, steps: 5, batch_size: 64, eps: 0.3, holdout: 50}}
          key: {{num_datapoints: 4, num_views: 2, neighbours: 2, reference_quorum: 0.2}}  # tiny data: few errors
        data: {{batch_size: 256, progress: false}}
        model: {{hidden_dim: 32, embed_dim: 16, proj_dim: 8, sanity_images: 40, alpha: 0.4, export_dir: {tmp_path / "checkpoints"}}}
        trainer: {{max_epochs: 2, accelerator: cpu, logger: false, enable_progress_bar: false, enable_model_summary: false}}
        """)
    )
    cfg = ["--config", str(REPO / "configs/fmnist_paper.yaml"), "--config", str(tiny)]
    assert main(["zoo", *cfg, "--no-progress"]) == 0
    assert main(["fit", *cfg]) == 0
    assert main(["test", *cfg, "--ckpt_path", "best"]) == 0
    # the paper's name, key reference models, encoder split and reference population were used as shipped
    report = json.loads((tmp_path / "runs/fmnist_paper/report.json").read_text())
    splits = {m["id"]: m["split"] for m in report["models"]}
    assert splits["piracy-fmnist_c-adam-s0"] == "test" and splits["homologous-fmnist_c-adam-s0"] == "test"
    assert report["reference_models"] == [
        "homologous-fmnist_a-adam-s100-victimdata",
        "homologous-fmnist_a-adam-s101-victimdata",
        "homologous-fmnist_a-sgd-s100-victimdata",
        "homologous-fmnist_a-sgd-s101-victimdata",
        "homologous-fmnist_b-adam-s100",
        "homologous-fmnist_d-adam-s100",
    ]
    assert (tmp_path / "checkpoints/fmnist_paper.fpenc.safetensors").is_file()
