"""Procedural multitrack generator: seeded songs with dry, unbalanced stems.

A song is composed, then rendered, entirely from one integer ``seed``:

* **structure** - genre, key, scale (mode), tempo, time signature (4/4, 3/4,
  6/8), one diatonic chord per bar from progressions chosen per section, and
  sections (intro / verse / chorus / bridge / outro) of different *density*
  (which instruments play, and how busy their parts are);
* **parts** - drum grooves with fills, ghost notes and hi-hat chokes, bass
  lines following the chord roots, voiced and voice-led keyboard / pad /
  string chords, strummed or picked guitar voicings (six-string standard
  tuning), lead and vocal melodies that land on chord tones at strong beats;
* **humanisation** - swing, per-note timing jitter, per-track push/drag and
  velocity variation;
* **rendering** - :mod:`neuromix.mixing.instruments` synthesises each track
  dry (no reverb, no mix processing) and each stem is peak-normalised to a
  seeded, class-typical level between -12 and -3 dBFS, so a plain sum is *not*
  a balanced mix.

Randomness comes only from ``numpy.random.Generator`` objects seeded from
``seed`` (one stream for the song structure, one per track for its part, one
per track for its noise), so the same seed gives bit-identical stems and
metadata, and no global random state is touched.

Example:
    >>> song = generate_song(7, seconds=10.0, genre="pop")
    >>> mix = song.as_multitrack()          # (tracks, 2, samples) float32
    >>> write_song(song, "out/song7")         # one WAV per stem + metadata.json
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from neuromix.core.errors import AudioInputError, ConfigError
from neuromix.core.io import write_text_atomic
from neuromix.mixing.classes import CLASS_INDEX, INSTRUMENT_CLASSES
from neuromix.mixing.instruments import (
    GM_DRUMS,
    LEVEL_RANGES_DBFS,
    VARIANTS,
    render_track,
    sample_params,
)

__all__ = [
    "Note",
    "Song",
    "GenreSpec",
    "GENRES",
    "GENERATED_CLASSES",
    "DemoSpec",
    "DEMO_SONGS",
    "generate_song",
    "demo_song",
    "write_song",
]

GENERATOR_VERSION = 1

GENERATED_CLASSES: tuple[str, ...] = tuple(c for c in INSTRUMENT_CLASSES if c != "other")
"""Classes the generator can render (all of :data:`INSTRUMENT_CLASSES` but ``"other"``)."""

_DRUM_CLASSES = frozenset({"kick", "snare", "hihat", "percussion"})
_MAX_PER_CLASS: dict[str, int] = {
    "kick": 1, "snare": 1, "hihat": 1, "percussion": 2, "bass": 1, "keys": 2,
    "pad": 2, "lead": 2, "vocal": 3, "guitar": 3, "strings": 2,
}
_MAX_TRACKS = 32


# ----------------------------------------------------------------------------------------------
# public data types
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """One rendered note (or drum hit) of a song.

    Attributes:
        track: Index of the stem that plays it.
        onset_s: Onset in seconds from the song start (humanised, exactly as rendered).
        duration_s: Gate length in seconds (drums: the grid step; a hit rings out regardless).
        midi_pitch: MIDI pitch; for drums the General MIDI key number (36 kick, 38 snare, 42 closed
            hat, 46 open hat, 49 crash, 51 ride, 39 clap, 43/47/50 toms, 62/63/64 congas, 70 shaker).
        velocity: MIDI velocity 1..127.
    """

    track: int
    onset_s: float
    duration_s: float
    midi_pitch: int
    velocity: int


@dataclass
class Song:
    """A generated multitrack song.

    Attributes:
        stems: One float32 tensor ``(channels, samples)`` per track (mono, or stereo for pads and
            strings), all the same length, dry and peak-normalised to the level in ``meta``.
        classes: Instrument class of every stem (names from :data:`INSTRUMENT_CLASSES`).
        names: Unique stem names (``"kick"``, ``"keys"``, ``"keys_2"``, ...).
        notes: Every note of every track, sorted by track then onset.
        meta: JSON-serialisable description: seed, genre, key, scale, tempo, time signature,
            chords per bar, sections with start times, per-track variant/style/level/parameters,
            sample rate (see :func:`generate_song`).
    """

    stems: list[torch.Tensor]
    classes: list[str]
    names: list[str]
    notes: list[Note]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sample_rate(self) -> int:
        """Sample rate of the stems in Hz."""
        return int(self.meta["sample_rate"])

    @property
    def num_samples(self) -> int:
        """Length of every stem in samples."""
        return int(self.stems[0].shape[-1]) if self.stems else 0

    def track_notes(self, track: int) -> list[Note]:
        """The notes of one track, sorted by onset."""
        return [n for n in self.notes if n.track == track]

    def as_multitrack(self) -> torch.Tensor:
        """Stack the stems as ``(tracks, 2, samples)`` float32; mono stems are duplicated to both channels."""
        out = np.empty((len(self.stems), 2, self.num_samples), dtype=np.float32)
        for i, s in enumerate(self.stems):
            out[i] = s.detach().cpu().numpy()  # broadcasts a mono stem to both channels
        return torch.from_numpy(out)

    def to_json_meta(self) -> dict[str, Any]:
        """JSON-serialisable dict with ``classes``, ``names``, ``meta`` and ``notes`` (list of dicts)."""
        return {
            "classes": list(self.classes),
            "names": list(self.names),
            "meta": self.meta,
            "notes": [asdict(n) for n in self.notes],
        }


@dataclass(frozen=True)
class GenreSpec:
    """Musical habits of a genre: tempo range, metres, modes, instrumentation and feel.

    Attributes:
        name: Genre name.
        tempo_bpm: (low, high) tempo range in beats per minute (quarter notes; for 6/8 the range is
            scaled by 2/3 and counts dotted quarters).
        time_signatures: Weights of ``"4/4"``, ``"3/4"``, ``"6/8"``.
        scales: Weights of the modes (keys of the scale table).
        core: Classes a drawn track set starts with, in priority order.
        optional: Weights of extra classes (a class can be drawn several times, up to a cap).
        num_tracks: (low, high) number of tracks when none is given.
        variants: Per class, weights of its timbral variants (missing: uniform).
        density: Scales the busyness of every section (0..1].
        swing: (low, high) 16th-note swing as a fraction of a 16th.
        timing_ms: Standard deviation of the onset jitter in milliseconds.
        velocity_spread: Relative standard deviation of velocities.
        four_on_floor: Probability of a kick on every beat (4/4).
        half_time: Probability of a half-time snare.
        sevenths: Probability of seventh chords in keys/pads/strings.
        bass_styles: Weights of bass-line styles.
    """

    name: str
    tempo_bpm: tuple[float, float]
    time_signatures: dict[str, float]
    scales: dict[str, float]
    core: tuple[str, ...]
    optional: dict[str, float]
    num_tracks: tuple[int, int]
    variants: dict[str, dict[str, float]]
    density: float
    swing: tuple[float, float]
    timing_ms: float
    velocity_spread: float
    four_on_floor: float
    half_time: float
    sevenths: float
    bass_styles: dict[str, float]


GENRES: dict[str, GenreSpec] = {
    "pop": GenreSpec(
        name="pop", tempo_bpm=(88.0, 126.0), time_signatures={"4/4": 0.85, "3/4": 0.05, "6/8": 0.1},
        scales={"major": 0.55, "minor": 0.25, "mixolydian": 0.1, "dorian": 0.1},
        core=("kick", "snare", "hihat", "bass", "keys", "vocal"),
        optional={"guitar": 1.0, "pad": 0.8, "strings": 0.5, "percussion": 0.7, "lead": 0.4, "keys": 0.3,
                  "vocal": 0.5},
        num_tracks=(6, 10),
        variants={
            "kick": {"acoustic": 0.5, "punchy": 0.4, "808": 0.1},
            "snare": {"acoustic": 0.6, "electronic": 0.4, "brush": 0.0},
            "keys": {"piano": 0.5, "epiano": 0.35, "mallet": 0.15},
            "guitar": {"acoustic": 0.4, "clean": 0.4, "overdrive": 0.1, "nylon": 0.1},
            "bass": {"finger": 0.5, "synth": 0.35, "sub": 0.15},
            "percussion": {"shaker": 0.4, "clap": 0.3, "toms": 0.1, "congas": 0.2},
        },
        density=1.0, swing=(0.0, 0.12), timing_ms=6.0,
        velocity_spread=0.08, four_on_floor=0.2, half_time=0.1, sevenths=0.3,
        bass_styles={"syncopated": 0.4, "eighths": 0.3, "rootfifth": 0.3},
    ),
    "electronic": GenreSpec(
        name="electronic", tempo_bpm=(118.0, 130.0), time_signatures={"4/4": 1.0},
        scales={"minor": 0.55, "dorian": 0.2, "harmonic_minor": 0.1, "major": 0.15},
        core=("kick", "snare", "hihat", "bass", "pad", "lead"),
        optional={"percussion": 1.0, "keys": 0.7, "vocal": 0.6, "strings": 0.2, "lead": 0.3, "pad": 0.3},
        num_tracks=(5, 10),
        variants={
            "kick": {"808": 0.45, "punchy": 0.55, "acoustic": 0.0},
            "snare": {"electronic": 0.85, "acoustic": 0.15, "brush": 0.0},
            "hihat": {"analog": 0.5, "noise": 0.4, "acoustic": 0.1},
            "bass": {"synth": 0.6, "sub": 0.4, "finger": 0.0},
            "keys": {"epiano": 0.4, "mallet": 0.4, "piano": 0.2},
            "percussion": {"clap": 0.5, "shaker": 0.4, "congas": 0.1, "toms": 0.0},
            "strings": {"synth": 0.7, "ensemble": 0.2, "brass": 0.1},
            "guitar": {"clean": 0.7, "acoustic": 0.1, "overdrive": 0.1, "nylon": 0.1},
        },
        density=1.0, swing=(0.0, 0.15), timing_ms=1.5,
        velocity_spread=0.05, four_on_floor=0.9, half_time=0.0, sevenths=0.4,
        bass_styles={"offbeat": 0.4, "eighths": 0.3, "syncopated": 0.3},
    ),
    "rock": GenreSpec(
        name="rock", tempo_bpm=(100.0, 150.0), time_signatures={"4/4": 0.9, "6/8": 0.1},
        scales={"major": 0.4, "mixolydian": 0.2, "minor": 0.3, "dorian": 0.1},
        core=("kick", "snare", "hihat", "bass", "guitar", "guitar", "vocal"),
        optional={"keys": 0.6, "percussion": 0.5, "strings": 0.3, "pad": 0.2, "lead": 0.3, "vocal": 0.5, "guitar": 0.3},
        num_tracks=(6, 12),
        variants={
            "kick": {"acoustic": 0.8, "punchy": 0.2, "808": 0.0},
            "snare": {"acoustic": 0.9, "electronic": 0.1, "brush": 0.0},
            "hihat": {"acoustic": 0.7, "analog": 0.15, "noise": 0.15},
            "bass": {"finger": 0.8, "synth": 0.15, "sub": 0.05},
            "guitar": {"overdrive": 0.5, "clean": 0.3, "acoustic": 0.2, "nylon": 0.0},
            "keys": {"piano": 0.5, "epiano": 0.4, "mallet": 0.1},
            "percussion": {"toms": 0.4, "shaker": 0.3, "clap": 0.1, "congas": 0.2},
            "strings": {"ensemble": 0.5, "brass": 0.4, "synth": 0.1},
        },
        density=1.0, swing=(0.0, 0.05), timing_ms=7.0,
        velocity_spread=0.1, four_on_floor=0.1, half_time=0.1, sevenths=0.1,
        bass_styles={"eighths": 0.7, "rootfifth": 0.3},
    ),
    "ballad": GenreSpec(
        name="ballad", tempo_bpm=(62.0, 84.0), time_signatures={"4/4": 0.6, "3/4": 0.2, "6/8": 0.2},
        scales={"major": 0.5, "minor": 0.4, "dorian": 0.1},
        core=("keys", "bass", "vocal", "strings"),
        optional={"pad": 0.8, "guitar": 0.8, "percussion": 0.6, "kick": 0.5, "snare": 0.5, "hihat": 0.5, "vocal": 0.3},
        num_tracks=(4, 8),
        variants={
            "kick": {"acoustic": 0.8, "punchy": 0.1, "808": 0.1},
            "snare": {"brush": 0.6, "acoustic": 0.4, "electronic": 0.0},
            "keys": {"piano": 0.65, "epiano": 0.25, "mallet": 0.1},
            "bass": {"finger": 0.7, "sub": 0.2, "synth": 0.1},
            "guitar": {"nylon": 0.4, "acoustic": 0.4, "clean": 0.2, "overdrive": 0.0},
            "strings": {"ensemble": 0.75, "brass": 0.1, "synth": 0.15},
            "percussion": {"shaker": 0.5, "toms": 0.3, "congas": 0.2, "clap": 0.0},
            "pad": {"warm": 0.5, "glass": 0.3, "hollow": 0.2},
        },
        density=0.75, swing=(0.0, 0.1), timing_ms=10.0,
        velocity_spread=0.1, four_on_floor=0.0, half_time=0.5, sevenths=0.5,
        bass_styles={"rootfifth": 0.6, "whole": 0.4},
    ),
}
"""Genres the generator knows; ``generate_song(genre=None)`` draws one (see :data:`_GENRE_WEIGHTS`)."""

_GENRE_WEIGHTS = {"pop": 0.35, "electronic": 0.25, "rock": 0.25, "ballad": 0.15}

_SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
}

# Progressions as 0-based scale degrees, per mode (the triads' qualities follow from the mode).
_PROGRESSIONS: dict[str, tuple[tuple[int, ...], ...]] = {
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 3), (0, 3, 5, 4), (1, 4, 0, 0), (0, 2, 3, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 6, 2), (0, 2, 6, 3)),
    "dorian": ((0, 3, 0, 3), (0, 6, 3, 0), (0, 1, 0, 6), (0, 3, 6, 3)),
    "mixolydian": ((0, 6, 3, 0), (0, 3, 6, 3), (0, 6, 0, 3)),
    "harmonic_minor": ((0, 3, 4, 0), (0, 5, 3, 4), (0, 5, 1, 4)),
}

_NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

_SECTION_DENSITY = {"intro": 0.35, "verse": 0.6, "chorus": 1.0, "bridge": 0.5, "outro": 0.35}

_HARMONIC = frozenset({"keys", "pad", "guitar", "strings"})


@dataclass(frozen=True)
class DemoSpec:
    """A fixed, named demo song: seed and settings for :func:`generate_song`.

    Attributes:
        name: Demo name (a key of :data:`DEMO_SONGS`).
        seed: Seed passed to :func:`generate_song`.
        genre: Genre name.
        classes: Instrument class of every track, in order (fixes the track count).
        seconds: Default length in seconds.
        description: One line for menus.
    """

    name: str
    seed: int
    genre: str
    classes: tuple[str, ...]
    seconds: float = 20.0
    description: str = ""


DEMO_SONGS: dict[str, DemoSpec] = {
    "neon-drive": DemoSpec(
        name="neon-drive", seed=1201, genre="electronic",
        classes=("kick", "snare", "hihat", "bass", "keys", "pad", "lead", "vocal"),
        description="electronic, 8 tracks, 120 BPM in Bb minor: four-on-the-floor 808 kick, off-beat open hats, "
                    "synth bass, mallet arpeggio, warm pad, saw lead and a breathy voice",
    ),
    "quiet-harbour": DemoSpec(
        name="quiet-harbour", seed=1175, genre="ballad",
        classes=("percussion", "bass", "keys", "guitar", "strings", "vocal"),
        description="ballad, 6 tracks, 3/4 at 69 BPM in E minor: piano, finger-picked nylon guitar, string "
                    "ensemble, bass, shaker and a female voice",
    ),
    "brick-lane": DemoSpec(
        name="brick-lane", seed=1281, genre="rock",
        classes=("kick", "snare", "hihat", "percussion", "bass", "keys", "guitar", "guitar", "vocal", "vocal"),
        description="rock, 10 tracks, 145 BPM in Eb mixolydian: acoustic kit with ride and shaker, power-chord and "
                    "clean guitars, finger bass, piano, lead and backing vocals",
    ),
}
"""Three bundled demo songs of different genres and densities."""


# ----------------------------------------------------------------------------------------------
# song structure
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chord:
    root: int  # pitch class
    pcs: tuple[int, ...]  # pitch classes, root first (triad or seventh chord)
    name: str


@dataclass(frozen=True)
class _Section:
    name: str
    start: int  # first bar
    bars: int
    density: float

    @property
    def end(self) -> int:
        return self.start + self.bars


@dataclass
class _Ctx:
    genre: GenreSpec
    seconds: float
    key: int
    scale_name: str
    scale: tuple[int, ...]
    tempo_bpm: float
    ts: str
    steps_per_bar: int
    steps_per_beat: int
    step_s: float
    n_bars: int
    chords: list[_Chord]
    sections: list[_Section]
    swing: float
    has_lead_vocal: bool = False

    @property
    def bar_s(self) -> float:
        return self.steps_per_bar * self.step_s

    def weight(self, step: int) -> float:
        """Metric weight of a 16th step within the bar (1 = downbeat ... 0.3 = weak 16th)."""
        s = step % self.steps_per_bar
        if s == 0:
            return 1.0
        if s % self.steps_per_beat == 0:
            return 0.8
        if s % 2 == 0:
            return 0.55
        return 0.3


@dataclass
class _Track:
    index: int
    cls: str
    name: str
    variant: str
    style: str
    role: str
    level_db: float
    push_s: float
    params: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


Event = tuple[float, float, int, float, float]  # (abs step, duration in steps, pitch, velocity 0..1, offset s)


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = [k for k, w in weights.items() if w > 0]
    w = np.array([weights[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


def _chord_name(root: int, pcs: Sequence[int]) -> str:
    third = (pcs[1] - root) % 12
    fifth = (pcs[2] - root) % 12
    quality = {(4, 7): "", (3, 7): "m", (3, 6): "dim", (4, 8): "aug"}.get((third, fifth), "")
    if len(pcs) > 3:
        sev = (pcs[3] - root) % 12
        if quality == "" and sev == 11:
            quality = "maj7"
        elif quality == "" and sev == 10:
            quality = "7"
        elif quality == "m":
            quality = "m7" if sev == 10 else "m(maj7)"
        elif quality == "dim":
            quality = "m7b5" if sev == 10 else "dim7"
    return _NOTE_NAMES[root] + quality


def _diatonic_chord(key: int, scale: tuple[int, ...], degree: int, seventh: bool) -> _Chord:
    idx = [degree, degree + 2, degree + 4] + ([degree + 6] if seventh else [])
    pcs = tuple((key + scale[i % 7]) % 12 for i in idx)
    return _Chord(root=pcs[0], pcs=pcs, name=_chord_name(pcs[0], pcs))


def _plan_sections(n_bars: int, density: float) -> list[_Section]:
    def sec(name: str, start: int, bars: int) -> _Section:
        return _Section(name, start, bars, float(min(1.0, _SECTION_DENSITY[name] * density)))

    if n_bars == 1:
        return [sec("chorus", 0, 1)]
    if n_bars == 2:
        return [sec("verse", 0, 1), sec("chorus", 1, 1)]
    intro = 1 if n_bars < 10 else 2
    out = [sec("intro", 0, intro)]
    rest = n_bars - intro
    block = 2 if rest <= 8 else 4
    if rest < 2 * block:
        out += [sec("verse", intro, rest // 2), sec("chorus", intro + rest // 2, rest - rest // 2)]
        return out
    order = ("verse", "chorus", "verse", "chorus", "bridge", "chorus")
    start, i = intro, 0
    while start < n_bars:
        left = n_bars - start
        name = order[i % len(order)]
        if name in ("verse", "bridge") and left < block and i > 0:
            out.append(sec("outro", start, left))  # too short for another verse: end with an outro
            break
        take = left if left - block < 2 else block
        out.append(sec(name, start, take))
        start += take
        i += 1
    return out


def _plan_activity(ctx: _Ctx, tracks: list[_Track], rng: np.random.Generator) -> list[set[int]]:
    """Which sections each track plays in (every track plays in every chorus)."""
    electronic = ctx.genre.name == "electronic"
    has_vocal = ctx.has_lead_vocal
    active: list[set[int]] = [set() for _ in tracks]
    for si, sec in enumerate(ctx.sections):
        for tr in tracks:
            c, r = tr.cls, rng.random()
            if sec.name == "chorus":
                on = True
            elif sec.name == "verse":
                if c == "lead":
                    on = not has_vocal or r < 0.15
                elif c == "vocal":
                    on = tr.role == "lead" or r < 0.2
                elif c == "strings":
                    on = r < 0.5
                elif c == "percussion":
                    on = r < 0.7
                else:
                    on = r < 0.9
            elif sec.name == "bridge":
                on = {"kick": 0.4, "snare": 0.4, "hihat": 0.6, "percussion": 0.5, "bass": 0.7,
                      "lead": 0.5, "vocal": 1.0 if tr.role == "lead" else 0.5}.get(c, 0.9) > r
            else:  # intro / outro
                on = {"kick": 0.7 if electronic else 0.3, "snare": 0.15, "hihat": 0.5, "percussion": 0.4, "bass": 0.5,
                      "lead": 0.2 if has_vocal else (0.6 if electronic else 0.4), "vocal": 0.0}.get(c, 0.8) > r
            if on:
                active[tr.index].add(si)
        if sec.name in ("intro", "outro") and not any(si in a for a in active):
            bed = [t for t in tracks if t.cls in _HARMONIC] or [t for t in tracks if t.cls not in ("vocal",)] or tracks
            active[bed[0].index].add(si)
    return active


# ----------------------------------------------------------------------------------------------
# parts
# ----------------------------------------------------------------------------------------------


def _fit(pc: int, lo: int, hi: int) -> int:
    """Lowest MIDI pitch >= lo with pitch class ``pc`` (wrapped down an octave if above ``hi``)."""
    p = lo + (pc - lo) % 12
    return p - 12 if p > hi and p - 12 >= lo - 12 else p


def _voicing(chord: _Chord, prev: list[int] | None, lo: int, hi: int, size: int) -> list[int]:
    """Close-position chord of ``size`` notes in [lo, hi], voice-led towards ``prev`` (or the range centre)."""
    pcs = list(chord.pcs)
    while len(pcs) < size:
        pcs.append(pcs[len(pcs) % len(chord.pcs)])
    pcs = pcs[:size]
    best, best_cost = None, math.inf
    centre = (lo + hi) / 2.0
    for r in range(len(pcs)):
        rot = pcs[r:] + pcs[:r]
        for bottom in range(lo, lo + 12):
            if bottom % 12 != rot[0]:
                continue
            notes = [bottom]
            for pc in rot[1:]:
                p = notes[-1] + 1
                p += (pc - p) % 12
                notes.append(p)
            if notes[-1] > hi:
                continue
            ref = sorted(prev) if prev and len(prev) == len(notes) else [centre] * len(notes)
            cost = sum(abs(a - b) for a, b in zip(sorted(notes), ref))
            if cost < best_cost:
                best, best_cost = notes, cost
    if best is None:
        best = sorted(_fit(pc, lo, hi) for pc in pcs)
    return sorted(best)


def _bars(ctx: _Ctx, active: set[int]):
    """Yield (section index, section, bar) for the active sections."""
    for si, sec in enumerate(ctx.sections):
        if si in active:
            for b in range(sec.start, sec.end):
                yield si, sec, b


def _part_kick(ctx: _Ctx, tr: _Track, active: set[int], rng: np.random.Generator) -> list[Event]:
    """Kick: four-on-the-floor or a per-section groove (1 and 3 plus syncopations), pickups into the next section."""
    S, ev = ctx.steps_per_bar, []
    for si, sec in enumerate(ctx.sections):
        if si not in active:
            continue
        d = sec.density
        if ctx.ts == "4/4":
            if tr.style == "four":
                base = [0, 4, 8, 12] if d >= 0.3 else [0, 8]
            elif d < 0.45:
                base = [0] if rng.random() < 0.5 else [0, 8]
            else:
                opts = ([0, 8], [0, 8, 10], [0, 6, 8], [0, 3, 8, 10], [0, 7, 8], [0, 10])
                base = list(opts[int(rng.integers(len(opts)))])
        elif ctx.ts == "3/4":
            base = [0] if d < 0.45 else list(([0], [0, 8], [0, 6])[int(rng.integers(3))])
        else:
            base = [0] if d < 0.45 else list(([0, 6], [0, 10], [0, 6, 10])[int(rng.integers(3))])
        for b in range(sec.start, sec.end):
            steps = set(base)
            if b == sec.end - 1 and d >= 0.5 and rng.random() < 0.4:
                steps.add(S - 2)
            elif rng.random() < 0.15 * d and tr.style != "four":
                steps.add(int(rng.choice([3, 7, 11, 14][: max(1, S // 4)])) % S)
            for s in sorted(steps):
                ev.append((b * S + s, 2.0, GM_DRUMS["kick"], (0.95 if s == 0 else 0.82) * (0.85 + 0.15 * d), 0.0))
    return ev


def _backbeat(ctx: _Ctx, half_time: bool) -> list[int]:
    if ctx.ts == "4/4":
        return [8] if half_time else [4, 12]
    if ctx.ts == "3/4":
        return [4, 8]
    return [6]


def _part_snare(ctx: _Ctx, tr: _Track, active: set[int], rng: np.random.Generator) -> list[Event]:
    """Snare: backbeat (or half time), ghost notes, fills or an electronic build-up at section ends."""
    S, beat, ev = ctx.steps_per_bar, ctx.steps_per_beat, []
    ghost = tr.extra["ghost"]
    for si, sec in enumerate(ctx.sections):
        if si not in active:
            continue
        d = sec.density
        back = _backbeat(ctx, tr.style == "halftime" or d < 0.4)
        nxt = ctx.sections[si + 1] if si + 1 < len(ctx.sections) else None
        for b in range(sec.start, sec.end):
            hits: dict[int, float] = {s: 0.9 for s in back}
            for s in range(1, S):
                if s not in hits and s % 2 == 1 and rng.random() < ghost * d:
                    hits[s] = 0.22
            last = b == sec.end - 1 and nxt is not None
            if last and ctx.genre.name == "electronic" and nxt.name == "chorus" and rng.random() < 0.5:
                for s in range(0, S, 1 if d >= 0.5 else 2):  # build-up roll into the chorus
                    hits[s] = 0.35 + 0.6 * s / S
            elif last and rng.random() < 0.35 + 0.4 * d:
                span = beat if rng.random() < 0.7 else 2 * beat
                for s in range(S - span, S):  # fill
                    hits[s] = 0.55 + 0.4 * (s - (S - span)) / span
            for s in sorted(hits):
                ev.append((b * S + s, 1.0, GM_DRUMS["snare"], hits[s], 0.0))
    return ev


def _part_hihat(ctx: _Ctx, tr: _Track, active: set[int], rng: np.random.Generator) -> list[Event]:
    """Hats: a quarter/eighth/sixteenth pulse by density with accents and open hats; ride in rock choruses;
    crashes on section starts."""
    S, beat, ev = ctx.steps_per_bar, ctx.steps_per_beat, []
    for si, sec in enumerate(ctx.sections):
        if si not in active:
            continue
        d = sec.density
        if d >= 0.8:
            sub = 1 if rng.random() < tr.extra["busy"] else 2
        elif d >= 0.4:
            sub = 2
        else:
            sub = beat
        ride = tr.style == "ride" and sec.name == "chorus"
        crash_here = si > 0 and (sec.name == "chorus" or rng.random() < 0.4)
        for b in range(sec.start, sec.end):
            for s in range(0, S, sub):
                w = ctx.weight(s)
                vel = 0.85 if w >= 0.8 else (0.65 if w >= 0.55 else 0.45)
                pitch = GM_DRUMS["ride"] if ride else GM_DRUMS["hat_closed"]
                if tr.style == "offbeat_open" and ctx.ts == "4/4" and s % 4 == 2 and not ride:
                    pitch, vel = GM_DRUMS["hat_open"], 0.75
                elif ctx.ts != "6/8" and s == S - 2 and not ride and rng.random() < 0.2 * d:
                    pitch = GM_DRUMS["hat_open"]
                if b == sec.start and s == 0 and crash_here:
                    pitch, vel = GM_DRUMS["crash"], 0.9
                ev.append((b * S + s, float(sub), pitch, vel, 0.0))
    return ev


def _part_percussion(ctx: _Ctx, tr: _Track, active: set[int], rng: np.random.Generator) -> list[Event]:
    """Percussion by variant: shaker sixteenths, claps on the backbeat, tom fills/grooves, conga patterns."""
    S, beat, ev = ctx.steps_per_bar, ctx.steps_per_beat, []
    v = tr.variant
    for si, sec in enumerate(ctx.sections):
        if si not in active:
            continue
        d = sec.density
        nxt = si + 1 < len(ctx.sections)
        for b in range(sec.start, sec.end):
            if v == "shaker":
                sub = 1 if d >= 0.6 else 2
                accents = (0.5, 0.3, 0.8, 0.35) if ctx.ts != "6/8" else (0.7, 0.35)
                for s in range(0, S, sub):
                    ev.append((b * S + s, float(sub), GM_DRUMS["shaker"], accents[(s // sub) % len(accents)] if sub == 1 else
                               (0.75 if s % beat else 0.5), 0.0))
            elif v == "clap":
                steps = set(_backbeat(ctx, d < 0.4))
                if d >= 0.8 and rng.random() < 0.3:
                    steps.add(S - 1 if rng.random() < 0.5 else S - 3)
                for s in sorted(steps):
                    ev.append((b * S + s, 1.0, GM_DRUMS["clap"], 0.85, 0.0))
            elif v == "toms":
                last = b == sec.end - 1
                if last and (rng.random() < (0.9 if d >= 0.5 else 0.5) or not nxt):
                    span = beat if rng.random() < 0.6 else 2 * beat
                    toms = (GM_DRUMS["tom_high"], GM_DRUMS["tom_mid"], GM_DRUMS["tom_floor"])
                    for j, s in enumerate(range(S - span, S)):
                        ev.append((b * S + s, 1.0, toms[min(2, 3 * j // span)], 0.7 + 0.25 * j / span, 0.0))
                elif d >= 0.8 and tr.style == "groove":
                    for s in range(0, S, beat):
                        ev.append((b * S + s, float(beat), GM_DRUMS["tom_floor"], 0.6, 0.0))
                elif d < 0.8:
                    ev.append((b * S, float(beat), GM_DRUMS["tom_floor"], 0.55, 0.0))
            else:  # congas
                if ctx.ts == "4/4":
                    pat = {4: "conga_mute", 6: "conga_open", 7: "conga_open", 12: "conga_mute",
                           14: "conga_low", 15: "conga_low"}
                elif ctx.ts == "3/4":
                    pat = {4: "conga_mute", 6: "conga_open", 8: "conga_open", 10: "conga_low"}
                else:
                    pat = {0: "conga_low", 4: "conga_mute", 6: "conga_open", 8: "conga_open", 10: "conga_mute"}
                for s, name in pat.items():
                    if d >= 0.6 or ctx.weight(s) >= 0.55:
                        ev.append((b * S + s, 1.0, GM_DRUMS[name], 0.8 if "open" in name else 0.6, 0.0))
                for s in range(1, S, 2):
                    if s not in pat and rng.random() < 0.12 * d:
                        ev.append((b * S + s, 1.0, GM_DRUMS["conga_mute"], 0.35, 0.0))
    return ev


def _bass_template(ctx: _Ctx, style: str, d: float) -> list[int]:
    S = ctx.steps_per_bar
    if d < 0.45 or style == "whole":
        return [0] if d < 0.3 or style == "whole" else [0, S // 2]
    table = {
        "4/4": {"eighths": list(range(0, 16, 2)) if d >= 0.7 else [0, 4, 8, 12], "offbeat": [2, 6, 10, 14],
                "rootfifth": [0, 4, 8, 12] if d >= 0.7 else [0, 8], "syncopated": [0, 3, 6, 8, 11, 14]},
        "3/4": {"eighths": list(range(0, 12, 2)) if d >= 0.7 else [0, 4, 8], "offbeat": [2, 6, 10],
                "rootfifth": [0, 4, 8], "syncopated": [0, 6, 8]},
        "6/8": {"eighths": list(range(0, 12, 2)) if d >= 0.7 else [0, 4, 6, 10], "offbeat": [0, 4, 6, 10],
                "rootfifth": [0, 6], "syncopated": [0, 4, 6, 10]},
    }
    return table[ctx.ts].get(style, [0, S // 2])


def _part_bass(ctx: _Ctx, tr: _Track, active: set[int], rng: np.random.Generator) -> list[Event]:
    """Bass: chord roots in the variant's register, in a style (eighths, off-beats, root-fifth, syncopated,
    whole notes), with octaves, fifths and approach notes."""
    S, ev = ctx.steps_per_bar, []
    lo, hi = tr.extra["range"]
    legato = tr.extra["legato"]
    for si, sec, b in _bars(ctx, active):
        chord = ctx.chords[b]
        root = _fit(chord.root, lo, hi)
        fifth = root + 7 if root + 7 <= hi else root - 5
        steps = _bass_template(ctx, tr.style, sec.density)
        nxt_chord = ctx.chords[b + 1] if b + 1 < ctx.n_bars else chord
        for j, s in enumerate(steps):
            end = steps[j + 1] if j + 1 < len(steps) else S
            pitch = root
            if tr.style == "rootfifth" and j % 2 == 1:
                pitch = fifth
            elif len(steps) >= 4 and j > 0:
                r = rng.random()
                if r < 0.12 and root + 12 <= hi + 5:
                    pitch = root + 12
                elif r < 0.22:
                    pitch = fifth
            if j == len(steps) - 1 and len(steps) >= 3 and nxt_chord.root != chord.root and rng.random() < 0.35:
                target = _fit(nxt_chord.root, lo, hi)
                pitch = target + (1 if rng.random() < 0.5 else -1) * (1 if rng.random() < 0.5 else 2)
            vel = 0.88 if s == 0 else 0.75
            ev.append((b * S + s, max(0.5, (end - s) * legato), int(pitch), vel, 0.0))
    return ev


def _part_keys(ctx: _Ctx, tr: _Track, active: set[int], rng: np.random.Generator) -> list[Event]:
    """Keys: voice-led chords, sustained, block, comping, ballad (left-hand root, broken chord) or mallet arpeggios."""
    S, beat, ev = ctx.steps_per_bar, ctx.steps_per_beat, []
    prev: list[int] | None = None
    size = 4 if tr.extra["sevenths"] else 3
    for si, sec, b in _bars(ctx, active):
        chord = ctx.chords[b]
        d = sec.density
        v = _voicing(chord, prev, 55, 76, size)
        prev = v
        style = tr.style if d >= 0.45 else ("sustain" if tr.style != "arpeggio" else "arpeggio")
        if style == "sustain":
            for p in v:
                ev.append((b * S, S * 0.98, p, 0.6, 0.0))
        elif style == "block":
            if ctx.ts == "4/4":
                busy = ([0, 4, 8, 12], [0, 6, 8, 14], [0, 3, 6, 8, 11, 14])
                rh = busy[int(rng.integers(len(busy)))] if d >= 0.7 else [0, 8]
            elif ctx.ts == "3/4":
                rh = [0, 4, 8]
            else:
                rh = [0, 4, 6, 10] if d >= 0.7 else [0, 6]
            for j, s in enumerate(rh):
                end = rh[j + 1] if j + 1 < len(rh) else S
                for p in v:
                    ev.append((b * S + s, (end - s) * 0.9, p, 0.78 if s == 0 else 0.65, 0.0))
        elif style == "comp":
            rh = sorted(set([0] + [s for s in (3, 6, 10, 14) if s < S and rng.random() < 0.35 + 0.5 * d]))
            for s in rh:
                for p in v:
                    ev.append((b * S + s, 1.5, p, 0.72 if s == 0 else 0.62, 0.0))
        elif style == "ballad":  # left-hand root held, right hand broken chord in eighths
            ev.append((b * S, S * 0.98, _fit(chord.root, 36, 48), 0.7, 0.0))
            order = [0, 1, 2, 1] if len(v) == 3 else [0, 1, 2, 3, 2, 1]
            for j, s in enumerate(range(0, S, 2)):
                ev.append((b * S + s, 4.0, v[order[j % len(order)]], 0.6 if s % beat else 0.7, 0.0))
        else:  # arpeggio (mallets): up and down over two octaves
            sub = 1 if d >= 0.8 and rng.random() < 0.3 else 2
            notes = v + [p + 12 for p in v]
            seq = notes + notes[-2:0:-1]
            for j, s in enumerate(range(0, S, sub)):
                ev.append((b * S + s, sub * 1.5, seq[j % len(seq)], 0.7 if s % beat == 0 else 0.55, 0.0))
    return ev


def _part_pad(ctx: _Ctx, tr: _Track, active: set[int], rng: np.random.Generator) -> list[Event]:
    """Pad: one voice-led chord per bar; notes common to consecutive bars are tied."""
    S, ev = ctx.steps_per_bar, []
    prev: list[int] | None = None
    size = 4 if tr.extra["sevenths"] else 3
    open_notes: dict[int, int] = {}  # pitch -> event index (ties over repeated chords)
    last_bar = -2
    for si, sec, b in _bars(ctx, active):
        v = _voicing(ctx.chords[b], prev, 48, 72, size)
        prev = v
        vel = 0.55 + 0.25 * sec.density
        new_open: dict[int, int] = {}
        for p in v:
            if p in open_notes and last_bar == b - 1:
                k = open_notes[p]
                st, du, pi, ve, of = ev[k]
                ev[k] = (st, du + S, pi, ve, of)
                new_open[p] = k
            else:
                ev.append((b * S, float(S), p, vel, 0.0))
                new_open[p] = len(ev) - 1
        open_notes, last_bar = new_open, b
    return ev


def _part_strings(ctx: _Ctx, tr: _Track, active: set[int], rng: np.random.Generator) -> list[Event]:
    """Strings/brass: root plus a three-voice upper chord, sustained, with a moving top line, or as stabs."""
    S, ev = ctx.steps_per_bar, []
    prev: list[int] | None = None
    for si, sec, b in _bars(ctx, active):
        chord = ctx.chords[b]
        d = sec.density
        upper = _voicing(chord, prev, 57, 79, 3)
        prev = upper
        low = _fit(chord.root, 43, 55)
        vel = 0.5 + 0.35 * d
        if tr.style == "stabs" and d >= 0.6:
            rh = {"4/4": [0, 6, 10], "3/4": [0, 8], "6/8": [0, 6]}[ctx.ts]
            for s in rh:
                for p in [low] + upper:
                    ev.append((b * S + s, 2.0, p, 0.8, 0.0))
        else:
            ev.append((b * S, float(S), low, vel, 0.0))
            if tr.style == "moving" and d >= 0.6:
                half = S // 2
                for p in upper[:-1]:
                    ev.append((b * S, float(S), p, vel, 0.0))
                top = upper[-1]
                alts = [p for p in (_fit(pc, top - 5, top + 5) for pc in chord.pcs) if p != top] or [top]
                ev.append((b * S, float(half), top, vel, 0.0))
                ev.append((b * S + half, float(half), int(alts[int(rng.integers(len(alts)))]), vel, 0.0))
            else:
                for p in upper:
                    ev.append((b * S, float(S), p, vel, 0.0))
    return ev


def _scale_pitches(ctx: _Ctx, lo: int, hi: int) -> list[int]:
    sc = {(ctx.key + s) % 12 for s in ctx.scale}
    return [m for m in range(lo, hi + 1) if m % 12 in sc]


def _melody(ctx: _Ctx, tr: _Track, active: set[int], rng: np.random.Generator, vocal: bool) -> list[Event]:
    """Per section: a one- or two-bar rhythm motif (varied on repeats) and a scale-wise random walk that
    snaps to the nearest chord tone on strong beats; vocal phrases leave room to breathe."""
    S, beat, ev = ctx.steps_per_bar, ctx.steps_per_beat, []
    lo, hi = tr.extra["range"]
    pitches = _scale_pitches(ctx, lo, hi)
    idx = len(pitches) // 2
    for si, sec in enumerate(ctx.sections):
        if si not in active:
            continue
        d = sec.density
        unit = 2 if sec.bars >= 2 else 1
        grid = 2 if vocal or d < 0.8 or rng.random() < 0.6 else 1
        p_on = (0.3 + 0.35 * d) if vocal else (0.25 + 0.45 * d)
        length = unit * S
        rhythm = [s for s in range(0, length, grid) if s == 0 or rng.random() < p_on * (0.5 + ctx.weight(s))]
        if vocal:  # breathe at the end of each phrase
            rhythm = [s for s in rhythm if s < length - max(beat, length // 4)] or [0]
        for u0 in range(sec.start, sec.end, unit):
            r = list(rhythm)
            if u0 > sec.start and rng.random() < 0.3 and len(r) > 2:  # vary the motif a little
                r.pop(int(rng.integers(1, len(r))))
            for j, s in enumerate(r):
                bar = u0 + s // S
                if bar >= sec.end:
                    break
                chord_pcs = ctx.chords[bar].pcs
                if ctx.weight(s) >= 0.8:  # strong beat: nearest chord tone
                    cands = [k for k in range(max(0, idx - 3), min(len(pitches), idx + 4)) if pitches[k] % 12 in chord_pcs]
                    if cands:
                        idx = min(cands, key=lambda k: (abs(k - idx), rng.random()))
                else:
                    idx += int(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]))
                if idx < 0:
                    idx = min(len(pitches) - 1, -idx)
                if idx >= len(pitches):
                    idx = max(0, 2 * (len(pitches) - 1) - idx)
                end = r[j + 1] if j + 1 < len(r) else (length - (beat // 2 if vocal else 0))
                end = min(end, (sec.end - u0) * S)
                dur = max(1.0, (end - s) * (0.92 if vocal else tr.extra["legato"]))
                vel = 0.8 if ctx.weight(s) >= 0.8 else 0.68
                ev.append((u0 * S + s, dur, pitches[idx], vel, 0.0))
    return ev


def _part_lead(ctx: _Ctx, tr: _Track, active: set[int], rng: np.random.Generator) -> list[Event]:
    """Lead synth: a melody (see ``_melody``)."""
    return _melody(ctx, tr, active, rng, vocal=False)


def _part_vocal(ctx: _Ctx, tr: _Track, active: set[int], rng: np.random.Generator) -> list[Event]:
    """Vocal: the lead sings a phrased melody; backing vocals hold chord tones ('ooh/aah')."""
    if tr.role == "lead":
        return _melody(ctx, tr, active, rng, vocal=True)
    S, ev = ctx.steps_per_bar, []  # backing vocal: sustained "ooh/aah" harmony on chord tones
    lo, hi = tr.extra["range"]
    prev = (lo + hi) // 2
    for si, sec, b in _bars(ctx, active):
        chord = ctx.chords[b]
        halves = [0, S // 2] if sec.density >= 0.8 else [0]
        for s in halves:
            cands = [_fit(pc, lo, hi) for pc in chord.pcs[:3]]
            p = min(cands, key=lambda x: (abs(x - prev), rng.random()))
            prev = p
            ev.append((b * S + s, (S / len(halves)) * 0.95, p, 0.62, 0.0))
    return ev


_STRINGS_OPEN = (40, 45, 50, 55, 59, 64)  # guitar standard tuning E2 A2 D3 G3 B3 E4


def _guitar_voicing(chord: _Chord, position: int) -> list[int]:
    """A playable six-string voicing: per string the lowest chord tone in frets [position, position + 4]."""
    notes: list[int | None] = []
    for open_ in _STRINGS_OPEN:
        frets = ([0] if position <= 2 else []) + list(range(max(1, position), position + 5))
        cand = [open_ + f for f in frets if (open_ + f) % 12 in chord.pcs]
        notes.append(min(cand) if cand else None)
    start = next((i for i in range(3) if notes[i] is not None and notes[i] % 12 == chord.root), None)
    if start is None:
        start = next((i for i in range(3) if notes[i] is not None), 0)
    out = [p for p in notes[start:] if p is not None]
    if len(out) < 3:
        r = _fit(chord.root, 48, 59)
        out = [r] + [_fit(pc, r + 1, r + 12) for pc in chord.pcs[1:3]]
    return sorted(out)


def _part_guitar(ctx: _Ctx, tr: _Track, active: set[int], rng: np.random.Generator) -> list[Event]:
    """Guitar: strummed six-string voicings (down/up strokes, per-string delays), power chords,
    finger-picking or arpeggios."""
    S, beat, ev = ctx.steps_per_bar, ctx.steps_per_beat, []
    step_ms = ctx.step_s * 1000.0
    speed_ms = tr.extra["strum_ms"]
    for si, sec, b in _bars(ctx, active):
        chord = ctx.chords[b]
        d = sec.density
        v = _guitar_voicing(chord, tr.extra["position"])
        if tr.style == "power":
            root = _fit(chord.root, 40, 51)
            shape = [root, root + 7, root + 12]
            if d >= 0.8:
                if rng.random() < 0.5:
                    rh = [(s, 2.0 if rng.random() < 0.7 else 4.0) for s in range(0, S, 2)]
                else:
                    rh = [(0, S / 2), (S // 2, S / 2)]
            else:
                rh = [(s, 0.6) for s in range(0, S, 2)]  # palm-muted eighths
            for s, du in rh:
                for j, p in enumerate(shape):
                    ev.append((b * S + s, du, p, 0.8 if s % beat == 0 else 0.7, j * 0.004))
        elif tr.style == "strum":
            pats = {
                "4/4": ([(0, 1), (4, 1), (6, -1), (10, -1), (12, 1), (14, -1)],
                        [(0, 1), (4, 1), (8, 1), (10, -1), (12, 1), (14, -1)],
                        [(0, 1), (8, 1)]),
                "3/4": ([(0, 1), (4, 1), (6, -1), (8, 1), (10, -1)], [(0, 1), (4, 1), (8, 1)], [(0, 1)]),
                "6/8": ([(0, 1), (4, 1), (6, 1), (8, -1), (10, 1)], [(0, 1), (6, 1)], [(0, 1)]),
            }[ctx.ts]
            pat = pats[0] if d >= 0.8 else (pats[1] if d >= 0.45 else pats[2])
            for j, (s, direction) in enumerate(pat):
                end = pat[j + 1][0] if j + 1 < len(pat) else S
                strings = v if direction > 0 else v[-4:][::-1]
                base_vel = 0.8 if direction > 0 else 0.58
                for k, p in enumerate(strings):
                    off = k * speed_ms * rng.uniform(0.8, 1.2) / 1000.0
                    ev.append((b * S + s, max(1.0, end - s - off * 1000.0 / step_ms), p, base_vel * (1.0 - 0.03 * k), off))
        elif tr.style == "fingerpick":
            bass = v[0]
            upper = v[-3:] if len(v) >= 4 else v[1:]
            order = [0, 1, 2, 1]
            for j, s in enumerate(range(0, S, 2)):
                if s == 0 or (ctx.ts == "4/4" and s == S // 2) or (ctx.ts == "6/8" and s == 6):  # thumb on the beats
                    ev.append((b * S + s, float(S // 2), bass, 0.75, 0.0))
                else:
                    ev.append((b * S + s, 4.0, upper[order[j % len(order)] % len(upper)], 0.6, 0.0))
        else:  # arpeggio: picked chord tones that ring
            sub = 2 if d >= 0.45 else beat
            seq = v + v[-2:0:-1]
            for j, s in enumerate(range(0, S, sub)):
                ev.append((b * S + s, float(min(S - s, 2 * sub + 2)), seq[j % len(seq)], 0.7 if s % beat == 0 else 0.6, 0.0))
    return ev


_PARTS = {
    "kick": _part_kick, "snare": _part_snare, "hihat": _part_hihat, "percussion": _part_percussion,
    "bass": _part_bass, "keys": _part_keys, "pad": _part_pad, "strings": _part_strings,
    "lead": _part_lead, "vocal": _part_vocal, "guitar": _part_guitar,
}


def _fallback_event(ctx: _Ctx, tr: _Track) -> Event:
    """One note at bar 0 for a track that would otherwise stay silent (very short songs)."""
    chord = ctx.chords[0]
    S = ctx.steps_per_bar
    drum = {"kick": GM_DRUMS["kick"], "snare": GM_DRUMS["snare"], "hihat": GM_DRUMS["hat_closed"]}
    if tr.cls in drum:
        return (0.0, 2.0, drum[tr.cls], 0.8, 0.0)
    if tr.cls == "percussion":
        p = {"shaker": "shaker", "clap": "clap", "toms": "tom_floor", "congas": "conga_open"}[tr.variant]
        return (0.0, 2.0, GM_DRUMS[p], 0.8, 0.0)
    lo, hi = tr.extra.get("range", (48, 72))
    return (0.0, float(S), _fit(chord.root, lo, hi), 0.7, 0.0)


def _humanise(ctx: _Ctx, tr: _Track, events: list[Event], rng: np.random.Generator) -> list[Note]:
    """Grid events -> notes in seconds: swing, timing jitter, push/drag, velocity variation."""
    g = ctx.genre
    sigma = g.timing_ms / 1000.0 * (0.6 if tr.cls in _DRUM_CLASSES else 1.0)
    notes = []
    for st, du, pitch, vel, off in events:
        t = st * ctx.step_s
        if ctx.ts != "6/8" and float(st).is_integer() and int(st) % 2 == 1:
            t += ctx.swing * ctx.step_s
        t += off + tr.push_s + float(np.clip(rng.normal(0.0, sigma), -3 * sigma, 3 * sigma))
        t = max(0.0, t)
        if t >= ctx.seconds - 0.005:
            continue
        v = float(np.clip(vel * (1.0 + rng.normal(0.0, g.velocity_spread)), 0.05, 1.0))
        velocity = int(np.clip(round(v * 127), 1, 127))
        notes.append(Note(tr.index, float(t), float(max(0.03, du * ctx.step_s)), int(pitch), velocity))
    notes.sort(key=lambda n: (n.onset_s, n.midi_pitch))
    return notes


# ----------------------------------------------------------------------------------------------
# track set
# ----------------------------------------------------------------------------------------------


def _normalise_classes(classes: Sequence[str]) -> list[str]:
    if isinstance(classes, str):
        raise ConfigError("classes must be a sequence of class names, not a single string")
    out = []
    for c in classes:
        key = str(c).strip().lower()
        if key not in GENERATED_CLASSES:
            raise ConfigError(f"classes: cannot generate {c!r}; choose from {', '.join(GENERATED_CLASSES)}")
        out.append(key)
    if not out:
        raise ConfigError("classes: give at least one instrument class")
    if len(out) > _MAX_TRACKS:
        raise ConfigError(f"classes: at most {_MAX_TRACKS} tracks")
    return out


def _draw_classes(genre: GenreSpec, n: int, rng: np.random.Generator) -> list[str]:
    chosen = list(genre.core[:n])
    while len(chosen) < n:
        pool = {c: w for c, w in genre.optional.items() if chosen.count(c) < _MAX_PER_CLASS[c]}
        if not pool:
            pool = {c: 0.2 for c in GENERATED_CLASSES if chosen.count(c) < _MAX_PER_CLASS[c]}
        chosen.append(_choice(rng, pool))
    return sorted(chosen, key=lambda c: CLASS_INDEX[c])


def _unique_names(classes: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for c in classes:
        seen[c] = seen.get(c, 0) + 1
        names.append(c if seen[c] == 1 else f"{c}_{seen[c]}")
    return names


def _plan_track(i: int, cls: str, name: str, genre: GenreSpec, ts: str, used: list[_Track],
                rng: np.random.Generator) -> _Track:
    same = [t for t in used if t.cls == cls]
    weights = dict(genre.variants.get(cls, {}))
    weights = {v: weights.get(v, 1.0 / len(VARIANTS[cls]) if not weights else 0.0) for v in VARIANTS[cls]}
    if not any(w > 0 for w in weights.values()):
        weights = {v: 1.0 for v in VARIANTS[cls]}
    for t in same:  # a second track of a class should sound different
        weights[t.variant] = weights[t.variant] * (0.0 if cls == "percussion" else 0.15)
    if not any(w > 0 for w in weights.values()):
        weights = {v: 1.0 for v in VARIANTS[cls]}
    for v in VARIANTS[cls]:
        weights[v] = max(weights[v], 0.02)
    variant = _choice(rng, weights)
    style, role, extra = "default", "main", {}
    if cls == "kick":
        style = "four" if ts == "4/4" and rng.random() < genre.four_on_floor else "groove"
    elif cls == "snare":
        style = "halftime" if rng.random() < genre.half_time else "backbeat"
        extra["ghost"] = 0.0 if genre.name == "electronic" else float(rng.uniform(0.0, 0.15))
    elif cls == "hihat":
        r = rng.random()
        if genre.name == "electronic" and r < 0.5:
            style = "offbeat_open"
        else:
            style = "ride" if genre.name == "rock" and r < 0.35 else "closed"
        extra["busy"] = float(rng.uniform(0.2, 0.8))
    elif cls == "percussion":
        style = "groove" if rng.random() < 0.4 else "fills"
    elif cls == "bass":
        style = _choice(rng, genre.bass_styles)
        extra["range"] = {"finger": (28, 50), "synth": (31, 52), "sub": (28, 45)}[variant]
        extra["legato"] = float(rng.uniform(0.75, 0.95))
    elif cls == "keys":
        if variant == "mallet":
            style = "arpeggio"
        elif variant == "epiano":
            style = _choice(rng, {"comp": 0.6, "sustain": 0.4})
        else:
            style = _choice(rng, {"pop": {"block": 0.6, "ballad": 0.4}, "rock": {"block": 0.8, "ballad": 0.2},
                                  "ballad": {"ballad": 0.8, "sustain": 0.2}, "electronic": {"block": 0.4, "sustain": 0.6}}[genre.name])
        if same and same[0].style == style:
            style = {"block": "ballad", "ballad": "block", "sustain": "block", "comp": "sustain",
                     "arpeggio": "arpeggio"}[style]
        extra["sevenths"] = bool(rng.random() < genre.sevenths)
    elif cls == "pad":
        extra["sevenths"] = bool(rng.random() < genre.sevenths)
    elif cls == "strings":
        style = _choice(rng, {"stabs": 0.5, "sustain": 0.5} if variant == "brass" else {"sustain": 0.6, "moving": 0.4})
    elif cls == "lead":
        extra["range"] = (67, 91) if variant == "soft" else (62, 86)
        extra["legato"] = float(rng.uniform(0.7, 0.95))
    elif cls == "vocal":
        role = "lead" if not any(t.role == "lead" for t in same) else "backing"
        extra["range"] = (45, 67) if variant == "male" else (57, 77)
        if role == "backing":
            extra["range"] = (extra["range"][0] + 3, extra["range"][1])
    elif cls == "guitar":
        style = {"acoustic": "strum", "nylon": "fingerpick", "overdrive": "power"}.get(variant) or _choice(
            rng, {"arpeggio": 0.6, "strum": 0.4})
        if same and same[0].style == style:
            style = {"strum": "arpeggio", "arpeggio": "strum", "power": "arpeggio", "fingerpick": "strum"}[style]
        extra["position"] = int(rng.integers(0, 6))
        extra["strum_ms"] = float(rng.uniform(6.0, 14.0))
    lo_db, hi_db = LEVEL_RANGES_DBFS[cls]
    level = float(rng.uniform(lo_db, hi_db))
    push = 0.0 if cls in _DRUM_CLASSES or genre.name == "electronic" else float(rng.uniform(-0.004, 0.006))
    params = sample_params(cls, variant, rng)
    return _Track(i, cls, name, variant, style, role, level, push, params, extra)


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------


def _check_inputs(seed: int, seconds: float, sample_rate: int, genre: str | None, num_tracks: int | None) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or not math.isfinite(seconds) \
            or not 0.05 <= seconds <= 600.0:
        raise ConfigError(f"seconds must be between 0.05 and 600, got {seconds!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or not 8000 <= sample_rate <= 192000:
        raise ConfigError(f"sample_rate must be an integer between 8000 and 192000 Hz, got {sample_rate!r}")
    if genre is not None and genre not in GENRES:
        raise ConfigError(f"unknown genre {genre!r}; choose from {', '.join(GENRES)}")
    if num_tracks is not None and (isinstance(num_tracks, bool) or not isinstance(num_tracks, (int, np.integer))
                                   or not 1 <= num_tracks <= 20):
        raise ConfigError(f"num_tracks must be an integer from 1 to 20, got {num_tracks!r}")


def generate_song(
    seed: int,
    *,
    seconds: float = 10.0,
    sample_rate: int = 44100,
    classes: Sequence[str] | None = None,
    num_tracks: int | None = None,
    genre: str | None = None,
) -> Song:
    """Compose and render a seeded multitrack song with dry, unbalanced stems.

    Args:
        seed: Non-negative integer; everything (genre when not given, key, scale, tempo, metre,
            chords, sections, parts, timbres, levels, noise) derives from it. Same seed and
            arguments -> bit-identical stems and metadata.
        seconds: Song length in seconds (every stem has ``round(seconds * sample_rate)`` samples).
        sample_rate: Sample rate in Hz (8000..192000).
        classes: Instrument class of every track, in order (names of
            :data:`GENERATED_CLASSES`, repeats allowed). ``None``: a plausible set for the genre
            (4-12 tracks unless ``num_tracks`` is given).
        num_tracks: Number of tracks to draw when ``classes`` is None (1..20); when ``classes``
            is given it must equal ``len(classes)``.
        genre: One of :data:`GENRES` (tempo range, metres, modes, instrumentation, feel); ``None``
            draws one from the seed.

    Returns:
        A :class:`Song`. ``meta`` holds ``seed``, ``genre``, ``key``, ``scale``, ``tempo_bpm``,
        ``beat_unit``, ``time_signature``, ``bars``, ``bar_s``, ``swing``, ``chords`` (one name per
        bar), ``chord_pitch_classes``, ``sections`` (name, start bar, bars, start_s, density),
        ``tracks`` (name, class, variant, style, role, level_dbfs, channels, params),
        ``variants`` (name -> variant), ``sample_rate``, ``seconds`` and ``num_samples``.

    Raises:
        ConfigError: On an invalid seed, length, sample rate, genre, class name or track count.
    """
    _check_inputs(seed, seconds, sample_rate, genre, num_tracks)
    seed = int(seed)
    sample_rate = int(sample_rate)
    seconds = float(seconds)
    if classes is not None:
        cls_list: list[str] | None = _normalise_classes(classes)
        if num_tracks is not None and num_tracks != len(cls_list):
            raise ConfigError(f"num_tracks={num_tracks} does not match the {len(cls_list)} classes given")
    else:
        cls_list = None

    rng = np.random.default_rng([seed, 0])
    genre_name = genre if genre is not None else _choice(rng, _GENRE_WEIGHTS)
    g = GENRES[genre_name]
    ts = _choice(rng, g.time_signatures)
    tempo = float(round(rng.uniform(*g.tempo_bpm)))
    if ts == "6/8":
        tempo = float(round(tempo * 2.0 / 3.0))
        steps_per_bar, steps_per_beat, step_s = 12, 6, 60.0 / tempo / 6.0
    else:
        steps_per_bar, steps_per_beat, step_s = (16 if ts == "4/4" else 12), 4, 60.0 / tempo / 4.0
    key = int(rng.integers(12))
    scale_name = _choice(rng, g.scales)
    scale = _SCALES[scale_name]
    n_bars = max(1, math.ceil(seconds / (steps_per_bar * step_s) - 1e-9))
    sections = _plan_sections(n_bars, g.density)
    progs = _PROGRESSIONS[scale_name]
    by_name = {name: progs[int(rng.integers(len(progs)))] for name in ("verse", "chorus", "bridge")}
    by_name["intro"] = by_name["outro"] = by_name["verse"]
    sevenths = rng.random() < g.sevenths
    chords: list[_Chord] = []
    for sec in sections:
        prog = by_name[sec.name]
        for j in range(sec.bars):
            chords.append(_diatonic_chord(key, scale, prog[j % len(prog)], sevenths and sec.name != "intro"))
    swing = float(rng.uniform(*g.swing)) if ts != "6/8" else 0.0

    if cls_list is None:
        n = num_tracks if num_tracks is not None else int(rng.integers(g.num_tracks[0], g.num_tracks[1] + 1))
        cls_list = _draw_classes(g, n, rng)
    names = _unique_names(cls_list)

    ctx = _Ctx(genre=g, seconds=seconds, key=key, scale_name=scale_name, scale=scale, tempo_bpm=tempo, ts=ts,
               steps_per_bar=steps_per_bar, steps_per_beat=steps_per_beat, step_s=step_s, n_bars=n_bars,
               chords=chords, sections=sections, swing=swing)
    tracks: list[_Track] = []
    part_rngs = []
    track_keys = [int(k) for k in rng.integers(0, 2**62, size=len(cls_list))]  # tie each track to the song
    for i, (c, name) in enumerate(zip(cls_list, names)):
        trng = np.random.default_rng([seed, 1, i, track_keys[i]])
        tracks.append(_plan_track(i, c, name, g, ts, tracks, trng))
        part_rngs.append(trng)
    ctx.has_lead_vocal = any(t.cls == "vocal" and t.role == "lead" for t in tracks)
    activity = _plan_activity(ctx, tracks, rng)

    n_samples = int(round(seconds * sample_rate))
    stems: list[torch.Tensor] = []
    all_notes: list[Note] = []
    track_meta = []
    for tr in tracks:
        events = _PARTS[tr.cls](ctx, tr, activity[tr.index], part_rngs[tr.index])
        notes = _humanise(ctx, tr, events, part_rngs[tr.index])
        if not notes:
            notes = _humanise(ctx, tr, [_fallback_event(ctx, tr)], part_rngs[tr.index])
        all_notes.extend(notes)
        audio = render_track(
            tr.cls, tr.variant,
            np.array([x.onset_s for x in notes]), np.array([x.duration_s for x in notes]),
            np.array([x.midi_pitch for x in notes]), np.array([x.velocity for x in notes]),
            tr.params, sample_rate, n_samples, np.random.default_rng([seed, 2, tr.index, track_keys[tr.index]]),
        )
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if not math.isfinite(peak) or peak <= 0.0:
            raise RuntimeError(f"track {tr.name!r} rendered silent or non-finite audio (seed {seed})")
        audio *= np.float32(10.0 ** (tr.level_db / 20.0) / peak)
        stems.append(torch.from_numpy(audio))
        track_meta.append({
            "name": tr.name, "class": tr.cls, "variant": tr.variant, "style": tr.style, "role": tr.role,
            "level_dbfs": round(tr.level_db, 3), "channels": int(audio.shape[0]), "params": tr.params,
            "active_sections": sorted(activity[tr.index]),
        })
    all_notes.sort(key=lambda x: (x.track, x.onset_s, x.midi_pitch))
    meta: dict[str, Any] = {
        "generator": "neuromix.mixing.generator",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "genre": genre_name,
        "key": _NOTE_NAMES[key],
        "key_pitch_class": key,
        "scale": scale_name,
        "tempo_bpm": tempo,
        "beat_unit": "dotted quarter" if ts == "6/8" else "quarter",
        "time_signature": ts,
        "bars": n_bars,
        "bar_s": steps_per_bar * step_s,
        "swing": swing,
        "chords": [c.name for c in chords],
        "chord_pitch_classes": [list(c.pcs) for c in chords],
        "sections": [{"name": s.name, "start_bar": s.start, "bars": s.bars, "start_s": s.start * steps_per_bar * step_s,
                      "density": s.density} for s in sections],
        "tracks": track_meta,
        "variants": {t["name"]: t["variant"] for t in track_meta},
        "sample_rate": sample_rate,
        "seconds": seconds,
        "num_samples": n_samples,
    }
    return Song(stems=stems, classes=list(cls_list), names=names, notes=all_notes, meta=meta)


def demo_song(name: str, sample_rate: int = 44100, seconds: float | None = None) -> Song:
    """Render one of the :data:`DEMO_SONGS` (deterministic).

    Args:
        name: Demo name.
        sample_rate: Sample rate in Hz.
        seconds: Length in seconds (default: the demo's own, about 20 s).

    Raises:
        KeyError: For an unknown name; the message lists the available demos.
    """
    if name not in DEMO_SONGS:
        raise KeyError(f"unknown demo song {name!r}; available: {', '.join(DEMO_SONGS)}")
    spec = DEMO_SONGS[name]
    song = generate_song(spec.seed, seconds=spec.seconds if seconds is None else seconds, sample_rate=sample_rate,
                         classes=spec.classes, genre=spec.genre)
    song.meta["demo"] = spec.name
    return song


def write_song(song: Song, folder: str | Path, *, overwrite: bool = False, subtype: str = "PCM_24") -> list[Path]:
    """Write one WAV per stem (``<name>.wav``) and ``metadata.json`` into ``folder``.

    ``metadata.json`` holds ``format``, ``format_version``, ``sample_rate``, ``stems`` (file,
    name, class, variant, channels per stem) and everything of :meth:`Song.to_json_meta`.

    Args:
        song: The song to write.
        folder: Target folder (created if missing).
        overwrite: Allow writing into a non-empty folder. Stem files named in an existing
            ``metadata.json`` there are removed first; other files are left alone.
        subtype: soundfile subtype, ``"PCM_24"`` (default) or ``"FLOAT"`` (bit-exact).

    Returns:
        Paths of the written files (stems in track order, then ``metadata.json``).

    Raises:
        AudioInputError: If ``folder`` is a file, or is not empty and ``overwrite`` is False.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise AudioInputError("exists and is not a folder", folder)
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise AudioInputError("folder is not empty; pass overwrite=True to replace a song written there", folder)
        old = folder / "metadata.json"
        if old.is_file():
            try:
                for st in json.loads(old.read_text()).get("stems", []):
                    f = folder / Path(str(st.get("file", ""))).name
                    if f.suffix == ".wav" and f.is_file():
                        f.unlink()
            except (json.JSONDecodeError, AttributeError, TypeError):
                pass
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    stems_meta = []
    for name, cls, stem in zip(song.names, song.classes, song.stems):
        path = folder / f"{name}.wav"
        sf.write(str(path), stem.detach().cpu().numpy().T, song.sample_rate, subtype=subtype)
        written.append(path)
        stems_meta.append({"file": path.name, "name": name, "class": cls,
                           "variant": song.meta.get("variants", {}).get(name), "channels": int(stem.shape[0])})
    doc = {"format": "neuromix-multitrack", "format_version": 1, "sample_rate": song.sample_rate, "stems": stems_meta,
           **song.to_json_meta()}
    meta_path = folder / "metadata.json"
    write_text_atomic(meta_path, json.dumps(doc, indent=1), overwrite=True)
    written.append(meta_path)
    return written
