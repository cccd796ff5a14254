"""Scores: timelines of patch events (JSON or TOML) and MIDI files, rendered to stereo.

A score::

    format = "neuromix-score"
    version = 1
    sample_rate = 44100
    tail_s = 1.0                          # silence kept after the last release
    [output]
    ceiling_db = -1.0
    loudness_lufs = -16.0                 # optional

    [patches]                             # aliases: a preset name or a patch file (relative to the score)
    lead = "glass-pluck"
    pad = { patch = "my-pad.json", controls = { brightness = 0.7 } }

    [[events]]
    time = 0.0                            # seconds (or beats with time_unit = "beats" and tempo_bpm)
    duration = 1.5                        # gate length
    patch = "lead"                        # an alias, a preset name or a patch file
    note = 64                             # MIDI note (float allowed); or hz = 329.6; or pitch = "E4" / "330hz"
    velocity = 0.8                        # 0..1 amplitude factor
    gain_db = 0.0
    pan = -0.3                            # -1 (left) .. 1 (right)
    controls = { brightness = 0.4 }
    automation = { brightness = [[0.0, 0.1], [1.5, 0.9]] }   # seconds from the event start
    seed = 3                              # optional, default the patch's

Each event renders its patch (a note through the patch's own safety stage), scaled by
velocity and gain, balanced by ``pan`` (constant-power law,
:func:`neuromix.core.dsp.functional.pan`) and added to the mix; identical events are
rendered once. The mix passes the safety stage once more
(:func:`neuromix.synthesis.safety.make_safe`).

MIDI files (read with ``mido``; never executed or unpickled) become scores: every note
triggers a patch at its pitch, velocity/127 is the velocity, and chosen control
changes (``cc={1: "brightness"}``) become automation of the patch's controls
(0..127 mapped onto the control's range).
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from neuromix.core.dsp import functional as F
from neuromix.core.errors import ConfigError
from neuromix.synthesis.excitation import midi_to_hz
from neuromix.synthesis.modulation import parse_points
from neuromix.synthesis.patch import Patch
from neuromix.synthesis.render import Rendered
from neuromix.synthesis.safety import make_safe
from neuromix.synthesis.schema import LIMITS, check_keys, choice, integer, load_document, number, string

__all__ = [
    "SCORE_FORMAT",
    "Event",
    "Score",
    "load_score",
    "midi_to_score",
    "parse_pitch",
    "render_midi",
    "render_score",
]

SCORE_FORMAT = "neuromix-score"
SCORE_VERSION = 1
_NOTE_NAME = re.compile(r"^([A-Ga-g])([#b]?)(-?\d+)$")
_HZ = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*hz\s*$", re.IGNORECASE)
_SEMITONES = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


def parse_pitch(value: Any, where: str) -> float:
    """A pitch as MIDI note number, note name (``"C#4"``, C4 = 60) or ``"440hz"``; returns Hz."""
    if isinstance(value, str):
        m = _HZ.match(value)
        if m:
            return number(float(m.group(1)), where, low=1.0, high=20000.0)
        m = _NOTE_NAME.match(value.strip())
        if m:
            semitone = _SEMITONES[m.group(1).lower()] + {"#": 1, "b": -1, "": 0}[m.group(2)]
            midi = 12 * (int(m.group(3)) + 1) + semitone
            return midi_to_hz(number(midi, where, low=0.0, high=127.0))
        raise ConfigError(f"{where}: {value!r} is not a pitch; use a MIDI number, a note name (C4) or '440hz'")
    return midi_to_hz(number(value, where, low=0.0, high=127.0))


@dataclass(frozen=True)
class Event:
    """One note of a score (times in seconds)."""

    time_s: float
    duration_s: float
    patch: str
    pitch_hz: float | None = None
    velocity: float = 1.0
    gain_db: float = 0.0
    pan: float = 0.0
    controls: tuple[tuple[str, float], ...] = ()
    automation: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = ()
    seed: int | None = None


@dataclass
class Score:
    """A parsed score: events, patch aliases, rate and output settings."""

    events: list[Event]
    patches: dict[str, Patch]
    sample_rate: int = 44100
    tail_s: float = 1.0
    ceiling_db: float = -1.0
    loudness_lufs: float | None = None
    name: str = "score"
    base_dir: Path | None = None
    _resolved: dict[str, Patch] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        """End of the last event's gate (releases and tail come on top)."""
        return max((e.time_s + e.duration_s for e in self.events), default=0.0)

    def patch_for(self, name: str) -> Patch:
        """Resolve an event's patch: an alias, a preset name or a patch file."""
        if name in self.patches:
            return self.patches[name]
        if name not in self._resolved:
            path = Path(name)
            if path.suffix and not path.is_absolute() and self.base_dir is not None:
                path = self.base_dir / path
            self._resolved[name] = Patch.load(path if path.suffix else name)
        return self._resolved[name]


def _parse_patch_ref(value: Any, where: str, base_dir: Path | None) -> Patch:
    controls: dict[str, float] = {}
    if isinstance(value, Mapping):
        check_keys(value, where, ("patch", "controls"), ("patch",))
        source = string(value["patch"], f"{where}.patch", max_len=1000)
        raw = value.get("controls") or {}
        check_keys(raw, f"{where}.controls", list(raw) if isinstance(raw, Mapping) else ())  # an object
        controls = {str(k): number(v, f"{where}.controls.{k}") for k, v in raw.items()}
    else:
        source = string(value, where, max_len=1000)
    path = Path(source)
    if path.suffix and not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        patch = Patch.load(path if path.suffix else source)
        return patch.with_controls(controls)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse_score(doc: Mapping[str, Any], base_dir: Path | None = None) -> Score:
    """Validate a score document (ConfigError naming the field)."""
    check_keys(
        doc,
        "score",
        ("format", "version", "name", "sample_rate", "tail_s", "output", "patches", "events", "time_unit", "tempo_bpm"),
        ("events",),
    )
    if doc.get("format", SCORE_FORMAT) != SCORE_FORMAT:
        raise ConfigError(f"format: must be {SCORE_FORMAT!r}")
    if integer(doc.get("version", SCORE_VERSION), "version", low=1) > SCORE_VERSION:
        raise ConfigError(f"version: newer than this neuromix reads ({SCORE_VERSION})")
    sample_rate = integer(doc.get("sample_rate", 44100), "sample_rate", low=LIMITS.min_rate, high=LIMITS.max_rate)
    unit = choice(doc.get("time_unit", "seconds"), "time_unit", ("seconds", "beats"))
    beat = 60.0 / number(doc.get("tempo_bpm", 120.0), "tempo_bpm", low=1.0, high=1000.0) if unit == "beats" else 1.0
    out = check_keys(doc.get("output", {}), "output", ("ceiling_db", "loudness_lufs"))
    loud = out.get("loudness_lufs")
    patches_doc = doc.get("patches", {})
    if not isinstance(patches_doc, Mapping) or len(patches_doc) > 64:
        raise ConfigError("patches: must be a table of at most 64 aliases")
    patches = {str(k): _parse_patch_ref(v, f"patches.{k}", base_dir) for k, v in patches_doc.items()}
    raw_events = doc["events"]
    if not isinstance(raw_events, list):
        raise ConfigError("events: must be a list of event objects")
    if len(raw_events) > LIMITS.max_events:
        raise ConfigError(f"events: {len(raw_events)} events, more than the limit of {LIMITS.max_events}")
    events = []
    for i, ev in enumerate(raw_events):
        w = f"events[{i}]"
        check_keys(
            ev,
            w,
            (
                "time",
                "duration",
                "patch",
                "note",
                "hz",
                "pitch",
                "velocity",
                "gain_db",
                "pan",
                "controls",
                "automation",
                "seed",
            ),
            ("time", "duration", "patch"),
        )
        pitch_keys = [k for k in ("note", "hz", "pitch") if k in ev]
        if len(pitch_keys) > 1:
            raise ConfigError(f"{w}: give one of note, hz or pitch")
        pitch = None
        if "note" in ev:
            pitch = midi_to_hz(number(ev["note"], f"{w}.note", low=0.0, high=127.0))
        elif "hz" in ev:
            pitch = number(ev["hz"], f"{w}.hz", low=1.0, high=20000.0)
        elif "pitch" in ev:
            pitch = parse_pitch(ev["pitch"], f"{w}.pitch")
        controls = ev.get("controls") or {}
        check_keys(controls, f"{w}.controls", list(controls) if isinstance(controls, Mapping) else ())  # an object
        automation = ev.get("automation") or {}
        check_keys(automation, f"{w}.automation", list(automation) if isinstance(automation, Mapping) else ())
        time_s = number(ev["time"], f"{w}.time", low=0.0) * beat
        duration = number(ev["duration"], f"{w}.duration", low=0.0, low_open=True) * beat
        if time_s + duration > LIMITS.max_score_s:
            raise ConfigError(
                f"{w}: ends at {time_s + duration:g} s, past the {LIMITS.max_score_s:g} s limit of a score"
            )
        if duration > LIMITS.max_render_s - 30.0:
            raise ConfigError(f"{w}.duration: {duration:g} s is longer than one note may last")
        events.append(
            Event(
                time_s=time_s,
                duration_s=duration,
                patch=string(ev["patch"], f"{w}.patch", max_len=1000),
                pitch_hz=pitch,
                velocity=number(ev.get("velocity", 1.0), f"{w}.velocity", low=0.0, high=1.0),
                gain_db=number(ev.get("gain_db", 0.0), f"{w}.gain_db", low=-60.0, high=12.0),
                pan=number(ev.get("pan", 0.0), f"{w}.pan", low=-1.0, high=1.0),
                controls=tuple((str(k), number(v, f"{w}.controls.{k}")) for k, v in sorted(controls.items())),
                automation=tuple(
                    (str(k), parse_points(v, f"{w}.automation.{k}", low=None, high=None))
                    for k, v in sorted(automation.items())
                ),
                seed=None if ev.get("seed") is None else integer(ev["seed"], f"{w}.seed", low=0, high=2**31 - 1),
            )
        )
    return Score(
        events=events,
        patches=patches,
        sample_rate=sample_rate,
        tail_s=number(doc.get("tail_s", 1.0), "tail_s", low=0.0, high=30.0),
        ceiling_db=number(out.get("ceiling_db", -1.0), "output.ceiling_db", low=-40.0, high=-1.0),
        loudness_lufs=None if loud is None else number(loud, "output.loudness_lufs", low=-60.0, high=-6.0),
        name=string(doc.get("name", "score"), "name", max_len=64),
        base_dir=base_dir,
    )


def load_score(source: str | os.PathLike[str] | Mapping[str, Any] | Score) -> Score:
    """A :class:`Score` from a ``.json``/``.toml`` file, a ``.mid`` file (needs a patch: use
    :func:`midi_to_score`), a document dict, or a score (returned as is)."""
    if isinstance(source, Score):
        return source
    if isinstance(source, Mapping):
        return parse_score(source)
    path = Path(source)
    if path.suffix.lower() in (".mid", ".midi"):
        raise ConfigError(f"{path}: a MIDI file needs a patch; use midi_to_score / render_midi (CLI: synth midi)")
    doc, path = load_document(path, "score")
    try:
        return parse_score(doc, path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _event_patch(score: Score, event: Event, index: int) -> Patch:
    try:
        patch = score.patch_for(event.patch).with_sample_rate(score.sample_rate)
        if event.controls:
            patch = patch.with_controls(dict(event.controls))
        if event.automation:
            patch = patch.with_automation({k: [list(p) for p in pts] for k, pts in event.automation})
    except ConfigError as exc:
        raise ConfigError(f"events[{index}]: {exc}") from None
    return patch


def render_score(source: str | os.PathLike[str] | Mapping[str, Any] | Score, *, progress: Any = None) -> Rendered:
    """Render a score (file, document or :class:`Score`) to safe stereo audio.

    Args:
        source: the score.
        progress: optional callable ``progress(done, total)`` called after each event.

    Returns:
        :class:`~neuromix.synthesis.render.Rendered` of the whole piece (``pitch_hz`` 0,
        ``info`` with the number of events and of distinct renders).
    """
    score = load_score(source)
    sr = score.sample_rate
    if not score.events:
        raise ConfigError("events: the score has no events")
    instruments: dict[str, Any] = {}
    renders: dict[tuple[Any, ...], Tensor] = {}
    planned: list[tuple[Event, Patch]] = []
    end = 0.0
    for i, event in enumerate(score.events):
        patch = _event_patch(score, event, i)
        key = str(patch.network_source())
        if key not in instruments:
            instruments[key] = patch.instrument()
        patch.use_instrument(instruments[key])
        planned.append((event, patch))
        end = max(end, event.time_s + event.duration_s + patch.envelope.release_s)
    total = end + score.tail_s
    if total > LIMITS.max_score_s:
        raise ConfigError(f"the score lasts {total:.1f} s, more than the {LIMITS.max_score_s:g} s limit")
    mix = torch.zeros(2, int(math.ceil(total * sr)) + 1)
    for done, (event, patch) in enumerate(planned, start=1):
        pitch = event.pitch_hz if event.pitch_hz is not None else midi_to_hz(patch.note)
        key = (patch.to_json(), round(pitch, 9), round(event.duration_s, 9), event.seed)
        if key not in renders:
            renders[key] = patch.render(event.duration_s, pitch_hz=pitch, seed=event.seed, report=False).audio
        audio = renders[key] * (event.velocity * 10.0 ** (event.gain_db / 20.0))
        if event.pan != 0.0:
            audio = F.pan(audio[None], event.pan)[0]
        start = int(round(event.time_s * sr))
        stop = min(mix.shape[-1], start + audio.shape[-1])
        mix[:, start:stop] += audio[:, : stop - start]
        if progress is not None:
            progress(done, len(planned))
    safe, report = make_safe(mix, sr, ceiling_db=score.ceiling_db, loudness_lufs=score.loudness_lufs)
    return Rendered(
        safe,
        sr,
        0.0,
        score.duration_s,
        report,
        {},
        {"events": len(planned), "renders": len(renders), "name": score.name},
    )


# --------------------------------------------------------------------------- MIDI


def _as_patch(value: str | Patch) -> tuple[str, Patch]:
    if isinstance(value, Patch):
        return value.name, value
    return str(value), Patch.load(value)


def midi_to_score(
    path: str | os.PathLike[str],
    patch: str | Patch,
    *,
    cc: Mapping[int, str] | None = None,
    channel_patches: Mapping[int, str | Patch] | None = None,
    sample_rate: int = 44100,
    tail_s: float = 1.0,
    loudness_lufs: float | None = None,
) -> Score:
    """Read a Standard MIDI File into a :class:`Score`.

    Args:
        path: the ``.mid`` file.
        patch: the patch every note triggers (preset name, patch file or :class:`Patch`).
        cc: controller number -> control name of the patch; values 0..127 map onto the
            control's range and become automation of the notes sounding at the time.
        channel_patches: MIDI channel (0..15) -> patch, overriding ``patch`` per channel.
        sample_rate: output rate.
        tail_s: silence after the last release.
        loudness_lufs: optional loudness target of the mix.

    Raises:
        ConfigError: unreadable or oversized file, too many notes, unknown control.
    """
    import mido

    p = Path(path)
    try:
        info = p.stat()
    except OSError:
        raise ConfigError(f"{p}: MIDI file not found") from None
    if not stat.S_ISREG(info.st_mode):  # a pipe or device would block the reader forever
        raise ConfigError(f"{p}: is not a regular file (a folder, pipe or device), not a MIDI file")
    size = info.st_size
    if size > LIMITS.max_midi_bytes:
        raise ConfigError(f"{p}: MIDI file is {size} bytes, more than {LIMITS.max_midi_bytes}")
    try:
        midi = mido.MidiFile(str(p))
        messages = []
        for count, msg in enumerate(midi):
            if count > 200_000:
                raise ConfigError(f"{p}: more than 200000 MIDI messages")
            messages.append(msg)
    except ConfigError:
        raise
    except Exception as exc:  # mido raises OSError, EOFError, ValueError, KeyError ... on bad files
        raise ConfigError(f"{p}: not a valid MIDI file ({type(exc).__name__}: {exc})") from None
    cc = dict(cc or {})
    for number_ in cc:
        if not 0 <= int(number_) <= 127:
            raise ConfigError(f"cc: controller number {number_} outside 0..127")
    default_alias, default_patch = _as_patch(patch)
    patches = {default_alias: default_patch}
    channel_alias: dict[int, str] = {}
    for channel, value in (channel_patches or {}).items():
        alias, loaded = _as_patch(value)
        patches.setdefault(alias, loaded)
        channel_alias[int(channel)] = alias
    now = 0.0
    active: dict[tuple[int, int], list[tuple[float, int]]] = {}
    notes: list[tuple[float, float, int, int, int]] = []  # start, end, channel, note, velocity
    cc_values: dict[tuple[int, int], list[tuple[float, int]]] = {}
    for msg in messages:
        now += float(msg.time)
        if msg.type == "note_on" and msg.velocity > 0:
            active.setdefault((msg.channel, msg.note), []).append((now, msg.velocity))
        elif msg.type in ("note_off", "note_on"):
            starts = active.get((msg.channel, msg.note))
            if starts:
                start, vel = starts.pop(0)
                notes.append((start, now, msg.channel, msg.note, vel))
        elif msg.type == "control_change" and msg.control in cc:
            cc_values.setdefault((msg.channel, msg.control), []).append((now, msg.value))
        if len(notes) > LIMITS.max_events:
            raise ConfigError(f"{p}: more than {LIMITS.max_events} notes")
    for (channel, note), starts in active.items():
        for start, vel in starts:
            notes.append((start, max(now, start + 0.05), channel, note, vel))
    if not notes:
        raise ConfigError(f"{p}: the MIDI file has no notes")
    events = []
    for start, end, channel, note, vel in sorted(notes):
        patch_name = channel_alias.get(channel, default_alias)
        the_patch = patches[patch_name]
        automation = []
        for control_number, control_name in sorted(cc.items()):
            if control_name not in the_patch.controls:
                raise ConfigError(
                    f"cc {control_number}: patch {the_patch.name} has no control {control_name!r} "
                    f"(controls: {', '.join(the_patch.controls) or 'none'})"
                )
            ctrl = the_patch.controls[control_name]
            values = cc_values.get((channel, control_number), [])
            before = [v for t, v in values if t <= start]
            points = [(0.0, before[-1])] if before else []
            points += [(t - start, v) for t, v in values if start < t <= end]
            if points:
                if points[0][0] > 0.0:
                    points.insert(0, (0.0, points[0][1]))
                mapped = tuple(
                    (t, ctrl.low + (ctrl.high - ctrl.low) * v / 127.0) for t, v in points[: LIMITS.max_points]
                )
                automation.append((control_name, mapped))
        events.append(
            Event(
                time_s=start,
                duration_s=max(end - start, 0.01),
                patch=str(patch_name),
                pitch_hz=midi_to_hz(note),
                velocity=vel / 127.0,
                automation=tuple(automation),
            )
        )
    if events[-1].time_s + events[-1].duration_s > LIMITS.max_score_s:
        raise ConfigError(f"{p}: lasts longer than the {LIMITS.max_score_s:g} s limit of a score")
    return Score(
        events=events,
        patches=patches,
        sample_rate=sample_rate,
        tail_s=tail_s,
        loudness_lufs=loudness_lufs,
        name=p.stem[:64] or "midi",
        base_dir=p.parent,
    )


def render_midi(path: str | os.PathLike[str], patch: str | Patch, **kwargs: Any) -> Rendered:
    """:func:`midi_to_score` then :func:`render_score`."""
    progress = kwargs.pop("progress", None)
    return render_score(midi_to_score(path, patch, **kwargs), progress=progress)
