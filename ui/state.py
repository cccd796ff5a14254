"""Shared plumbing of the browser workbench: limits, per-session folders, errors, WAV output.

Nothing here touches Gradio at import time; :func:`user_errors` imports it when a handler
fails. Every user's data lives in a :class:`Session` (held in a ``gr.State``), whose folder
under the app's work folder is deleted when Gradio drops the session.
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
import tempfile
import threading
from collections import OrderedDict
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from neuromix.core.errors import NeuromixError
from torch import Tensor

__all__ = ["AppContext", "AppLimits", "Session", "cell_text", "table_rows", "user_errors", "write_wav"]

log = logging.getLogger("neuromix.ui")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class AppLimits:
    """What the app accepts from one user (protects memory and time on a shared server).

    Attributes:
        max_tracks: most stems in one upload.
        max_seconds: longest stem or reference, in seconds.
        max_upload_mb: largest single file, in MiB (Gradio also refuses larger uploads).
        demo_rate: sample rate of the bundled demo songs in the app (Hz).
        demo_seconds: length of the bundled demo songs in the app (s); short, so that the
            first mix is ready within seconds.
        probe_rate: sample rate of the Learn tab's datasheets (Hz).
        concurrency: long jobs (mix, re-solve, datasheet, render) running at once; the
            rest wait in the queue.
        max_live_songs: decoded songs kept in memory across all sessions; loading one more
            releases the least recently used session's song (that user is asked to load it
            again). Bounds the server's memory whatever the number of visitors.
    """

    max_tracks: int = 16
    max_seconds: float = 600.0
    max_upload_mb: float = 200.0
    demo_rate: int = 22050
    demo_seconds: float = 12.0
    probe_rate: int = 22050
    concurrency: int = 2
    max_live_songs: int = 8

    def __post_init__(self) -> None:
        if (
            self.max_tracks < 1
            or self.max_seconds <= 0
            or self.max_upload_mb <= 0
            or self.concurrency < 1
            or self.max_live_songs < 1
        ):
            raise ValueError(f"invalid app limits: {self}")

    @property
    def max_bytes(self) -> int:
        """:attr:`max_upload_mb` in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)


@dataclass
class Session:
    """One browser tab's (or one API client's) data. Never shared between users.

    Attributes:
        folder: where this session's files are written (deleted with the session).
        data: per-tab data, keyed by tab (``"mix"``, ``"synth"``, ...).
    """

    folder: Path
    data: dict[str, Any] = field(default_factory=dict)
    _counter: int = 0

    def path(self, stem: str, suffix: str) -> Path:
        """A fresh file path in the session folder (a new name every call, so the browser
        never shows a cached older file under the same URL)."""
        self._counter += 1
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:60] or "file"
        return self.folder / f"{safe}-{self._counter:04d}{suffix}"

    def close(self) -> None:
        """Delete the session's folder."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _delete_session(session: Any) -> None:
    if isinstance(session, Session):
        session.close()


class AppContext:
    """What the tabs share: limits, the app's work folder, caches.

    The work folder is created on first use (under the system temp folder unless given) and
    removed by :meth:`cleanup` (the app registers it to run at exit).

    Args:
        limits: upload and job limits.
        work_dir: parent of the app's work folder (default: the system temp folder).
    """

    def __init__(self, limits: AppLimits, work_dir: Path | None = None) -> None:
        self.limits = limits
        self._parent = Path(work_dir) if work_dir is not None else None
        self._root: Path | None = None
        self._lock = threading.Lock()
        self._live: OrderedDict[int, Any] = OrderedDict()  # id -> holder, least recently used first

    def hold(self, holder: Any) -> None:
        """Mark ``holder`` (an object with a ``release()`` method holding a decoded song) as
        just used; beyond :attr:`AppLimits.max_live_songs` holders, release the least
        recently used one."""
        with self._lock:
            self._live.pop(id(holder), None)
            self._live[id(holder)] = holder
            while len(self._live) > self.limits.max_live_songs:
                _, oldest = self._live.popitem(last=False)
                oldest.release()

    def forget(self, holder: Any) -> None:
        """Stop tracking ``holder`` (its session ended)."""
        with self._lock:
            self._live.pop(id(holder), None)

    @property
    def root(self) -> Path:
        """The app's work folder (created on first use)."""
        with self._lock:
            if self._root is None:
                if self._parent is not None:
                    self._parent.mkdir(parents=True, exist_ok=True)
                self._root = Path(tempfile.mkdtemp(prefix="neuromix-app-", dir=self._parent))
            return self._root

    def session(self, current: Session | None) -> Session:
        """The caller's session, created (with its folder) on first use."""
        if isinstance(current, Session) and current.folder.is_dir():
            return current
        folder = self.root / "sessions" / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return Session(folder)

    def state(self) -> Any:
        """A ``gr.State`` for sessions: their folders go when Gradio drops them."""
        import gradio as gr

        return gr.State(None, time_to_live=6 * 3600, delete_callback=_delete_session)

    def cleanup(self) -> None:
        """Remove the app's work folder (all sessions and caches)."""
        with self._lock:
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None


def user_errors(fn: F) -> F:
    """Wrap a Gradio handler: documented errors become ``gr.Error`` with their message.

    A :class:`~neuromix.core.errors.NeuromixError` (bad upload, settings, patch ...) shows
    its own message; any other exception is logged with its traceback on the server and
    the user sees a short message without one.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import gradio as gr

        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except NeuromixError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:  # an internal error: no traceback for the user
            log.exception("internal error in %s", fn.__name__)
            raise gr.Error(
                f"internal error ({type(exc).__name__}); the server log has the details", print_exception=False
            ) from None

    return wrapper  # type: ignore[return-value]


def write_wav(path: Path, audio: Tensor | np.ndarray, sample_rate: int) -> str:
    """Write ``(channels, samples)`` audio as a 24-bit WAV with soundfile; return the path.

    Levels are kept as they are (Gradio would peak-normalise a numpy array), and every
    mix the library returns is below -1 dBTP, so 24-bit PCM does not clip it.
    """
    from neuromix.core.io import write_audio

    return str(write_audio(path, audio, sample_rate, subtype="PCM_24"))


def table_rows(table: Any) -> list[list[Any]]:
    """Rows of a ``gr.Dataframe`` value: a pandas frame (what handlers receive), a list of
    lists, or the ``{"headers": ..., "data": ...}`` dict an API client sends."""
    if table is None:
        return []
    if isinstance(table, dict):
        return [list(r) for r in table.get("data") or []]
    if hasattr(table, "values") and hasattr(table, "columns"):
        return [list(r) for r in table.values.tolist()]
    return [list(r) for r in table]


def cell_text(value: Any) -> str:
    """A table cell as stripped text; empty for blank cells (None, NaN, "")."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()
