"""Errors fpenc reports to a user as one clear line (the CLI prints ``str(err)`` and exits 2).

Every error says what is wrong and what to do about it.
"""

from __future__ import annotations


class FpencError(Exception):
    """Base class: a problem with the user's input or environment, not a bug in fpenc."""


class ConfigError(FpencError, ValueError):
    """A config file or argument is invalid (unknown key, wrong type, unknown name)."""


class DatasetNotFoundError(FpencError, FileNotFoundError):
    """A dataset could not be found in any of the places fpenc looks."""


class WeightsFileError(FpencError):
    """A weights/artifact file is missing, truncated, corrupt or of the wrong kind."""


class UnknownArchitectureError(ConfigError):
    """An architecture name is not in the registry."""
