"""Dependencies point one way: ``datamodules`` imports ``fpenc``; inside ``fpenc`` only the
command-line entry ``fpenc/lightning_cli.py`` (the top of the stack) imports ``datamodules``.
And the verify / report path never imports the zoo's training orchestrator."""

from __future__ import annotations

import ast

import pytest

from conftest import REPO

FPENC = REPO / "fpenc"
MAY_IMPORT_DATAMODULES = {FPENC / "lightning_cli.py"}
# reading a run and verifying a suspect: none of these may import fpenc.zoo.builder
VERIFY_PATH = [
    "rundir.py",
    "verification.py",
    "verify_output.py",
    "verdict_api.py",
    "report.py",
    "suspects.py",
    "bundle.py",
    "bundle_format.py",
    "bundle_export.py",
    "calibration.py",
    "sandbox.py",
    "verdict.py",
    "encoder/export.py",
    "encoder/module.py",
    "fingerprint/zoo.py",
    "fingerprint/key.py",
    "uap/report.py",
]


def imported_modules(source: str) -> set[str]:
    """Absolute names of every module ``source`` imports anywhere (top level or inside functions),
    including ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
        ):
            names.add(node.args[0].value)
    return names


def imports_package(source: str, package: str) -> bool:
    return any(n == package or n.startswith(package + ".") for n in imported_modules(source))


def test_checker_finds_imports_wherever_they_are():
    bad = (
        "import os\n\ndef f():\n    if True:\n        from datamodules.image import ImageDataModule\n"
        "    return ImageDataModule\n"
    )
    assert imports_package(bad, "datamodules")
    assert imports_package("import datamodules.datasets as ds\n", "datamodules")
    assert imports_package("from datamodules import ImageDataModule\n", "datamodules")
    assert imports_package("import importlib\nm = importlib.import_module('datamodules.image')\n", "datamodules")
    assert not imports_package("from fpenc.data import datasets  # datamodules\nx = 'datamodules'\n", "datamodules")
    assert imports_package("def g():\n    from fpenc.zoo.builder import build_zoo\n", "fpenc.zoo.builder")
    assert imports_package("from fpenc.zoo import builder\n", "fpenc.zoo.builder")


def test_fpenc_does_not_import_datamodules():
    files = sorted(FPENC.rglob("*.py"))
    assert len(files) > 40
    offenders = [
        str(p.relative_to(REPO))
        for p in files
        if p not in MAY_IMPORT_DATAMODULES and imports_package(p.read_text(), "datamodules")
    ]
    assert not offenders, (
        f"{offenders} import datamodules: fpenc must not depend on it (only "
        "fpenc/lightning_cli.py may); put what they need in fpenc (e.g. fpenc.data)"
    )


@pytest.mark.parametrize("name", VERIFY_PATH)
def test_verify_path_does_not_import_the_zoo_builder(name):
    assert not imports_package((FPENC / name).read_text(), "fpenc.zoo.builder"), (
        f"fpenc/{name} imports fpenc.zoo.builder: read runs with fpenc.rundir instead"
    )


MAX_MODULE_LINES = 300


def test_no_module_is_over_300_lines():
    files = sorted(FPENC.rglob("*.py")) + sorted((REPO / "datamodules").rglob("*.py"))
    assert len(files) > 40
    lengths = {str(p.relative_to(REPO)): len(p.read_text(encoding="utf-8").splitlines()) for p in files}
    long = {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES}
    assert not long, (
        f"{long} (lines): keep every module of fpenc/ and datamodules/ at most {MAX_MODULE_LINES} "
        "lines, one concept per file; split it into modules named after what they hold"
    )
