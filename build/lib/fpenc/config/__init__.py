"""The pipeline config: dataclasses that describe every stage, read strictly from YAML.

A config file holds a ``pipeline:`` section (read here, by the stage commands) beside the
LightningCLI sections (``trainer``, ``model``, ``data``, ...) used by ``fpenc fit``/``test``.
Several files stack (``--config base.yaml --config overlay.yaml``): mappings merge key by key,
later files win. Unknown keys are errors with a "did you mean" hint, so a typo never silently
falls back to a default.

Modules, each importing only those before it: :mod:`~fpenc.config.schema` (the dataclasses),
:mod:`~fpenc.config.parse` (keys checked with did-you-mean, types by jsonargparse, merging),
:mod:`~fpenc.config.validation` (checks beyond types) and :mod:`~fpenc.config.loader` (YAML
files to a validated :class:`PipelineConfig`). Their public names are re-exported here.
"""

from fpenc.config.loader import LIGHTNING_SECTIONS, load_pipeline_config, load_pipeline_data, load_yaml
from fpenc.config.parse import from_dict, merge, to_dict, unknown_key
from fpenc.config.schema import (
    GRID_DATA,
    GRID_SPLITS,
    OPTIMIZERS,
    ROLES,
    DataConfig,
    ExtractionConfig,
    GridConfig,
    KeyConfig,
    PipelineConfig,
    SetsConfig,
    TrainConfig,
    UAPConfig,
    ZooConfig,
)
from fpenc.config.validation import NAME_PATTERN, validate

__all__ = [
    "GRID_DATA",
    "GRID_SPLITS",
    "LIGHTNING_SECTIONS",
    "NAME_PATTERN",
    "OPTIMIZERS",
    "ROLES",
    "DataConfig",
    "ExtractionConfig",
    "GridConfig",
    "KeyConfig",
    "PipelineConfig",
    "SetsConfig",
    "TrainConfig",
    "UAPConfig",
    "ZooConfig",
    "from_dict",
    "load_pipeline_config",
    "load_pipeline_data",
    "load_yaml",
    "merge",
    "to_dict",
    "unknown_key",
    "validate",
]
