"""Datasheets of trained mixers: what a mixer does to a track, measured with test signals.

``neuromix probe CHECKPOINT -o datasheet/`` excites a mixer with test signals, one track at a
time inside a realistic context (the other tracks of a demo song, of a song folder, or silence),
and measures what it does to that track, and to the master bus, the way one measures an
analogue device:

* **magnitude response and harmonic distortion** from a synchronised exponential sweep
  (Novak et al. 2015; :func:`neuromix.core.signals.exp_sweep` / ``deconvolve``), at several
  levels (**level dependence**); the response is the power sum of the left and right outputs
  relative to a centred, unity-gain track, ``10 log10((|H_L|^2 + |H_R|^2) / 2)`` (the
  console's stereo pan law keeps it constant over pan positions). THD at ``f`` is
  ``sqrt(sum_k |H_k(k f)|^2) / |H_1(f)|`` over orders 2..``num_harmonics``.
* **pan position and width** from the left/right responses: ``pan = 4 theta / pi - 1`` with
  ``theta = atan2(sqrt(E_R), sqrt(E_L))`` (band energies 200 Hz-5 kHz; exact for the
  constant-power law), ``width = 1 - IACC`` (maximum normalised cross-correlation of the left
  and right impulse responses within +-1 ms; 0 for a point source). For the master path the
  width is the side gain over the mid gain (the console's ``width``).
* **static compression curve** from a stepped-level sine (:func:`~neuromix.core.signals.stepped_sine`):
  output level of each step in its settled second half (least-squares sinusoid fit), and a fit
  of the soft-knee gain computer of Giannoulis et al. (2012) (:func:`fit_compressor`). The
  threshold is **referred to the probe input** (the track's own level), i.e. it includes the
  gain before the compressor.
* **attack and release** from tone bursts (:func:`~neuromix.core.signals.tone_bursts`) between
  a level below the fitted knee and one above it: the time the gain takes to make 63.2 % of
  its change (the console's time constants), resolution about 2 ms.
* the best-fitting console EQ (:func:`fit_eq`): the parametric layout of the console fitted to
  the measured magnitude response, a readable summary of what a black box does.

**Isolating a track.** The mix is rendered with and without the probe track and the
difference is the probe track's contribution. For console-family targets (the console
network, the rule mixer, a console with given settings) the settings are computed once per
test signal, *with the probe track present* (the network predicts settings from its input, so
when exciting with a sweep the settings are those it predicts for that input), and held fixed
for both renders; the datasheet lists them next to the measured values (``predicted``), and
the two agree. For the black box the output difference is its response (it also contains the
small change in how the other tracks are processed when the probe track leaves the context;
with ``context="silent"`` it is exact). In a non-silent context, master dynamics that react to
the probe signal also modulate the other tracks; that shows in the difference as ripple and
distortion (the silent context gives device-like curves). The master path is measured for console-family
targets by adding the test signal to the dry bus (centred: L = R; the width from a side
signal L = -R); the black box has no separable master path.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from neuromix.core.dsp.console import Console, ConsoleParams
from neuromix.core.dsp.dynamics import gain_computer
from neuromix.core.dsp.filters import biquad_coefficients, biquad_response
from neuromix.core.dsp.modules import MASTER_EQ, TRACK_EQ, EqBand, ParametricEQ
from neuromix.core.errors import ConfigError
from neuromix.core.io import write_text_atomic
from neuromix.core.signals import (
    Sweep,
    deconvolve,
    exp_sweep,
    stepped_sine,
    tone_bursts,
)
from neuromix.mixing.classes import CLASS_INDEX
from torch import Tensor

__all__ = [
    "BlackBoxTarget",
    "CompressorFit",
    "ConsoleNetTarget",
    "ConsoleTarget",
    "Datasheet",
    "PathSheet",
    "ProbeConfig",
    "ProbeContext",
    "ProbeTarget",
    "RulesTarget",
    "SweepResponse",
    "TimingFit",
    "fit_compressor",
    "fit_eq",
    "fit_timing",
    "load_context",
    "probe",
    "sine_amplitude",
    "target_from_spec",
    "write_datasheet",
]

DATASHEET_FORMAT = "neuromix-datasheet"
DATASHEET_VERSION = 1
_REPORT_FREQS_HZ = (31.5, 63.0, 125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0)
_PAN_BAND_HZ = (200.0, 5000.0)
_IACC_LAG_S = 0.001


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ProbeConfig:
    """Test signals and analysis settings.

    Attributes:
        sweep_seconds: duration of each sweep (s).
        f1_hz, f2_hz: sweep band (``f2_hz`` is limited to 0.45 x the sample rate).
        sweep_level_db: peak level of the main sweep (dBFS); its response is the headline one.
        levels_db: further sweep levels for the level dependence (the main level is added).
        tail_seconds: silence recorded after a sweep (the system's tail).
        num_harmonics: highest harmonic order separated by the deconvolution (>= 2).
        tone_hz: frequency of the stepped sine and the tone bursts.
        step_seconds: duration of each level step.
        steps_db: ``(lowest, highest, step)`` peak levels of the stepped sine (dBFS).
        burst_on_seconds, burst_off_seconds, burst_lead_seconds: tone-burst timing.
        context_offset_seconds: where in the context song the excerpts start.
        fit_eq: fit the console EQ layout to the measured responses.
        master: also measure the master path (console-family targets).
    """

    sweep_seconds: float = 4.0
    f1_hz: float = 20.0
    f2_hz: float = 20000.0
    sweep_level_db: float = -18.0
    levels_db: tuple[float, ...] = (-36.0, -27.0, -9.0)
    tail_seconds: float = 0.3
    num_harmonics: int = 4
    tone_hz: float = 1000.0
    step_seconds: float = 0.25
    steps_db: tuple[float, float, float] = (-60.0, 0.0, 2.0)
    burst_on_seconds: float = 0.5
    burst_off_seconds: float = 1.2
    burst_lead_seconds: float = 0.4
    context_offset_seconds: float = 2.0
    fit_eq: bool = True
    master: bool = True

    @classmethod
    def quick(cls) -> ProbeConfig:
        """Short signals for smoke tests and previews (coarser, less accurate)."""
        return cls(sweep_seconds=1.5, levels_db=(-30.0,), steps_db=(-48.0, 0.0, 4.0), step_seconds=0.15,
                   burst_on_seconds=0.3, burst_off_seconds=0.4, burst_lead_seconds=0.2, tail_seconds=0.1,
                   context_offset_seconds=0.5)

    def all_levels(self) -> list[float]:
        """Sweep levels, ascending, including the main one."""
        return sorted({float(v) for v in (*self.levels_db, self.sweep_level_db)})

    def step_levels(self) -> list[float]:
        """Levels of the stepped sine, ascending."""
        lo, hi, step = self.steps_db
        if step <= 0 or hi < lo:
            raise ConfigError(f"steps_db must be (lowest, highest, step > 0), got {self.steps_db}")
        count = int(math.floor((hi - lo) / step + 1e-9)) + 1
        return [lo + i * step for i in range(count)]


# --------------------------------------------------------------------------- context


@dataclass
class ProbeContext:
    """The tracks surrounding the probe track.

    Attributes:
        kind: ``"demo"``, ``"silent"`` or ``"folder"``.
        name: demo or folder name.
        tracks: ``(T, 2, samples)`` audio (zeros for ``"silent"``).
        names: track names.
        classes: instrument class per track.
        sample_rate: Hz.
    """

    kind: str
    name: str
    tracks: Tensor
    names: list[str]
    classes: list[str]
    sample_rate: int

    def excerpt(self, start: int, length: int) -> Tensor:
        """``(T, 2, length)`` from sample ``start``, looping the context if it is too short."""
        n = self.tracks.shape[-1]
        if n == 0:
            return self.tracks.new_zeros(self.tracks.shape[0], 2, length)
        idx = (torch.arange(length) + start) % n
        return self.tracks[..., idx]


def load_context(spec: str, sample_rate: int, seconds: float) -> ProbeContext:
    """Build a context: ``"demo"``, ``"demo:NAME"``, ``"silent"`` (the demo's layout, silent) or a folder.

    Args:
        spec: the context specification.
        sample_rate: Hz.
        seconds: audio needed (the context is looped when shorter).

    Raises:
        ConfigError: unknown demo name.
        AudioInputError: a folder that cannot be read.
    """
    from neuromix.mixing.generator import DEMO_SONGS, demo_song

    kind, _, name = spec.partition(":")
    if kind in ("demo", "silent"):
        demo = name or next(iter(DEMO_SONGS))
        if demo not in DEMO_SONGS:
            raise ConfigError(f"unknown demo song {demo!r}; available: {', '.join(DEMO_SONGS)}")
        if kind == "silent":
            spec_ = DEMO_SONGS[demo]
            names = [f"{c}{i}" for i, c in enumerate(spec_.classes)]
            tracks = torch.zeros(len(spec_.classes), 2, max(1, int(round(seconds * sample_rate))))
            return ProbeContext("silent", demo, tracks, names, list(spec_.classes), sample_rate)
        song = demo_song(demo, sample_rate=sample_rate, seconds=max(seconds, 1.0))
        return ProbeContext("demo", demo, song.as_multitrack(), list(song.names), list(song.classes), sample_rate)
    from neuromix.mixing.classify import classify_tracks
    from neuromix.mixing.data import load_song_folder

    song = load_song_folder(spec)
    multitrack = song.load(sample_rate, duration_s=seconds)
    overrides = {i: c for i, c in enumerate(song.stem_classes) if c is not None}
    classes = classify_tracks(multitrack.names, multitrack.audio, sample_rate, overrides=overrides)
    return ProbeContext("folder", song.name, multitrack.audio, list(multitrack.names), list(classes), sample_rate)


# --------------------------------------------------------------------------- targets


class ProbeTarget:
    """A mixer under test.

    ``prepare(tracks (1, T, 2, N), classes) -> state`` (e.g. predicted settings) is called once
    per test signal with the probe track present; ``render(tracks, mask (1, T), state) ->
    (1, 2, N)`` renders with that state. Console-family targets also return their
    ``(Console, ConsoleParams)`` from :meth:`console_parts` so the master path can be measured.

    Attributes:
        name: display name.
        family: ``"console"`` (settings-based) or ``"blackbox"``.
        sample_rate: Hz the target renders at.
    """

    name: str = "target"
    family: str = "console"
    sample_rate: int = 22050

    def prepare(self, tracks: Tensor, classes: Sequence[str]) -> Any:  # pragma: no cover
        raise NotImplementedError

    def render(self, tracks: Tensor, mask: Tensor, state: Any) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def console_parts(self, state: Any) -> tuple[Console, ConsoleParams] | None:
        """``(console, params)`` for console-family targets, else None."""
        return None

    def describe(self) -> dict[str, Any]:
        """JSON description of the target."""
        return {"name": self.name, "family": self.family, "sample_rate": self.sample_rate}


class _ConsoleFamily(ProbeTarget):
    """Shared rendering of settings-based targets: ``state`` is a :class:`ConsoleParams`."""

    family = "console"

    def _console(self) -> Console:  # pragma: no cover
        raise NotImplementedError

    def render(self, tracks: Tensor, mask: Tensor, state: ConsoleParams) -> Tensor:
        return self._console()(tracks, mask, state)

    def console_parts(self, state: ConsoleParams) -> tuple[Console, ConsoleParams]:
        return self._console(), state


class ConsoleTarget(_ConsoleFamily):
    """A :class:`~neuromix.core.dsp.console.Console` with given, fixed settings.

    Args:
        console: the console (its rate is the probe rate).
        params: settings with batch 1; per-track tensors ``(1, T)`` for the context's ``T``
            tracks, or ``(1, 1)`` (every track gets the same settings).
        name: display name.
    """

    def __init__(self, console: Console, params: ConsoleParams, name: str = "console") -> None:
        self.console = console
        self.params = params
        self.name = name
        self.sample_rate = console.sample_rate

    def _console(self) -> Console:
        return self.console

    def prepare(self, tracks: Tensor, classes: Sequence[str]) -> ConsoleParams:
        count = tracks.shape[1]
        have = next(iter(self.params.track.values())).shape[-1]
        if have == count:
            return self.params
        if have == 1:
            return ConsoleParams({k: v.expand(1, count) for k, v in self.params.track.items()}, dict(self.params.master))
        raise ConfigError(f"the console settings are for {have} tracks but the context has {count}")


class ConsoleNetTarget(_ConsoleFamily):
    """A console network: settings predicted once per test signal, then held fixed."""

    def __init__(self, model: torch.nn.Module, sample_rate: int | None = None, name: str = "console_net") -> None:
        self.model = model.eval()
        self.sample_rate = int(sample_rate or model.config.sample_rate)
        self.name = name

    def _console(self) -> Console:
        return self.model.console(self.sample_rate)

    def prepare(self, tracks: Tensor, classes: Sequence[str]) -> ConsoleParams:
        idx = torch.tensor([[CLASS_INDEX[c] for c in classes]], dtype=torch.long)
        with torch.no_grad():
            return self.model.settings(tracks, None, self.sample_rate, classes=idx)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "model_type": getattr(self.model, "model_type", None),
                "console_stages": list(self.model.config.console_stages)}


class RulesTarget(_ConsoleFamily):
    """The rule-based mixer: settings decided once per test signal (probe track present)."""

    def __init__(self, sample_rate: int, name: str = "rules") -> None:
        from neuromix.mixing.rules import RuleMixer

        self.mixer = RuleMixer(sample_rate)
        self.sample_rate = int(sample_rate)
        self.name = name

    def _console(self) -> Console:
        return self.mixer.console

    def prepare(self, tracks: Tensor, classes: Sequence[str]) -> ConsoleParams:
        return self.mixer.settings(tracks, list(classes))


class BlackBoxTarget(ProbeTarget):
    """A black-box mixing network: its output difference is its response."""

    family = "blackbox"

    def __init__(self, model: torch.nn.Module, sample_rate: int | None = None, name: str = "blackbox_net") -> None:
        self.model = model.eval()
        self.sample_rate = int(sample_rate or model.config.sample_rate)
        self.name = name

    def prepare(self, tracks: Tensor, classes: Sequence[str]) -> Tensor:
        return torch.tensor([[CLASS_INDEX[c] for c in classes]], dtype=torch.long)

    def render(self, tracks: Tensor, mask: Tensor, state: Tensor) -> Tensor:
        with torch.no_grad():
            return self.model(tracks, mask, self.sample_rate, state).mix

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "model_type": getattr(self.model, "model_type", None)}


def target_from_spec(spec: str, sample_rate: int | None = None) -> ProbeTarget:
    """A target from a CLI spec: a checkpoint path, ``console``/``blackbox`` (shipped), ``rules``,
    or a console settings JSON file (``neuromix rules-mix --params`` writes one).

    Args:
        spec: the specification.
        sample_rate: probe rate (default: the model's rate, the settings file's, or 22050).

    Raises:
        CheckpointError / ConfigError: a bad checkpoint or settings file, an unknown name.
    """
    if spec == "rules":
        return RulesTarget(sample_rate or 22050)
    path = Path(spec)
    if spec in ("console", "blackbox") and not path.exists():
        from neuromix.mixing.shipped import shipped_checkpoint

        path = shipped_checkpoint(spec)
    if not path.is_file():
        raise ConfigError(f"{spec!r} is neither a checkpoint, a settings JSON file, 'rules', 'console' nor 'blackbox'")
    if path.suffix.lower() == ".json":
        from neuromix.core.io import DEFAULT_LIMITS
        from neuromix.mixing.inference import read_settings

        doc = read_settings(path)  # size-bounded; ConfigError for non-JSON, too deep, not an object
        rate = sample_rate or doc.get("sample_rate") or 22050
        low, high = DEFAULT_LIMITS.min_sample_rate, DEFAULT_LIMITS.max_sample_rate
        if isinstance(rate, bool) or not isinstance(rate, int) or not low <= rate <= high:
            raise ConfigError(f"{path}: sample_rate must be an integer number of Hz in [{low}, {high}], got {rate!r}")
        console = Console(rate)
        params, _ = console.settings_from_dict(doc)
        return ConsoleTarget(console, params, name=path.stem)
    from neuromix.mixing.models import BlackBoxNet, ConsoleNet, load_model

    model, info = load_model(path)
    if isinstance(model, ConsoleNet):
        target: ProbeTarget = ConsoleNetTarget(model, sample_rate, name=path.stem)
    elif isinstance(model, BlackBoxNet):
        target = BlackBoxTarget(model, sample_rate, name=path.stem)
    else:  # pragma: no cover - the registry holds only these two
        raise ConfigError(f"{path}: model type {info.model_type!r} cannot be probed")
    target.checkpoint_sha256 = info.sha256  # type: ignore[attr-defined]
    return target


# --------------------------------------------------------------------------- analysis


@dataclass
class SweepResponse:
    """Impulse responses measured with one sweep.

    Attributes:
        linear_ir: ``(channels, L)`` float64 linear impulse responses (time zero at ``pre``).
        harmonic_irs: orders 2..K, each ``(channels, L)``.
        pre: samples before time zero.
        sample_rate: Hz.
        band: ``(f_low, f_high)`` Hz where the measurement is valid.
        level_db: sweep peak level in dBFS.
    """

    linear_ir: np.ndarray
    harmonic_irs: list[np.ndarray]
    pre: int
    sample_rate: int
    band: tuple[float, float]
    level_db: float

    def _dtft(self, ir: np.ndarray, freqs_hz: Sequence[float] | np.ndarray) -> np.ndarray:
        f = np.asarray(freqs_hz, dtype=np.float64)
        n = np.arange(ir.shape[-1]) - self.pre
        kernel = np.exp(-2j * np.pi * np.outer(f, n) / self.sample_rate)
        return ir @ kernel.T

    def response(self, freqs_hz: Sequence[float] | np.ndarray) -> np.ndarray:
        """Complex linear response ``(channels, F)`` at the given frequencies."""
        return self._dtft(self.linear_ir, freqs_hz)

    def magnitude_db(self, freqs_hz: Sequence[float] | np.ndarray) -> np.ndarray:
        """``10 log10((|H_L|^2 + |H_R|^2) / 2)`` in dB, ``(F,)`` (one channel: ``20 log10 |H|``)."""
        h = self.response(freqs_hz)
        power = (np.abs(h) ** 2).sum(0) / (2.0 if h.shape[0] == 2 else 1.0)
        return 10.0 * np.log10(power + 1e-24)

    def thd_percent(self, freqs_hz: Sequence[float] | np.ndarray) -> np.ndarray:
        """Total harmonic distortion in % for inputs at ``freqs_hz`` (orders whose harmonic lies in band)."""
        f = np.asarray(freqs_hz, dtype=np.float64)
        fundamental = (np.abs(self.response(f)) ** 2).sum(0)
        harmonics = np.zeros_like(fundamental)
        for order, ir in enumerate(self.harmonic_irs, start=2):
            inside = order * f <= self.band[1]
            if inside.any():
                h = self._dtft(ir, order * f[inside])
                harmonics[inside] += (np.abs(h) ** 2).sum(0)
        return 100.0 * np.sqrt(harmonics / (fundamental + 1e-30))

    def pan_width(self) -> tuple[float, float]:
        """``(pan, width)`` from the left/right responses (see the module docstring)."""
        if self.linear_ir.shape[0] != 2:
            return 0.0, 0.0
        lo, hi = _PAN_BAND_HZ[0], min(_PAN_BAND_HZ[1], self.band[1])
        freqs = np.geomspace(max(lo, self.band[0]), hi, 48)
        h = self.response(freqs)
        e_l, e_r = (np.abs(h) ** 2).mean(1)
        pan = 4.0 / math.pi * math.atan2(math.sqrt(e_r), math.sqrt(e_l)) - 1.0
        left, right = self.linear_ir
        el, er = float((left**2).sum()), float((right**2).sum())
        if min(el, er) <= 1e-8 * max(el, er, 1e-30):
            return pan, 0.0
        lag = max(1, int(round(_IACC_LAG_S * self.sample_rate)))
        full = np.correlate(left, right, mode="full")
        mid = right.shape[0] - 1
        iacc = float(np.abs(full[mid - lag : mid + lag + 1]).max() / math.sqrt(el * er))
        return pan, float(max(0.0, 1.0 - min(1.0, iacc)))

    def pan_by_frequency(self, freqs_hz: Sequence[float] | np.ndarray) -> np.ndarray:
        """Pan position per frequency ``(F,)`` (constant-power law)."""
        h = np.abs(self.response(freqs_hz))
        if h.shape[0] != 2:
            return np.zeros(h.shape[-1])
        return 4.0 / math.pi * np.arctan2(h[1], h[0]) - 1.0


def _sweep_plan(cfg: ProbeConfig, sample_rate: int, level_db: float) -> tuple[Sweep, int, int, int]:
    """The sweep, the excitation length, the IR length and the pre-samples at a rate."""
    f2 = min(cfg.f2_hz, 0.45 * sample_rate)
    if not cfg.f1_hz < f2:
        raise ConfigError(f"sweep band {cfg.f1_hz}-{f2} Hz is empty at {sample_rate} Hz")
    sweep = exp_sweep(cfg.sweep_seconds, sample_rate, cfg.f1_hz, f2, amplitude=10.0 ** (level_db / 20.0))
    k = max(2, cfg.num_harmonics)
    spacing = sweep.rate_L * math.log(k / (k - 1)) * sample_rate
    ir_length = int(min(16384, math.floor(spacing)))
    pre = ir_length // 4
    length = sweep.signal.shape[-1] + int(round(cfg.tail_seconds * sample_rate))
    return sweep, length, ir_length, pre


def _analyse_sweep(y: Tensor, sweep: Sweep, ir_length: int, pre: int, cfg: ProbeConfig,
                   level_db: float) -> SweepResponse:
    dec = deconvolve(y.double(), sweep, ir_length=ir_length, num_harmonics=max(2, cfg.num_harmonics), pre_samples=pre)
    band = (2.0 * sweep.f1_hz, sweep.f2_hz / 1.05)
    return SweepResponse(dec.linear_ir.numpy(), [h.numpy() for h in dec.harmonic_irs], pre, sweep.sample_rate,
                         band, level_db)


def sine_amplitude(y: np.ndarray | Tensor, sample_rate: float, freq_hz: float) -> np.ndarray:
    """Least-squares amplitude of a sinusoid at ``freq_hz`` in each channel.

    Args:
        y: ``(channels, samples)`` signal.
        sample_rate: Hz.
        freq_hz: frequency of the sinusoid.

    Returns:
        ``(channels,)`` peak amplitudes (fit of ``a sin + b cos``: ``sqrt(a^2 + b^2)``).
    """
    y = np.asarray(y, dtype=np.float64)
    t = np.arange(y.shape[-1]) / sample_rate
    basis = np.stack([np.sin(2 * np.pi * freq_hz * t), np.cos(2 * np.pi * freq_hz * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y.T, rcond=None)
    return np.hypot(coef[0], coef[1])


def _combined_amplitude(amps: np.ndarray) -> float:
    """Power-sum of channel amplitudes relative to a centred unity track: ``sqrt(sum a^2 / 2)``."""
    return float(math.sqrt((np.asarray(amps) ** 2).sum() / (2.0 if len(amps) == 2 else 1.0)))


@dataclass
class CompressorFit:
    """Static curve and its soft-knee fit (levels in dBFS peak, input-referred).

    Attributes:
        levels_in_db, levels_out_db: the measured curve.
        compressing: whether a compressor curve fits better than a constant gain.
        threshold_db, ratio, knee_db: the fitted gain computer (None when not compressing).
        gain_db: gain below the threshold (dB).
        rms_error_db: fit residual.
    """

    levels_in_db: list[float]
    levels_out_db: list[float]
    compressing: bool
    threshold_db: float | None
    ratio: float | None
    knee_db: float | None
    gain_db: float
    rms_error_db: float

    def model_gain_db(self, levels_db: np.ndarray) -> np.ndarray:
        """Gain of the fitted curve at input levels (dB)."""
        levels_db = np.asarray(levels_db, dtype=np.float64)
        if not self.compressing:
            return np.full_like(levels_db, self.gain_db)
        return self.gain_db - _knee_curve(levels_db, self.threshold_db, self.knee_db) * (1.0 - 1.0 / self.ratio)


def _knee_curve(levels: np.ndarray, threshold: float | np.ndarray, knee: float | np.ndarray) -> np.ndarray:
    """``u^2 / (2W) + relu(d - W/2)``, the gain computer divided by ``1 - 1/ratio``."""
    d = levels - threshold
    w = np.asarray(knee, dtype=np.float64)
    u = np.clip(d + w / 2.0, 0.0, w)
    return u * u / (2.0 * np.maximum(w, 1e-6)) + np.maximum(d - w / 2.0, 0.0)


def fit_compressor(levels_in_db: Sequence[float], gains_db: Sequence[float], *, min_slope: float = 0.03) -> CompressorFit:
    """Fit ``gain(L) = G - (1 - 1/R) * knee(L; T, W)`` to a measured static curve.

    The gain computer of Giannoulis et al. (2012) (:func:`neuromix.core.dsp.dynamics.gain_computer`)
    is linear in ``G`` and ``s = 1 - 1/R`` for fixed threshold ``T`` and knee ``W``, so those
    two are solved by least squares (``0 <= s <= 0.999``) on a grid of ``T`` (0.1 dB steps
    around the measured levels) and ``W`` (0-12 dB in 0.5 dB steps), keeping the best fit.

    Args:
        levels_in_db: input levels (ascending).
        gains_db: measured gain (output minus input level) at each.
        min_slope: below this ``s`` (a ratio under about 1.03) the curve counts as "no compression".

    Returns:
        :class:`CompressorFit`.
    """
    x = np.asarray(levels_in_db, dtype=np.float64)
    g = np.asarray(gains_db, dtype=np.float64)
    if x.shape != g.shape or x.size < 3:
        raise ValueError("need at least three (level, gain) pairs of the same length")
    out = (x + g).tolist()
    flat_err = float(np.sqrt(np.mean((g - g.mean()) ** 2)))
    thresholds = np.arange(x.min() - 6.0, x.max() + 6.0 + 1e-9, 0.1)
    knees = np.arange(0.0, 12.0 + 1e-9, 0.5)
    tt, ww = np.meshgrid(thresholds, knees, indexing="ij")
    q = _knee_curve(x[None, None, :], tt[..., None], ww[..., None])  # (T, W, n)
    qm, gm = q.mean(-1, keepdims=True), g.mean()
    var = ((q - qm) ** 2).sum(-1)
    cov = ((q - qm) * (g - gm)).sum(-1)
    s = np.where(var > 1e-12, -cov / np.maximum(var, 1e-12), 0.0).clip(0.0, 0.999)
    G = (g[None, None, :] + s[..., None] * q).mean(-1)
    sse = ((g[None, None, :] - (G[..., None] - s[..., None] * q)) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(sse)), sse.shape)
    best_s, best_err = float(s[i, j]), float(math.sqrt(sse[i, j] / x.size))
    if best_s < min_slope or flat_err - best_err < 0.05:
        return CompressorFit(x.tolist(), out, False, None, None, None, float(g.mean()), flat_err)
    return CompressorFit(x.tolist(), out, True, float(thresholds[i]), float(1.0 / (1.0 - best_s)), float(knees[j]),
                         float(G[i, j]), best_err)


@dataclass
class TimingFit:
    """Attack and release measured with tone bursts.

    Attributes:
        low_db, high_db: burst levels (dBFS peak).
        gain_change_db: gain drop from the low to the high level (settled).
        attack_ms: time to 63.2 % of the drop after the level rises (None: no measurable change).
        release_ms: time to 63.2 % of the recovery after the level falls (None: not reached in
            the off period, see ``release_min_ms``).
        release_min_ms: lower bound when the recovery did not reach 63.2 %.
        times_s, gain_db: the measured gain envelope (decimated to 1 ms) for plots.
        up_s, down_s: times of the level jumps.
    """

    low_db: float
    high_db: float
    gain_change_db: float
    attack_ms: float | None
    release_ms: float | None
    release_min_ms: float | None
    times_s: list[float] = field(repr=False)
    gain_db: list[float] = field(repr=False)
    up_s: float = 0.0
    down_s: float = 0.0


def _envelope(y: np.ndarray, sample_rate: float, freq_hz: float) -> np.ndarray:
    """Amplitude envelope of the ``freq_hz`` component per channel (complex demodulation)."""
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    n = y.shape[-1]
    carrier = np.exp(-2j * np.pi * freq_hz * np.arange(n) / sample_rate)
    width = max(3, int(round(4.0 * sample_rate / freq_hz)))
    window = np.hanning(width + 2)[1:-1]
    window /= window.sum()
    out = np.empty_like(y)
    for c in range(y.shape[0]):
        z = np.convolve(y[c] * carrier, window, mode="same")
        out[c] = 2.0 * np.abs(z)
    return out


def fit_timing(y: np.ndarray | Tensor, x: np.ndarray | Tensor, sample_rate: int, freq_hz: float, up: int, down: int,
               low_db: float, high_db: float, *, min_change_db: float = 0.5) -> TimingFit:
    """Attack and release times from the response ``y`` ``(channels, n)`` to tone bursts ``x`` ``(n,)``.

    The gain envelope ``20 log10(env_y / env_x)`` (complex demodulation at ``freq_hz`` with a
    4-period Hann window, both signals alike) is read before the rise (settled low-level
    gain ``g0``), at the end of the burst (settled high-level gain ``g1``); the attack is the
    time after ``up`` until the gain has made 63.2 % of the change ``g0 -> g1``, the release
    the time after ``down`` until it has recovered 63.2 % of the way back to ``g0``.

    Returns:
        :class:`TimingFit`.
    """
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    env_y = np.sqrt((_envelope(y, sample_rate, freq_hz) ** 2).sum(0) / (2.0 if y.shape[0] == 2 else 1.0))
    env_x = _envelope(x[None], sample_rate, freq_hz)[0]
    gain = 20.0 * np.log10((env_y + 1e-12) / (env_x + 1e-12))
    guard = int(round(4.0 * sample_rate / freq_hz))
    before = gain[max(0, up - int(0.1 * sample_rate)) : max(1, up - guard)]
    on = down - up
    settled = gain[down - max(guard + 1, on // 4) : down - guard]
    g0 = float(np.median(before)) if before.size else float(gain[0])
    g1 = float(np.median(settled)) if settled.size else float(gain[down - 1])
    change = g0 - g1
    step = max(1, int(round(sample_rate / 1000.0)))
    times = (np.arange(0, gain.shape[0], step) / sample_rate).tolist()
    trace = gain[::step].tolist()
    if abs(change) < min_change_db:
        return TimingFit(low_db, high_db, change, None, None, None, times, trace, up / sample_rate, down / sample_rate)

    def crossing(start: int, stop: int, origin: float, target: float) -> float | None:
        seg = gain[start:stop]
        progress = (seg - origin) / (target - origin)
        hit = np.nonzero(progress >= 0.632)[0]
        if hit.size == 0:
            return None
        k = int(hit[0])
        if k == 0:
            return 0.0
        p0, p1 = progress[k - 1], progress[k]
        frac = (0.632 - p0) / (p1 - p0) if p1 != p0 else 0.0
        return 1000.0 * (k - 1 + frac) / sample_rate

    attack = crossing(up, down, g0, g1)
    release = crossing(down, gain.shape[0] - guard, g1, g0)
    release_min = None if release is not None else 1000.0 * (gain.shape[0] - guard - down) / sample_rate
    return TimingFit(low_db, high_db, change, attack, release, release_min, times, trace, up / sample_rate,
                     down / sample_rate)


def fit_eq(freqs_hz: Sequence[float] | np.ndarray, magnitude_db: Sequence[float] | np.ndarray, sample_rate: int,
           bands: Sequence[EqBand] = TRACK_EQ, *, steps: int = 300, starts: int = 8, seed: int = 0) -> dict[str, float]:
    """Fit the console's parametric EQ layout (plus a broadband gain) to a magnitude response.

    Minimises the mean squared dB error over ``freqs_hz`` with Adam (learning rate 0.05) on
    the normalised parameters (squashed into their ranges by a sigmoid), from the neutral EQ
    and ``starts - 1`` seeded random starts optimised together as a batch; the broadband gain
    is the mean residual at every step. The best start is returned. Deterministic for a seed.

    Args:
        freqs_hz: ``(F,)`` frequencies.
        magnitude_db: ``(F,)`` measured response.
        sample_rate: Hz.
        bands: EQ layout (:data:`~neuromix.core.dsp.modules.TRACK_EQ` or ``MASTER_EQ``).
        steps: optimiser steps.
        starts: number of starts.
        seed: seed of the random starts.

    Returns:
        ``{"gain_db": ..., "<band>_cutoff_hz": ..., "<band>_gain_db": ..., "<band>_q": ...,
        "rms_error_db": ...}``.
    """
    eq = ParametricEQ(sample_rate, bands)
    names = list(eq.param_ranges)
    ranges = [eq.param_ranges[k] for k in names]
    f = torch.as_tensor(np.asarray(freqs_hz, dtype=np.float64))
    target = torch.as_tensor(np.asarray(magnitude_db, dtype=np.float64))
    neutral = torch.stack([r.to_normalised(torch.tensor(r.default, dtype=torch.float64)) for r in ranges])
    gen = torch.Generator().manual_seed(seed)
    u0 = torch.cat([neutral[None], torch.rand(max(0, starts - 1), len(names), generator=gen, dtype=torch.float64)])

    def response_db(z: Tensor) -> Tensor:  # (S, P) -> (S, F)
        u = torch.sigmoid(z)
        phys = {k: r.to_physical(u[:, i]) for i, (k, r) in enumerate(zip(names, ranges))}
        kinds, cut, gain, q = eq.band_tensors(phys)
        h = torch.ones(z.shape[0], f.shape[0], dtype=torch.complex128)
        for i, kind in enumerate(kinds):
            b, a = biquad_coefficients(kind, sample_rate, cut[:, i], gain[:, i], q[:, i])
            h = h * biquad_response(b, a, f, sample_rate)
        return 20.0 * torch.log10(h.abs().clamp_min(1e-12))

    lr, beta1, beta2 = 0.05, 0.9, 0.999
    with torch.enable_grad():
        z = torch.logit(u0.clamp(0.02, 0.98)).clone().requires_grad_(True)
        m = torch.zeros_like(z)
        v = torch.zeros_like(z)
        for step in range(1, steps + 1):
            resp = response_db(z)
            offset = (target - resp).mean(-1, keepdim=True).detach()
            loss = ((resp + offset - target) ** 2).mean(-1).sum()
            (grad,) = torch.autograd.grad(loss, z)
            with torch.no_grad():
                m.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                m_hat = m / (1.0 - beta1**step)
                v_hat = v / (1.0 - beta2**step)
                z -= lr * m_hat / (v_hat.sqrt() + 1e-8)
    with torch.no_grad():
        resp = response_db(z)
        offset = (target - resp).mean(-1)
        err = ((resp + offset[:, None] - target) ** 2).mean(-1).sqrt()
        best = int(torch.argmin(err))
        u = torch.sigmoid(z[best])
        values = {"gain_db": float(offset[best])}
        values.update({k: float(r.to_physical(u[i])) for i, (k, r) in enumerate(zip(names, ranges))})
        values["rms_error_db"] = float(err[best])
    return {k: round(val, 4) for k, val in values.items()}


# --------------------------------------------------------------------------- measurement


@dataclass
class _Excitation:
    """Responses to one test signal: the probe track's (and the master path's) output differences."""

    track: Tensor  # (2, n)
    master_mid: Tensor | None
    master_side: Tensor | None
    params: ConsoleParams | None


def _measure(target: ProbeTarget, context: ProbeContext, index: int, signal: Tensor, offset: int,
             master: bool, side: bool) -> _Excitation:
    n = signal.shape[-1]
    tracks = context.excerpt(offset, n).clone()
    tracks[index] = signal.to(tracks.dtype)[None].expand(2, -1)
    tracks = tracks[None]
    count = tracks.shape[1]
    mask_all = torch.ones(1, count, dtype=torch.bool)
    mask_wo = mask_all.clone()
    mask_wo[0, index] = False
    with torch.no_grad():
        state = target.prepare(tracks, context.classes)
        parts = target.console_parts(state)
        if parts is None:
            with_probe = target.render(tracks, mask_all, state)[0]
            without = target.render(tracks, mask_wo, state)[0]
            return _Excitation(with_probe - without, None, None, None)
        console, params = parts
        processed = console.process_tracks(tracks, params)
        dry_all, send_all = console.route(processed, mask_all, params)
        dry_wo, send_wo = console.route(processed, mask_wo, params)
        without = console.process_master(dry_wo, send_wo, params)[0]
        track = console.process_master(dry_all, send_all, params)[0] - without
        mid = side_out = None
        if master:
            e = signal.to(dry_wo.dtype)[None, None].expand(1, 2, -1)
            mid = console.process_master(dry_wo + e, send_wo, params)[0] - without
            if side:
                e_side = torch.stack([signal, -signal]).to(dry_wo.dtype)[None]
                side_out = console.process_master(dry_wo + e_side, send_wo, params)[0] - without
    return _Excitation(track, mid, side_out, params.detach())


@dataclass
class PathSheet:
    """What the target does on one path (a track or the master bus).

    Attributes:
        path: ``"track"`` or ``"master"``.
        index, name, cls: the probed track (None for the master).
        sweeps: level (dBFS) -> :class:`SweepResponse`.
        main_level_db: level of the headline sweep.
        compression: static curve and fit.
        timing: attack/release (None if not measured).
        pan, width: stereo placement (master: width = side gain / mid gain).
        fitted_eq: best-fit console EQ (None if not fitted).
        settings: console-family targets: the settings used with the main sweep (this path's
            parameters), else None.
        predicted: console-family targets: what those settings imply (pan, response at the
            report frequencies, input-referred threshold, ratio, knee, times), for comparison.
    """

    path: str
    index: int | None
    name: str | None
    cls: str | None
    sweeps: dict[float, SweepResponse]
    main_level_db: float
    compression: CompressorFit
    timing: TimingFit | None
    pan: float
    width: float
    fitted_eq: dict[str, float] | None = None
    settings: dict[str, float] | None = None
    predicted: dict[str, Any] | None = None
    plots: list[str] = field(default_factory=list)

    @property
    def main(self) -> SweepResponse:
        """The headline sweep response."""
        return self.sweeps[self.main_level_db]

    def report_freqs(self) -> np.ndarray:
        """Octave frequencies inside the measured band."""
        lo, hi = self.main.band
        return np.array([f for f in _REPORT_FREQS_HZ if lo <= f <= hi])

    def grid(self) -> np.ndarray:
        """1/12-octave frequency grid inside the measured band."""
        lo, hi = self.main.band
        return np.geomspace(lo, hi, max(8, int(12 * math.log2(hi / lo)) + 1))

    def slug(self) -> str:
        """File-name stem of this path's plots."""
        if self.path == "master":
            return "master"
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in (self.name or ""))
        return f"track{self.index}_{safe}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable datasheet entry (rounded)."""
        grid, octaves = self.grid(), self.report_freqs()
        main = self.main
        inside = (grid >= _PAN_BAND_HZ[0]) & (grid <= _PAN_BAND_HZ[1])
        levels = sorted(self.sweeps)
        broadband = {f"{lv:g}": _r(float(np.median(self.sweeps[lv].magnitude_db(grid[inside])))) for lv in levels}
        bb_values = [float(v) for v in broadband.values()]
        thd_grid = main.thd_percent(grid)
        thd_at = {f"{f:g}": _r(float(main.thd_percent([f])[0])) for f in (100.0, 1000.0) if main.band[0] <= f <= main.band[1]}
        comp = self.compression
        doc: dict[str, Any] = {
            "path": self.path,
            "index": self.index,
            "name": self.name,
            "class": self.cls,
            "response": {
                "main_level_db": self.main_level_db,
                "freqs_hz": _r(grid.tolist(), 2),
                "magnitude_db": {f"{lv:g}": _r(self.sweeps[lv].magnitude_db(grid).tolist()) for lv in levels},
                "octaves_db": {f"{f:g}": _r(float(v)) for f, v in zip(octaves, main.magnitude_db(octaves))},
                "broadband_gain_db": _r(float(np.median(main.magnitude_db(grid[inside])))),
                "level_dependence": {
                    "broadband_gain_db": broadband,
                    "max_change_db": _r(max(bb_values) - min(bb_values)),
                },
            },
            "distortion": {
                "thd_percent": _r(thd_grid.tolist(), 4),
                "thd_percent_at_hz": thd_at,
                "thd_percent_median": _r(float(np.median(thd_grid)), 4),
            },
            "stereo": {
                "pan": _r(self.pan, 4),
                "width": _r(self.width, 4),
                "pan_by_octave": {f"{f:g}": _r(float(p), 4) for f, p in zip(octaves, main.pan_by_frequency(octaves))},
            },
            "compression": {
                "levels_in_db": _r(comp.levels_in_db),
                "levels_out_db": _r(comp.levels_out_db),
                "compressing": comp.compressing,
                "threshold_db": _r(comp.threshold_db),
                "ratio": _r(comp.ratio, 4),
                "knee_db": _r(comp.knee_db),
                "gain_db": _r(comp.gain_db),
                "fit_rms_error_db": _r(comp.rms_error_db, 4),
            },
            "timing": None if self.timing is None else {
                "low_db": _r(self.timing.low_db),
                "high_db": _r(self.timing.high_db),
                "gain_change_db": _r(self.timing.gain_change_db),
                "attack_ms": _r(self.timing.attack_ms),
                "release_ms": _r(self.timing.release_ms),
                "release_min_ms": _r(self.timing.release_min_ms),
            },
            "fitted_eq": self.fitted_eq,
            "settings": self.settings,
            "predicted": self.predicted,
            "plots": self.plots,
        }
        return doc


def _r(value: Any, digits: int = 3) -> Any:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_r(v, digits) for v in value]
    v = float(value)
    return None if not math.isfinite(v) else round(v, digits)


def _eq_db_at(eq: ParametricEQ, params: Mapping[str, Tensor], freqs: np.ndarray) -> np.ndarray:
    kinds, cut, gain, q = eq.band_tensors({k: v.reshape(1).double() for k, v in params.items()})
    f = torch.as_tensor(freqs, dtype=torch.float64)
    h = torch.ones(1, f.shape[0], dtype=torch.complex128)
    for i, kind in enumerate(kinds):
        b, a = biquad_coefficients(kind, eq.sample_rate, cut[:, i], gain[:, i], q[:, i])
        h = h * biquad_response(b, a, f, eq.sample_rate)
    return (20.0 * torch.log10(h.abs().clamp_min(1e-12)))[0].numpy()


def _master_gain_db(console: Console, params: ConsoleParams) -> float:
    """Static master gain of a console: bus-compressor makeup plus the limiter's input gain (active stages)."""
    cfg, m = console.config, params.master
    gain = float(m["comp_makeup_db"][0]) if cfg.bus_compressor else 0.0
    return gain + (float(m["limiter_gain_db"][0]) if cfg.limiter else 0.0)


def _predicted_track(console: Console, sweep_params: ConsoleParams, comp_params: ConsoleParams,
                     timing_params: ConsoleParams | None, index: int, freqs: np.ndarray, level_db: float,
                     tone_hz: float) -> tuple[dict[str, float], dict[str, Any]]:
    """Settings of the probe track (main sweep) and what they imply (see :class:`PathSheet`)."""
    cfg = console.config
    eq = ParametricEQ(console.sample_rate, TRACK_EQ)
    master_eq = ParametricEQ(console.sample_rate, MASTER_EQ)

    def track_values(params: ConsoleParams) -> dict[str, float]:
        return {k: float(v[0, index]) for k, v in params.track.items()}

    def master_eq_db(params: ConsoleParams, f: np.ndarray) -> np.ndarray:
        if not cfg.master_eq:
            return np.zeros_like(f)
        return _eq_db_at(master_eq, {k[3:]: v[:1] for k, v in params.master.items() if k.startswith("eq_")}, f)

    def chain_db(v: dict[str, float], f: np.ndarray, params: ConsoleParams) -> np.ndarray:
        eq_db = _eq_db_at(eq, {k[3:]: torch.tensor(x) for k, x in v.items() if k.startswith("eq_")}, f) \
            if cfg.track_eq else np.zeros_like(f)
        return v["gain_db"] + eq_db + master_eq_db(params, f)

    s = track_values(sweep_params)
    pre = s["gain_db"] + (_eq_db_at(eq, {k[3:]: torch.tensor(x) for k, x in s.items() if k.startswith("eq_")}, freqs)
                          if cfg.track_eq else 0.0)
    response = chain_db(s, freqs, sweep_params)
    if cfg.track_compressor:
        reduction = gain_computer(torch.as_tensor(level_db + pre), s["comp_threshold_db"], s["comp_ratio"],
                                  s["comp_knee_db"]).numpy()
        response = response + s["comp_makeup_db"] - reduction
    c = track_values(comp_params)
    tone = np.array([tone_hz])
    pre_tone = c["gain_db"] + (float(_eq_db_at(eq, {k[3:]: torch.tensor(x) for k, x in c.items()
                                                      if k.startswith("eq_")}, tone)[0]) if cfg.track_eq else 0.0)
    # the stereo balance law (dual-mono probe tracks), then the master width on mid/side
    theta = (min(max(s["pan"], -1.0), 1.0) + 1.0) * math.pi / 4.0
    g_l, g_r = math.sqrt(2.0) * math.cos(theta), math.sqrt(2.0) * math.sin(theta)
    width = float(sweep_params.master["width"][0]) if cfg.master_width else 1.0
    mid, side = 0.5 * (g_l + g_r), 0.5 * (g_l - g_r)
    out_l, out_r = mid + width * side, mid - width * side
    pan = 4.0 / math.pi * math.atan2(abs(out_r), abs(out_l)) - 1.0
    response = response + 10.0 * math.log10(max((out_l**2 + out_r**2) / 2.0, 1e-24)) + _master_gain_db(console, sweep_params)
    predicted: dict[str, Any] = {
        "note": "implied by the settings (track chain, master EQ, width, bus makeup and limiter input gain); "
                "ignores the gain reduction of the bus compressor and limiter",
        "pan": _r(pan, 4),
        "octaves_db": {f"{f:g}": _r(float(v)) for f, v in zip(freqs, response)},
    }
    if cfg.track_compressor:
        predicted.update({
            "compressing": c["comp_ratio"] > 1.03,
            "threshold_db": _r(c["comp_threshold_db"] - pre_tone),
            "ratio": _r(c["comp_ratio"], 4),
            "knee_db": _r(c["comp_knee_db"]),
        })
        if timing_params is not None:
            t = track_values(timing_params)
            predicted.update({"attack_ms": _r(t["comp_attack_ms"]), "release_ms": _r(t["comp_release_ms"])})
    return {k: round(v, 4) for k, v in s.items()}, predicted


def _predicted_master(console: Console, sweep_params: ConsoleParams, comp_params: ConsoleParams,
                      timing_params: ConsoleParams | None, freqs: np.ndarray, tone_hz: float) -> tuple[dict, dict]:
    cfg = console.config
    master_eq = ParametricEQ(console.sample_rate, MASTER_EQ)

    def eq_db(params: ConsoleParams, f: np.ndarray) -> np.ndarray:
        if not cfg.master_eq:
            return np.zeros_like(f)
        return _eq_db_at(master_eq, {k[3:]: v[:1] for k, v in params.master.items() if k.startswith("eq_")}, f)

    m = {k: float(v[0]) for k, v in sweep_params.master.items()}
    c = {k: float(v[0]) for k, v in comp_params.master.items()}
    response = eq_db(sweep_params, freqs) + _master_gain_db(console, sweep_params)
    predicted: dict[str, Any] = {
        "note": "implied by the master settings (EQ, width, bus makeup, limiter input gain); ignores the gain "
                "reduction of the bus compressor and limiter",
        "width": _r(m["width"], 4) if cfg.master_width else 1.0,
        "octaves_db": {f"{f:g}": _r(float(v)) for f, v in zip(freqs, response)},
    }
    if cfg.bus_compressor:
        predicted.update({
            "compressing": c["comp_ratio"] > 1.03,
            "threshold_db": _r(c["comp_threshold_db"] - float(eq_db(comp_params, np.array([tone_hz]))[0])),
            "ratio": _r(c["comp_ratio"], 4),
            "knee_db": _r(c["comp_knee_db"]),
        })
        if timing_params is not None:
            predicted.update({"attack_ms": _r(float(timing_params.master["comp_attack_ms"][0])),
                              "release_ms": _r(float(timing_params.master["comp_release_ms"][0]))})
    return {k: round(v, 4) for k, v in m.items()}, predicted


def _static_curve(y: Tensor, starts: Tensor, step: int, sample_rate: int, tone_hz: float) -> list[float]:
    out = []
    arr = y.double().numpy()
    for s in starts.tolist():
        seg = arr[:, s + step // 2 : s + step - max(1, step // 20)]
        out.append(20.0 * math.log10(_combined_amplitude(sine_amplitude(seg, sample_rate, tone_hz)) + 1e-12))
    return out


def _burst_levels(fit: CompressorFit, cfg: ProbeConfig) -> tuple[float, float]:
    """Tone-burst levels: 10 dB below the fitted knee to 12 dB above it (or -40/-10 dBFS)."""
    lo_all, hi_all = cfg.step_levels()[0], cfg.step_levels()[-1]
    if not fit.compressing:
        return max(lo_all, -40.0), min(hi_all, -10.0)
    knee = fit.knee_db or 0.0
    low = max(lo_all, fit.threshold_db - knee / 2.0 - 10.0)
    high = min(hi_all - 6.0, fit.threshold_db + knee / 2.0 + 12.0)  # clear of a limiter at the top
    if high - low < 6.0:
        low = high - 6.0
    return low, high


@dataclass
class Datasheet:
    """A probe's results: the target, the context, the signals and one :class:`PathSheet` per path."""

    target: dict[str, Any]
    context: dict[str, Any]
    config: ProbeConfig
    paths: list[PathSheet]
    notes: list[str] = field(default_factory=list)

    def track(self, index: int) -> PathSheet:
        """The datasheet of track ``index``."""
        for p in self.paths:
            if p.path == "track" and p.index == index:
                return p
        raise KeyError(f"track {index} was not probed")

    @property
    def master(self) -> PathSheet | None:
        """The master path's datasheet (None if not measured)."""
        return next((p for p in self.paths if p.path == "master"), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {
            "format": DATASHEET_FORMAT,
            "version": DATASHEET_VERSION,
            "target": self.target,
            "context": self.context,
            "signals": asdict(self.config),
            "paths": [p.to_dict() for p in self.paths],
            "notes": self.notes,
        }


def probe(target: ProbeTarget, context: ProbeContext, *, tracks: Sequence[int] | None = None,
          config: ProbeConfig | None = None, progress: bool = True) -> Datasheet:
    """Measure a mixer's datasheet (see the module docstring).

    Args:
        target: the mixer (:class:`ConsoleTarget`, :class:`ConsoleNetTarget`, :class:`RulesTarget`,
            :class:`BlackBoxTarget`, or :func:`target_from_spec`).
        context: surrounding tracks at ``target.sample_rate`` (:func:`load_context`).
        tracks: indices of the context tracks to probe (default all); the probe signal replaces
            that track's audio and keeps its class.
        config: test signals.
        progress: show a progress bar (stderr).

    Returns:
        :class:`Datasheet`. Deterministic.

    Raises:
        ConfigError: a track index out of range or a context at another rate.
    """
    from tqdm import tqdm

    cfg = config or ProbeConfig()
    sr = int(target.sample_rate)
    if context.sample_rate != sr:
        raise ConfigError(f"the context is at {context.sample_rate} Hz but the target renders at {sr} Hz")
    count = context.tracks.shape[0]
    indices = list(range(count)) if tracks is None else [int(i) for i in tracks]
    for i in indices:
        if not 0 <= i < count:
            raise ConfigError(f"--track {i} is out of range: the context has {count} tracks (0..{count - 1})")
    offset = int(round(cfg.context_offset_seconds * sr))
    levels = cfg.all_levels()
    step_levels = cfg.step_levels()
    step = int(round(cfg.step_seconds * sr))
    stepped, starts = stepped_sine(cfg.step_seconds, sr, cfg.tone_hz, step_levels)
    stepped = torch.cat([stepped, torch.zeros(int(0.05 * sr))])
    measure_master = cfg.master and target.family == "console"
    notes: list[str] = []
    if cfg.master and not measure_master:
        notes.append("the black box has no separable master path; track datasheets include what it does globally")

    per_track = len(levels) + 2
    bar = tqdm(total=len(indices) * per_track, desc="probe", unit="signal", disable=not progress)
    paths: list[PathSheet] = []
    master_data: dict[str, Any] | None = None
    try:
        for n_probe, index in enumerate(indices):
            with_master = measure_master and n_probe == 0
            sweeps: dict[float, SweepResponse] = {}
            master_sweeps: dict[float, SweepResponse] = {}
            master_side: SweepResponse | None = None
            sweep_params = None
            for level in levels:
                bar.set_postfix_str(f"track {index}: sweep {level:g} dBFS")
                sweep, length, ir_length, pre = _sweep_plan(cfg, sr, level)
                signal = torch.cat([sweep.signal, torch.zeros(length - sweep.signal.shape[-1])])
                is_main = level == cfg.sweep_level_db
                ex = _measure(target, context, index, signal, offset, with_master, with_master and is_main)
                sweeps[level] = _analyse_sweep(ex.track, sweep, ir_length, pre, cfg, level)
                if ex.master_mid is not None:
                    master_sweeps[level] = _analyse_sweep(ex.master_mid, sweep, ir_length, pre, cfg, level)
                if ex.master_side is not None:
                    side = 0.5 * (ex.master_side[0] - ex.master_side[1])
                    master_side = _analyse_sweep(side[None], sweep, ir_length, pre, cfg, level)
                if is_main:
                    sweep_params = ex.params
                bar.update(1)

            bar.set_postfix_str(f"track {index}: stepped sine")
            ex = _measure(target, context, index, stepped, offset, with_master, False)
            comp_params = ex.params
            out_db = _static_curve(ex.track, starts, step, sr, cfg.tone_hz)
            comp = fit_compressor(step_levels, np.array(out_db) - np.array(step_levels))
            master_comp = None
            if ex.master_mid is not None:
                m_out = _static_curve(ex.master_mid, starts, step, sr, cfg.tone_hz)
                master_comp = fit_compressor(step_levels, np.array(m_out) - np.array(step_levels))
            bar.update(1)

            bar.set_postfix_str(f"track {index}: tone bursts")
            low, high = _burst_levels(comp, cfg)
            bursts = tone_bursts(sr, cfg.tone_hz, low_db=low, high_db=high, on_seconds=cfg.burst_on_seconds,
                                 off_seconds=cfg.burst_off_seconds, lead_seconds=cfg.burst_lead_seconds)
            up, down = int(bursts.up_indices[0]), int(bursts.down_indices[0])
            ex = _measure(target, context, index, bursts.signal, offset, False, False)
            timing = fit_timing(ex.track.numpy(), bursts.signal.numpy(), sr, cfg.tone_hz, up, down, low, high)
            timing_params = ex.params
            master_timing = master_timing_params = None
            if with_master and master_comp is not None:
                m_low, m_high = _burst_levels(master_comp, cfg)
                m_bursts = tone_bursts(sr, cfg.tone_hz, low_db=m_low, high_db=m_high, on_seconds=cfg.burst_on_seconds,
                                       off_seconds=cfg.burst_off_seconds, lead_seconds=cfg.burst_lead_seconds)
                m_ex = _measure(target, context, index, m_bursts.signal, offset, True, False)
                master_timing = fit_timing(m_ex.master_mid.numpy(), m_bursts.signal.numpy(), sr, cfg.tone_hz,
                                           int(m_bursts.up_indices[0]), int(m_bursts.down_indices[0]), m_low, m_high)
                master_timing_params = m_ex.params
            bar.update(1)

            main = sweeps[cfg.sweep_level_db]
            pan, width = main.pan_width()
            sheet = PathSheet("track", index, context.names[index], context.classes[index], sweeps,
                              cfg.sweep_level_db, comp, timing, pan, width)
            if cfg.fit_eq:
                grid = sheet.grid()
                sheet.fitted_eq = fit_eq(grid, main.magnitude_db(grid), sr, TRACK_EQ)
            parts = target.console_parts(sweep_params) if sweep_params is not None else None
            if parts is not None:
                console = parts[0]
                sheet.settings, sheet.predicted = _predicted_track(
                    console, sweep_params, comp_params, timing_params if timing.attack_ms is not None else None,
                    index, sheet.report_freqs(), cfg.sweep_level_db, cfg.tone_hz)
            paths.append(sheet)
            if with_master and master_sweeps and master_comp is not None:
                master_data = {"sweeps": master_sweeps, "side": master_side, "comp": master_comp,
                               "timing": master_timing, "params": (sweep_params, comp_params, master_timing_params),
                               "console": parts[0] if parts else None}
    finally:
        bar.close()

    if master_data is not None:
        sweeps = master_data["sweeps"]
        main = sweeps[cfg.sweep_level_db]
        pan, _ = main.pan_width()
        width = float("nan")
        if master_data["side"] is not None:
            lo, hi = _PAN_BAND_HZ[0], min(_PAN_BAND_HZ[1], main.band[1])
            f = np.geomspace(max(lo, main.band[0]), hi, 48)
            mid = 0.5 * main.response(f).sum(0)
            side = master_data["side"].response(f)[0]
            width = float(np.median(np.abs(side) / (np.abs(mid) + 1e-12)))
        sheet = PathSheet("master", None, None, None, sweeps, cfg.sweep_level_db, master_data["comp"],
                          master_data["timing"], pan, width)
        if cfg.fit_eq:
            grid = sheet.grid()
            sheet.fitted_eq = fit_eq(grid, main.magnitude_db(grid), sr, MASTER_EQ)
        console = master_data["console"]
        if console is not None:
            sp, cp, tp = master_data["params"]
            t_ok = master_data["timing"] is not None and master_data["timing"].attack_ms is not None
            sheet.settings, sheet.predicted = _predicted_master(console, sp, cp, tp if t_ok else None,
                                                                sheet.report_freqs(), cfg.tone_hz)
        paths.append(sheet)

    context_doc = {
        "kind": context.kind,
        "name": context.name,
        "offset_s": cfg.context_offset_seconds,
        "tracks": [{"index": i, "name": n, "class": c} for i, (n, c) in enumerate(zip(context.names, context.classes))],
    }
    target_doc = target.describe()
    sha = getattr(target, "checkpoint_sha256", None)
    if sha:
        target_doc["checkpoint_sha256"] = sha
    if context.kind != "silent":
        notes.append("the context is not silent: where the master dynamics (bus compressor, limiter) or a black box "
                     "react to the probe signal, the other tracks are modulated too, and that modulation shows in "
                     "the difference as ripple and distortion; --context silent gives device-like curves")
    notes.append("levels are peak dBFS; responses are relative to a centred unity-gain track "
                 "(10 log10((|H_L|^2 + |H_R|^2) / 2)); thresholds are referred to the probe input")
    return Datasheet(target_doc, context_doc, cfg, paths, notes)


# --------------------------------------------------------------------------- output


def _plot_response(sheet: PathSheet, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grid = sheet.grid()
    fig = Figure(figsize=(8.0, 8.0), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2, ax3 = fig.subplots(3, 1, sharex=True)
    for level in sorted(sheet.sweeps):
        style = "-" if level == sheet.main_level_db else ":"
        ax1.semilogx(grid, sheet.sweeps[level].magnitude_db(grid), style, label=f"{level:g} dBFS")
    if sheet.fitted_eq is not None:
        bands = TRACK_EQ if sheet.path == "track" else MASTER_EQ
        eq = ParametricEQ(sheet.main.sample_rate, bands)
        fitted = {k: torch.tensor(v) for k, v in sheet.fitted_eq.items() if k in eq.param_ranges}
        ax1.semilogx(grid, sheet.fitted_eq["gain_db"] + _eq_db_at(eq, fitted, grid), "k--", lw=0.8,
                     label=f"fitted EQ ({sheet.fitted_eq['rms_error_db']:.2f} dB rms)")
    ax1.set_ylabel("magnitude (dB)")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3, which="both")
    title = "master bus" if sheet.path == "master" else f"track {sheet.index}: {sheet.name} ({sheet.cls})"
    ax1.set_title(f"{title}: response (pan {sheet.pan:+.2f}, width {sheet.width:.2f})")
    ax2.semilogx(grid, sheet.main.thd_percent(grid))
    ax2.set_ylabel(f"THD (%) at {sheet.main_level_db:g} dBFS")
    ax2.grid(alpha=0.3, which="both")
    ax3.semilogx(grid, sheet.main.pan_by_frequency(grid))
    ax3.set_ylim(-1.05, 1.05)
    ax3.set_ylabel("pan (L -1 .. R +1)")
    ax3.set_xlabel("frequency (Hz)")
    ax3.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)


def _plot_dynamics(sheet: PathSheet, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    comp = sheet.compression
    fig = Figure(figsize=(8.0, 7.0), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(2, 1)
    x = np.array(comp.levels_in_db)
    ax1.plot(x, comp.levels_out_db, "o", ms=3, label="measured")
    fine = np.linspace(x.min(), x.max(), 200)
    if comp.compressing:
        label = f"fit: T {comp.threshold_db:.1f} dB, R {comp.ratio:.2f}:1, knee {comp.knee_db:.1f} dB"
    else:
        label = f"fit: constant gain {comp.gain_db:.1f} dB"
    ax1.plot(fine, fine + comp.model_gain_db(fine), "-", label=label)
    ax1.plot(fine, fine + comp.gain_db, ":", color="gray", lw=0.8, label="no compression")
    ax1.set_xlabel("input level (dBFS peak)")
    ax1.set_ylabel("output level (dB)")
    ax1.set_title("static curve (stepped sine)")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    if sheet.timing is not None:
        t = sheet.timing
        ax2.plot(t.times_s, t.gain_db)
        ax2.axvline(t.up_s, color="gray", ls=":")
        ax2.axvline(t.down_s, color="gray", ls=":")
        att = "—" if t.attack_ms is None else f"{t.attack_ms:.1f} ms"
        rel = "—" if t.release_ms is None else f"{t.release_ms:.0f} ms"
        ax2.set_title(f"tone bursts {t.low_db:.0f} -> {t.high_db:.0f} dBFS: attack {att}, release {rel}")
    ax2.set_xlabel("time (s)")
    ax2.set_ylabel("gain (dB)")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def write_datasheet(sheet: Datasheet, output: str | os.PathLike[str], *, force: bool = False) -> list[Path]:
    """Write ``datasheet.json``, ``datasheet.md`` and two PNG plots per path into a folder.

    Raises:
        FileExistsError: the folder is not empty and ``force`` is False.
    """
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} is not empty; pass --force to overwrite")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p in sheet.paths:
        p.plots = [f"{p.slug()}_response.png", f"{p.slug()}_dynamics.png"]
        _plot_response(p, out / p.plots[0])
        _plot_dynamics(p, out / p.plots[1])
        written += [out / name for name in p.plots]
    doc = sheet.to_dict()
    write_text_atomic(out / "datasheet.json", json.dumps(doc, indent=1), overwrite=True)
    written.append(out / "datasheet.json")
    write_text_atomic(out / "datasheet.md", _markdown(doc), overwrite=True)
    written.append(out / "datasheet.md")
    return written


def _markdown(doc: Mapping[str, Any]) -> str:
    t = doc["target"]
    lines = [f"# Datasheet: {t['name']} ({t['family']}, {t['sample_rate']} Hz)", "",
             f"Context: {doc['context']['kind']} {doc['context']['name']}.", ""]
    header = "| path | pan | width | gain 1 kHz (dB) | THD 1 kHz (%) | threshold (dB) | ratio | knee | attack (ms) | release (ms) |"
    lines += [header, "|" + "---|" * 10]
    for p in doc["paths"]:
        name = "master" if p["path"] == "master" else f"{p['index']}: {p['name']} ({p['class']})"
        c, tm = p["compression"], p["timing"] or {}
        g1k = p["response"]["octaves_db"].get("1000")
        lines.append("| " + " | ".join(str(v if v is not None else "—") for v in (
            name, p["stereo"]["pan"], p["stereo"]["width"], g1k, p["distortion"]["thd_percent_at_hz"].get("1000"),
            c["threshold_db"], c["ratio"], c["knee_db"], tm.get("attack_ms"), tm.get("release_ms"))) + " |")
    lines.append("")
    for p in doc["paths"]:
        if p.get("predicted"):
            name = "master" if p["path"] == "master" else f"track {p['index']} ({p['name']})"
            lines += [f"Predicted by the settings for {name}: `{json.dumps(p['predicted'])}`", ""]
        for plot in p["plots"]:
            lines += [f"![{plot}]({plot})", ""]
    lines += [f"- {n}" for n in doc["notes"]] + [""]
    return "\n".join(lines)
