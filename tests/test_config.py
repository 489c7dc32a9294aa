import textwrap

import pytest

from fpenc.config import load_pipeline_config
from fpenc.errors import ConfigError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_configs_load():
    demo = load_pipeline_config(["configs/fmnist_demo.yaml"])
    assert demo.name == "fmnist_demo" and demo.zoo.victim.architecture == "fmnist_a"
    paper = load_pipeline_config(["configs/fmnist_paper.yaml"])

    def count(grids):
        return sum(len(g.architectures) * len(g.optimizers) * len(g.seeds) for g in grids)

    paper_archs = {"fmnist_b", "fmnist_c", "fmnist_d", "fmnist_e"}
    assert count(g for g in paper.zoo.grids if g.split != "reference" and set(g.architectures) == paper_archs) == 240
    assert count(paper.zoo.grids) == 240 + 12 + 6  # + the encoder's arc-A models + the reference population


def test_overlay_stacks_and_name_defaults_to_stem(tmp_path):
    base = write(
        tmp_path,
        "base.yaml",
        """
        pipeline:
          zoo:
            victim: {architecture: fmnist_a, epochs: 4}
    """,
    )
    over = write(
        tmp_path,
        "tiny.yaml",
        """
        pipeline:
          zoo:
            victim: {epochs: 1}
        trainer: {max_epochs: 3}
    """,
    )
    cfg = load_pipeline_config([base, over])
    assert cfg.name == "tiny"
    assert cfg.zoo.victim.epochs == 1 and cfg.zoo.victim.architecture == "fmnist_a"


@pytest.mark.parametrize(
    "text, match",
    [
        ("pipeline:\n  zoo:\n    victm: {}\n", r"pipeline.zoo: unknown key 'victm' \(did you mean 'victim'\?\)"),
        ("pipline:\n  seed: 1\n", r"unknown key 'pipline' \(did you mean 'pipeline'\?\)"),
        ("pipeline:\n  seed: one\n", r"pipeline.seed: expected an integer"),
        ("pipeline:\n  zoo:\n    victim: {architecture: resnet99}\n", r"unknown architecture 'resnet99'.*known:"),
        ("pipeline:\n  zoo:\n    victim: {optimizer: adamw}\n", r"unknown optimizer 'adamw'"),
        ("pipeline:\n  zoo:\n    grids: [{role: pirate}]\n", r"unknown role 'pirate'"),
        ("pipeline:\n  data: {homologous_overlap: 1.5}\n", r"homologous_overlap must be in \[0, 1\]"),
        ("pipeline: [1, 2\n", r"not valid YAML"),
        (
            "pipeline:\n  zoo:\n    grids: [{architectures: [fmnist_b], options: {chanels: [8]}}]\n",
            r"grids\[0\].options \(options of fmnist_b\): unknown key 'chanels' \(did you mean 'channels'\?\)",
        ),
        ("pipeline:\n  zoo:\n    victim: {options: [8, 16]}\n", r"victim.options: expected a mapping"),
        ("pipeline:\n  seed: 1.5\n", r"pipeline.seed: expected an integer, got '1.5'"),
        ("pipeline:\n  zoo:\n    grids: [{seeds: 3}]\n", r"pipeline.zoo.grids.seeds: expected a list"),
        ("pipeline:\n  zoo:\n    grids: [{sed: [3]}]\n", r"grids\[0\]: unknown key 'sed' \(did you mean 'seeds'\?\)"),
        ("pipeline:\n  sets: {train_architecture: [fmnist_a]}\n", r"did you mean 'train_architectures'"),
        ("pipeline:\n  sets: {train_architectures: [resnet99]}\n", r"sets.train_architectures: unknown architecture"),
        ("pipeline:\n  zoo:\n    grids: [{name: a}, {name: a}]\n", r"grid names must be unique"),
        ("pipeline:\n  key: {reference: [homologous-x]}\n", r"reference is used by no other selection"),
        (
            "pipeline:\n  key: {selection: idiosyncratic, reference: [h], reference_quorum: 1.5}\n",
            r"reference_quorum must be in \(0, 1\]",
        ),
    ],
)
def test_bad_configs_give_clear_errors(tmp_path, text, match):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError, match=match):
        load_pipeline_config([path])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_pipeline_config([tmp_path / "nope.yaml"])


def test_architecture_options_reach_the_plan(tmp_path):
    from fpenc.zoo.builder import plan_zoo

    path = write(
        tmp_path,
        "narrow.yaml",
        """
        pipeline:
          zoo:
            victim: {architecture: fmnist_a}
            grids: [{role: homologous, architectures: [fmnist_c], options: {channels: [8, 16]}}]
    """,
    )
    specs = plan_zoo(load_pipeline_config([path]))
    assert specs[0].options == {} and specs[1].options == {"channels": [8, 16]}


@pytest.mark.parametrize("overlays", [[], ["configs/fmnist_converged.yaml"]])
def test_shipped_encoder_layouts_are_consistent(overlays):
    """The shipped configs' sets: the key's reference models are encoder-training models, and the
    verdict has >= 4 reference models, apart from every other set, among them the victim's
    architecture on the victim's own data: caught here, not 10 minutes into `make demo`."""
    from fpenc.zoo.plan import plan_zoo
    from fpenc.zoo.sets import assign_sets, ids_in, key_reference_ids

    cfg = load_pipeline_config(["configs/fmnist_demo.yaml", *overlays])
    sets = assign_sets(cfg)
    roles = {s.id: s.role for s in plan_zoo(cfg)}
    key_ref = key_reference_ids(cfg, sets)
    assert key_ref and all(sets[i] == "train" and roles[i] == "homologous" for i in key_ref)
    reference = ids_in(sets, "reference")
    assert len(reference) >= 4 and all(roles[i] == "homologous" for i in reference)
    assert any(
        i.startswith(f"homologous-{cfg.zoo.victim.architecture}-") and i.endswith("-victimdata") for i in reference
    )
    assert ids_in(sets, "test") and ids_in(sets, "val"), "no unseen test models, or nothing to pick the checkpoint"


def test_named_grids_merge_by_name(tmp_path):
    base = write(
        tmp_path,
        "base.yaml",
        """
        pipeline:
          zoo:
            grids:
              - {name: copies, role: piracy, architectures: [fmnist_a], seeds: [0, 1]}
              - {name: test, role: homologous, architectures: [fmnist_c]}
    """,
    )
    over = write(
        tmp_path,
        "over.yaml",
        """
        pipeline:
          zoo:
            grids:
              - {name: copies, epochs: 7}
              - {name: extra, role: homologous, architectures: [fmnist_d]}
    """,
    )
    grids = load_pipeline_config([base, over]).zoo.grids
    assert [g.name for g in grids] == ["copies", "test", "extra"]
    assert grids[0].epochs == 7 and grids[0].seeds == [0, 1] and grids[0].role == "piracy"
    unnamed = write(tmp_path, "unnamed.yaml", "pipeline:\n  zoo:\n    grids: [{role: homologous}]\n")
    assert [g.name for g in load_pipeline_config([base, unnamed]).zoo.grids] == [None]  # a plain list replaces


@pytest.mark.parametrize(
    "line, message",
    [
        ("name: ../../x", "must be one folder name"),
        ("name: /abs/path", "must be one folder name"),
        ("uap: {eps: .nan}", "pipeline.uap.eps must be a finite number"),
        ("seed: -1", "pipeline.seed must be >= 0"),
        ("uap: {lr: -0.1}", "pipeline.uap.lr must be > 0"),
        ("zoo: {victim: {lr: .inf}}", "pipeline.zoo.victim.lr must be a finite number"),
        ("zoo: {grids: [{role: homologous, lr: -1.0}]}", "lr must be a finite number > 0"),
        ("zoo: {grids: [{role: homologous, data: mine}]}", "unknown training data 'mine'"),
        ("zoo: {grids: [{role: piracy, split: reference}]}", "must be independent"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path, line, message):
    from fpenc.config import load_pipeline_config
    from fpenc.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text(f"pipeline:\n  {line}\n")
    with pytest.raises(ConfigError, match=message):
        load_pipeline_config([path])


def test_runs_dir_that_is_a_file_is_refused(tmp_path):
    from fpenc.config import load_pipeline_config
    from fpenc.errors import ConfigError

    (tmp_path / "afile").write_text("x")
    path = tmp_path / "c.yaml"
    path.write_text(f"pipeline:\n  runs_dir: {tmp_path / 'afile'}\n")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        load_pipeline_config([path])


def test_non_utf8_config_is_one_line_error(tmp_path):
    from fpenc.config import load_pipeline_config
    from fpenc.errors import ConfigError

    path = tmp_path / "latin1.yaml"
    path.write_bytes("pipeline:\n  name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_pipeline_config([path])


def test_shipped_configs_by_name_from_any_folder(tmp_path, monkeypatch):
    from fpenc.config import load_pipeline_data
    from fpenc.config.loader import SHIPPED_CONFIGS, resolve_config
    from fpenc.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    assert resolve_config("fmnist_demo") == SHIPPED_CONFIGS / "fmnist_demo.yaml"
    assert load_pipeline_data(["fmnist_demo"])["name"] == "fmnist_demo"
    with pytest.raises(ConfigError, match="the name of a shipped config: .*fmnist_demo"):
        load_pipeline_data(["fmnist_dem"])
    (tmp_path / "fmnist_demo").write_text("pipeline: {name: mine}\n")  # a file of that name wins
    assert load_pipeline_data(["fmnist_demo"])["name"] == "mine"
