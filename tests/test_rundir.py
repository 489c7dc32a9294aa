"""``fpenc.rundir.RunDir`` owns the layout of ``runs/<name>/``: the names on disk stay what they
were, and no other module of fpenc or datamodules spells them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO
from fpenc.errors import FpencError
from fpenc.rundir import RunDir, load_zoo_model, victim_entry

# The names on disk (runs made before RunDir must still be read, and the manifest stores some of them).
FILES = (
    "manifest.json",
    "splits.npz",
    "uaps.pt",
    "uap_transfer.json",
    "key.pt",
    "report.json",
    "report.md",
    "similarity_cdf.png",
    "verdict_margins.png",
)
FOLDERS = ("models", "fingerprints", "encoder", "subspace", "verdict_suite")


def test_layout_on_disk_is_unchanged(tmp_path):
    rd = RunDir(tmp_path / "runs" / "demo")
    base = tmp_path / "runs" / "demo"
    assert [
        rd.manifest,
        rd.splits,
        rd.uaps,
        rd.uap_transfer,
        rd.key,
        rd.report_json,
        rd.report_md,
        rd.similarity_cdf,
        rd.verdict_margins,
    ] == [base / name for name in FILES]
    assert (
        rd.model_weights("piracy-fmnist_b-adam-s0") == "models/piracy-fmnist_b-adam-s0.pt"
    )  # as the manifest stores it
    assert rd.weights({"weights": "models/victim.pt"}) == base / "models" / "victim.pt"
    assert rd.fingerprint("victim") == base / "fingerprints" / "victim.pt"
    assert rd.fingerprints_dir == base / "fingerprints"
    assert rd.encoder_dir == base / "encoder" and rd.checkpoint("best") == base / "encoder" / "best.ckpt"
    assert rd.subspace_cache("victim-basis", "abc") == base / "subspace" / "victim-basis-abc.pt"
    assert rd.subspace_results("linf", 0.25, 6) == {
        "json": base / "subspace" / "subspace_linf_eps0.25_n6.json",
        "png": base / "subspace" / "subspace_linf_eps0.25_n6.png",
    }
    assert rd.verdict_suite_dir == base / "verdict_suite"


def test_behaves_like_a_path_where_paths_are_expected(tmp_path):
    rd = RunDir(str(tmp_path))
    assert Path(rd) == tmp_path and rd / "x" == tmp_path / "x" and str(rd) == str(tmp_path)
    assert RunDir(rd) == rd and len({rd, RunDir(tmp_path)}) == 1


def test_readers_of_an_empty_run_dir(tmp_path):
    assert RunDir(tmp_path).load_manifest()["models"] == []
    with pytest.raises(FpencError, match="no victim in .*run `fpenc zoo"):
        victim_entry(tmp_path)
    with pytest.raises(FpencError):
        load_zoo_model({"weights": "models/victim.pt", "sha256": "0" * 64}, tmp_path)


def _is_documentation(node: ast.AST, parents: dict) -> bool:
    """A docstring, or (part of) an argparse ``help=`` / ``description=`` text."""
    parent = parents.get(node)
    if (
        isinstance(parent, ast.Expr)
        and isinstance(parents.get(parent), (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and parents[parent].body[0] is parent
    ):
        return True
    while parent is not None:
        if isinstance(parent, ast.keyword) and parent.arg in ("help", "description"):
            return True
        parent = parents.get(parent)
    return False


def layout_literals(source: str) -> list[str]:
    """The run-directory names that ``source`` spells in code (docstrings, help texts and comments aside):
    a file name anywhere in a string, or a folder name joined onto a path (``x / "models"``,
    ``f"models/{id}.pt"``)."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and not _is_documentation(node, parents):
            found += [name for name in FILES if name in node.value]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and isinstance(side.value, str):
                    found += [name for name in FOLDERS if side.value.split("/")[0] == name]
        if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            head = str(node.values[0].value)
            found += [name for name in FOLDERS if head.startswith(name + "/") or head.startswith(name + "_")]
    return found


def test_scanner_finds_layout_names():
    assert layout_literals('p = run_dir / "manifest.json"\n') == ["manifest.json"]
    assert layout_literals("print(f\"{run_dir / 'key.pt'}\")\n") == ["key.pt"]
    assert layout_literals('p = run_dir / "encoder" / f"{name}.ckpt"\n') == ["encoder"]
    assert layout_literals('w = f"models/{spec.id}.pt"\n') == ["models"]
    assert layout_literals('s = f"subspace_{norm}_eps{eps:g}"\n') == ["subspace"]
    harmless = (
        '"""Reads runs/<name>/manifest.json."""\n'
        'records["encoder"] = 1\nx = payload["fingerprints"]\n'
        'p = sub.add_parser("subspace", help="writes " "runs/<name>/key.pt")\n'
    )
    assert layout_literals(harmless) == []


def test_only_rundir_spells_the_layout():
    files = sorted([*(REPO / "fpenc").rglob("*.py"), *(REPO / "datamodules").rglob("*.py")])
    offenders = {
        str(p.relative_to(REPO)): names
        for p in files
        if p != REPO / "fpenc" / "rundir.py"
        for names in [layout_literals(p.read_text())]
        if names
    }
    assert not offenders, f"run-directory names spelled outside fpenc/rundir.py (use RunDir): {offenders}"
