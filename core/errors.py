"""Errors the project raises for bad user input.

Every error a user can provoke with a file, a folder, a setting or a
checkpoint derives from :class:`NeuromixError`, so the CLI and the app can
catch one type and show its message instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class NeuromixError(Exception):
    """Base class of all documented, user-facing errors."""


class AudioInputError(NeuromixError, ValueError):
    """An audio file or folder cannot be used; the message names it and why."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        super().__init__(f"{path}: {message}" if path is not None else message)


class CheckpointError(NeuromixError, ValueError):
    """A checkpoint file is not a valid neuromix safetensors checkpoint."""


class ConfigError(NeuromixError, ValueError):
    """A config, settings, patch or score document is invalid (names the field)."""
