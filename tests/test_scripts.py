"""The scripts of benchmarks/ (timing) and experiments/ (what the method achieves).

* each is one command whose ``--help`` works (run all at once, in parallel subprocesses: ~10-30 s
  in all, bounded by 120 s each);
* each reads a run's artifacts through the package's loaders (fpenc.rundir.RunDir, load_key,
  load_bank, ...): no run-directory file name spelled in a script, no ``torch.load`` without
  ``weights_only=True``;
* benchmarks/harness.py writes the results JSON with the command, seed, versions, machine and time;
* every results file, overlay config and script that README.md and docs/*.md (and the scripts
  and overlays themselves) point to exists where they say.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import REPO

SCRIPT_DIRS = ("benchmarks", "experiments")
LIBRARIES = {"harness.py", "own_model.py"}  # imported by the scripts (and by fpenc: a class path), not commands
SCRIPTS = sorted(p for d in SCRIPT_DIRS for p in (REPO / d).glob("*.py") if p.name not in LIBRARIES)
SOURCES = sorted(p for d in SCRIPT_DIRS for p in (REPO / d).glob("*.py"))
HELP_TIMEOUT_S = 120

# fpenc.rundir spells these (and only it): a script names them through RunDir's properties
RUN_FILE_NAMES = (
    "manifest.json",
    "splits.npz",
    "uaps.pt",
    "uap_transfer.json",
    "key.pt",
    "fingerprints/",
    "report.json",
    "report.md",
    "similarity_cdf.png",
    "verdict_margins.png",
    "protect.yaml",
    "owner_weights.pt",
)
RUN_DIR_NAMES = {"fingerprints", "models", "encoder", "subspace", "verdict_suite", *RUN_FILE_NAMES}


def _rel(path) -> str:
    return str(path.relative_to(REPO))


def test_scripts_found():
    names = {_rel(p) for p in SCRIPTS}
    assert {"benchmarks/zoo_speed.py", "experiments/verdict_suite.py"} <= names, names


@pytest.fixture(scope="module")
def help_runs() -> dict[str, tuple[int | None, str, float]]:
    """``{script: (exit code or None on timeout, output, seconds)}`` of ``python <script> --help``,
    all started at once (each a few seconds of imports: run side by side, not one after another)."""
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONDONTWRITEBYTECODE": "1"}
    procs = {}
    for path in SCRIPTS:
        procs[_rel(path)] = (
            subprocess.Popen(
                [sys.executable, str(path), "--help"],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
            time.perf_counter(),
        )
    out = {}
    for name, (proc, start) in procs.items():
        try:
            text, _ = proc.communicate(timeout=max(1.0, HELP_TIMEOUT_S - (time.perf_counter() - start)))
            out[name] = (proc.returncode, text, time.perf_counter() - start)
        except subprocess.TimeoutExpired:
            proc.kill()
            text, _ = proc.communicate()
            out[name] = (None, text, time.perf_counter() - start)
    return out


@pytest.mark.parametrize("script", [_rel(p) for p in SCRIPTS])
def test_help(help_runs, script):
    rc, text, _seconds = help_runs[script]
    assert rc is not None, f"{script} --help took over {HELP_TIMEOUT_S} s:\n{text[-2000:]}"
    assert rc == 0, f"{script} --help exited {rc}:\n{text[-2000:]}"
    assert "usage:" in text


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (module, classes, functions): prose may name a run's files."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                out.add(id(first.value))
    return out


def artifact_problems(source: str) -> list[str]:
    """Run-directory file names spelled in code, ``run / "<name>"`` paths, and ``torch.load`` calls
    without ``weights_only=True``, as ``line: what``."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            for name in RUN_FILE_NAMES:
                if name in node.value:
                    problems.append(f"{node.lineno}: run-directory file name {name!r} (use fpenc.rundir.RunDir)")
        elif (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Div)
            and isinstance(node.right, ast.Constant)
            and node.right.value in RUN_DIR_NAMES
        ):
            problems.append(f"{node.lineno}: path / {node.right.value!r} (use fpenc.rundir.RunDir)")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "torch"
        ):
            safe = any(
                k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords
            )
            if not safe:
                problems.append(f"{node.lineno}: torch.load without weights_only=True (run artifacts: fpenc's loaders)")
    return problems


def test_artifact_check_catches_the_old_ways():
    bad = (
        'import torch\nx = torch.load(run / "key.pt")\ny = json.loads((run / "manifest.json").read_text())\n'
        'z = torch.load(p, weights_only=False)\nw = run / "fingerprints" / f"{i}.pt"\n'
    )
    found = artifact_problems(bad)
    assert sum("torch.load" in p for p in found) == 2 and any("'key.pt'" in p for p in found)
    assert any("'manifest.json'" in p for p in found) and any("/ 'fingerprints'" in p for p in found)
    ok = (
        '"""Reads runs/<name>/manifest.json."""\nimport torch\nt = torch.load(p, weights_only=True)\nm = run.manifest\n'
    )
    assert artifact_problems(ok) == []


@pytest.mark.parametrize("script", [_rel(p) for p in SOURCES])
def test_artifacts_read_through_the_package(script):
    problems = artifact_problems((REPO / script).read_text())
    assert not problems, f"{script}:\n" + "\n".join(problems)


def test_harness_writes_the_record(tmp_path):
    sys.path.insert(0, str(REPO))
    try:
        from benchmarks.harness import write_results
    finally:
        sys.path.remove(str(REPO))
    out = tmp_path / "sub" / "r.json"
    write_results(out, {"x": 1, "machine": {"device": "cpu"}}, seed=7, argv=["--steps", "5"])
    got = json.loads(out.read_text())
    assert got["x"] == 1 and got["seed"] == 7 and got["command"].endswith("--steps 5")
    assert {"python", "torch", "numpy", "fpenc"} <= set(got["versions"])
    assert {"platform", "cpu_count", "device"} <= set(got["machine"])
    assert got["timestamp_utc"].endswith("+00:00")
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]  # atomic: no temporary file left


def test_demo_threads_compares_verdicts_and_margins(tmp_path):
    sys.path.insert(0, str(REPO))
    try:
        from benchmarks.demo_threads import main
    finally:
        sys.path.remove(str(REPO))

    def report(path, verdict_c, margin_c):
        models = [
            {
                "id": "a",
                "split": "test",
                "role": "piracy",
                "verdict": "derived",
                "p_value": 1e-4,
                "agreement": 0.9,
                "margin": 0.2,
            },
            {
                "id": "c",
                "split": "test",
                "role": "homologous",
                "verdict": verdict_c,
                "p_value": 0.02,
                "agreement": 0.7,
                "margin": margin_c,
            },
        ]
        summary = {"alpha": 0.01, "piracy_derived": "1/1", "homologous_derived": "0/1", "models": models}
        path.write_text(json.dumps(summary))
        return str(path)

    one, two, three = (
        report(tmp_path / "1.json", "not shown", -0.03),
        report(tmp_path / "2.json", "not shown", -0.02),
        report(tmp_path / "3.json", "derived", 0.001),
    )
    out = tmp_path / "cmp.json"
    assert main(["--reports", one, two, "--labels", "1", "2", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["same_verdicts"] and got["smallest_abs_margin"] == pytest.approx(0.02) and got["models_compared"] == 2
    assert main(["--reports", one, three, "--labels", "1", "3", "--out", str(out)]) == 1
    assert json.loads(out.read_text())["verdicts_that_differ"] == ["c"]


# -- paths named in the documentation ----------------------------------------------------------------
# results, overlays and scripts of benchmarks/ and experiments/ (a "<name>" template is not a file)
PATH_RE = re.compile(r"(?<![\w/.])(?:\.\./)?((?:benchmarks|experiments)/(?:(?:results|configs)/[\w.*<>-]*|[\w-]+\.py))")
# named in docs but never committed: each must still be missing (strict), so that adding it fails here
NOT_YET_COMMITTED: dict[str, str] = {}


def documented_paths() -> dict[str, list[str]]:
    """``{path: [where it is named]}`` over README.md, docs/*.md, the scripts and their overlays."""
    files = [
        REPO / "README.md",
        *sorted((REPO / "docs").glob("*.md")),
        *SOURCES,
        *sorted(p for d in SCRIPT_DIRS for p in (REPO / d / "configs").glob("*.yaml")),
    ]
    out: dict[str, list[str]] = {}
    for f in files:
        if not f.exists():
            continue
        for i, line in enumerate(f.read_text().splitlines(), 1):
            for m in PATH_RE.finditer(line):
                path = m.group(1).rstrip(".:,;")
                if "<" in path:
                    continue
                out.setdefault(path, []).append(f"{_rel(f)}:{i}")
    return out


def _written_by_scripts(path: str) -> bool:
    """A results file a script's own docstring names as its output (``--out``) need not exist yet."""
    return path.startswith(("benchmarks/results/", "experiments/results/")) and not any(
        w.startswith(("README.md", "docs/")) for w in DOCUMENTED.get(path, [])
    )


DOCUMENTED = documented_paths()


def _exists(path: str) -> bool:
    return any(REPO.glob(path)) if "*" in path else (REPO / path).exists()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=f"not committed yet: {NOT_YET_COMMITTED[p]}"))
        if p in NOT_YET_COMMITTED
        else p
        for p in sorted(DOCUMENTED)
        if not _written_by_scripts(p)
    ],
)
def test_documented_path_exists(path):
    assert _exists(path), f"{path} is named in {', '.join(DOCUMENTED[path])} but does not exist"


def test_docs_name_the_moved_results():
    """The analyses' results live in experiments/results/ and the docs say so."""
    named = set(DOCUMENTED)
    assert "experiments/results/key_signal_converged.json" in named
    assert not any(p.startswith("benchmarks/results/") and ("signal" in p or "verify_zoo" in p) for p in named)
