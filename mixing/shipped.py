"""The trained mixing networks shipped in :mod:`neuromix.checkpoints`.

Shipped files are named ``<family>-<8 hex>.safetensors`` (the hex is the start of the
file's sha256, checked on load by :func:`neuromix.core.checkpoint.load`), each with a
model card ``<family>.md`` beside it. Families: ``console`` (ConsoleNet) and
``blackbox`` (BlackBoxNet). Where several files of a family are present, the newest
(by modification time, then name) is the one used.
"""

from __future__ import annotations

import os
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from torch import nn

from neuromix.core.checkpoint import CheckpointInfo
from neuromix.core.errors import NeuromixError

FAMILIES = ("console", "blackbox")


def checkpoint_folder() -> Traversable:
    """The folder of shipped checkpoints (package data ``neuromix.checkpoints``)."""
    return files("neuromix.checkpoints")


def _mtime(entry: Traversable) -> float:
    try:
        return os.stat(str(entry)).st_mtime
    except OSError:
        return 0.0


def _candidates(family: str) -> list[Traversable]:
    try:
        entries = list(checkpoint_folder().iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [e for e in entries if e.name.startswith(family) and e.name.endswith(".safetensors") and e.is_file()]


def shipped_checkpoints() -> dict[str, Path]:
    """Family name -> path of the checkpoint used for it (families with none are left out)."""
    found = {}
    for family in FAMILIES:
        entries = _candidates(family)
        if entries:
            found[family] = Path(str(max(entries, key=lambda e: (_mtime(e), e.name))))
    return found


def shipped_checkpoint(family: str) -> Path:
    """Path of the shipped checkpoint of ``family``.

    Raises:
        NeuromixError: unknown family, or none shipped ("no shipped console checkpoint; pass
            --model PATH or --model rules").
    """
    if family not in FAMILIES:
        raise NeuromixError(f"unknown model family {family!r}; shipped families: {', '.join(FAMILIES)}")
    found = shipped_checkpoints()
    if family not in found:
        raise NeuromixError(f"no shipped {family} checkpoint; pass --model PATH or --model rules")
    return found[family]


def load_network(name_or_path: str | os.PathLike[str]) -> tuple[nn.Module, CheckpointInfo]:
    """Load a shipped network by family name (``console``, ``blackbox``) or any checkpoint by path."""
    from neuromix.mixing.models import load_model

    if isinstance(name_or_path, str) and name_or_path in FAMILIES:
        return load_model(shipped_checkpoint(name_or_path))
    path = Path(name_or_path)
    if not path.is_file():
        raise NeuromixError(f"{path}: no such checkpoint file (shipped names: {', '.join(FAMILIES)})")
    return load_model(path)
