"""The committed benchmark configs plan as their headers say, and the validation twin shares no
scored model with the sealed benchmark (planning only: nothing is trained)."""

from __future__ import annotations

import pytest

from conftest import REPO
from fpenc.config import load_pipeline_config
from fpenc.zoo.plan import plan_zoo
from fpenc.zoo.sets import assign_sets

DEMO, SEALED, VAL = (
    str(REPO / "configs" / f) for f in ("fmnist_demo.yaml", "bench_fmnist.yaml", "bench_fmnist_val.yaml")
)
OWNER, DESIGN = (str(REPO / "configs" / f) for f in ("owner_copies.yaml", "design_independents.yaml"))


def scored(paths):
    cfg = load_pipeline_config(paths)
    specs, sets = plan_zoo(cfg), assign_sets(cfg)
    return cfg, {s.id: s for s in specs if sets[s.id] == "test"}, sets


def test_sealed_and_validation_benchmarks_are_disjoint_and_sized():
    _, sealed, _ = scored([DEMO, SEALED, OWNER])
    cfg, val, sets = scored([DEMO, VAL, OWNER, DESIGN])
    assert cfg.name == "bench_fmnist_val"
    assert not set(sealed) & set(val)  # no model is scored by both
    assert sum(s.role == "piracy" for s in sealed.values()) == 121
    assert sum(s.role == "homologous" for s in sealed.values()) == 65
    assert sum(s.role == "piracy" for s in val.values()) == 30
    # the design data train, never score
    design = [i for i in sets if "-s500" in i]
    assert len(design) == 7 and {sets[i] for i in design} == {"train"}


@pytest.mark.parametrize("overlay", [OWNER, DESIGN])
def test_overlays_leave_the_scored_set_unchanged(overlay):
    _, base, _ = scored([DEMO, SEALED])
    _, more, _ = scored([DEMO, SEALED, OWNER, overlay] if overlay == DESIGN else [DEMO, SEALED, overlay])
    assert set(base) == set(more)
