"""Feedback instrument: the network in a loop with gain, delay, limiter and DC blocker.

The loop (mono) runs in blocks of (at most) the delay length, so everything fed
back comes from blocks already computed::

    excitation burst (+ drive) --+--> saturation --> DC blocker --> limiter --+--> out
                                 ^                                             |
                                 +-- gain <-- loop filter <-- delay <----------+

* **delay**: the period of the note's pitch (``delay_ms`` overrides it), realised
  as an integer delay line plus a linear-interpolation fractional delay. The loop's
  total phase delay at the fundamental -- delay line, fractional delay, the loop
  filter's constant group delay and the DC blocker's phase lead -- is solved to equal
  exactly one period, so the self-sustained tone sits on the requested pitch.
* **loop filter**: the network's own transfer function. Every ``update_s`` seconds the
  instrument's audio path (with its bends and conditioning) processes the last
  ``window_s`` of the loop signal (the first time: the excitation). The magnitude
  response is estimated as ``sum |Y||X| / sum |X|^2`` (output channels averaged) with
  exponential forgetting over the measurements (factor 0.5), so frequencies the loop no
  longer carries keep their last reliable estimate; it is smoothed to the filter's
  resolution, divided by its value at the fundamental and capped at 1, and designed as
  a linear-phase FIR of ``taps`` taps (windowed frequency sampling) whose gain,
  together with the fractional-delay interpolator's, is exactly 1 at the fundamental.
  Successive filters are crossfaded over a block. So the network decides how fast each
  harmonic dies relative to the fundamental (the timbre and its evolution), the
  fundamental always sustains longest (the tone stays on pitch), and bends of the
  network change the loop.
* **gain** (time-varying): loop gain at the fundamental. Below 1 a burst decays like
  a plucked string (``0.99`` at 262 Hz: about -23 dB per second); at or above 1 the
  loop self-oscillates and the limiter holds the level.
* **limiter**: a memoryless soft-knee limiter at ``limit_db`` (identity below 70 % of
  the ceiling, tanh-shaped above it, never past it). Being memoryless, its gain
  reduction does not compound around the loop: a decaying ring below the knee is
  untouched, and a loop with gain above 1 grows until the curve's compression
  balances it.
* **DC blocker**: subtracts the moving average of the loop signal over exactly one
  loop period (a fractional last tap). That filter has zero gain at DC and unity gain
  with zero phase at every harmonic of the loop, so it removes DC and the slow
  sub-harmonic mode a loop with gain above 1 would otherwise grow, without detuning any
  partial (a one-pole blocker's phase lead would pull the partials flat by about
  ``275 * corner / f0`` cents).
* **saturation**: optional ``tanh(s x) / s`` before the DC blocker. The safety stage's
  20 Hz high-pass follows outside the loop.

The loop's output is passed through the network once more (``post``) to give the
stereo sound; the patch's safety stage follows. Deterministic (no randomness).
Karplus & Strong (1983) and Jaffe & Smith (1983) describe the plucked-string loop
this generalises.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from neuromix.core.errors import ConfigError
from neuromix.synthesis.bending import Bend
from neuromix.synthesis.instrument import Instrument, State
from neuromix.synthesis.modulation import Modulation, parse_modulation
from neuromix.synthesis.schema import check_keys, integer, number

__all__ = ["Feedback", "loop_delay", "parse_feedback", "run_feedback"]


@dataclass(frozen=True)
class Feedback:
    """A ``feedback`` technique (see the module docstring)."""

    gain: Modulation
    delay_ms: float | None = None
    burst_s: float = 0.02
    drive: float = 0.0
    update_s: float = 0.1
    window_s: float = 0.08
    taps: int = 31
    limit_db: float = -6.0
    saturation: float = 0.0
    post: bool = True

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": "feedback",
            "gain": self.gain.to_json(),
            "burst_s": self.burst_s,
            "drive": self.drive,
            "update_s": self.update_s,
            "window_s": self.window_s,
            "taps": self.taps,
            "limit_db": self.limit_db,
            "saturation": self.saturation,
            "post": self.post,
        }
        if self.delay_ms is not None:
            doc["delay_ms"] = self.delay_ms
        return doc


def parse_feedback(doc: Any, where: str) -> Feedback:
    """Validate a ``feedback`` technique object."""
    check_keys(
        doc,
        where,
        (
            "type",
            "gain",
            "delay_ms",
            "burst_s",
            "drive",
            "update_s",
            "window_s",
            "taps",
            "limit_db",
            "saturation",
            "post",
        ),
        ("gain",),
    )
    taps = integer(doc.get("taps", 31), f"{where}.taps", low=1, high=255)
    if taps % 2 == 0:
        raise ConfigError(f"{where}.taps: must be odd (a linear-phase filter with an integer delay), got {taps}")
    post = doc.get("post", True)
    if not isinstance(post, bool):
        raise ConfigError(f"{where}.post: must be true or false")
    return Feedback(
        gain=parse_modulation(doc["gain"], f"{where}.gain", low=0.0, high=1.5),
        delay_ms=None
        if doc.get("delay_ms") is None
        else number(doc["delay_ms"], f"{where}.delay_ms", low=0.1, high=2000.0),
        burst_s=number(doc.get("burst_s", 0.02), f"{where}.burst_s", low=0.0, high=10.0),
        drive=number(doc.get("drive", 0.0), f"{where}.drive", low=0.0, high=1.0),
        update_s=number(doc.get("update_s", 0.1), f"{where}.update_s", low=0.01, high=10.0),
        window_s=number(doc.get("window_s", 0.08), f"{where}.window_s", low=0.01, high=1.0),
        taps=taps,
        limit_db=number(doc.get("limit_db", -6.0), f"{where}.limit_db", low=-40.0, high=0.0),
        saturation=number(doc.get("saturation", 0.0), f"{where}.saturation", low=0.0, high=8.0),
        post=post,
    )


def _phase_delay(response: complex, omega: float) -> float:
    return -cmath.phase(response) / omega


def loop_delay(period: float, taps: int) -> tuple[int, float, int]:
    """Integer delay, interpolation fraction and filter length giving a loop of ``period`` samples.

    Solves ``D + tau_lerp(a) + (taps - 1) / 2 = period`` at ``omega = 2 pi / period``, where
    ``tau_lerp`` is the phase delay of the linear interpolator ``(1 - a) + a z^-1`` and
    ``(taps - 1) / 2`` the loop filter's group delay (the DC blocker adds no phase at the
    harmonics). ``taps`` is reduced (by 2) until the integer delay is at least 2 samples.

    Returns:
        ``(D, a, taps)``.

    Raises:
        ConfigError: when the period is too short for any loop (< 3 samples).
    """
    omega = 2.0 * math.pi / period
    z1 = cmath.exp(-1j * omega)
    m = taps
    while True:
        target = period - (m - 1) / 2.0
        if target >= 2.0 or m == 1:
            break
        m -= 2
    if target < 2.0:
        raise ConfigError(f"the loop period of {period:.2f} samples is too short (pitch too high for this rate)")
    d = int(math.floor(target))
    frac_target = target - d
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _phase_delay((1.0 - mid) + mid * z1, omega) < frac_target:
            lo = mid
        else:
            hi = mid
    return d, 0.5 * (lo + hi), m


def _period_mean(history: np.ndarray, end: int, count: int, length: int, frac: float, period: float) -> np.ndarray:
    """Moving average over one period (``length`` whole taps plus a ``frac`` tap) of ``count`` samples
    ending at index ``end`` (exclusive) of ``history``."""
    seg = history[end - count - length : end]
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    i = np.arange(count)
    return (cum[length + i + 1] - cum[i + 1] + frac * seg[i]) / period


def _soft_limit(x: np.ndarray, ceiling: float, knee: float = 0.7) -> np.ndarray:
    """Memoryless soft-knee limiter: identity below ``knee * ceiling``, tanh-shaped above, never past ``ceiling``."""
    start = knee * ceiling
    span = ceiling - start
    mag = np.abs(x)
    over = mag > start
    if not over.any():
        return x
    out = x.copy()
    out[over] = np.sign(x[over]) * (start + span * np.tanh((mag[over] - start) / span))
    return out


def _spectra(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cross and input power spectra ``(mean_c |Y_c||X|, |X|^2)`` of one Hann-windowed measurement."""
    window = np.hanning(len(x))
    spec_x = np.fft.rfft(x * window)
    spec_y = np.fft.rfft(y * window[None], axis=-1)
    mag_x = np.abs(spec_x)
    return (np.abs(spec_y) * mag_x[None]).mean(0), mag_x**2


def _design_filter(cross: np.ndarray, power: np.ndarray, taps: int, fundamental_bin: float) -> np.ndarray:
    """Linear-phase FIR of ``taps`` taps from accumulated spectra (see :func:`run_feedback`).

    The magnitude estimate ``cross / (power + reg)`` is smoothed over the filter's
    resolution, divided by its value at the fundamental and capped at 1; the windowed
    zero-phase design is then scaled to a gain of exactly 1 at the fundamental.
    """
    n = 2 * (len(power) - 1)
    if taps == 1:
        return np.ones(1)
    reg = 1e-3 * power.max() + 1e-20
    ratio = cross / (power + reg)
    width = max(1, len(ratio) // taps)
    kernel = np.ones(width) / width
    smooth = np.convolve(np.pad(ratio, (width, width), mode="edge"), kernel, mode="same")[width:-width]
    at_f0 = float(np.interp(fundamental_bin, np.arange(len(smooth)), smooth))
    if at_f0 <= 1e-9 * (smooth.max() + 1e-30):
        return np.eye(1, taps, taps // 2)[0]
    target = np.minimum(smooth / at_f0, 1.0)
    impulse = np.fft.irfft(target, n=n)
    half = taps // 2
    h = np.concatenate([impulse[-half:], impulse[: half + 1]]) * np.hanning(taps + 2)[1:-1]
    omega = 2.0 * np.pi * fundamental_bin / n
    gain = abs(np.sum(h * np.exp(-1j * omega * (np.arange(taps) - half))))
    return h / gain if gain > 1e-12 else np.eye(1, taps, taps // 2)[0]


def run_feedback(
    instrument: Instrument,
    spec: Feedback,
    excitation: Tensor,
    tracks_like: Tensor,
    sounding: Sequence[int],
    sample_rate: int,
    state: State,
    pitch_hz: float,
    bends: Sequence[Bend] = (),
) -> Tensor:
    """Run the feedback loop.

    Args:
        instrument: the instrument (its audio path measures the loop filter).
        spec: the technique.
        excitation: ``(samples,)`` mono excitation (sum of the sounding slots).
        tracks_like: ``(1, T, 1, samples)`` template of the slots (for shape and slots).
        sounding: indices of the sounding slots; the loop signal is measured in the first.
        sample_rate: Hz.
        state: the conditioning of the render.
        pitch_hz: note pitch (the loop period unless ``spec.delay_ms`` is set).
        bends: active bends.

    Returns:
        ``(samples,)`` float32 loop output (mono).
    """
    sr = int(sample_rate)
    n = excitation.shape[0]
    period = spec.delay_ms * 1e-3 * sr if spec.delay_ms is not None else sr / pitch_hz
    delay, frac, taps = loop_delay(period, spec.taps)
    mean_taps = int(math.floor(period))
    mean_frac = period - mean_taps
    block_max = max(1, min(delay, 4096))
    n_fft, hop = instrument.frame_geometry(sr)
    window = max(int(spec.window_s * sr), n_fft + 2 * hop, 256)
    window += window % 2

    exc = excitation.detach().to(torch.float64).numpy()
    t = np.arange(n) / sr
    burst = np.clip((spec.burst_s + 0.005 - t) / 0.005, 0.0, 1.0) if spec.burst_s > 0 else np.zeros(n)
    drive_in = exc * np.maximum(burst, spec.drive)
    gains = spec.gain.at(torch.from_numpy(t)).numpy()

    pad = max(delay + taps + 2, mean_taps + 2)
    v = np.zeros(pad + n)
    w = np.zeros(pad + n)  # the loop signal before the DC blocker
    ceiling = 10.0 ** (spec.limit_db / 20.0)
    sounding = list(sounding)
    lerp = np.array([1.0 - frac, frac])

    forget = 0.5
    acc_cross = np.zeros(window // 2 + 1)
    acc_power = np.zeros(window // 2 + 1)
    fundamental_bin = window / period  # the loop's fundamental, in bins of the measurement FFT

    def measure(segment: np.ndarray, start_s: float) -> np.ndarray:
        nonlocal acc_cross, acc_power
        if len(segment) < window:
            segment = np.concatenate([np.zeros(window - len(segment)), segment])
        if np.sqrt(np.mean(segment**2)) < 1e-7:
            return current_h
        tracks = torch.zeros(1, tracks_like.shape[1], 1, window)
        tracks[0, sounding[0], 0] = torch.from_numpy(segment).to(torch.float32)
        out = instrument.process(tracks, sounding, sr, state, bends=bends, offset_s=max(0.0, start_s))
        y = out[0].detach().to(torch.float64).numpy()
        if not np.isfinite(y).all():
            return current_h
        cross, power = _spectra(segment, y)
        scale = 1.0 / (power.sum() + 1e-30)  # each measurement counts by its spectral shape, not its level
        acc_cross = forget * acc_cross + cross * scale
        acc_power = forget * acc_power + power * scale
        return with_lerp(_design_filter(acc_cross, acc_power, taps, fundamental_bin))

    def with_lerp(h: np.ndarray) -> np.ndarray:
        # the interpolator's own loss at the fundamental is made up, so the loop gain there is `gain`
        h2 = np.convolve(h, lerp)
        response = abs(np.sum(h2 * np.exp(-2j * np.pi / period * np.arange(len(h2)))))
        return h2 / response if response > 1e-12 else h2

    current_h = with_lerp(np.eye(1, taps, taps // 2)[0])
    current_h = measure(drive_in[:window].copy(), 0.0)
    next_update = spec.update_s
    s = 0
    while s < n:
        b = min(block_max, n - s)
        new_h = current_h
        if s / sr >= next_update:
            new_h = measure(v[pad + s - window if s >= window else pad : pad + s].copy(), (s - window) / sr)
            next_update += spec.update_s
        lo = pad + s - delay - taps
        seg = v[lo : lo + b + taps]
        fb = np.convolve(seg, current_h, mode="valid")
        if new_h is not current_h:
            ramp = (np.arange(b) + 1.0) / b
            fb = (1.0 - ramp) * fb + ramp * np.convolve(seg, new_h, mode="valid")
            current_h = new_h
        u = drive_in[s : s + b] + gains[s : s + b] * fb
        if spec.saturation > 0:
            u = np.tanh(spec.saturation * u) / spec.saturation
        w[pad + s : pad + s + b] = u
        u = u - _period_mean(w, pad + s + b, b, mean_taps, mean_frac, period)
        u = _soft_limit(u, ceiling)
        if not np.isfinite(u).all():
            u = np.nan_to_num(u, nan=0.0, posinf=0.0, neginf=0.0)
        v[pad + s : pad + s + b] = u
        s += b
    return torch.from_numpy(v[pad:].astype(np.float32))
