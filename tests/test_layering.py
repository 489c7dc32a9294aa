"""Dependencies point one way: ``datamodules`` imports ``fpenc``; inside ``fpenc`` only the
command-line entry ``fpenc/lightning_cli.py`` (the top of the stack) imports ``datamodules``."""

from __future__ import annotations

import ast

from conftest import REPO

FPENC = REPO / "fpenc"
MAY_IMPORT_DATAMODULES = {FPENC / "lightning_cli.py"}


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
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
            names.add(node.args[0].value)
    return names


def imports_package(source: str, package: str) -> bool:
    return any(n == package or n.startswith(package + ".") for n in imported_modules(source))


def test_checker_finds_imports_wherever_they_are():
    bad = ("import os\n\ndef f():\n    if True:\n        from datamodules.image import ImageDataModule\n"
           "    return ImageDataModule\n")
    assert imports_package(bad, "datamodules")
    assert imports_package("import datamodules.datasets as ds\n", "datamodules")
    assert imports_package("from datamodules import ImageDataModule\n", "datamodules")
    assert imports_package("import importlib\nm = importlib.import_module('datamodules.image')\n", "datamodules")
    assert not imports_package("from fpenc.data import datasets  # datamodules\nx = 'datamodules'\n", "datamodules")


def test_fpenc_does_not_import_datamodules():
    files = sorted(FPENC.rglob("*.py"))
    assert len(files) > 40
    offenders = [str(p.relative_to(REPO)) for p in files
                 if p not in MAY_IMPORT_DATAMODULES and imports_package(p.read_text(), "datamodules")]
    assert not offenders, (f"{offenders} import datamodules: fpenc must not depend on it (only "
                           "fpenc/lightning_cli.py may); put what they need in fpenc (e.g. fpenc.data)")

