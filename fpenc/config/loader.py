"""Reading the ``pipeline:`` sections of stacked YAML config files into a validated :class:`PipelineConfig`.

A config file holds a ``pipeline:`` section (read here, by the stage commands) beside the
LightningCLI sections (``trainer``, ``model``, ``data``, ...) used by ``fpenc fit``/``test``.
Several files stack (``--config base.yaml --config overlay.yaml``): mappings merge key by key,
later files win.
"""

from __future__ import annotations

from pathlib import Path

from fpenc.config.parse import from_dict, merge, unknown_key
from fpenc.config.schema import PipelineConfig
from fpenc.config.validation import validate
from fpenc.errors import ConfigError

LIGHTNING_SECTIONS = ("trainer", "model", "data", "seed_everything", "ckpt_path", "optimizer", "lr_scheduler")


SHIPPED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
"""The configs shipped in the package (``fpenc/configs``: a link to the repository's ``configs/``, copied into a
wheel): ``-c fmnist_demo`` finds one from any folder."""


def resolve_config(path: str | Path) -> Path:
    """``path`` when it is a file, else a shipped config of that name (``fmnist_demo`` or
    ``fmnist_demo.yaml``); a missing one names the shipped configs."""
    path = Path(path)
    if path.is_file() or path.parent != Path("."):
        return path
    for candidate in (SHIPPED_CONFIGS / path.name, SHIPPED_CONFIGS / f"{path.name}.yaml"):
        if candidate.is_file():
            return candidate
    return path


def load_yaml(path: str | Path) -> dict:
    import yaml

    path = resolve_config(path)
    if not path.is_file():
        shipped = sorted(p.stem for p in SHIPPED_CONFIGS.glob("*.yaml"))
        raise ConfigError(
            f"config file {path} does not exist; give a path, or the name of a shipped config: {', '.join(shipped)}"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save the config as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


PATH_KEYS = (("zoo", "victim", "weights"), ("data", "root"), ("data", "victim_indices"))
"""Keys of the ``pipeline`` section that name files: a relative one starts at its config file's folder."""


def resolve_paths(section: dict, config_path: str | Path) -> dict:
    """``section`` (one file's ``pipeline``) with its relative :data:`PATH_KEYS` made relative to the
    folder of ``config_path`` (kept as written when it exists from the working directory too, so a
    path that worked before still means the same file)."""
    import copy

    section = copy.deepcopy(section)
    for keys in PATH_KEYS:
        node = section
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or not isinstance(node.get(keys[-1]), str):
            continue
        value = Path(node[keys[-1]]).expanduser()
        if not value.is_absolute() and not value.exists():
            node[keys[-1]] = str(Path(config_path).parent / value)
    return section


def load_pipeline_data(paths: list[str | Path], overrides: dict | None = None) -> dict:
    """The ``pipeline`` sections of ``paths`` stacked (later files win) as plain data, keys and types
    checked (:func:`fpenc.config.parse.from_dict`), ``name`` defaulting to the last file's stem; not
    validated yet (``fpenc fit`` hands this to LightningCLI, which builds the config from it)."""
    if not paths:
        raise ConfigError("no config given: pass --config configs/fmnist_demo.yaml (see configs/)")
    merged: dict = {}
    for path in map(resolve_config, paths):
        data = load_yaml(path)
        for key in data:
            if key != "pipeline" and key not in LIGHTNING_SECTIONS:
                raise unknown_key(key, ["pipeline", *LIGHTNING_SECTIONS], str(path))
        merged = merge(merged, resolve_paths(data.get("pipeline") or {}, path))
    if overrides:
        merged = merge(merged, overrides)
    if merged.get("name") is None:
        merged["name"] = Path(paths[-1]).stem
    from_dict(PipelineConfig, merged, "pipeline")  # unknown keys and wrong types: one-line errors here
    return merged


def load_pipeline_config(paths: list[str | Path], overrides: dict | None = None) -> PipelineConfig:
    """Read, stack and validate the ``pipeline`` sections of ``paths`` (later files win)."""
    return validate(from_dict(PipelineConfig, load_pipeline_data(paths, overrides), "pipeline"))
