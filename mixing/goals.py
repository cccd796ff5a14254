"""Goal-oriented mixing: reference mixdowns, explicit and semantic targets, lock and re-solve.

A *goal* is a set of mix features to reach. It comes from one of three places:

* a **reference mixdown** (usually another song): its loudness, mid/side width, crest
  factor and spectral tilt, each trusted as far as it reflects the mixing style rather than
  the song (:data:`REFERENCE_TRUST`);
* **targets**: per track (by name or instrument class) and for the master, changes or
  absolute values of :data:`FEATURES`, written as a small JSON/TOML document or in words
  (``"vocals: louder, brighter; drums: punchier; master: wider"``, see :data:`SEMANTIC_WORDS`);
* an **anchor** mix (the network's own prediction): after the user edits and locks some
  settings, the others are re-solved so the mix keeps the anchor's balance.

The goal is met by test-time optimisation of the console settings through the
differentiable console (:class:`~neuromix.core.dsp.console.Console`), on a short analysis
excerpt at :data:`SOLVE_RATE`: Adam in the normalised 0..1 parameter space, projected back
into the ranges after every step, starting from the given settings, with a small pull
toward the start so settings the goal does not need stay where they were. Locked settings
are not optimised and are copied into the result unchanged (bit-identical JSON values).

Feature definitions (all measured on stereo audio; a track is measured as its panned
contribution to the dry bus, the master on the final mix):

========== ======== ==========================================================================
feature    unit     definition
========== ======== ==========================================================================
loudness   dB/LUFS  track: BS.1770 loudness of the track minus that of the rest of the dry
                    bus (its level against the other tracks; a lone track reads 0); master:
                    integrated loudness of the mix (LUFS)
brightness octaves  spectral centroid of the long-term spectrum, log2(centroid / 1 kHz)
width      dB       side energy over mid energy, 10 log10((S + 1e-4 M) / M) (-40 dB = mono)
punch      dB       crest factor of the 10 ms level envelope: mean of the loudest 5 % of
                    frames minus the mean level
low_end    dB       energy below 150 Hz relative to the total energy
presence   dB       energy from 2 to 5 kHz relative to the total energy
reverb     dB       wet/dry energy ratio: track: send + return + reverb-tail energy;
                    master: reverb return bus over the dry bus
========== ======== ==========================================================================
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torchaudio
from torch import Tensor

from neuromix.core.dsp import functional as F
from neuromix.core.dsp.console import Console, ConsoleParams
from neuromix.core.errors import ConfigError
from neuromix.core.features import integrated_loudness
from neuromix.core.io import read_text_file

TARGETS_FORMAT = "neuromix-targets"
TARGETS_VERSION = 1
SOLVE_RATE = 22050
SOLVE_SECONDS = 4.0
DEFAULT_STEPS = 30
STOP_DISTANCE = 0.05
MAX_TARGETS_BYTES = 64 * 1024

FEATURES: tuple[str, ...] = ("loudness", "brightness", "width", "punch", "low_end", "presence", "reverb")
FEATURE_UNITS: dict[str, str] = {
    "loudness": "dB",
    "brightness": "oct",
    "width": "dB",
    "punch": "dB",
    "low_end": "dB",
    "presence": "dB",
    "reverb": "dB",
}
# one unit of goal distance per this much feature error
FEATURE_SCALES: dict[str, float] = {
    "loudness": 1.0,
    "brightness": 0.1,
    "width": 1.5,
    "punch": 1.0,
    "low_end": 1.0,
    "presence": 1.0,
    "reverb": 1.5,
}
# a change counts as met when it reaches the asked amount minus this tolerance
FEATURE_TOLERANCE: dict[str, float] = {
    "loudness": 0.25,
    "brightness": 0.03,
    "width": 0.5,
    "punch": 0.25,
    "low_end": 0.25,
    "presence": 0.25,
    "reverb": 0.5,
}

SEMANTIC_WORDS: dict[str, dict[str, float]] = {
    "louder": {"loudness": 3.0},
    "softer": {"loudness": -3.0},
    "quieter": {"loudness": -3.0},
    "brighter": {"brightness": 0.25, "presence": 1.5},
    "darker": {"brightness": -0.25, "presence": -1.5},
    "warmer": {"low_end": 2.0, "brightness": -0.1},
    "thinner": {"low_end": -2.0},
    "wider": {"width": 3.0},
    "narrower": {"width": -3.0},
    "punchier": {"punch": 1.5},
    "smoother": {"punch": -1.5},
    "drier": {"reverb": -6.0},
    "wetter": {"reverb": 6.0},
}
"""Semantic words and the feature changes they ask for (units of :data:`FEATURE_UNITS`).
``much``/``slightly`` before a word scale it by 2 / 0.5 (``"vocals: much louder"``)."""

_MODIFIERS = {"much": 2.0, "slightly": 0.5, "a-bit": 0.5, "bit": 0.5}
_LOW_END_HZ = 150.0
_PRESENCE_HZ = (2000.0, 5000.0)
_PUNCH_FRAME_S = 0.01
_PUNCH_TOP = 0.05
_WIDTH_FLOOR = 1e-4
_N_FFT = 2048
_EPS = 1e-10
_REFERENCE_BANDS_HZ = (63.0, 125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0)
_REFERENCE_WIDTH_BANDS_HZ = ((20.0, 250.0), (250.0, 2800.0), (2800.0, 11025.0))
_REFERENCE_SCALES = {"loudness": 1.0, "band": 1.5, "width": 2.0, "punch": 1.0, "movement": 1.0, "tilt": 0.5}
REFERENCE_TRUST: dict[str, float] = {
    "loudness": 1.0,
    "width_mid": 0.3,
    "width_high": 0.25,
    "punch": 0.2,
    "tilt": 0.05,
}
"""Reference features that become goals, and how far toward the reference each one moves
the mix (1: all the way). A reference is usually another song: its features mix the style
(what to copy) with its own notes and instrumentation (what not to copy). Each trust is the
share of the feature's variance that comes from the mixing style, measured by
``benchmarks/reference_trust.py`` on 10 procedural songs x 6 engineer styles: loudness is
all style (1.00); mid/high width 0.32/0.24, crest factor 0.19, spectral tilt 0.04, octave
bands 0.01-0.09, low width 0.15, loudness movement 0.06 (the last three are not goals).
These are the synthetic engineer's statistics; real styles may differ."""
REFERENCE_GOAL_FEATURES: tuple[str, ...] = tuple(REFERENCE_TRUST)
REFERENCE_MASTER_PARAMS: tuple[str, ...] = (
    "eq_low_gain_db",
    "eq_mid_gain_db",
    "eq_high_gain_db",
    "width",
    "comp_threshold_db",
    "comp_ratio",
    "limiter_gain_db",
)
"""The settings a reference may change: level, tone, width and density of the master bus."""
REFERENCE_SECONDS = 60.0
_ANCHOR_TRACK_FEATURES = ("loudness", "brightness", "width", "punch")


# =========================================================================== targets


@dataclass(frozen=True)
class Target:
    """One requested feature change or value.

    Attributes:
        where: ``"master"``, a track name or an instrument class.
        feature: one of :data:`FEATURES`.
        change: relative change in the feature's unit (``None`` when ``value`` is given).
        value: absolute value in the feature's unit (``None`` when ``change`` is given).
    """

    where: str
    feature: str
    change: float | None = None
    value: float | None = None

    def describe(self) -> str:
        if self.value is not None:
            return f"= {self.value:g} {FEATURE_UNITS[self.feature]}"
        return f"{self.change:+g} {FEATURE_UNITS[self.feature]}"


@dataclass(frozen=True)
class Targets:
    """A validated set of :class:`Target` items (at most one per place and feature)."""

    items: tuple[Target, ...]

    def to_dict(self) -> dict:
        """The canonical document (what :func:`parse_targets` reads back)."""
        tracks: dict[str, dict[str, Any]] = {}
        master: dict[str, Any] = {}
        for t in self.items:
            entry = t.change if t.value is None else {"value": t.value}
            (master if t.where == "master" else tracks.setdefault(t.where, {}))[t.feature] = entry
        doc: dict[str, Any] = {"format": TARGETS_FORMAT, "version": TARGETS_VERSION}
        if tracks:
            doc["tracks"] = tracks
        if master:
            doc["master"] = master
        return doc

    def __bool__(self) -> bool:
        return bool(self.items)


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"targets: {where} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or abs(value) > 100.0:
        raise ConfigError(f"targets: {where}={value} must be finite and within +-100")
    return value


def _feature_entries(where: str, doc: object) -> list[Target]:
    if not isinstance(doc, Mapping):
        raise ConfigError(f"targets: the entry for {where!r} must be an object of feature: change")
    out = []
    for feature, spec in doc.items():
        if feature not in FEATURES:
            raise ConfigError(f"targets: unknown feature {feature!r} for {where!r} (known: {', '.join(FEATURES)})")
        label = f"{where}.{feature}"
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"change", "value"}
            if unknown or len(spec) != 1:
                raise ConfigError(f"targets: {label} must be a number or {{'change': x}} or {{'value': x}}")
            key, raw = next(iter(spec.items()))
            num = _number(raw, label)
            out.append(Target(where, feature, change=num) if key == "change" else Target(where, feature, value=num))
        else:
            out.append(Target(where, feature, change=_number(spec, label)))
    return out


def _from_document(doc: Mapping) -> Targets:
    if doc.get("format", TARGETS_FORMAT) != TARGETS_FORMAT:
        raise ConfigError(f"targets: 'format' must be {TARGETS_FORMAT!r}")
    version = doc.get("version", TARGETS_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= TARGETS_VERSION:
        raise ConfigError(f"targets: unsupported 'version' {version!r} (this build reads {TARGETS_VERSION})")
    unknown = set(doc) - {"format", "version", "tracks", "master"}
    if unknown:
        raise ConfigError(f"targets: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    items: list[Target] = []
    tracks = doc.get("tracks", {})
    if not isinstance(tracks, Mapping):
        raise ConfigError("targets: 'tracks' must be an object of name or class -> features")
    if len(tracks) > 256:
        raise ConfigError("targets: too many tracks (at most 256)")
    for name, entry in tracks.items():
        if not isinstance(name, str) or not name.strip() or name == "master":
            raise ConfigError(f"targets: bad track name {name!r}")
        items += _feature_entries(name.strip(), entry)
    if "master" in doc:
        items += _feature_entries("master", doc["master"])
    return _checked(items)


def _checked(items: list[Target]) -> Targets:
    seen: set[tuple[str, str]] = set()
    for t in items:
        key = (t.where.lower(), t.feature)
        if key in seen:
            raise ConfigError(f"targets: {t.where}.{t.feature} is given twice")
        seen.add(key)
    if not items:
        raise ConfigError("targets: no targets given")
    return Targets(tuple(items))


def _from_words(text: str) -> Targets:
    """``"vocals: louder, brighter; master: wider"`` -> targets (word changes add up)."""
    changes: dict[tuple[str, str], float] = {}
    order: list[tuple[str, str]] = []
    for clause in filter(None, (c.strip() for c in re.split(r"[;\n]", text))):
        if ":" not in clause:
            raise ConfigError(f"targets: {clause!r} should read 'track or class or master: word, word'")
        where, words = (part.strip() for part in clause.split(":", 1))
        if not where:
            raise ConfigError(f"targets: missing track name before ':' in {clause!r}")
        where = "master" if where.lower() == "master" else where
        for phrase in filter(None, (w.strip() for w in words.split(","))):
            tokens = phrase.lower().replace("a bit", "a-bit").split()
            factor = 1.0
            while len(tokens) > 1 and tokens[0] in _MODIFIERS:
                factor *= _MODIFIERS[tokens.pop(0)]
            if len(tokens) != 1 or tokens[0] not in SEMANTIC_WORDS:
                raise ConfigError(
                    f"targets: unknown word {phrase!r} for {where!r} (known: {', '.join(SEMANTIC_WORDS)}; "
                    "optionally preceded by 'much' or 'slightly')"
                )
            for feature, change in SEMANTIC_WORDS[tokens[0]].items():
                key = (where, feature)
                if key not in changes:
                    order.append(key)
                changes[key] = changes.get(key, 0.0) + factor * change
    return _checked([Target(w, f, change=changes[(w, f)]) for w, f in order])


def parse_targets(spec: str | Mapping) -> Targets:
    """Targets from words, JSON or TOML text, or an already parsed document.

    Args:
        spec: semantic text (``"vocals: louder, brighter; drums: punchier; master: wider"``),
            a JSON/TOML document text, or a mapping. Document format::

                {"format": "neuromix-targets", "version": 1,
                 "tracks": {"vocals": {"loudness": 3, "brightness": {"value": 0.5}},
                            "drums": {"punch": 1.5}},
                 "master": {"width": 2}}

            Track keys are track names or instrument classes; a number is a change, an
            object ``{"value": x}`` an absolute value, in :data:`FEATURE_UNITS`.

    Raises:
        ConfigError: malformed text, unknown words or features, non-finite or huge values.
    """
    if isinstance(spec, Mapping):
        return _from_document(spec)
    if not isinstance(spec, str):
        raise ConfigError(f"targets must be text or a JSON object, got {type(spec).__name__}")
    if len(spec.encode()) > MAX_TARGETS_BYTES:
        raise ConfigError(f"targets: the text is larger than {MAX_TARGETS_BYTES // 1024} KiB")
    text = spec.strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ConfigError(f"targets: not valid JSON ({exc})") from None
        if not isinstance(doc, Mapping):
            raise ConfigError("targets: the JSON must be an object")
        return _from_document(doc)
    if re.search(r"^\s*\[|=", text, flags=re.M):
        try:
            return _from_document(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"targets: not valid TOML ({exc})") from None
    return _from_words(text)


def read_targets(path: str | os.PathLike[str]) -> Targets:
    """Read targets from a ``.json``, ``.toml`` or text file (see :func:`parse_targets`)."""
    text = read_text_file(path, max_bytes=MAX_TARGETS_BYTES, what="targets")
    return parse_targets(text)


# =========================================================================== features


def _spectral_power(x: Tensor, sample_rate: int) -> tuple[Tensor, Tensor, Tensor]:
    """Long-term mid and side power spectra ``(..., bins)`` and the bin frequencies."""
    mid = (x[..., 0, :] + x[..., 1, :]) * math.sqrt(0.5)
    side = (x[..., 0, :] - x[..., 1, :]) * math.sqrt(0.5)
    lead = x.shape[:-2]
    both = torch.stack([mid, side], -2).reshape(-1, x.shape[-1])
    window = torch.hann_window(_N_FFT, dtype=x.dtype, device=x.device)
    spec = torch.stft(both, _N_FFT, _N_FFT // 2, window=window, center=True, return_complex=True)
    power = spec.abs().square().mean(-1).reshape(*lead, 2, -1)
    freqs = torch.fft.rfftfreq(_N_FFT, 1.0 / sample_rate).to(x)
    return power[..., 0, :], power[..., 1, :], freqs


def _punch(x: Tensor, sample_rate: int) -> Tensor:
    frame = max(1, int(_PUNCH_FRAME_S * sample_rate))
    power = x.square().mean(-2)  # (..., n)
    frames = power[..., : power.shape[-1] // frame * frame].unflatten(-1, (-1, frame)).mean(-1)
    levels = 10.0 * torch.log10(frames + _EPS)
    k = max(1, int(round(_PUNCH_TOP * levels.shape[-1])))
    top = levels.topk(k, dim=-1).values.mean(-1)
    return top - 10.0 * torch.log10(frames.mean(-1) + _EPS)


def _movement(x: Tensor, sample_rate: int) -> Tensor:
    """Loudness movement over time: mean absolute deviation of 400 ms levels (dB)."""
    frame = int(0.4 * sample_rate)
    power = x.square().mean(-2)
    if power.shape[-1] < 2 * frame:
        return power.new_zeros(power.shape[:-1])
    frames = power[..., : power.shape[-1] // frame * frame].unflatten(-1, (-1, frame)).mean(-1)
    levels = 10.0 * torch.log10(frames + _EPS)
    return (levels - levels.mean(-1, keepdim=True)).abs().mean(-1)


def _band_db(power: Tensor, freqs: Tensor, lo: float, hi: float) -> Tensor:
    band = ((freqs >= lo) & (freqs < hi)).to(power)
    return 10.0 * torch.log10((power * band).sum(-1) + _EPS) - 10.0 * torch.log10(power.sum(-1) + _EPS)


def _loudness(x: Tensor, sample_rate: int) -> Tensor:
    lead = x.shape[:-2]
    return integrated_loudness(x.reshape(-1, *x.shape[-2:]), sample_rate).reshape(lead)


def signal_features(x: Tensor, sample_rate: int) -> dict[str, Tensor]:
    """Loudness (LUFS), brightness, width, punch, low_end and presence of stereo audio.

    Args:
        x: ``(..., 2, samples)``, at least 0.4 s.
        sample_rate: Hz.

    Returns:
        feature name -> ``(...)`` tensor (units in :data:`FEATURE_UNITS`). Differentiable.
    """
    mid, side, freqs = _spectral_power(x, sample_rate)
    total = mid + side
    centroid = (total * freqs).sum(-1) / (total.sum(-1) + _EPS)
    m_energy, s_energy = mid.sum(-1), side.sum(-1)
    return {
        "loudness": _loudness(x, sample_rate),
        "brightness": torch.log2(centroid.clamp_min(20.0) / 1000.0),
        "width": 10.0 * torch.log10((s_energy + _WIDTH_FLOOR * m_energy + _EPS) / (m_energy + _EPS)),
        "punch": _punch(x, sample_rate),
        "low_end": _band_db(total, freqs, 0.0, _LOW_END_HZ),
        "presence": _band_db(total, freqs, *_PRESENCE_HZ),
    }


def reference_features(x: Tensor, sample_rate: int) -> dict[str, Tensor]:
    """Mix-level features for comparing a mix with a reference mixdown.

    Spectral balance in octave bands (63 Hz .. 8 kHz, dB relative to the total) and its tilt
    (least-squares slope, dB per octave), mid/side width in three bands (below 250 Hz,
    250 Hz-2.8 kHz, above), integrated loudness, loudness movement over time (mean deviation
    of 400 ms levels) and punch (crest factor). :data:`REFERENCE_GOAL_FEATURES` are the goals
    of reference-guided mixing.

    Args:
        x: ``(..., 2, samples)`` (mono is duplicated by the caller), at least 0.8 s.
        sample_rate: Hz.

    Returns:
        name -> ``(...)`` tensor. Differentiable.
    """
    mid, side, freqs = _spectral_power(x, sample_rate)
    total = mid + side
    out: dict[str, Tensor] = {"loudness": _loudness(x, sample_rate)}
    for centre in _REFERENCE_BANDS_HZ:
        out[f"band_{int(centre)}"] = _band_db(total, freqs, centre / math.sqrt(2.0), centre * math.sqrt(2.0))
    for name, (lo, hi) in zip(("low", "mid", "high"), _REFERENCE_WIDTH_BANDS_HZ):
        band = ((freqs >= lo) & (freqs < hi)).to(total)
        m, s = (mid * band).sum(-1), (side * band).sum(-1)
        out[f"width_{name}"] = 10.0 * torch.log10((s + _WIDTH_FLOOR * m + _EPS) / (m + _EPS))
    out["movement"] = _movement(x, sample_rate)
    out["punch"] = _punch(x, sample_rate)
    # spectral tilt: least-squares slope of the band levels over octaves (dB per octave)
    levels = torch.stack([out[f"band_{int(c)}"] for c in _REFERENCE_BANDS_HZ], -1)
    octaves = torch.arange(len(_REFERENCE_BANDS_HZ), dtype=levels.dtype, device=levels.device)
    octaves = octaves - octaves.mean()
    out["tilt"] = (levels * octaves).sum(-1) / octaves.square().sum()
    return out


def _reference_scale(name: str) -> float:
    return _REFERENCE_SCALES[name.split("_")[0]]


@dataclass
class MixMeasure:
    """Features of one console render: per track ``(tracks,)`` and master scalars."""

    track: dict[str, Tensor]
    master: dict[str, Tensor]
    reference: dict[str, Tensor]


def _reverb_energy_db(console: Console, params: ConsoleParams) -> Tensor:
    ir = console.reverb_ir(params.master)
    return 10.0 * torch.log10(ir.square().sum(-1).mean(-1) + _EPS)  # (batch,)


@dataclass
class TrackStage:
    """What the track strips produce: per-track contributions, the dry and send buses and the
    track features (all but reverb). Reused while only master settings change."""

    contrib: Tensor
    dry: Tensor
    send: Tensor | None
    features: dict[str, Tensor]
    wet: Tensor | None = None  # the reverb return bus, when the reverb settings are frozen too
    reverb_db: Tensor | None = None


def track_stage(console: Console, tracks: Tensor, params: ConsoleParams) -> TrackStage:
    """Run the track strips and measure each track (see :func:`measure`)."""
    wet = console.process_tracks(tracks, params)  # (1, T, C, N)
    left, right = F.pan_gains(params.track["pan"])
    if wet.shape[2] == 2:
        left, right = left * math.sqrt(2.0), right * math.sqrt(2.0)
    contrib = torch.stack([left[..., None] * wet[:, :, 0], right[..., None] * wet[:, :, -1]], dim=2)
    dry = contrib.sum(1)  # (1, 2, N)
    send = None
    if console.config.reverb:
        send = (F.db_to_amp(params.track["reverb_send_db"])[..., None, None] * contrib).sum(1)
    sr = console.sample_rate
    features = signal_features(contrib[0], sr)
    rest = dry[:, None] - contrib if contrib.shape[1] > 1 else contrib  # the mix without each track
    features["loudness"] = features["loudness"] - _loudness(rest[0], sr)
    return TrackStage(contrib, dry, send, features)


def measure(console: Console, tracks: Tensor, params: ConsoleParams, stage: TrackStage | None = None) -> MixMeasure:
    """Render ``tracks`` with ``params`` and measure every feature (batch item 0).

    Args:
        console: the console (its rate is the tracks' rate).
        tracks: ``(1, tracks, channels, samples)``.
        params: settings with batch 1.
        stage: the track strips' output for these track settings (:func:`track_stage`), when
            only master settings differ from those it was made with (saves most of the work).

    Returns:
        :class:`MixMeasure`. Differentiable w.r.t. ``params`` (w.r.t. the master settings
        only when ``stage`` is given).
    """
    stage = stage if stage is not None else track_stage(console, tracks, params)
    dry, send = stage.dry, stage.send
    sr = console.sample_rate
    track = dict(stage.features)
    bus = dry
    reverb_master: Tensor = torch.tensor(-120.0)
    if send is not None:
        if stage.wet is not None and stage.reverb_db is not None:  # reverb settings frozen too
            wet_bus, reverb_db = stage.wet, stage.reverb_db
        else:
            reverb_db = _reverb_energy_db(console, params)[0]
            rev = {k[7:]: v for k, v in params.master.items() if k.startswith("reverb_") and k != "reverb_return_db"}
            wet_bus = F.gain(console.reverb(send, rev), params.master["reverb_return_db"])
        track["reverb"] = params.track["reverb_send_db"][0] + params.master["reverb_return_db"][0] + reverb_db
        reverb_master = 10.0 * torch.log10(wet_bus.square().mean() + _EPS) - 10.0 * torch.log10(
            dry.square().mean() + _EPS
        )
        bus = dry + wet_bus
    else:
        track["reverb"] = torch.full_like(track["loudness"], -120.0)
    mix = console.process_master(bus, None, params)  # the reverb return is already in the bus
    master = {k: v[0] for k, v in signal_features(mix, sr).items()}
    master["reverb"] = reverb_master
    ref = {k: v[0] for k, v in reference_features(mix, sr).items()}
    return MixMeasure(track, master, ref)


# =========================================================================== goals


@dataclass
class Goal:
    """Feature values to reach, with a scale per entry (the error that costs one unit).

    ``track`` maps a feature to ``(tracks,)`` desired values (NaN: no goal for that track),
    ``master`` and ``reference`` map names to scalar desired values.
    """

    kind: str
    track: dict[str, Tensor] = field(default_factory=dict)
    master: dict[str, float] = field(default_factory=dict)
    reference: dict[str, float] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)  # targets: one row per asked change

    weight: float = 1.0

    def errors(self, m: MixMeasure) -> Tensor:
        """Scaled errors of every goal entry, ``(entries,)``."""
        terms: list[Tensor] = []
        for feature, desired in self.track.items():
            have = ~torch.isnan(desired)
            if bool(have.any()):
                terms.append((m.track[feature][have] - desired[have]) / FEATURE_SCALES[feature])
        for feature, desired in self.master.items():
            terms.append(((m.master[feature] - desired) / FEATURE_SCALES[feature])[None])
        for name, desired in self.reference.items():
            terms.append(((m.reference[name] - desired) / _reference_scale(name))[None])
        return torch.cat(terms) if terms else torch.zeros(0)


def combined_distance(goals: Sequence[Goal], m: MixMeasure) -> Tensor:
    """Weighted root-mean-square scaled error over the entries of several goals."""
    total, count = torch.zeros(()), 0.0
    for g in goals:
        e = g.errors(m)
        total = total + g.weight * e.square().sum()
        count += g.weight * e.numel()
    return (total / max(count, 1e-9)).sqrt()


# master features of the anchor a target makes obsolete (they would fight the target)
_CONFLICTS: dict[str, tuple[str, ...]] = {
    "loudness": ("loudness",),
    "brightness": ("band",),
    "presence": ("band",),
    "low_end": ("band",),
    "width": ("width",),
    "punch": ("punch", "movement"),
    "reverb": (),
}


def keeper_goal(start: MixMeasure, targets_goal_: Goal, weight: float = 0.2) -> Goal:
    """Hold what the targets do not ask about where it was (with a small weight).

    Targeted track entries are dropped, and so are the master features a target would
    necessarily move (e.g. the band balance when a track gets brighter).
    """
    keep = anchor_goal(start)
    for feature, desired in targets_goal_.track.items():
        if feature in keep.track:
            keep.track[feature] = torch.where(torch.isnan(desired), keep.track[feature], torch.nan)
    touched = set(targets_goal_.track) | set(targets_goal_.master)
    drop = {prefix for f in touched for prefix in _CONFLICTS[f]}
    if targets_goal_.track.get("loudness") is not None:
        # one track louder against the rest makes every other track softer against theirs
        drop.add("loudness")
        keep.track.pop("loudness", None)
    keep.reference = {k: v for k, v in keep.reference.items() if k.split("_")[0] not in drop}
    keep.kind, keep.weight = "keep", weight
    return keep


_CLASS_GROUPS: dict[str, tuple[str, ...]] = {
    "drums": ("kick", "snare", "hihat", "percussion"),
    "drum": ("kick", "snare", "hihat", "percussion"),
    "vocals": ("vocal",),
    "vox": ("vocal",),
    "voice": ("vocal",),
    "synths": ("lead", "pad"),
    "cymbals": ("hihat",),
    "keyboards": ("keys",),
    "guitars": ("guitar",),
}
"""Group words a target may name, beside track names and classes (``"drums"``, ``"vocals"``)."""


def reference_keeper(start: MixMeasure, weight: float = 0.5) -> Goal:
    """Hold the start mix's track balance and its low-band width while a reference sets the
    goals of :data:`REFERENCE_TRUST` (the start's band levels, tilt, loudness, punch,
    movement and the goal widths are let go)."""
    keep = anchor_goal(start)
    let_go = ("loudness", "band", "tilt", "punch", "movement")
    keep.reference = {
        k: v for k, v in keep.reference.items() if k.split("_")[0] not in let_go and k not in REFERENCE_TRUST
    }
    keep.kind, keep.weight = "keep", weight
    return keep


def _match_where(where: str, names: Sequence[str], classes: Sequence[str]) -> list[int]:
    """Tracks a target names: an exact track name, else a name ignoring case, else a class or
    a group of classes (:data:`_CLASS_GROUPS`; a plural ``s`` is ignored)."""
    exact = [i for i, n in enumerate(names) if n == where]
    if exact:
        return exact
    key = where.lower()
    folded = [i for i, n in enumerate(names) if n.lower() == key]
    if folded:
        return folded
    wanted = set(_CLASS_GROUPS.get(key, (key, key[:-1] if key.endswith("s") else key)))
    by_class = [i for i, c in enumerate(classes) if c.lower() in wanted]
    if by_class:
        return by_class
    raise ConfigError(
        f"targets: {where!r} is neither a track name ({', '.join(names)}) nor an instrument class or group "
        f"in this session (classes: {', '.join(sorted(set(classes)))}; groups: drums, vocals, synths)"
    )


def targets_goal(targets: Targets, start: MixMeasure, names: Sequence[str], classes: Sequence[str]) -> Goal:
    """Desired feature values: the start's values moved by each target."""
    goal = Goal("targets")
    num_tracks = len(names)
    for t in targets.items:
        if t.where == "master":
            before = float(start.master[t.feature])
            desired = t.value if t.value is not None else before + float(t.change)
            goal.master[t.feature] = desired
            goal.rows.append({"where": "master", "feature": t.feature, "asked": t.describe(), "target": t,
                              "index": None, "before": before, "desired": desired})
            continue
        for i in _match_where(t.where, names, classes):
            vec = goal.track.setdefault(t.feature, torch.full((num_tracks,), float("nan")))
            before = float(start.track[t.feature][i])
            desired = t.value if t.value is not None else before + float(t.change)
            vec[i] = desired
            goal.rows.append({"where": names[i], "feature": t.feature, "asked": t.describe(), "target": t,
                              "index": i, "before": before, "desired": desired})
    return goal


def anchor_goal(anchor: MixMeasure) -> Goal:
    """Keep the anchor mix's track balance and master features."""
    return Goal(
        "anchor",
        track={k: anchor.track[k].detach().clone() for k in _ANCHOR_TRACK_FEATURES},
        reference={k: float(v) for k, v in anchor.reference.items()},
    )


def reference_goal(reference: Tensor, sample_rate: int) -> Goal:
    """The reference mixdown's features (:func:`reference_features`) as goals.

    Args:
        reference: ``(channels, samples)`` at ``sample_rate`` (an excerpt is analysed).
        sample_rate: Hz.
    """
    ref = _solve_audio(reference[None], sample_rate, REFERENCE_SECONDS)[0]  # long-term averages
    ref = ref.expand(2, -1) if ref.shape[0] == 1 else ref
    if ref.shape[-1] < int(0.8 * SOLVE_RATE):
        raise ConfigError("the reference mix must be at least 0.8 s long")
    with torch.no_grad():
        feats = reference_features(ref[None], SOLVE_RATE)
    return Goal("reference", reference={k: float(feats[k][0]) for k in REFERENCE_GOAL_FEATURES})


def _trusted(goal: Goal, start: MixMeasure) -> Goal:
    """Move each reference goal :data:`REFERENCE_TRUST` of the way from the start mix."""
    goal.reference = {
        k: float(start.reference[k]) + REFERENCE_TRUST[k] * (v - float(start.reference[k]))
        for k, v in goal.reference.items()
    }
    return goal


# =========================================================================== solving


@dataclass
class SolveReport:
    """What a solve did: goal distances before/after and a row per target or reference feature.

    ``rows``: dicts with ``where``, ``feature``, ``asked`` (text), ``before``, ``after``,
    ``desired`` and ``met`` (targets: moved by the asked amount within
    :data:`FEATURE_TOLERANCE`; other goals: ``after`` closer to ``desired`` than ``before``).
    """

    goal: str
    distance_before: float
    distance_after: float
    steps: int
    locked: list[str]
    rows: list[dict]

    def to_dict(self) -> dict:
        return {
            "goal": self.goal,
            "distance_before": round(self.distance_before, 4),
            "distance_after": round(self.distance_after, 4),
            "steps": self.steps,
            "locked": list(self.locked),
            "rows": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in self.rows],
        }

    def to_markdown(self) -> str:
        lines = [
            f"# Goal-oriented mix ({self.goal})",
            "",
            f"Goal distance: {self.distance_before:.3f} before, {self.distance_after:.3f} after "
            f"({self.steps} optimisation steps; {len(self.locked)} locked settings).",
            "",
            "| where | feature | asked | before | after | goal | met |",
            "|---|---|---|---:|---:|---:|:---:|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r['where']} | {r['feature']} | {r['asked']} | {r['before']:.2f} | {r['after']:.2f} "
                f"| {r['desired']:.2f} | {'yes' if r['met'] else 'no'} |"
            )
        return "\n".join(lines) + "\n"


def solve_console(
    console: Console,
    tracks: Tensor,
    start: ConsoleParams,
    goal_fn: Callable[[MixMeasure], Tensor],
    *,
    track_free: Tensor | None = None,
    master_free: Tensor | None = None,
    steps: int = DEFAULT_STEPS,
    lr: float = 0.02,
    pull: float = 0.05,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[ConsoleParams, float, float]:
    """Projected Adam on the normalised settings, from ``start``, minimising ``goal_fn``.

    Args:
        console: console at the tracks' rate.
        tracks: ``(1, tracks, channels, samples)``.
        start: batch-1 settings to start from.
        goal_fn: measure -> scalar goal distance (differentiable).
        track_free: ``(1, tracks, track parameters)`` bool, True where a setting may change
            (None: all).
        master_free: ``(1, master parameters)`` bool (None: all).
        steps: optimisation steps.
        lr: Adam step size in normalised units.
        pull: weight of the mean squared normalised distance from ``start``.
        progress: called with ``(step, steps)``.

    Returns:
        ``(best settings, goal distance at the start, goal distance of the best settings)``;
        frozen entries keep their start values exactly.
    """
    track_u0, master_u0 = (u.detach() for u in console.normalise(start))
    track_free = torch.ones_like(track_u0, dtype=torch.bool) if track_free is None else track_free
    master_free = torch.ones_like(master_u0, dtype=torch.bool) if master_free is None else master_free
    track_u = track_u0.clone().requires_grad_(True)
    master_u = master_u0.clone().requires_grad_(True)
    optimiser = _Adam([track_u, master_u], lr=lr)

    def params_of(tu: Tensor, mu: Tensor) -> ConsoleParams:
        p = console.denormalise(torch.where(track_free, tu, track_u0), torch.where(master_free, mu, master_u0))
        # frozen entries: the start's exact physical values (no round trip through 0..1)
        p.track = {k: torch.where(track_free[..., i], v, start.track[k]) for i, (k, v) in enumerate(p.track.items())}
        p.master = {
            k: torch.where(master_free[..., i], v, start.master[k]) for i, (k, v) in enumerate(p.master.items())
        }
        return p

    stage = None
    with torch.no_grad():
        if not bool(track_free.any()):  # only the master moves: run the track strips once
            stage = track_stage(console, tracks, start)
            reverb_keys = [i for i, k in enumerate(console.master_ranges) if k.startswith("reverb_")]
            if stage.send is not None and not bool(master_free[0, reverb_keys].any()):  # and the reverb
                rev = {k[7:]: v for k, v in start.master.items() if k.startswith("reverb_") and k != "reverb_return_db"}
                stage.wet = F.gain(console.reverb(stage.send, rev), start.master["reverb_return_db"])
                stage.reverb_db = _reverb_energy_db(console, start)[0]
        first = float(goal_fn(measure(console, tracks, start, stage)))
    best_value, best = first, start.detach()
    if steps <= 0 or not (bool(track_free.any()) or bool(master_free.any())):
        return best, first, best_value
    for step in range(steps):
        optimiser.zero_grad()
        params = params_of(track_u, master_u)
        distance = goal_fn(measure(console, tracks, params, stage))
        value = float(distance.detach())
        if value < best_value:
            best_value, best = value, params.detach()
        drift = torch.cat([(track_u - track_u0)[track_free], (master_u - master_u0)[master_free]])
        loss = distance + pull * drift.square().sum() / max(1, drift.numel()) * 100.0
        if not torch.isfinite(loss) or best_value < STOP_DISTANCE:
            break
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            track_u.clamp_(0.0, 1.0)
            master_u.clamp_(0.0, 1.0)
        if progress is not None:
            progress(step + 1, steps)
    with torch.no_grad():  # the last step is evaluated too
        params = params_of(track_u, master_u)
        value = float(goal_fn(measure(console, tracks, params, stage)))
        if value < best_value:
            best_value, best = value, params.detach()
    return best, first, best_value


class _Adam:
    """Plain Adam (Kingma & Ba 2015) on a few tensors; torch.optim's first use imports the
    compiler stack (~2 s), which a test-time solve of a few seconds cannot afford."""

    def __init__(self, params: list[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(b1).add_(p.grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            m_hat = m / (1 - b1**self.t)
            v_hat = v / (1 - b2**self.t)
            p.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))


def _solve_audio(audio: Tensor, sample_rate: int, seconds: float = SOLVE_SECONDS) -> Tensor:
    """A short excerpt (windows spread over the song) at :data:`SOLVE_RATE`: ``(..., c, n)``."""
    from neuromix.mixing.inference import analysis_excerpt

    lead = audio.shape[:-2]
    flat = audio.reshape(-1, *audio.shape[-2:])
    excerpt = analysis_excerpt(flat, sample_rate, seconds=seconds, windows=3)
    if sample_rate != SOLVE_RATE:
        excerpt = torchaudio.functional.resample(excerpt, sample_rate, SOLVE_RATE)
    return excerpt.reshape(*lead, *excerpt.shape[-2:])


def parse_locks(locks: Iterable[str], names: Sequence[str], console: Console) -> tuple[Tensor, Tensor, list[str]]:
    """Lock keys (``"vocals.gain_db"``, ``"master.width"``, ``"vocals.*"``) -> free masks.

    Returns:
        ``(track_free (1, T, P), master_free (1, M), normalised lock keys)``.

    Raises:
        ConfigError: unknown track or parameter.
    """
    track_keys, master_keys = list(console.track_ranges), list(console.master_ranges)
    track_free = torch.ones(1, len(names), len(track_keys), dtype=torch.bool)
    master_free = torch.ones(1, len(master_keys), dtype=torch.bool)
    out: list[str] = []
    for key in locks:
        if not isinstance(key, str) or "." not in key:
            raise ConfigError(f"lock {key!r} must read TRACK.PARAMETER or master.PARAMETER (e.g. vocals.gain_db)")
        where, param = key.rsplit(".", 1)
        if where == "master":
            if param == "*":
                master_free[:] = False
                out += [f"master.{k}" for k in master_keys]
                continue
            if param not in master_keys:
                raise ConfigError(f"lock {key!r}: unknown master parameter {param!r} (known: {', '.join(master_keys)})")
            master_free[0, master_keys.index(param)] = False
            out.append(key)
            continue
        if where not in names:
            raise ConfigError(f"lock {key!r}: no track named {where!r} (tracks: {', '.join(names)})")
        t = names.index(where)
        if param == "*":
            track_free[0, t] = False
            out += [f"{where}.{k}" for k in track_keys]
            continue
        if param not in track_keys:
            raise ConfigError(f"lock {key!r}: unknown track parameter {param!r} (known: {', '.join(track_keys)})")
        track_free[0, t, track_keys.index(param)] = False
        out.append(key)
    return track_free, master_free, sorted(set(out))


def _updated_document(settings: Mapping, console: Console, params: ConsoleParams, names: Sequence[str]) -> dict:
    """A copy of the settings document with every value replaced by ``params`` (rounded)."""
    fresh = console.settings_to_dict(params, list(names))
    doc = json.loads(json.dumps(settings))
    by_name = {t["name"]: t for t in fresh["tracks"]}
    doc["tracks"] = [{**entry, **by_name[entry["name"]]} for entry in doc["tracks"] if entry.get("name") in by_name]
    doc["master"] = {**doc.get("master", {}), **fresh["master"]}
    return doc


def _copy_locked(doc: dict, source: Mapping, locked: Sequence[str]) -> dict:
    """Put the locked values of ``source`` (a settings document) into ``doc`` unchanged."""
    by_name = {t["name"]: t for t in source["tracks"]}
    out_tracks = {t["name"]: t for t in doc["tracks"]}
    for key in locked:
        where, param = key.rsplit(".", 1)
        if where == "master":
            if param in source.get("master", {}):
                doc["master"][param] = source["master"][param]
        elif param in by_name[where]:
            out_tracks[where][param] = by_name[where][param]
    return doc


def guide_settings(
    tracks: Tensor,
    sample_rate: int,
    settings: Mapping,
    *,
    names: Sequence[str],
    classes: Sequence[str],
    reference: Tensor | None = None,
    targets: Targets | None = None,
    anchor: Mapping | None = None,
    locks: Iterable[str] = (),
    steps: int = DEFAULT_STEPS,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict, SolveReport]:
    """Optimise a settings document toward a goal; the workhorse of goal-oriented mixing.

    The goal is the sum of whichever are given: the reference's features, the targets
    (relative to the mix of ``settings``), and the anchor document's mix features (used
    alone when neither of the others is given: re-solving after edits).

    Args:
        tracks: ``(tracks, channels, samples)`` at ``sample_rate``.
        sample_rate: Hz.
        settings: the settings document to start from (validated).
        names: track names (matched with the document's).
        classes: instrument class per track (targets may name classes).
        reference: ``(channels, samples)`` reference mix at ``sample_rate``.
        targets: explicit or semantic targets.
        anchor: a settings document whose mix features are the goal (re-solve).
        locks: lock keys (see :func:`parse_locks`); locked values are copied unchanged.
        steps: optimisation steps.
        progress: called with ``(step, steps)``.

    Returns:
        ``(settings document, SolveReport)``.

    Raises:
        ConfigError: bad settings, locks, targets or a reference that is too short.
    """
    from neuromix.mixing.inference import settings_config

    config = settings_config(settings)  # the document's stages, reverb, ...
    console = Console(SOLVE_RATE, replace(config, eq_fft_size=min(8192, config.eq_fft_size)))
    names = list(names)
    start, _ = console.settings_from_dict(settings, names)
    track_free, master_free, locked = parse_locks(locks, names, console)
    if reference is not None and not targets and anchor is None:
        # a reference sets the master bus's level, tone, width and density; the track balance,
        # the reverb and the limiter's character stay the mixer's own
        track_free = torch.zeros_like(track_free)
        keys = list(console.master_ranges)
        style = torch.tensor([k in REFERENCE_MASTER_PARAMS for k in keys])
        master_free = master_free & style[None]
    excerpt = _solve_audio(tracks.to(torch.float32)[None], sample_rate)
    if excerpt.shape[-1] < int(0.8 * SOLVE_RATE):
        raise ConfigError("goal-oriented mixing needs at least 0.8 s of audio")
    with torch.no_grad():
        start_measure = measure(console, excerpt, start)
    goals: list[Goal] = []
    if reference is not None:
        goals.append(_trusted(reference_goal(reference, sample_rate), start_measure))
        if not targets:
            goals.append(reference_keeper(start_measure))
    if targets:
        asked = targets_goal(targets, start_measure, names, classes)
        goals.append(asked)
        if reference is None:
            goals.append(keeper_goal(start_measure, asked))
    if not goals:
        if anchor is None:
            raise ConfigError("nothing to solve toward: give a reference, targets or an anchor mix")
        anchor_params, _ = console.settings_from_dict(anchor, names)
        with torch.no_grad():
            goals.append(anchor_goal(measure(console, excerpt, anchor_params)))

    def goal_fn(m: MixMeasure) -> Tensor:
        return combined_distance(goals, m)

    best, before, after = solve_console(
        console, excerpt, start, goal_fn, track_free=track_free, master_free=master_free,
        steps=steps, progress=progress,
    )
    for g in goals:
        if g.kind == "targets":
            best = _polish(console, excerpt, best, g, track_free, master_free)
    doc = _updated_document(settings, console, best, names)
    doc = _copy_locked(doc, settings, locked)
    final, _ = console.settings_from_dict(doc, names)
    with torch.no_grad():
        end_measure = measure(console, excerpt, final)
        after = float(goal_fn(end_measure))
    rows = [row for g in goals if g.kind != "keep" for row in _report_rows(g, start_measure, end_measure, names)]
    kind = "+".join(g.kind for g in goals if g.kind != "keep")
    return doc, SolveReport(kind, before, after, steps, locked, rows)


def _polish(
    console: Console, tracks: Tensor, params: ConsoleParams, goal: Goal, track_free: Tensor, master_free: Tensor,
    rounds: int = 3,
) -> ConsoleParams:
    """Close the remaining loudness error of targeted tracks and the master, and the master width.

    A post-compressor gain moves loudness dB for dB, so the residual error of a loudness
    target is added to the track's make-up gain (what its range cannot take, or all of it when it
    is locked, to the pre-compressor gain) and to the master limiter's input gain, clamped to
    their ranges; the master width stage scales the side signal, so its value is multiplied by
    the remaining side/mid error as an amplitude ratio; three rounds.
    """
    wanted = goal.track.get("loudness")
    master_wanted = goal.master.get("loudness")
    width_wanted = goal.master.get("width")
    if wanted is None and master_wanted is None and width_wanted is None:
        return params
    master_keys = list(console.master_ranges)
    keys = list(console.track_ranges)
    params = params.detach()
    for _ in range(rounds):
        with torch.no_grad():
            m = measure(console, tracks, params)
        if wanted is not None:
            for i in torch.nonzero(~torch.isnan(wanted)).flatten().tolist():
                error = float(wanted[i] - m.track["loudness"][i])
                for key in ("comp_makeup_db", "gain_db"):  # what the make-up range cannot take goes to the gain
                    if bool(track_free[0, i, keys.index(key)]) and abs(error) > 1e-4:
                        r = console.track_ranges[key]
                        old = float(params.track[key][0, i])
                        new = min(max(old + error, r.low), r.high)
                        params.track[key][0, i] = new
                        error -= new - old
        if width_wanted is not None and bool(master_free[0, master_keys.index("width")]):
            # the width stage scales the side signal: side/mid energy moves 20 log10(ratio) dB
            r = console.master_ranges["width"]
            ratio = 10.0 ** (float(width_wanted - m.master["width"]) / 20.0)
            params.master["width"][0] = min(max(float(params.master["width"][0]) * ratio, r.low), r.high)
        if master_wanted is not None and bool(master_free[0, master_keys.index("limiter_gain_db")]):
            r = console.master_ranges["limiter_gain_db"]
            value = float(params.master["limiter_gain_db"][0]) + float(master_wanted - m.master["loudness"])
            params.master["limiter_gain_db"][0] = min(max(value, r.low), r.high)
    return params


def _report_rows(goal: Goal, start: MixMeasure, end: MixMeasure, names: Sequence[str]) -> list[dict]:
    rows = []
    for r in goal.rows:
        t: Target = r["target"]
        i = r["index"]
        after = float(end.master[t.feature] if i is None else end.track[t.feature][i])
        tol = FEATURE_TOLERANCE[t.feature]
        if t.value is not None:
            met = abs(after - t.value) <= tol
        else:
            moved = (after - r["before"]) * math.copysign(1.0, float(t.change))
            met = moved >= abs(float(t.change)) - tol
        rows.append({"where": r["where"], "feature": t.feature, "asked": r["asked"], "before": r["before"],
                     "after": after, "desired": r["desired"], "met": bool(met)})
    for name, desired in goal.reference.items():
        before, after = float(start.reference[name]), float(end.reference[name])
        rows.append({"where": "mix", "feature": name, "asked": goal.kind, "before": before, "after": after,
                     "desired": desired, "met": abs(after - desired) <= abs(before - desired) + 1e-6})
    if goal.kind == "anchor":
        for feature, desired in goal.track.items():
            for i in range(desired.shape[0]):
                if math.isnan(float(desired[i])):
                    continue
                before, after = float(start.track[feature][i]), float(end.track[feature][i])
                rows.append({"where": names[i], "feature": feature, "asked": "anchor", "before": before,
                             "after": after, "desired": float(desired[i]),
                             "met": abs(after - float(desired[i])) <= abs(before - float(desired[i])) + 1e-6})
    return rows


__all__ = [
    "DEFAULT_STEPS",
    "FEATURES",
    "FEATURE_UNITS",
    "SEMANTIC_WORDS",
    "Goal",
    "MixMeasure",
    "SolveReport",
    "Target",
    "Targets",
    "guide_settings",
    "measure",
    "parse_locks",
    "parse_targets",
    "read_targets",
    "reference_features",
    "signal_features",
    "solve_console",
]
