"""The zoo's ``manifest.json``: one entry per model, what it is and how good it is.

Entry keys: id, role (victim | piracy | homologous), architecture, optimizer, seed, batch_size,
epochs, split, parent, test_accuracy, agreement, recovery_rate, queries, train_seconds,
weights (path relative to the manifest), sha256, parent_sha256, spec (everything that
determines the weights; a changed spec means the model is rebuilt).
"""

from __future__ import annotations

from pathlib import Path

from fpenc.errors import WeightsFileError
from fpenc.io import read_json, write_json

FORMAT = "fpenc-zoo/1"


def load_manifest(path: str | Path) -> dict:
    """Read a manifest; a missing file gives an empty one."""
    path = Path(path)
    if not path.exists():
        return {"format": FORMAT, "models": []}
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("models"), list):
        raise WeightsFileError(f"{path} is not an fpenc zoo manifest ({FORMAT}); move it away and rerun `fpenc zoo`")
    return data


def save_manifest(path: str | Path, manifest: dict) -> None:
    write_json(path, manifest)


def entries_by_id(manifest: dict) -> dict[str, dict]:
    return {m["id"]: m for m in manifest.get("models", [])}


def format_table(models: list[dict]) -> str:
    """A fixed-width text table of the zoo (what ``fpenc zoo`` prints)."""
    cols = [
        ("id", "id", "{}"),
        ("role", "role", "{}"),
        ("set", "set", "{}"),
        ("arch", "architecture", "{}"),
        ("opt", "optimizer", "{}"),
        ("seed", "seed", "{}"),
        ("bs", "batch_size", "{}"),
        ("ep", "epochs", "{}"),
        ("test_acc", "test_accuracy", "{:.4f}"),
        ("agree", "agreement", "{:.4f}"),
        ("recovery", "recovery_rate", "{:.4f}"),
        ("queries", "queries", "{}"),
        ("train_s", "train_seconds", "{:.1f}"),
    ]
    rows = [[head for head, _, _ in cols]]
    for m in models:
        rows.append(["-" if m.get(key) is None else fmt.format(m[key]) for _, key, fmt in cols])
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
