"""Validation helpers for the synthesis documents (patches, scores) and their size bounds.

Every check raises :class:`neuromix.core.errors.ConfigError` with the dotted path of
the offending field (``techniques[2].amount: must be a number ...``), so a user can
find the mistake in the file. JSON is parsed only after its size has been checked,
and its nesting depth is bounded; nothing here ever unpickles.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from neuromix.core.errors import ConfigError

__all__ = [
    "LIMITS",
    "Limits",
    "check_keys",
    "choice",
    "integer",
    "json_depth",
    "load_document",
    "number",
    "optional",
    "string",
]


class Limits:
    """Size bounds of synthesis documents and renders (read-only constants).

    Attributes:
        max_json_bytes: largest patch or score file read (bytes).
        max_depth: deepest nesting of JSON/TOML containers accepted.
        max_render_s: longest single patch render (gate + release), seconds.
        max_score_s: longest score (end of its last event), seconds.
        max_events: most events in a score or notes in a MIDI file.
        max_midi_bytes: largest MIDI file read (bytes).
        max_techniques: most techniques in a patch's chain.
        max_slots: most excitation slots (sounding + context).
        max_points: most breakpoints in one envelope / automation curve.
        min_rate, max_rate: accepted sample rates (Hz).
    """

    max_json_bytes = 1 << 20
    max_depth = 16
    max_render_s = 120.0
    max_score_s = 900.0
    max_events = 4096
    max_midi_bytes = 2 << 20
    max_techniques = 16
    max_slots = 8
    max_points = 512
    min_rate = 8000
    max_rate = 192000


LIMITS = Limits()


def json_depth(value: Any) -> int:
    """Nesting depth of a decoded JSON value (a scalar is 0, ``[]`` is 1), iteratively."""
    depth = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            depth = max(depth, level + 1)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            depth = max(depth, level + 1)
            stack.extend((v, level + 1) for v in item)
    return depth


def _reject_constant(name: str) -> float:
    raise ConfigError(f"invalid JSON number {name}: NaN and Infinity are not allowed")


def load_document(source: str | os.PathLike[str], kind: str) -> tuple[dict[str, Any], Path]:
    """Read a JSON (or, for ``.toml`` files, TOML) document with size and depth bounds.

    Args:
        source: path of the file.
        kind: what the document is (``"patch"``, ``"score"``), for messages.

    Returns:
        ``(document, path)``; the document is a dict.

    Raises:
        ConfigError: missing or oversized file, invalid JSON/TOML, too deep, not an object.
    """
    path = Path(source)
    try:
        size = path.stat().st_size
    except OSError:
        raise ConfigError(f"{path}: {kind} file not found") from None
    if not path.is_file():
        raise ConfigError(f"{path}: is not a file")
    if size > LIMITS.max_json_bytes:
        raise ConfigError(f"{path}: {kind} file is {size} bytes, more than the limit of {LIMITS.max_json_bytes}")
    raw = path.read_bytes()
    return parse_document(raw, kind, toml=path.suffix.lower() == ".toml", where=str(path)), path


def parse_document(raw: bytes | str, kind: str, *, toml: bool = False, where: str = "") -> dict[str, Any]:
    """Parse JSON or TOML text into a dict, bounding its size and depth.

    Raises:
        ConfigError: oversized, invalid, too deep, or not an object (message starts with ``where``).
    """
    prefix = f"{where}: " if where else ""
    data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    if len(data) > LIMITS.max_json_bytes:
        raise ConfigError(f"{prefix}{kind} document is {len(data)} bytes, more than {LIMITS.max_json_bytes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{prefix}{kind} document is not UTF-8 text") from None
    # cheap pre-check of nesting before any recursive parser sees the text
    _bracket_depth_check(text, kind, prefix)
    try:
        if toml:
            import tomllib

            doc = tomllib.loads(text)
        else:
            doc = json.loads(text, parse_constant=_reject_constant)
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(f"{prefix}{kind} document is nested too deeply") from None
    except Exception as exc:  # json.JSONDecodeError, tomllib.TOMLDecodeError
        fmt = "TOML" if toml else "JSON"
        raise ConfigError(f"{prefix}invalid {fmt} in {kind} document: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{prefix}a {kind} document must be a JSON object at the top level")
    if json_depth(doc) > LIMITS.max_depth:
        raise ConfigError(f"{prefix}{kind} document is nested deeper than {LIMITS.max_depth} levels")
    return doc


def _bracket_depth_check(text: str, kind: str, prefix: str) -> None:
    """Reject text whose bracket nesting (outside strings) exceeds the limit, without parsing."""
    depth = 0
    in_string = False
    escape = False
    quote = ""
    for ch in text:
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == quote:
                in_string = False
            continue
        if ch in "\"'":
            in_string, quote = True, ch
        elif ch in "[{":
            depth += 1
            if depth > LIMITS.max_depth + 1:
                raise ConfigError(f"{prefix}{kind} document is nested deeper than {LIMITS.max_depth} levels")
        elif ch in "]}":
            depth -= 1


# --------------------------------------------------------------------------- field checks


def check_keys(obj: Any, where: str, allowed: Iterable[str], required: Iterable[str] = ()) -> Mapping[str, Any]:
    """Check that ``obj`` is an object with only ``allowed`` keys and all ``required`` ones."""
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{where}: must be an object, got {_kind(obj)}")
    allowed = set(allowed)
    unknown = sorted(str(k) for k in obj if k not in allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise ConfigError(f"{where}: missing required field(s) {', '.join(missing)}")
    return obj


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"[:80]
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def number(
    value: Any, where: str, *, low: float | None = None, high: float | None = None, low_open: bool = False
) -> float:
    """A finite real number (not a boolean) within ``[low, high]`` (``(low, high]`` if ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: must be a number, got {_kind(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{where}: must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        bound = ">" if low_open else ">="
        raise ConfigError(f"{where}: must be {bound} {low:g}, got {value:g}")
    if high is not None and value > high:
        raise ConfigError(f"{where}: must be <= {high:g}, got {value:g}")
    return value


def integer(value: Any, where: str, *, low: int | None = None, high: int | None = None) -> int:
    """An integer (a float with an integral value is accepted) within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: must be an integer, got {_kind(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(f"{where}: must be an integer, got {value!r}")
        value = int(value)
    if low is not None and value < low:
        raise ConfigError(f"{where}: must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{where}: must be <= {high}, got {value}")
    return int(value)


def string(value: Any, where: str, *, max_len: int = 200, allow_empty: bool = False) -> str:
    """A string of at most ``max_len`` characters."""
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string, got {_kind(value)}")
    if not value and not allow_empty:
        raise ConfigError(f"{where}: must not be empty")
    if len(value) > max_len:
        raise ConfigError(f"{where}: longer than {max_len} characters")
    return value


def choice(value: Any, where: str, options: Sequence[str]) -> str:
    """One of ``options`` (a string)."""
    if not isinstance(value, str) or value not in options:
        raise ConfigError(f"{where}: must be one of {', '.join(options)}; got {_kind(value)}")
    return value


def optional(obj: Mapping[str, Any], key: str, default: Any) -> Any:
    """``obj[key]`` or ``default`` when the key is absent or null."""
    value = obj.get(key, default)
    return default if value is None else value
