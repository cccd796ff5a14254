"""The Mix tab: stems or a demo song in, a mix and editable console settings out.

Handlers are thin layers over :func:`neuromix.mixing.inference.mix_multitrack` and
:func:`~neuromix.mixing.inference.resolve_mix`; each returns files written by soundfile
into the caller's session folder. The settings are shown as an editable table in long
format (``track, parameter, value, unit, locked``; the master's rows have track
``master``); the ``locked`` column becomes the lock keys (``"vocals.gain_db"``,
``"master.width"``) of a re-solve.

API events (``gradio_client``; see DEVELOPERS.md, "App API"): ``/load_stems``, ``/mix``,
``/resolve``, ``/render``, ``/load_settings``, ``/solo``, ``/add_target``.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuromix.core.errors import AudioInputError, ConfigError, NeuromixError
from neuromix.ui.plots import plot_spectrum, plot_waveform
from neuromix.ui.state import (
    AppContext,
    AppLimits,
    Session,
    cell_text,
    table_rows,
    user_errors,
    write_wav,
)
from torch import Tensor

__all__ = [
    "MODELS",
    "SETTINGS_COLUMNS",
    "TRACK_COLUMNS",
    "LoadedSong",
    "build_mix_tab",
    "load_song",
    "settings_from_rows",
    "settings_rows",
]

MODELS: tuple[str, ...] = ("console", "blackbox", "rules")
"""Mixers the tab offers: the shipped console network, the black-box network, the expert rules."""

TRACK_COLUMNS: list[str] = ["track", "class"]
SETTINGS_COLUMNS: list[str] = ["track", "parameter", "value", "unit", "locked"]
AMOUNTS: tuple[str, ...] = ("slightly", "", "much")
QUICK_WORDS: tuple[str, ...] = ("louder", "softer", "brighter", "darker", "wider", "punchier")
_FALLBACK_WORDS: tuple[str, ...] = (
    "louder", "softer", "brighter", "darker", "warmer", "wider", "narrower", "punchier", "drier", "wetter",
)
_MASTER = "master"
_TRUE = {"true", "1", "yes", "y", "x", "locked", "on"}


# --------------------------------------------------------------------------- the song


@dataclass
class LoadedSong:
    """A multitrack loaded for one session.

    Attributes:
        key: identity of the source (file names, sizes and times, or the demo's name), so an
            unchanged upload is not read twice.
        audio: ``(tracks, 2, samples)`` float32.
        sample_rate: Hz.
        names: track names (file names without suffix).
        classes: instrument classes decided for the tracks (names, then audio).
        notes: what loading changed (resampling, padding).
        source: a readable description (``"demo neon-drive"``, ``"4 uploaded stems"``).
    """

    key: tuple
    audio: Tensor
    sample_rate: int
    names: list[str]
    classes: list[str]
    notes: list[str] = field(default_factory=list)
    source: str = ""


@dataclass
class MixState:
    """The Mix tab's part of a :class:`~neuromix.ui.state.Session`."""

    song: LoadedSong | None = None
    settings: dict | None = None
    classes: list[str] = field(default_factory=list)
    model: str = "console"
    released: bool = False

    def release(self) -> None:
        """Drop the decoded song to free memory (see ``AppLimits.max_live_songs``)."""
        self.song, self.released = None, True

    def use(self, song: LoadedSong) -> LoadedSong:
        """Make ``song`` the session's song (the settings of another song are dropped)."""
        if song is not self.song:
            self.song, self.settings, self.classes, self.model = song, None, [], "console"
        self.released = False
        return song


def _paths(files: Any) -> list[Path]:
    """File paths from a ``gr.File(file_count="multiple")`` value (paths or file objects)."""
    if not files:
        return []
    items = files if isinstance(files, (list, tuple)) else [files]
    return [Path(f) if isinstance(f, (str, os.PathLike)) else Path(f.name) for f in items]


def _source_key(paths: Sequence[Path], demo: str | None) -> tuple:
    if not paths:
        return ("demo", demo)
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in paths)


def _short_message(exc: NeuromixError, paths: Sequence[Path]) -> str:
    """The error's message with the upload folders cut from the file paths."""
    message = str(exc)
    for p in paths:
        message = message.replace(str(p), p.name)
    return message


def _check_uploads(paths: Sequence[Path], limits: AppLimits, what: str = "stem") -> None:
    """Count, size and length of uploaded files against the app's limits (headers only).

    Raises:
        AudioInputError: the first problem found, naming the file.
    """
    from neuromix.core.io import audio_info

    if len(paths) > limits.max_tracks:
        raise AudioInputError(
            f"{len(paths)} {what} files uploaded; the app mixes at most {limits.max_tracks} tracks"
        )
    for p in paths:
        size = p.stat().st_size
        if size > limits.max_bytes:
            raise AudioInputError(
                f"{p.name} is {size / 2**20:.1f} MiB; the app accepts files up to {limits.max_upload_mb:g} MiB"
            )
        if size == 0:
            raise AudioInputError(f"{p.name} is empty (0 bytes)")
        try:
            seconds = audio_info(p).duration
        except NeuromixError as exc:
            raise AudioInputError(_short_message(exc, paths)) from None
        if seconds > limits.max_seconds:
            raise AudioInputError(
                f"{p.name} is {seconds:.1f} s long; the app accepts up to {limits.max_seconds:g} s per file"
            )


def _audio_limits(limits: AppLimits):
    from neuromix.core.io import AudioLimits

    return AudioLimits(max_seconds=limits.max_seconds, max_bytes=limits.max_bytes, max_tracks=limits.max_tracks)


def load_song(files: Any, demo: str | None, limits: AppLimits, previous: LoadedSong | None = None) -> LoadedSong:
    """Load uploaded stems (any format soundfile reads, resampled to their most common rate)
    or, with no upload, a bundled demo song at ``limits.demo_rate`` and ``limits.demo_seconds``.

    Args:
        files: the stems (paths or file objects); empty for the demo.
        demo: a name of :data:`~neuromix.mixing.generator.DEMO_SONGS`.
        limits: upload limits.
        previous: the session's song; returned as is when the source has not changed.

    Raises:
        AudioInputError: too many or too large files, unreadable, empty, too long ones.
        ConfigError: no stems and no (known) demo song.
    """
    paths = _paths(files)
    key = _source_key(paths, demo)
    if previous is not None and previous.key == key:
        return previous
    if not paths:
        return _load_demo(demo, limits, key)
    _check_uploads(paths, limits)
    from neuromix.core.io import load_multitrack
    from neuromix.mixing.classify import classify_tracks

    try:
        song = load_multitrack(paths, limits=_audio_limits(limits))
    except NeuromixError as exc:
        raise AudioInputError(_short_message(exc, paths)) from None
    names = list(song.names)
    classes = classify_tracks(names, song.audio, song.sample_rate)
    return LoadedSong(key, song.audio, song.sample_rate, names, classes, list(song.notes), f"{len(names)} uploaded stems")


def _load_demo(demo: str | None, limits: AppLimits, key: tuple) -> LoadedSong:
    from neuromix.mixing.generator import DEMO_SONGS, demo_song

    if not demo:
        raise ConfigError("upload stems or pick a demo song first")
    if demo not in DEMO_SONGS:
        raise ConfigError(f"unknown demo song {demo!r}; available: {', '.join(DEMO_SONGS)}")
    song = demo_song(demo, sample_rate=limits.demo_rate, seconds=limits.demo_seconds)
    return LoadedSong(
        key, song.as_multitrack(), limits.demo_rate, list(song.names), list(song.classes), [], f"demo song {demo}"
    )


# --------------------------------------------------------------------------- tables


def _classes_from_table(table: Any, song: LoadedSong) -> list[str]:
    """The instrument classes of the tracks table (blank cells: the decided class)."""
    from neuromix.mixing.classes import INSTRUMENT_CLASSES

    chosen = {cell_text(r[0]): cell_text(r[1]).lower() for r in table_rows(table) if len(r) >= 2 and cell_text(r[0])}
    if set(chosen) != set(song.names):  # a table of another song (e.g. an API call without one)
        return list(song.classes)
    classes = []
    for name, auto in zip(song.names, song.classes):
        value = chosen[name] or auto
        if value not in INSTRUMENT_CLASSES:
            raise ConfigError(
                f"track {name!r}: unknown instrument class {value!r}; choose one of {', '.join(INSTRUMENT_CLASSES)}"
            )
        classes.append(value)
    return classes


def _ranges(settings: dict, sample_rate: int) -> tuple[dict, dict]:
    from neuromix.mixing.inference import console_from_settings

    console = console_from_settings(settings, sample_rate)
    return console.track_ranges, console.master_ranges


def settings_rows(settings: dict, sample_rate: int, locks: Sequence[str] = ()) -> list[list[Any]]:
    """A settings document as table rows ``[track, parameter, value, unit, locked]``
    (tracks first, in order, then the master)."""
    track_ranges, master_ranges = _ranges(settings, sample_rate)
    locked = set(locks)
    rows: list[list[Any]] = []
    for entry in settings.get("tracks", []):
        name = entry["name"]
        for key, r in track_ranges.items():
            rows.append([name, key, entry.get(key, r.default), r.unit, f"{name}.{key}" in locked])
    master = settings.get("master", {})
    for key, r in master_ranges.items():
        rows.append([_MASTER, key, master.get(key, r.default), r.unit, f"{_MASTER}.{key}" in locked])
    return rows


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: the value must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: the value must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{where}: the value must be a finite number")
    return number


def _is_locked(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return bool(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else False


def settings_from_rows(rows_or_table: Any, base: dict) -> tuple[dict, list[str]]:
    """Apply an edited settings table to the document it came from.

    Args:
        rows_or_table: table rows ``[track, parameter, value, unit, locked]`` (or a
            ``gr.Dataframe`` value).
        base: the settings document the table shows (keeps ``model``, ``classes``, ``console``).

    Returns:
        ``(document, lock keys)``; the document is validated later by the mixer.

    Raises:
        ConfigError: an unknown track or parameter, or a value that is not a number.
    """
    doc = copy.deepcopy(base)
    tracks = {entry["name"]: entry for entry in doc.get("tracks", [])}
    master = doc.setdefault("master", {})
    locks: list[str] = []
    for i, row in enumerate(table_rows(rows_or_table)):
        track, parameter = (cell_text(row[0]), cell_text(row[1])) if len(row) >= 3 else ("", "")
        if not track or not parameter:
            continue
        where = f"settings row {i + 1} ({track}.{parameter})"
        target = master if track == _MASTER else tracks.get(track)
        if target is None:
            raise ConfigError(f"{where}: no track named {track!r} (tracks: {', '.join(tracks)})")
        if parameter not in target:
            raise ConfigError(f"{where}: unknown parameter {parameter!r}")
        value = _number(row[2], where)
        target[parameter] = int(value) if isinstance(target[parameter], int) and value.is_integer() else value
        if len(row) >= 5 and _is_locked(row[4]):
            locks.append(f"{track}.{parameter}")
    return doc, locks


# --------------------------------------------------------------------------- goals


def _goals_module():
    try:
        from neuromix.mixing import goals
    except ImportError:
        return None
    return goals


def target_words() -> list[str]:
    """The semantic words of the target grammar (louder, brighter, wider, ...)."""
    goals = _goals_module()
    words = getattr(goals, "SEMANTIC_WORDS", None) if goals is not None else None
    return list(words) if words else list(_FALLBACK_WORDS)


def _parse_targets(text: str | None) -> Any:
    text = (text or "").strip()
    if not text:
        return None
    goals = _goals_module()
    if goals is None:
        raise ConfigError("targets are not available in this build (neuromix.mixing.goals is missing)")
    return goals.parse_targets(text)


def add_target(where: str | None, word: str | None, targets: str | None, amount: str | None = None) -> str:
    """Append ``where: [amount] word`` to the targets text (merged into an existing clause
    for ``where``); ``amount`` is ``"slightly"``, ``"much"`` or empty."""
    where = (where or _MASTER).strip()
    word = (word or "").strip()
    if not word:
        raise ConfigError("pick a word (louder, brighter, wider, ...) to add a target")
    amount = (amount or "").strip()
    if amount not in AMOUNTS:
        raise ConfigError(f"amount must be one of {', '.join(repr(a) for a in AMOUNTS)}, got {amount!r}")
    word = f"{amount} {word}" if amount else word
    clauses = [c.strip() for c in (targets or "").split(";") if c.strip()]
    for i, clause in enumerate(clauses):
        head, sep, words = clause.partition(":")
        if sep and head.strip() == where:
            existing = [w.strip() for w in words.split(",") if w.strip()]
            if word not in existing:
                existing.append(word)
            clauses[i] = f"{where}: {', '.join(existing)}"
            return "; ".join(clauses)
    return "; ".join([*clauses, f"{where}: {word}"])


# --------------------------------------------------------------------------- rendering outputs


def _read_reference(file: Any, sample_rate: int, limits: AppLimits) -> Tensor | None:
    paths = _paths(file)
    if not paths:
        return None
    from neuromix.core.io import read_audio

    _check_uploads(paths[:1], limits, what="reference")
    try:
        audio, _ = read_audio(paths[0], sample_rate, limits=_audio_limits(limits))
    except NeuromixError as exc:
        raise AudioInputError(f"reference: {_short_message(exc, paths)}") from None
    return audio


def _loudness_text(mix: Tensor, sample_rate: int) -> str:
    """The mix's integrated loudness (ITU-R BS.1770) for the status line; a mix shorter than
    one 400 ms gating block has none (the library mixes clips of any length)."""
    from neuromix.core.features import integrated_loudness

    if mix.shape[-1] < 0.4 * sample_rate:
        return "loudness not measured (shorter than one 400 ms block)"
    return f"loudness {float(integrated_loudness(mix[None], sample_rate)[0]):.1f} LUFS"


def _report_markdown(report: Any) -> str:
    if report is None:
        return ""
    to_markdown = getattr(report, "to_markdown", None)
    body = to_markdown() if callable(to_markdown) else str(report)
    # the report's headings sit under the accordion's title: make them small
    return "\n".join(f"###{line}" if line.startswith("#") else line for line in body.splitlines())


def _status(song: LoadedSong, outcome: Any, what: str) -> str:
    mix = outcome.mix
    seconds = mix.shape[-1] / song.sample_rate
    headline = (
        f"**{what}** {song.source}: {len(song.names)} tracks, {seconds:.1f} s at {song.sample_rate} Hz, "
        f"by `{outcome.model_name}`; {_loudness_text(mix, song.sample_rate)}."
    )
    lines = [headline]
    lines += [f"- {note}" for note in song.notes]
    report = getattr(outcome, "report", None)
    if report is not None:
        lines.append(
            f"- goal ({report.goal}): distance {report.distance_before:.3g} before, {report.distance_after:.3g} "
            "after; see the goal report below"
        )
    if outcome.settings is None:
        lines.append("- The black-box network has no console settings to edit; pick console or rules for those.")
    return "\n".join(lines)


class MixTab:
    """The Mix tab's handlers (bound to the app's context); see the module docstring."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    # -- helpers

    def _state(self, session: Session) -> MixState:
        return session.data.setdefault("mix", MixState())

    def _song(self, session: Session) -> LoadedSong:
        state = self._state(session)
        if state.song is None:
            if state.released:
                raise ConfigError(
                    "this session's song was released to make room for other users "
                    f"(the app keeps {self.ctx.limits.max_live_songs} songs in memory); press Mix to load it again"
                )
            raise ConfigError("mix a song first (upload stems or pick a demo song, then press Mix)")
        self.ctx.hold(state)
        return state.song

    def _settings(self, session: Session) -> dict:
        settings = self._state(session).settings
        if settings is None:
            raise ConfigError(
                "this mix has no console settings (the black-box network mixes without a console); "
                "mix with the console network or the rules first"
            )
        return settings

    def _outputs(self, session: Session, outcome: Any, what: str, locks: Sequence[str] = ()) -> tuple:
        """Write the mix, its settings and plots; return the values of the tab's outputs."""
        import gradio as gr

        state = self._state(session)
        song = self._song(session)
        state.settings, state.classes = outcome.settings, list(outcome.classes)
        sr = song.sample_rate
        mix_path = write_wav(session.path("mix", ".wav"), outcome.mix, sr)
        settings_path, rows = None, []
        if outcome.settings is not None:
            settings_path = session.path("settings", ".json")
            settings_path.write_text(json.dumps(outcome.settings, indent=2), encoding="utf-8")
            rows = settings_rows(outcome.settings, sr, locks)
        waveform = plot_waveform(outcome.mix, sr, session.path("waveform", ".png"))
        spectrum = plot_spectrum(outcome.mix, sr, session.path("spectrum", ".png"), dry=song.audio)
        tracks = [[n, c] for n, c in zip(song.names, outcome.classes)]
        names = list(song.names)
        return (
            mix_path,
            None if settings_path is None else str(settings_path),
            _frame(rows, SETTINGS_COLUMNS),
            _report_markdown(getattr(outcome, "report", None)),
            waveform,
            spectrum,
            _frame(tracks, TRACK_COLUMNS),
            gr.Dropdown(choices=names, value=names[0]),
            gr.Dropdown(choices=[_MASTER, *names]),
            _status(song, outcome, what),
            session,
        )

    # -- handlers (each wrapped by user_errors when the tab is built)

    def load(self, stems: Any, demo: str | None, session: Session | None) -> tuple:
        """Load stems or a demo song; show its tracks and their classes."""
        import gradio as gr

        session = self.ctx.session(session)
        state = self._state(session)
        song = state.use(load_song(stems, demo, self.ctx.limits, state.song))
        self.ctx.hold(state)
        names = list(song.names)
        notes = "".join(f"\n- {n}" for n in song.notes)
        status = f"Loaded {song.source}: {len(names)} tracks at {song.sample_rate} Hz. Check the classes, then press **Mix**.{notes}"
        return (
            _frame([[n, c] for n, c in zip(names, song.classes)], TRACK_COLUMNS),
            gr.Dropdown(choices=names, value=names[0]),
            gr.Dropdown(choices=[_MASTER, *names], value=_MASTER),
            status,
            session,
        )

    def mix(
        self, stems: Any, demo: str | None, tracks: Any, model: str, reference: Any, targets: str | None,
        session: Session | None, progress: Any = None,
    ) -> tuple:
        """Mix the stems (or the demo) with the chosen model, optionally toward a goal."""
        from neuromix.mixing.inference import mix_multitrack

        session = self.ctx.session(session)
        state = self._state(session)
        _progress(progress, 0.05, "loading the tracks")
        song = state.use(load_song(stems, demo, self.ctx.limits, state.song))
        self.ctx.hold(state)
        classes = _classes_from_table(tracks, song)
        if model not in MODELS:
            raise ConfigError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
        ref = _read_reference(reference, song.sample_rate, self.ctx.limits)
        goal = _parse_targets(targets)
        kwargs: dict[str, Any] = {"reference": ref}
        if goal is not None:
            kwargs["targets"] = goal
        _progress(progress, 0.2, f"mixing with {model}" + (" toward the goal" if ref is not None or goal else ""))
        outcome = mix_multitrack(song.audio, song.sample_rate, model=model, classes=classes, names=song.names, **kwargs)
        state.model = model
        _progress(progress, 0.9, "writing the mix")
        return self._outputs(session, outcome, "Mixed")

    def resolve(self, table: Any, reference: Any, targets: str | None, session: Session | None, progress: Any = None) -> tuple:
        """Re-optimise the unlocked settings toward the reference, the targets, or (with
        neither) the mix that the session's mixer predicts; locked values stay as they are."""
        from neuromix.mixing import inference

        session = self.ctx.session(session)
        song = self._song(session)
        doc, locks = settings_from_rows(table, self._settings(session))
        resolve_mix = getattr(inference, "resolve_mix", None)
        if resolve_mix is None:
            raise ConfigError("re-solving is not available in this build (resolve_mix is missing)")
        ref = _read_reference(reference, song.sample_rate, self.ctx.limits)
        goal = _parse_targets(targets)
        _progress(progress, 0.1, f"re-solving {len(locks)} locked setting(s) kept")
        state = self._state(session)
        outcome = resolve_mix(  # without a goal: toward the mix the session's mixer predicts
            song.audio, song.sample_rate, doc, locks=locks, reference=ref, targets=goal,
            model=state.model, names=song.names, classes=state.classes or None,
        )
        return self._outputs(session, outcome, "Re-solved", locks)

    def render(self, table: Any, session: Session | None, progress: Any = None) -> tuple:
        """Render the edited settings table as it is."""
        from neuromix.mixing.inference import mix_multitrack

        session = self.ctx.session(session)
        song = self._song(session)
        doc, locks = settings_from_rows(table, self._settings(session))
        _progress(progress, 0.2, "rendering the edited settings")
        outcome = mix_multitrack(song.audio, song.sample_rate, settings=doc, names=song.names)
        return self._outputs(session, outcome, "Rendered the edited settings of", locks)

    def load_settings(self, file: Any, session: Session | None, progress: Any = None) -> tuple:
        """Render a settings JSON file (``neuromix mix --params`` or a download of this app)."""
        from neuromix.mixing.inference import mix_multitrack, read_settings

        paths = _paths(file)
        if not paths:
            raise ConfigError("upload a settings JSON file first")
        session = self.ctx.session(session)
        song = self._song(session)
        try:
            doc = read_settings(paths[0])
        except NeuromixError as exc:
            raise ConfigError(_short_message(exc, paths)) from None
        _progress(progress, 0.2, "rendering the loaded settings")
        outcome = mix_multitrack(song.audio, song.sample_rate, settings=doc, names=song.names)
        return self._outputs(session, outcome, "Rendered the loaded settings of")

    def solo(self, track: str | None, session: Session | None) -> tuple:
        """One track alone: through its console channel (and the master) when the mix has
        settings, else the dry stem."""
        from neuromix.mixing.inference import mix_multitrack

        session = self.ctx.session(session)
        song = self._song(session)
        if track not in song.names:
            raise ConfigError(f"no track named {track!r}; tracks: {', '.join(song.names)}")
        i = song.names.index(track)
        settings = self._state(session).settings
        if settings is None:
            return write_wav(session.path(f"solo-{track}", ".wav"), song.audio[i], song.sample_rate), session
        doc = copy.deepcopy(settings)
        doc["tracks"] = [t for t in doc["tracks"] if t["name"] == track]
        outcome = mix_multitrack(song.audio[i : i + 1], song.sample_rate, settings=doc, names=[track])
        return write_wav(session.path(f"solo-{track}", ".wav"), outcome.mix, song.sample_rate), session


def _frame(rows: list[list[Any]], columns: list[str]) -> Any:
    """A table value as a pandas frame (an API client receives plain headers and data)."""
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)


def _progress(progress: Any, fraction: float, desc: str) -> None:
    if callable(progress):
        progress(fraction, desc=desc)


# --------------------------------------------------------------------------- layout


def build_mix_tab(ctx: AppContext, session: Any) -> dict[str, Any]:
    """Create the Mix tab's components inside the current ``gr.Tab`` and wire its events.

    Args:
        ctx: the app context.
        session: the app's ``gr.State`` of the caller's :class:`~neuromix.ui.state.Session`.

    Returns:
        The tab's components by name, and ``"mix_event"``: ``(fn, inputs, outputs)`` of the
        mix, which the app also runs when the page opens (the demo song).
    """
    import gradio as gr
    from neuromix.core.io import audio_extensions
    from neuromix.mixing.generator import DEMO_SONGS

    tab = MixTab(ctx)
    limits = ctx.limits
    default_demo = next(iter(DEMO_SONGS))
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            gr.Markdown(
                f"Upload stems (up to {limits.max_tracks} files, {limits.max_seconds:g} s and "
                f"{limits.max_upload_mb:g} MiB each; any rate) or pick a demo song, check the classes, and mix."
            )
            stems = gr.File(label="Stems", file_count="multiple", file_types=list(audio_extensions()), elem_id="stems")
            demo = gr.Dropdown(
                choices=list(DEMO_SONGS), value=default_demo, label="...or a bundled demo song",
                info=f"generated on the fly, {limits.demo_seconds:g} s at {limits.demo_rate} Hz",
            )
            tracks = gr.Dataframe(
                value=[], headers=TRACK_COLUMNS, datatype=["str", "str"], label="Tracks",
                interactive=True, static_columns=[0], elem_id="tracks",
            )
            model = gr.Radio(list(MODELS), value="console", label="Mixer",
                             info="console network, black-box network, or the expert rules")
            with gr.Accordion("Goal: a reference mix and/or targets", open=False):
                reference = gr.File(label="Reference mixdown (optional)", file_types=list(audio_extensions()))
                with gr.Row():
                    where = gr.Dropdown(choices=[_MASTER], value=_MASTER, label="Where", scale=1, allow_custom_value=True)
                    word = gr.Dropdown(choices=target_words(), value="louder", label="Change", scale=1)
                    amount = gr.Radio([(a or "normal", a) for a in AMOUNTS], value="", label="Amount", scale=1)
                    add = gr.Button("Add target", scale=0)
                with gr.Row():
                    quick = {w: gr.Button(w, size="sm") for w in QUICK_WORDS}
                targets = gr.Textbox(
                    label="Targets", placeholder="vocal: louder, brighter; drums: punchier; master: wider",
                    info="free text in the target grammar; the buttons above write it for you",
                )
            mix_button = gr.Button("Mix", variant="primary", elem_id="mix-button")
        with gr.Column(scale=2, min_width=420):
            status = gr.Markdown("Opening the demo song...", label="status", elem_id="mix-status")
            mix_audio = gr.Audio(label="Mix", type="filepath", interactive=False, elem_id="mix-audio")
            with gr.Row():
                solo_track = gr.Dropdown(choices=[], label="Solo a track", scale=1, allow_custom_value=True)
                solo_audio = gr.Audio(label="Solo", type="filepath", interactive=False, scale=2)
            with gr.Row():
                waveform = gr.Image(label="Waveform", type="filepath", interactive=False)
                spectrum = gr.Image(label="Spectrum", type="filepath", interactive=False)
            with gr.Accordion("Goal report: distances before and after, one row per target", open=False):
                report = gr.Markdown(label="report", elem_id="mix-report")
            gr.Markdown("Edit values and press **Render edited settings**; tick *locked* to keep a value when "
                        "re-solving the others (toward the reference, the targets, or else the mixer's own mix).")
            settings = gr.Dataframe(
                value=[], headers=SETTINGS_COLUMNS, datatype=["str", "str", "number", "str", "bool"],
                label="Settings",
                interactive=True, static_columns=[0, 1, 3], max_height=420, elem_id="settings",
            )
            with gr.Row():
                resolve_button = gr.Button("Re-solve (keep locked)", elem_id="resolve-button")
                render_button = gr.Button("Render edited settings", elem_id="render-button")
            with gr.Row():
                settings_file = gr.File(label="Settings JSON", interactive=False)
                settings_upload = gr.File(label="Load settings JSON", file_types=[".json"])

    outputs = [mix_audio, settings_file, settings, report, waveform, spectrum, tracks, solo_track, where, status, session]
    mix_inputs = [stems, demo, tracks, model, reference, targets, session]
    load_outputs = [tracks, solo_track, where, status, session]

    safe_mix, safe_resolve = user_errors(tab.mix), user_errors(tab.resolve)
    safe_render, safe_load_settings = user_errors(tab.render), user_errors(tab.load_settings)

    # Gradio finds gr.Progress by a parameter's default value, hence these thin signatures.
    progress_default = gr.Progress()

    def mix(stems, demo, tracks, model, reference, targets, state, progress=progress_default):
        return safe_mix(stems, demo, tracks, model, reference, targets, state, progress)

    def resolve(settings, reference, targets, state, progress=progress_default):
        return safe_resolve(settings, reference, targets, state, progress)

    def render(settings, state, progress=progress_default):
        return safe_render(settings, state, progress)

    def load_settings(settings_json, state, progress=progress_default):
        return safe_load_settings(settings_json, state, progress)

    load = user_errors(tab.load)
    stems.change(load, [stems, demo, session], load_outputs, api_name="load_stems")
    demo.change(load, [stems, demo, session], load_outputs, api_name="load_demo", api_visibility="undocumented")
    mix_button.click(mix, mix_inputs, outputs, api_name="mix")
    resolve_button.click(resolve, [settings, reference, targets, session], outputs, api_name="resolve")
    render_button.click(render, [settings, session], outputs, api_name="render")
    settings_upload.upload(load_settings, [settings_upload, session], outputs, api_name="load_settings")
    solo_track.input(user_errors(tab.solo), [solo_track, session], [solo_audio, session], api_name="solo")
    add.click(user_errors(add_target), [where, word, targets, amount], targets, api_name="add_target",
              concurrency_limit=None)
    for w, button in quick.items():
        button.click(
            user_errors(lambda where, targets, amount, w=w: add_target(where, w, targets, amount)),
            [where, targets, amount], targets,
            api_name=f"add_{w}", api_visibility="undocumented", concurrency_limit=None,
        )
    return {"mix_event": (mix, mix_inputs, outputs), "status": status, "mix_audio": mix_audio, "settings": settings}
