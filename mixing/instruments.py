"""Instrument synthesis for the procedural multitrack generator.

Every instrument class of :mod:`neuromix.mixing.classes` (except ``"other"``)
has two to four timbral *variants*. A track is made in two steps, following the
"sample, then apply" habit of the project:

1. :func:`sample_params` draws the instrument's physical parameters (decay
   times in seconds, cut-offs in Hz, detunes in cents, ...) from a seeded
   ``numpy.random.Generator``; the result is a JSON-serialisable dict;
2. :func:`render_track` turns a list of notes (onsets, durations, MIDI
   pitches, MIDI velocities) into a dry stem with those parameters. It uses a
   second seeded generator only for noise (drum noise, breath, consonants).

All synthesis is vectorised with numpy: each note (or drum hit) is computed
as a short float32 array and added into the stem. Three engines do the work:

* **modal synthesis by block matrix product** (:func:`modal`): a sum of
  exponentially decaying sinusoids (plucked and struck strings, bars,
  membranes) evaluated as ``Im(A @ B)`` where ``A[m, k]`` holds each partial's
  complex amplitude at the start of block ``m`` and ``B[k, b]`` its evolution
  over the ``b``-th sample of a block. The partials stay exact (arbitrary
  inharmonic frequencies, per-partial decay) and a real float32 matrix product
  replaces ``K`` sine evaluations per sample;
* **band-limited wavetable oscillators** (:func:`oscillator`): one cycle per
  table computed from harmonic amplitudes with an inverse real FFT (so every
  harmonic lies below 0.45 x the sample rate), read with a phase accumulator
  (vibrato, pitch scoops) and optionally scanned across several tables
  (filter envelopes, moving vocal formants);
* **filtered noise**: white noise shaped by Butterworth magnitude responses in the frequency
  domain (numpy FFT; no IIR loops).

References: J.-M. Adrien, "The missing link: modal synthesis" (1991) for
modal synthesis; H. Fletcher, "Normal vibration frequencies of a stiff piano
string", JASA 36 (1964) for string inharmonicity ``f_k = k f0 sqrt(1 + B k^2)``;
D. H. Klatt, "Software for a cascade/parallel formant synthesizer", JASA 67
(1980) for cascade formant resonators; J. Chowning, "The synthesis of complex
audio spectra by means of frequency modulation", JAES 21 (1973) for the FM
electric piano; the Roland TR-808 circuit for the six-square-wave metallic
hi-hat. None of this code is copied from another project.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from neuromix.core.dsp.utils import fast_fft_size

__all__ = [
    "VARIANTS",
    "STEREO_CLASSES",
    "LEVEL_RANGES_DBFS",
    "GM_DRUMS",
    "midi_to_hz",
    "sample_params",
    "render_track",
    "modal",
    "oscillator",
    "harmonic_tables",
]

Params = dict[str, Any]

VARIANTS: dict[str, tuple[str, ...]] = {
    "kick": ("808", "acoustic", "punchy"),
    "snare": ("acoustic", "electronic", "brush"),
    "hihat": ("analog", "acoustic", "noise"),
    "percussion": ("shaker", "clap", "toms", "congas"),
    "bass": ("finger", "synth", "sub"),
    "keys": ("piano", "epiano", "mallet"),
    "pad": ("warm", "hollow", "glass"),
    "lead": ("saw", "square", "soft"),
    "vocal": ("female", "male", "airy"),
    "guitar": ("acoustic", "clean", "overdrive", "nylon"),
    "strings": ("ensemble", "brass", "synth"),
}
"""Timbral variants of every generated instrument class."""

STEREO_CLASSES: frozenset[str] = frozenset({"pad", "strings"})
"""Classes rendered as stereo stems (detuned voices spread left/right); all others are mono."""

LEVEL_RANGES_DBFS: dict[str, tuple[float, float]] = {
    "kick": (-6.0, -3.0),
    "snare": (-7.0, -3.0),
    "hihat": (-12.0, -6.0),
    "percussion": (-12.0, -6.0),
    "bass": (-8.0, -3.0),
    "keys": (-10.0, -4.0),
    "pad": (-12.0, -6.0),
    "lead": (-9.0, -4.0),
    "vocal": (-7.0, -3.0),
    "guitar": (-10.0, -4.0),
    "strings": (-11.0, -5.0),
}
"""Range of each class's stem peak level in dBFS; the generator draws the level per track."""

GM_DRUMS: dict[str, int] = {
    "kick": 36,
    "snare": 38,
    "clap": 39,
    "tom_floor": 43,
    "hat_closed": 42,
    "hat_open": 46,
    "tom_mid": 47,
    "crash": 49,
    "tom_high": 50,
    "ride": 51,
    "conga_mute": 62,
    "conga_open": 63,
    "conga_low": 64,
    "shaker": 70,
}
"""General MIDI percussion key numbers used as the ``midi_pitch`` of drum notes."""

TABLE_SIZE = 4096
_GEMM_MACS = 131072  # multiply-adds per BLAS call in modal(): OpenBLAS runs smaller products on one thread
_TWO_PI = 2.0 * math.pi
_F32 = np.float32


def midi_to_hz(pitch: float | np.ndarray) -> float | np.ndarray:
    """Equal-tempered frequency in Hz of a MIDI pitch (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


# ----------------------------------------------------------------------------------------------
# primitives
# ----------------------------------------------------------------------------------------------


def _time(n: int, sample_rate: int) -> np.ndarray:
    """Float32 time axis ``(n,)`` in seconds."""
    return np.arange(n, dtype=_F32) / _F32(sample_rate)


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """White noise ``(n,)`` float32, uniform in [-sqrt(3), sqrt(3)) (unit variance)."""
    x = rng.random(n, dtype=_F32)
    x -= _F32(0.5)
    x *= _F32(math.sqrt(12.0))
    return x


@dataclass(frozen=True)
class _Butter:
    """An analogue Butterworth magnitude response (low-, high- or band-pass) at a sample rate."""

    kind: str
    lo_hz: float
    hi_hz: float
    order: int
    sample_rate: int

    def gain(self, f: np.ndarray) -> np.ndarray:
        """Magnitude at frequencies ``f`` (Hz)."""
        n2 = 2 * self.order
        if self.kind == "lowpass":
            return 1.0 / np.sqrt(1.0 + (f / self.hi_hz) ** n2)
        if self.kind == "highpass":
            return 1.0 / np.sqrt(1.0 + (self.lo_hz / np.maximum(f, 1e-3)) ** n2)
        f = np.maximum(f, 1e-3)  # band-pass: the low-pass prototype at (f^2 - f0^2) / (f bandwidth)
        return 1.0 / np.sqrt(1.0 + ((f**2 - self.lo_hz * self.hi_hz) / (f * (self.hi_hz - self.lo_hz))) ** n2)


def _butter(kind: str, cutoff_hz: float | tuple[float, float], sample_rate: int, order: int = 2) -> _Butter:
    """Butterworth response of ``order``; cut-offs are clipped into (20 Hz, 0.45 x sample rate)."""
    top = 0.45 * sample_rate
    if kind == "bandpass":
        lo, hi = cutoff_hz  # type: ignore[misc]
        lo = float(np.clip(lo, 20.0, top * 0.8))
        hi = float(np.clip(hi, lo * 1.25, top))
        return _Butter(kind, lo, hi, order, sample_rate)
    fc = float(np.clip(cutoff_hz, 20.0, top))
    return _Butter(kind, fc, fc, order, sample_rate)


def _filt(spec: _Butter, x: np.ndarray) -> np.ndarray:
    """Filter along the last axis with ``spec``'s magnitude response (zero phase, in the frequency domain).

    The signal is zero-padded by 20 ms so the filter's (short) impulse response does not wrap
    around. Zero phase suits every use here: noise that is enveloped afterwards, and gentle
    low/high-passes of whole stems. Returns float32 of ``x.shape``.
    """
    n = x.shape[-1]
    m = fast_fft_size(n + int(0.02 * spec.sample_rate))
    spec_x = np.fft.rfft(x, m, axis=-1)
    spec_x *= spec.gain(np.fft.rfftfreq(m, 1.0 / spec.sample_rate)).astype(_F32)
    return np.fft.irfft(spec_x, m, axis=-1)[..., :n].astype(_F32, copy=False)


def _fade_tail(x: np.ndarray, sample_rate: int, seconds: float = 0.004) -> np.ndarray:
    """Linear fade over the last ``seconds`` of ``x`` (in place), so truncated tails do not click."""
    m = min(x.shape[-1], max(1, int(seconds * sample_rate)))
    x[..., -m:] *= np.linspace(1.0, 0.0, m, dtype=_F32)
    return x


def _mix_in(out: np.ndarray, start: int, x: np.ndarray) -> None:
    """Add ``x`` (..., m) into ``out`` (..., n) at sample ``start``, cropping at both ends."""
    n = out.shape[-1]
    if start >= n or x.shape[-1] == 0:
        return
    if start < 0:
        x = x[..., -start:]
        start = 0
    m = min(x.shape[-1], n - start)
    if m > 0:
        out[..., start : start + m] += x[..., :m]


def _adsr(t: np.ndarray, attack: float, decay: float, sustain: float, release: float, gate: float) -> np.ndarray:
    """Attack (linear), exponential decay to ``sustain``, exponential release after ``gate`` seconds.

    ``t`` is a uniform float32 time axis starting at 0; ``release`` is the time the release
    takes to fall by 40 dB. Returns float32 ``t.shape``.
    """
    n = t.shape[0]
    if n == 0:
        return np.zeros(0, dtype=_F32)
    dt = float(t[1]) if n > 1 else 1.0
    na = min(n, max(1, int(attack / dt)))
    env = np.ones(n, dtype=_F32)
    env[:na] = t[:na] / _F32(max(attack, 1e-6))
    if sustain < 1.0 and na < n:
        seg = env[na:]
        np.subtract(t[na:], _F32(attack), out=seg)
        seg *= _F32(-1.0 / max(decay, 1e-4))
        np.exp(seg, out=seg)
        seg *= _F32(1.0 - sustain)
        seg += _F32(sustain)
    ng = min(n, max(0, int(math.ceil(gate / dt))))
    if ng < n:
        rel = (t[ng:] - _F32(gate)) * _F32(-4.6 / max(release, 1e-4))
        env[ng:] *= np.exp(rel)
    return env


def modal(
    freqs_hz: np.ndarray,
    decays_per_s: np.ndarray,
    amps: np.ndarray,
    sample_rate: int,
    n: int,
    *,
    phases: np.ndarray | None = None,
    block: int = 0,
) -> np.ndarray:
    """Sum of exponentially decaying sinusoids (modal synthesis), by a block matrix product.

    ``y[t] = sum_k amps[k] * exp(-decays[k] * t / sr) * sin(2 pi freqs[k] t / sr + phases[k])``.
    Writing ``t = m * block + b`` gives ``y = Im(A @ B)`` with ``A[m, k] = amps[k] z_k^(m block)``
    and ``B[k, b] = z_k^b``, ``z_k = exp((-decays[k] + 2 pi i freqs[k]) / sr)``, computed as the
    real float32 product ``[Re A, Im A] @ [Im B; Re B]`` (a stack of small BLAS calls) instead of
    ``K`` sine evaluations per sample. Partials at or above 0.48 x the sample rate are dropped
    (no aliasing).

    Args:
        freqs_hz: ``(K,)`` partial frequencies in Hz.
        decays_per_s: ``(K,)`` exponential decay rates in 1/s (T60 = 6.9 / rate).
        amps: ``(K,)`` linear amplitudes.
        sample_rate: Sample rate in Hz.
        n: Output length in samples.
        phases: Optional ``(K,)`` start phases in radians (default 0: every partial starts at zero).
        block: Block length of the factorisation (0: 64 samples, 32 for short notes).

    Returns:
        ``(n,)`` float32 signal. Not differentiable (numpy).
    """
    freqs_hz = np.asarray(freqs_hz, dtype=np.float64)
    keep = (freqs_hz < 0.48 * sample_rate) & (freqs_hz > 0) & (np.asarray(amps) != 0)
    if n <= 0 or not np.any(keep):
        return np.zeros(max(n, 0), dtype=_F32)
    f = freqs_hz[keep]
    d = np.asarray(decays_per_s, dtype=np.float64)[keep]
    a = np.asarray(amps, dtype=np.float64)[keep]
    ph = np.zeros_like(f) if phases is None else np.asarray(phases, dtype=np.float64)[keep]
    if block <= 0:
        block = 64 if n > 4096 else 32
    blocks = -(-n // block)
    k = f.size
    rows = max(1, _GEMM_MACS // (block * 2 * k))  # blocks per matrix product, see below
    blocks = -(-blocks // rows) * rows
    w = _TWO_PI * f / sample_rate
    b = np.arange(block, dtype=np.float64)
    mb = np.arange(blocks, dtype=np.float64) * block
    ang_in = np.mod(np.outer(w, b), _TWO_PI).astype(_F32)  # (K, block): z_k^b
    mag_in = np.exp(np.outer(-d / sample_rate, b)).astype(_F32)
    ang_out = np.mod(np.outer(w, mb) + ph[:, None], _TWO_PI).astype(_F32)  # (K, blocks): amps z_k^(m block)
    mag_out = (a[:, None] * np.exp(np.outer(-d / sample_rate, mb))).astype(_F32)
    # Im(outer^T @ inner) = Re(outer)^T Im(inner) + Im(outer)^T Re(inner): one real float32 product.
    lhs = np.empty((blocks, 2 * k), dtype=_F32)
    np.multiply(mag_out, np.cos(ang_out), out=lhs[:, :k].T)
    np.multiply(mag_out, np.sin(ang_out), out=lhs[:, k:].T)
    rhs = np.empty((2 * k, block), dtype=_F32)
    np.multiply(mag_in, np.sin(ang_in), out=rhs[:k])
    np.multiply(mag_in, np.cos(ang_in), out=rhs[k:])
    # A stack of small products (one BLAS call each, below OpenBLAS's multi-threading threshold):
    # a multi-threaded BLAS on a busy machine is ten times slower than one thread here.
    y = np.matmul(lhs.reshape(-1, rows, 2 * k), rhs)
    return y.reshape(-1)[:n]


def harmonic_tables(amps: np.ndarray, size: int = TABLE_SIZE) -> np.ndarray:
    """Single-cycle wavetables from harmonic amplitudes (sine phase), by inverse real FFT.

    Args:
        amps: ``(P, H)`` or ``(H,)`` amplitudes of harmonics 1..H (``H < size // 2``).
        size: Table length (power of two).

    Returns:
        ``(P, size + 1)`` float32 tables; ``table[j] = sum_k amps[k-1] sin(2 pi k j / size)``,
        with the first sample repeated at the end (wrap-around guard).
    """
    amps = np.atleast_2d(np.asarray(amps, dtype=np.float64))
    h = min(amps.shape[1], size // 2 - 1)
    spec = np.zeros((amps.shape[0], size // 2 + 1), dtype=np.complex128)
    spec[:, 1 : h + 1] = -1j * amps[:, :h] * (size / 2.0)
    tab = np.fft.irfft(spec, n=size, axis=-1)
    return np.concatenate([tab, tab[:, :1]], axis=1).astype(_F32)


def oscillator(
    tables: np.ndarray,
    freq_hz: float | np.ndarray,
    sample_rate: int,
    n: int,
    *,
    phase0: float = 0.0,
    pos: np.ndarray | None = None,
) -> np.ndarray:
    """Wavetable oscillator with optional scanning between tables.

    The phase is a 32-bit fixed-point accumulator (cycles x 2^32, wrapping like a hardware phase
    accumulator; frequency resolution ``sample_rate / 2^32`` Hz) that advances by
    ``freq_hz / sample_rate`` per sample; the table is read at the nearest of ``TABLE_SIZE``
    points (the tables are band-limited, so harmonic ``k`` is off by at most ``pi k / TABLE_SIZE``
    rad). With ``pos`` the output is interpolated linearly between tables ``floor(pos)`` and
    ``floor(pos) + 1``.

    Args:
        tables: ``(P, TABLE_SIZE + 1)`` from :func:`harmonic_tables`.
        freq_hz: Constant frequency in Hz, or ``(n,)`` instantaneous frequency in Hz.
        sample_rate: Sample rate in Hz.
        n: Output length in samples.
        phase0: Start phase in cycles.
        pos: Optional ``(n,)`` table position in ``[0, P - 1]``.

    Returns:
        ``(n,)`` float32 signal.
    """
    size = tables.shape[-1] - 1
    shift = np.uint32(32 - int(round(math.log2(size))))
    start = np.uint32((int((phase0 % 1.0) * 2.0**32) + (1 << (int(shift) - 1))) & 0xFFFFFFFF)  # +half step: nearest
    if np.ndim(freq_hz) == 0:
        inc = np.uint32(int(round(float(freq_hz) / sample_rate * 2.0**32)) & 0xFFFFFFFF)
        ph = np.arange(n, dtype=np.uint32)
        ph *= inc
    else:
        steps = (np.asarray(freq_hz, dtype=_F32) * _F32(2.0**32 / sample_rate)).astype(np.uint32)
        ph = np.empty(n, dtype=np.uint32)
        ph[0] = 0
        np.cumsum(steps[:-1], out=ph[1:])
    ph += start
    ph >>= shift
    idx = ph.astype(np.intp)
    if pos is None or tables.shape[0] == 1:
        return np.take(tables[0], idx)
    p = np.clip(pos, 0.0, tables.shape[0] - 1.0).astype(_F32)
    j = np.minimum(p.astype(np.intp), tables.shape[0] - 2)
    w = p - j.astype(_F32)
    j *= size + 1
    j += idx
    flat = tables.ravel()
    y0 = np.take(flat, j)
    j += size + 1
    y1 = np.take(flat, j)
    y1 -= y0
    y1 *= w
    y1 += y0
    return y1


def _phase(freq_hz: float, sample_rate: int, n: int) -> np.ndarray:
    """Phase in radians, float32 in [0, 2 pi), of a constant frequency (32-bit fixed-point accumulator)."""
    inc = np.uint32(int(round(freq_hz / sample_rate * 2.0**32)) & 0xFFFFFFFF)
    ph = np.arange(n, dtype=np.uint32)
    ph *= inc
    out = ph.astype(_F32)
    out *= _F32(_TWO_PI / 2.0**32)
    return out


def _lowpass_gain(f: np.ndarray, fc: float | np.ndarray, q: float) -> np.ndarray:
    """Magnitude of an analogue 2-pole low-pass (cut-off ``fc`` Hz, resonance ``q``) at ``f`` Hz."""
    r = f / fc
    return 1.0 / np.sqrt((1.0 - r**2) ** 2 + (r / q) ** 2)


def _n_harmonics(f0: float, sample_rate: int, limit_hz: float | None = None, headroom: float = 1.06) -> int:
    """Number of harmonics of ``f0`` below 0.45 x sample rate (and ``limit_hz``), with pitch headroom."""
    top = 0.45 * sample_rate if limit_hz is None else min(0.45 * sample_rate, limit_hz)
    return int(max(1, min(TABLE_SIZE // 2 - 2, top // (f0 * headroom))))


def _cents(c: float | np.ndarray) -> float | np.ndarray:
    return 2.0 ** (np.asarray(c) / 1200.0)


# ----------------------------------------------------------------------------------------------
# parameter sampling
# ----------------------------------------------------------------------------------------------


def sample_params(cls: str, variant: str, rng: np.random.Generator) -> Params:
    """Draw the physical parameters of one instrument track.

    Args:
        cls: Instrument class (a key of :data:`VARIANTS`).
        variant: One of ``VARIANTS[cls]``.
        rng: Seeded generator (consumed).

    Returns:
        JSON-serialisable dict of floats/strings, in physical units named by suffix.
    """
    if cls not in VARIANTS or variant not in VARIANTS[cls]:
        raise ValueError(f"unknown instrument {cls!r}/{variant!r}")

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    p: Params = {}
    if cls == "kick":
        if variant == "808":
            p = dict(f_start_hz=u(120, 180), f_end_hz=u(42, 56), pitch_tau_s=u(0.02, 0.04), decay_s=u(0.22, 0.45),
                     click=u(0.02, 0.06), click_hz=u(2500, 5000), skin=0.0, skin_hz=180.0, drive=u(1.0, 1.6))
        elif variant == "acoustic":
            p = dict(f_start_hz=u(90, 130), f_end_hz=u(50, 64), pitch_tau_s=u(0.01, 0.02), decay_s=u(0.1, 0.18),
                     click=u(0.1, 0.2), click_hz=u(3000, 6000), skin=u(0.15, 0.35), skin_hz=u(150, 220), drive=u(1.0, 1.4))
        else:
            p = dict(f_start_hz=u(180, 260), f_end_hz=u(48, 62), pitch_tau_s=u(0.008, 0.015), decay_s=u(0.14, 0.24),
                     click=u(0.06, 0.12), click_hz=u(1500, 3500), skin=0.0, skin_hz=180.0, drive=u(1.4, 2.0))
    elif cls == "snare":
        if variant == "acoustic":
            p = dict(tone_hz=u(170, 230), tone_decay_s=u(0.06, 0.11), tone=u(0.5, 0.8), wires=u(0.6, 1.0),
                     wire_decay_s=u(0.12, 0.22), wire_lo_hz=u(1000, 1800), wire_hi_hz=u(4500, 7000), crack=u(0.2, 0.5))
        elif variant == "electronic":
            p = dict(tone_hz=u(175, 210), tone_decay_s=u(0.04, 0.07), tone=u(0.6, 0.9), wires=u(0.7, 1.1),
                     wire_decay_s=u(0.09, 0.17), wire_lo_hz=u(1400, 2400), wire_hi_hz=u(6000, 9000), crack=u(0.0, 0.2))
        else:
            p = dict(tone_hz=u(160, 210), tone_decay_s=u(0.04, 0.06), tone=u(0.05, 0.15), wires=1.0,
                     wire_decay_s=u(0.08, 0.15), wire_lo_hz=u(1500, 2400), wire_hi_hz=u(5000, 8000), crack=0.0,
                     swish_s=u(0.01, 0.02))
    elif cls == "hihat":
        p = dict(closed_s=u(0.025, 0.06), open_s=u(0.2, 0.4), crash_s=u(0.9, 1.5), ride_s=u(0.6, 1.0),
                 highpass_hz=u(6500, 8500), base_hz=u(300, 420), noise=u(0.2, 0.5) if variant != "noise" else 1.0)
    elif cls == "percussion":
        if variant == "shaker":
            p = dict(lo_hz=u(4000, 6000), hi_hz=u(11000, 15000), attack_s=u(0.008, 0.02), decay_s=u(0.03, 0.07))
        elif variant == "clap":
            p = dict(center_hz=u(900, 1600), bursts=int(rng.integers(3, 5)), spacing_s=u(0.007, 0.012), tail_s=u(0.08, 0.15))
        elif variant == "toms":
            p = dict(high_hz=u(150, 200), mid_hz=u(110, 140), floor_hz=u(78, 100), decay_s=u(0.25, 0.45), drop=u(0.15, 0.35))
        else:
            p = dict(high_hz=u(300, 380), low_hz=u(190, 250), decay_s=u(0.16, 0.28), slap=u(0.2, 0.5))
    elif cls == "bass":
        if variant == "finger":
            p = dict(pluck_pos=u(0.12, 0.25), rolloff=u(0.9, 1.3), inharm=u(5e-5, 2e-4), decay0=u(1.0, 2.5),
                     decay1=u(10.0, 40.0), brightness=u(5.0, 12.0), release_s=u(0.04, 0.08), thump=u(0.03, 0.08))
        elif variant == "synth":
            p = dict(shape=str(rng.choice(["saw", "square"])), cutoff_hi=u(8.0, 20.0), cutoff_lo=u(1.5, 3.0), q=u(0.8, 2.5),
                     env_tau_s=u(0.06, 0.25), sustain_pos=u(0.65, 1.0), sub=u(0.0, 0.5), release_s=u(0.03, 0.08))
        else:
            p = dict(h2=u(0.03, 0.15), h3=u(0.01, 0.08), glide_st=u(0.0, 2.0), decay_s=u(0.8, 2.0), drive=u(1.2, 2.2),
                     release_s=u(0.04, 0.08))
    elif cls == "keys":
        if variant == "piano":
            p = dict(hammer_pos=u(0.11, 0.14), detune_cents=u(0.3, 1.2), inharm=u(1e-4, 3e-4), decay0=u(0.45, 0.9),
                     decay2=u(1.5, 5.0), damper_s=u(0.25, 0.5), hammer=u(0.02, 0.06))
        elif variant == "epiano":
            p = dict(index=u(0.6, 1.6), index_tau_s=u(0.25, 0.7), tine_ratio=u(12.0, 15.0), tine=u(0.08, 0.22),
                     decay_s=u(1.0, 2.5), release_s=u(0.15, 0.35), tremolo=u(0.0, 0.35), tremolo_hz=u(3.5, 6.0))
        else:
            bar = str(rng.choice(["marimba", "vibraphone"]))
            p = dict(bar=bar, decay0=u(2.5, 5.0) if bar == "marimba" else u(0.5, 1.1), knock=u(0.02, 0.06),
                     tremolo=0.0 if bar == "marimba" else u(0.15, 0.4), tremolo_hz=u(4.0, 6.0), release_s=u(0.2, 0.4))
    elif cls == "pad":
        p = dict(attack_s=u(0.3, 1.0), release_s=u(0.5, 1.2), detune_cents=u(4.0, 12.0), cutoff_hz=u(700, 1800),
                 sweep_hz=u(0.05, 0.2), sweep_octaves=u(0.5, 1.5), sweep_phase=u(0.0, _TWO_PI), spread=u(0.2, 0.45))
        if variant == "glass":
            p["cutoff_hz"] = u(2500, 5000)
    elif cls == "lead":
        p = dict(detune_cents=u(6.0, 14.0) if variant == "saw" else 0.0, cutoff_hi=u(12.0, 30.0), cutoff_sus=u(4.0, 10.0),
                 q=u(0.8, 2.2), env_tau_s=u(0.08, 0.3), attack_s=u(0.004, 0.02) if variant != "soft" else u(0.03, 0.07),
                 release_s=u(0.06, 0.15), vibrato_cents=u(8.0, 22.0), vibrato_hz=u(4.8, 6.5), vibrato_delay_s=u(0.15, 0.3),
                 width=u(0.25, 0.5), sub=u(0.0, 0.3), breath=u(0.02, 0.06) if variant == "soft" else 0.0)
    elif cls == "vocal":
        scale = {"female": u(1.12, 1.2), "male": u(0.98, 1.04), "airy": u(1.14, 1.22)}[variant]
        p = dict(formant_scale=scale, tilt=u(1.0, 1.4) if variant != "airy" else u(1.4, 1.8),
                 aspiration=u(0.01, 0.03) if variant != "airy" else u(0.05, 0.09), vibrato_cents=u(25.0, 55.0),
                 vibrato_hz=u(4.8, 6.2), vibrato_delay_s=u(0.12, 0.3), scoop_cents=u(20.0, 60.0), drift_cents=u(3.0, 8.0),
                 consonants=u(0.12, 0.25), attack_s=u(0.02, 0.04), release_s=u(0.06, 0.12))
    elif cls == "guitar":
        if variant == "acoustic":
            p = dict(pluck_pos=u(0.12, 0.2), rolloff=u(0.9, 1.1), decay0=u(0.8, 1.6), decay1=u(3.0, 8.0),
                     inharm=u(1e-5, 4e-5),
                     body=u(1.0, 2.0), body_hz=u(95, 120), release_s=u(0.08, 0.15), drive=0.0)
        elif variant == "nylon":
            p = dict(pluck_pos=u(0.15, 0.25), rolloff=u(1.2, 1.5), decay0=u(1.0, 2.0), decay1=u(8.0, 15.0),
                     inharm=u(1e-5, 3e-5),
                     body=u(1.5, 2.5), body_hz=u(90, 110), release_s=u(0.1, 0.2), drive=0.0)
        elif variant == "clean":
            p = dict(pluck_pos=u(0.1, 0.2), rolloff=u(0.9, 1.2), decay0=u(0.5, 1.0), decay1=u(2.0, 5.0),
                     inharm=u(1e-5, 3e-5),
                     pickup_pos=u(0.08, 0.25), release_s=u(0.06, 0.12), drive=0.0)
        else:
            p = dict(pluck_pos=u(0.1, 0.18), rolloff=u(0.8, 1.1), decay0=u(0.5, 1.0), decay1=u(2.0, 5.0),
                     inharm=u(1e-5, 3e-5),
                     pickup_pos=u(0.06, 0.12), release_s=u(0.03, 0.06), drive=u(4.0, 10.0), cabinet_hz=u(3000, 4500),
                     mute_decay=u(8.0, 16.0))
    elif cls == "strings":
        if variant == "ensemble":
            p = dict(attack_s=u(0.15, 0.4), release_s=u(0.3, 0.6), detune_cents=u(3.0, 7.0), vibrato_cents=u(8.0, 18.0),
                     vibrato_hz=u(4.6, 6.4), cutoff_hz=u(4500, 7000), spread=u(0.25, 0.45))
        elif variant == "brass":
            p = dict(attack_s=u(0.04, 0.09), release_s=u(0.12, 0.25), detune_cents=u(2.0, 6.0), vibrato_cents=u(5.0, 12.0),
                     vibrato_hz=u(4.8, 6.0), cutoff_hz=u(700, 1000), bright_hz=u(2500, 4000), scoop_cents=u(20.0, 40.0),
                     spread=u(0.2, 0.4))
        else:
            p = dict(attack_s=u(0.25, 0.6), release_s=u(0.4, 0.8), detune_cents=u(8.0, 15.0), vibrato_cents=0.0,
                     vibrato_hz=5.0, cutoff_hz=u(2000, 4000), spread=u(0.3, 0.5))
    return p


# ----------------------------------------------------------------------------------------------
# drums: per-articulation templates (soft and hard, two round-robin takes), placed per hit
# ----------------------------------------------------------------------------------------------


def _kick_hit(p: Params, sr: int, hard: bool, rng: np.random.Generator) -> np.ndarray:
    n = int(min(1.2, p["decay_s"] * 6.0 + 0.02) * sr)
    t = _time(n, sr)
    fs = p["f_start_hz"] * (1.0 if hard else 0.85)
    fe, tau = p["f_end_hz"], p["pitch_tau_s"]
    phase = fe * t + (fs - fe) * tau * (1.0 - np.exp(-t / _F32(tau)))
    y = np.sin(_F32(_TWO_PI) * phase) * np.exp(-t / _F32(p["decay_s"]))
    if p["skin"] > 0:
        y += _F32(p["skin"]) * np.sin(_F32(_TWO_PI * p["skin_hz"]) * t) * np.exp(-t / _F32(0.035))
    m = min(n, int(0.012 * sr))
    click = _filt(_butter("lowpass", p["click_hz"], sr), _noise(rng, m)) * np.exp(-t[:m] / _F32(0.0025))
    y[:m] += _F32(p["click"] * (2.0 if hard else 1.0)) * click
    y[: max(1, int(0.0005 * sr))] *= np.linspace(0, 1, max(1, int(0.0005 * sr)), dtype=_F32)
    if p["drive"] > 1.0:
        y = np.tanh(_F32(p["drive"]) * y) / _F32(math.tanh(p["drive"]))
    return _fade_tail(y, sr)


def _snare_hit(p: Params, sr: int, hard: bool, rng: np.random.Generator, variant: str) -> np.ndarray:
    length = max(p["wire_decay_s"], p["tone_decay_s"]) * 5.0 + 0.02
    n = int(length * sr)
    t = _time(n, sr)
    f0 = p["tone_hz"]
    tone = modal(f0 * np.array([1.0, 1.59, 2.14, 2.65]), np.array([1.0, 1.4, 1.9, 2.4]) / p["tone_decay_s"],
                 np.array([1.0, 0.6, 0.35, 0.2]), sr, n)
    wires = _filt(_butter("bandpass", (p["wire_lo_hz"], p["wire_hi_hz"]), sr), _noise(rng, n))
    wires *= np.exp(-t / _F32(p["wire_decay_s"] * (1.0 if hard else 0.8)))
    if variant == "brush":
        swish = np.minimum(t / _F32(p["swish_s"]), 1.0) ** 2
        wires *= swish.astype(_F32)
    y = _F32(p["tone"]) * tone + _F32(p["wires"] * (1.0 if hard else 0.7)) * wires
    if p["crack"] > 0:
        m = min(n, int(0.01 * sr))
        crack = _filt(_butter("highpass", 3000.0, sr), _noise(rng, m)) * np.exp(-t[:m] / _F32(0.003))
        y[:m] += _F32(p["crack"] * (1.5 if hard else 0.6)) * crack
    return _fade_tail(y, sr)


_HAT_RATIOS = np.array([1.0, 1.4471, 1.617, 1.9265, 2.5028, 2.6637])


def _hat_hit(p: Params, sr: int, rng: np.random.Generator, variant: str, pitch: int) -> np.ndarray:
    decay = {GM_DRUMS["hat_open"]: p["open_s"], GM_DRUMS["crash"]: p["crash_s"], GM_DRUMS["ride"]: p["ride_s"]}.get(
        pitch, p["closed_s"])
    cymbal = pitch in (GM_DRUMS["crash"], GM_DRUMS["ride"])
    n = int(min(2.0, decay * 5.0 + 0.01) * sr)
    t = _time(n, sr)
    hp = p["highpass_hz"] * (0.6 if cymbal else 1.0)
    hp = min(hp, 0.3 * sr)
    noise = _noise(rng, n)
    if variant == "analog":
        f = p["base_hz"] * _HAT_RATIOS * (1.3 if pitch == GM_DRUMS["ride"] else 1.0)
        ph = rng.uniform(0, 1, size=f.size)
        metal = np.zeros(n, dtype=_F32)
        for fi, pi in zip(f, ph):  # six square waves (TR-808 style), a fixed small loop
            metal += np.sign(np.sin(_F32(_TWO_PI * fi) * t + _F32(_TWO_PI * pi)))
        src = metal / _F32(6.0) + _F32(p["noise"]) * noise
    elif variant == "acoustic":
        k = 24
        top = min(16000.0, 0.45 * sr)
        f = np.sort(rng.uniform(min(hp * 0.6, top * 0.5), top, size=k))
        dec = rng.uniform(0.5, 2.0, size=k) / decay
        src = modal(f, dec, rng.uniform(0.3, 1.0, size=k), sr, n, phases=rng.uniform(0, _TWO_PI, size=k)) * _F32(0.4)
        src += _F32(p["noise"]) * noise
    else:
        src = noise
    y = _filt(_butter("highpass", hp, sr, order=4), src)
    env = np.exp(-t / _F32(decay))
    if cymbal:
        env = _F32(0.6) * env + _F32(0.4) * np.exp(-t / _F32(decay * 0.15))
    y *= env
    y[: max(1, int(0.0005 * sr))] *= np.linspace(0, 1, max(1, int(0.0005 * sr)), dtype=_F32)
    return _fade_tail(y, sr)


def _perc_hit(p: Params, sr: int, hard: bool, rng: np.random.Generator, variant: str, pitch: int) -> np.ndarray:
    if variant == "shaker":
        n = int((p["attack_s"] + p["decay_s"] * 5.0) * sr)
        t = _time(n, sr)
        env = np.where(t < p["attack_s"], (t / _F32(p["attack_s"])) ** 2,
                       np.exp(-(t - _F32(p["attack_s"])) / _F32(p["decay_s"] * (1.0 if hard else 0.8))))
        y = _filt(_butter("bandpass", (p["lo_hz"], p["hi_hz"]), sr, order=2), _noise(rng, n)) * env.astype(_F32)
    elif variant == "clap":
        spacing = p["spacing_s"]
        n = int((spacing * p["bursts"] + p["tail_s"] * 5.0) * sr)
        t = _time(n, sr)
        env = np.zeros(n, dtype=_F32)
        for b in range(int(p["bursts"])):  # a handful of hand claps, a fixed small loop
            tb = t - _F32(b * spacing * rng.uniform(0.85, 1.15))
            env += np.where(tb >= 0, np.exp(-np.maximum(tb, 0) / _F32(0.004)), 0).astype(_F32) * _F32(0.8 ** b)
        tail_t = t - _F32(spacing * (p["bursts"] - 1))
        env += np.where(tail_t >= 0, _F32(0.5) * np.exp(-np.maximum(tail_t, 0) / _F32(p["tail_s"])), 0).astype(_F32)
        c = p["center_hz"]
        y = _filt(_butter("bandpass", (c * 0.6, c * 2.6 * (1.0 if hard else 0.8)), sr), _noise(rng, n)) * env
    elif variant == "toms":
        f0 = {GM_DRUMS["tom_high"]: p["high_hz"], GM_DRUMS["tom_mid"]: p["mid_hz"]}.get(pitch, p["floor_hz"])
        decay = p["decay_s"] * (1.3 if pitch == GM_DRUMS["tom_floor"] else 1.0)
        n = int(decay * 5.0 * sr)
        t = _time(n, sr)
        drop = _F32(p["drop"] * (1.0 if hard else 0.6))
        tau = _F32(0.04)
        phase = f0 * (t + drop * tau * (1.0 - np.exp(-t / tau)))
        y = np.sin(_F32(_TWO_PI) * phase) * np.exp(-t / _F32(decay))
        y += modal(f0 * np.array([1.5, 1.98, 2.44]), np.array([2.0, 3.0, 4.0]) / decay, np.array([0.35, 0.2, 0.1]), sr, n)
        m = min(n, int(0.01 * sr))
        y[:m] += _F32(0.25 if hard else 0.1) * _filt(_butter("bandpass", (800.0, 5000.0), sr), _noise(rng, m)) * np.exp(
            -t[:m] / _F32(0.002))
    else:  # congas
        f0 = {GM_DRUMS["conga_low"]: p["low_hz"]}.get(pitch, p["high_hz"])
        mute = pitch == GM_DRUMS["conga_mute"]
        decay = p["decay_s"] * (0.3 if mute else 1.0)
        n = int(decay * 5.0 * sr + 0.01 * sr)
        t = _time(n, sr)
        y = modal(f0 * np.array([1.0, 1.52, 1.99, 2.44]), np.array([1.0, 1.6, 2.2, 3.0]) / decay,
                  np.array([1.0, 0.5, 0.25, 0.12]), sr, n)
        m = min(n, int(0.015 * sr))
        slap = _F32(p["slap"] * (1.5 if mute else 0.6) * (1.0 if hard else 0.6))
        y[:m] += slap * _filt(_butter("bandpass", (600.0, 4000.0), sr), _noise(rng, m)) * np.exp(-t[:m] / _F32(0.004))
    return _fade_tail(y.astype(_F32, copy=False), sr)


def _render_drums(cls: str, variant: str, onsets: np.ndarray, pitches: np.ndarray, vels: np.ndarray, p: Params,
                  sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Place velocity-blended drum templates; open hi-hats are choked by the next hat hit."""
    out = np.zeros(n, dtype=_F32)
    templates: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for pitch in sorted(set(int(x) for x in pitches)):
        takes = []
        cymbal = cls == "hihat" and pitch in (GM_DRUMS["crash"], GM_DRUMS["ride"])
        for _ in range(1 if cymbal else 2):
            if cls == "kick":
                soft, hard = _kick_hit(p, sr, False, rng), _kick_hit(p, sr, True, rng)
            elif cls == "snare":
                soft, hard = _snare_hit(p, sr, False, rng, variant), _snare_hit(p, sr, True, rng, variant)
            elif cls == "hihat":  # softer hits are duller: a gentle low-pass of the hard take
                hard = _hat_hit(p, sr, rng, variant, pitch)
                soft = _filt(_butter("lowpass", min(9000.0, 0.4 * sr), sr, order=1), hard)
            else:
                soft, hard = _perc_hit(p, sr, False, rng, variant, pitch), _perc_hit(p, sr, True, rng, variant, pitch)
            m = min(soft.size, hard.size)
            takes.append((soft[:m], hard[:m]))
        templates[pitch] = takes * (2 if cymbal else 1)
    starts = np.round(onsets * sr).astype(np.int64)
    chokable = {GM_DRUMS["hat_open"], GM_DRUMS["hat_closed"]} if cls == "hihat" else set()
    takes_idx = rng.integers(0, 2, size=len(starts))
    for i, (s, pitch, v) in enumerate(zip(starts, pitches, vels)):
        w = float(v) / 127.0
        soft, hard = templates[int(pitch)][int(takes_idx[i])]
        m = max(1, min(soft.size, n - int(s)))
        x = _F32(w**1.5) * (_F32(1.0 - w) * soft[:m] + _F32(w) * hard[:m])
        if int(pitch) in chokable:  # a hi-hat is one instrument: the next hat hit chokes the ringing one
            nxt = [j for j in range(i + 1, min(i + 4, len(starts))) if int(pitches[j]) in chokable]
            if nxt:
                room = int(starts[nxt[0]] - s) + int(0.004 * sr)
                if 0 < room < x.size:
                    x = _fade_tail(x[:room].copy(), sr)
        _mix_in(out, int(s), x)
    return out[None]


# ----------------------------------------------------------------------------------------------
# pitched instruments
# ----------------------------------------------------------------------------------------------


def _string_partials(f0: float, sr: int, limit_hz: float, max_k: int, inharm: float) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic numbers and stiff-string partial frequencies ``k f0 sqrt(1 + B k^2)`` below ``limit_hz``."""
    k = np.arange(1, max_k + 1, dtype=np.float64)
    f = k * f0 * np.sqrt(1.0 + inharm * k**2)
    keep = f < min(limit_hz, 0.45 * sr)
    keep[0] = True
    return k[keep], f[keep]


def _note_len(gate: float, release: float, sr: int, cap_s: float, onset_s: float, n: int) -> int:
    """Samples to render for a note: gate + release (at most ``cap_s``), cut at the stem's end ``n``."""
    return max(1, min(int(min(gate + release, cap_s) * sr) + 1, n - int(round(onset_s * sr))))


def _gate_env(t: np.ndarray, gate: float, release: float, attack: float = 0.002) -> np.ndarray:
    """Fast attack, then release (-40 dB after ``release`` s) starting at ``gate`` s; float32."""
    return _adsr(t, attack, 1.0, 1.0, release, gate)


def _render_bass(variant: str, onsets: np.ndarray, durs: np.ndarray, pitches: np.ndarray, vels: np.ndarray,
                 p: Params, sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, dtype=_F32)
    table_cache: dict[int, np.ndarray] = {}
    for i in range(len(onsets)):
        f0 = float(midi_to_hz(pitches[i]))
        v = float(vels[i]) / 127.0
        gate = float(durs[i])
        if i + 1 < len(onsets):  # monophonic: the next note stops this one
            gate = min(gate, float(onsets[i + 1] - onsets[i]))
        rel = p["release_s"]
        L = _note_len(gate, rel, sr, 4.0, onsets[i], n)
        t = _time(L, sr)
        if variant == "finger":
            k, f = _string_partials(f0, sr, 6000.0, 40, p["inharm"])
            amps = np.abs(np.sin(np.pi * k * p["pluck_pos"])) / k ** p["rolloff"]
            amps *= np.exp(-(k - 1.0) / (p["brightness"] * (0.5 + v)))
            dec = p["decay0"] + p["decay1"] * (f / 1000.0) ** 2
            y = modal(f, dec, amps, sr, L) * _gate_env(t, gate, rel)
            m = min(L, int(0.015 * sr))
            thump = _filt(_butter("lowpass", 900.0, sr), _noise(rng, m)) * np.exp(-t[:m] / _F32(0.004))
            y[:m] += _F32(p["thump"] * v) * thump
        elif variant == "synth":
            key = int(pitches[i])
            if key not in table_cache:
                h = _n_harmonics(f0, sr)
                kk = np.arange(1, h + 1, dtype=np.float64)
                base = 1.0 / kk if p["shape"] == "saw" else np.where(kk % 2 == 1, 1.0 / kk, 0.0)
                base[0] += p["sub"]
                cut = f0 * np.geomspace(p["cutoff_hi"], p["cutoff_lo"], 5)
                amps = base[None, :] * _lowpass_gain(kk[None, :] * f0, cut[:, None], p["q"])
                table_cache[key] = harmonic_tables(amps)
            tabs = table_cache[key]
            start = (1.0 - v) * 1.5
            target = 4.0 * p["sustain_pos"]
            pos = target + (start - target) * np.exp(-t / _F32(p["env_tau_s"]))
            y = oscillator(tabs, f0, sr, L, pos=pos) * _adsr(t, 0.003, 0.25, 0.8, rel, gate)
        else:  # sub
            h = np.array([1.0, p["h2"], p["h3"]])
            tabs = harmonic_tables(h)
            st = p["glide_st"] * v
            freq = _F32(f0) * np.exp2(_F32(st / 12.0) * np.exp(t * _F32(-100.0)))
            env = _adsr(t, 0.003, p["decay_s"], 0.0, rel, gate)
            y = np.tanh(_F32(p["drive"]) * oscillator(tabs, freq, sr, L) * env) / _F32(math.tanh(p["drive"]))
        _mix_in(out, int(round(onsets[i] * sr)), _fade_tail(y * _F32(v**1.2), sr))
    return out[None]


def _render_keys(variant: str, onsets: np.ndarray, durs: np.ndarray, pitches: np.ndarray, vels: np.ndarray,
                 p: Params, sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, dtype=_F32)
    for i in range(len(onsets)):
        m = float(pitches[i])
        f0 = float(midi_to_hz(m))
        v = float(vels[i]) / 127.0
        gate = float(durs[i])
        if variant == "piano":
            rel = p["damper_s"]
            L = _note_len(gate, rel, sr, 4.0, onsets[i], n)
            t = _time(L, sr)
            b = float(np.clip(p["inharm"] * 2.0 ** ((m - 60.0) / 12.0 * 0.9), 2e-5, 3e-3))
            k, f = _string_partials(f0, sr, 9000.0, 28, b)
            amps = np.abs(np.sin(np.pi * k * p["hammer_pos"])) * k**-0.6 * np.exp(-(k - 1.0) / (2.5 + 10.0 * v**1.5))
            dec = p["decay0"] * 2.0 ** ((m - 60.0) / 12.0 * 0.7) + p["decay2"] * (f / 1000.0) ** 2
            c = _cents(p["detune_cents"])
            ff = np.concatenate([f * c, f / c])
            y = modal(ff, np.concatenate([dec, dec * 1.35]), np.concatenate([amps, amps]) * 0.5, sr, L)
            y *= _gate_env(t, gate, rel, 0.001)
            mh = min(L, int(0.02 * sr))
            hammer = _filt(_butter("lowpass", 3000.0, sr), _noise(rng, mh)) * np.exp(-t[:mh] / _F32(0.004))
            y[:mh] += _F32(p["hammer"] * v) * hammer
        elif variant == "epiano":
            rel = p["release_s"]
            L = _note_len(gate, rel, sr, 4.0, onsets[i], n)
            t = _time(L, sr)
            pc32 = _phase(f0, sr, L)
            index = _F32(p["index"] * (0.4 + v)) * np.exp(-t / _F32(p["index_tau_s"])) + _F32(0.15)
            y = np.sin(pc32 + index * np.sin(pc32))
            ft = f0 * p["tine_ratio"]
            if ft < 0.45 * sr:
                y += _F32(p["tine"] * v) * np.sin(_F32(_TWO_PI * ft) * t) * np.exp(-t / _F32(0.03))
            decay = p["decay_s"] * 2.0 ** (-(m - 60.0) / 24.0)
            y *= np.exp(-t / _F32(decay)) * _gate_env(t, gate, rel, 0.001)
        else:  # mallet
            marimba = p["bar"] == "marimba"
            ratios = np.array([1.0, 3.93, 9.54]) if marimba else np.array([1.0, 4.0, 10.0])
            amps = np.array([1.0, 0.35 * v + 0.1, 0.12 * v])
            d0 = p["decay0"] * 2.0 ** ((m - 60.0) / 12.0 * 0.6)
            dec = d0 * (np.array([1.0, 3.0, 6.0]) if marimba else np.array([1.0, 3.5, 8.0]))
            rel = p["release_s"]
            ring = 6.9 / d0
            gate_eff = ring if marimba else gate
            L = _note_len(min(gate_eff, ring), rel, sr, 3.0, onsets[i], n)
            t = _time(L, sr)
            y = modal(f0 * ratios, dec, amps, sr, L) * _gate_env(t, gate_eff, rel, 0.0005)
            mk = min(L, int(0.008 * sr))
            y[:mk] += _F32(p["knock"] * v) * _filt(_butter("bandpass", (400.0, 3000.0), sr), _noise(rng, mk)) * np.exp(
                -t[:mk] / _F32(0.0015))
        _mix_in(out, int(round(onsets[i] * sr)), _fade_tail(y * _F32(v**1.3), sr))
    trem = p.get("tremolo", 0.0)
    if trem > 0:  # electric-piano/vibraphone tremolo (an instrument feature, not mix processing)
        tt = _time(n, sr)
        out *= _F32(1.0 - trem / 2.0) + _F32(trem / 2.0) * np.cos(_F32(_TWO_PI * p["tremolo_hz"]) * tt)
    return out[None]


def _render_pad(variant: str, onsets: np.ndarray, durs: np.ndarray, pitches: np.ndarray, vels: np.ndarray,
                p: Params, sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Two detuned voices per note, one per side (the far side gets ``1 - 2 spread`` of each)."""
    sides = np.zeros((2, n), dtype=_F32)
    cache: dict[int, np.ndarray] = {}
    for i in range(len(onsets)):
        f0 = float(midi_to_hz(pitches[i]))
        v = float(vels[i]) / 127.0
        gate = float(durs[i])
        key = int(pitches[i])
        if key not in cache:
            h = _n_harmonics(f0, sr, 12000.0, headroom=1.01)
            kk = np.arange(1, h + 1, dtype=np.float64)
            if variant == "warm":
                base = 1.0 / kk
            elif variant == "hollow":
                base = np.where(kk % 2 == 1, 1.0 / kk, 0.08 / kk)
            else:  # glass: bell-like even partials over a sine
                base = np.zeros_like(kk)
                for hk, a in ((1, 1.0), (2, 0.5), (4, 0.35), (5, 0.1), (8, 0.2), (12, 0.08)):
                    if hk <= h:
                        base[hk - 1] = a
            cache[key] = harmonic_tables(base * _lowpass_gain(kk * f0, p["cutoff_hz"], 0.9))
        tab = cache[key]
        L = _note_len(gate, p["release_s"], sr, 30.0, onsets[i], n)
        t = _time(L, sr)
        env = _adsr(t, p["attack_s"], 1.0, 1.0, p["release_s"], gate) * _F32(0.5 + 0.5 * v)
        _fade_tail(env, sr)
        c = float(_cents(p["detune_cents"] / 2.0))
        for side, mult in ((0, c), (1, 1.0 / c)):
            y = oscillator(tab, f0 * mult, sr, L, phase0=float(rng.uniform()))
            y *= env
            _mix_in(sides[side], int(round(onsets[i] * sr)), y)
    sides = _filter_sweep(sides, sr, p)
    far = _F32(1.0 - 2.0 * p["spread"])
    return np.stack([sides[0] + far * sides[1], sides[1] + far * sides[0]])


def _filter_sweep(x: np.ndarray, sr: int, p: Params) -> np.ndarray:
    """Slow LFO "filter sweep" over a (C, n) pad stem.

    A cross-fade, driven by a sine LFO of ``sweep_hz``, between the stem (already low-passed at
    ``cutoff_hz`` in its wavetables) and the stem low-passed again at ``cutoff_hz / 2^sweep_octaves``
    (first order) stands in for a swept low-pass at a fraction of the cost of a time-varying filter.
    """
    n = x.shape[-1]
    dark = _filt(_butter("lowpass", p["cutoff_hz"] / 2.0 ** p["sweep_octaves"], sr, 1), x)
    lfo = _F32(0.5) + _F32(0.5) * np.sin(_F32(_TWO_PI * p["sweep_hz"]) * _time(n, sr) + _F32(p.get("sweep_phase", 0.0)))
    x = x - dark
    x *= lfo
    x += dark
    return x


def _vibrato_freq(t: np.ndarray, f0: float, cents: float, rate: float, delay: float, phase: float,
                  scoop_cents: float = 0.0, scoop_tau: float = 0.04, drift_cents: float = 0.0,
                  drift_hz: float = 0.5, drift_phase: float = 0.0) -> np.ndarray:
    """Instantaneous frequency (Hz, float32) with delayed vibrato, an onset scoop and slow drift.

    The deviation in cents is ``cents * ramp(t - delay) * sin(2 pi rate t + phase)
    - scoop_cents * exp(-t / scoop_tau) + drift_cents * sin(2 pi drift_hz t + drift_phase)``, the
    vibrato fading in over 0.25 s after ``delay``.
    """
    depth = np.clip((t - _F32(delay)) * _F32(4.0), 0.0, 1.0)
    depth *= _F32(cents / 1200.0)
    c = np.sin(_F32(_TWO_PI * rate) * t + _F32(phase))
    c *= depth
    if scoop_cents:
        c -= _F32(scoop_cents / 1200.0) * np.exp(t * _F32(-1.0 / scoop_tau))
    if drift_cents:
        c += _F32(drift_cents / 1200.0) * np.sin(_F32(_TWO_PI * drift_hz) * t + _F32(drift_phase))
    np.exp2(c, out=c)
    c *= _F32(f0)
    return c


def _render_strings(variant: str, onsets: np.ndarray, durs: np.ndarray, pitches: np.ndarray, vels: np.ndarray,
                    p: Params, sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Two players per note (detuned, independent vibrato), one per side, as in a string or brass section."""
    sides = np.zeros((2, n), dtype=_F32)
    cache: dict[int, np.ndarray] = {}
    for i in range(len(onsets)):
        f0 = float(midi_to_hz(pitches[i]))
        v = float(vels[i]) / 127.0
        gate = float(durs[i])
        key = int(pitches[i])
        if key not in cache:
            h = _n_harmonics(f0, sr, 14000.0)
            kk = np.arange(1, h + 1, dtype=np.float64)
            fk = kk * f0
            if variant == "brass":
                base = kk**-0.8
                cache[key] = harmonic_tables(np.stack([base * _lowpass_gain(fk, p["cutoff_hz"], 0.7),
                                                       base * _lowpass_gain(fk, p["bright_hz"], 0.9)]))
            else:
                base = 1.0 / kk * _lowpass_gain(fk, p["cutoff_hz"], 0.7)
                if variant == "ensemble":  # violin-family body/bridge resonances
                    for fr, g, bw in ((290.0, 1.5, 120.0), (480.0, 1.0, 200.0), (1100.0, 0.6, 500.0), (2600.0, 1.2, 1200.0)):
                        base = base * (1.0 + g / (1.0 + ((fk - fr) / (0.5 * bw)) ** 2))
                cache[key] = harmonic_tables(base)
        tabs = cache[key]
        L = _note_len(gate, p["release_s"], sr, 30.0, onsets[i], n)
        t = _time(L, sr)
        env = _adsr(t, p["attack_s"], 0.3, 0.85 if variant == "brass" else 1.0, p["release_s"], gate)
        env *= _F32(0.45 + 0.55 * v)
        _fade_tail(env, sr)
        pos = np.minimum(env * _F32(1.3 / (0.45 + 0.55 * v)), _F32(1.0)) ** 2 if variant == "brass" else None
        c = float(_cents(p["detune_cents"] / 2.0))
        for side, mult in ((0, c), (1, 1.0 / c)):
            if p["vibrato_cents"] > 0:
                depth, rate = p["vibrato_cents"] * rng.uniform(0.8, 1.2), p["vibrato_hz"] * rng.uniform(0.9, 1.1)
                freq = _vibrato_freq(t, f0 * mult, depth, rate,
                                     0.15 if variant == "ensemble" else 0.3, rng.uniform(0, _TWO_PI),
                                     p.get("scoop_cents", 0.0), 0.05)
            else:
                freq = f0 * mult
            y = oscillator(tabs, freq, sr, L, phase0=float(rng.uniform()), pos=pos)
            y *= env
            _mix_in(sides[side], int(round(onsets[i] * sr)), y)
    far = _F32(1.0 - 2.0 * p["spread"])
    return np.stack([sides[0] + far * sides[1], sides[1] + far * sides[0]])


def _render_lead(variant: str, onsets: np.ndarray, durs: np.ndarray, pitches: np.ndarray, vels: np.ndarray,
                 p: Params, sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, dtype=_F32)
    cache: dict[int, np.ndarray] = {}
    breath_bp = _butter("bandpass", (1500.0, 6000.0), sr)
    voices = (-1.0, 1.0) if variant == "saw" else (0.0,)
    for i in range(len(onsets)):
        f0 = float(midi_to_hz(pitches[i]))
        v = float(vels[i]) / 127.0
        gate = float(durs[i])
        if i + 1 < len(onsets):
            gate = min(gate, float(onsets[i + 1] - onsets[i]))
        key = int(pitches[i])
        if key not in cache:
            h = _n_harmonics(f0, sr)
            kk = np.arange(1, h + 1, dtype=np.float64)
            if variant == "saw":
                base = 1.0 / kk
            elif variant == "square":
                base = np.abs(np.sin(np.pi * kk * p["width"])) / kk
                base[0] += p["sub"] * 0.5
            else:  # soft: triangle-like with a touch of second harmonic (flute/whistle-like)
                base = np.where(kk % 2 == 1, 1.0 / kk**2, 0.0)
                if h >= 2:
                    base[1] = 0.12
            cut = f0 * np.geomspace(p["cutoff_hi"], p["cutoff_sus"], 4)
            cache[key] = harmonic_tables(base[None, :] * _lowpass_gain(kk[None, :] * f0, cut[:, None], p["q"]))
        tabs = cache[key]
        rel = p["release_s"]
        L = _note_len(gate, rel, sr, 8.0, onsets[i], n)
        t = _time(L, sr)
        pos = _F32(3.0) * (_F32(1.0) - np.exp(-t / _F32(p["env_tau_s"])))
        env = _adsr(t, p["attack_s"], 0.2, 0.75, rel, gate)
        y = np.zeros(L, dtype=_F32)
        vib_phase = rng.uniform(0, _TWO_PI)
        for side in voices:
            fv = f0 * float(_cents(side * p["detune_cents"] / 2.0))
            freq = _vibrato_freq(t, fv, p["vibrato_cents"], p["vibrato_hz"], p["vibrato_delay_s"], vib_phase)
            y += oscillator(tabs, freq, sr, L, phase0=float(rng.uniform()), pos=pos)
        y *= env / _F32(len(voices))
        if p["breath"] > 0:
            y += _F32(p["breath"]) * _filt(breath_bp, _noise(rng, L)) * env
        _mix_in(out, int(round(onsets[i] * sr)), _fade_tail(y * _F32(0.4 + 0.6 * v), sr))
    return out[None]


# Vowel formant frequencies (Hz) for an adult male voice, after Peterson & Barney (1952) with typical
# F4/F5; scaled by ``formant_scale`` for female voices. Bandwidths in Hz (Klatt 1980 orders of size).
_VOWELS: dict[str, tuple[float, ...]] = {
    "a": (730.0, 1090.0, 2440.0, 3300.0, 3750.0),
    "e": (530.0, 1840.0, 2480.0, 3300.0, 3750.0),
    "i": (290.0, 2250.0, 2890.0, 3400.0, 3850.0),
    "o": (570.0, 840.0, 2410.0, 3300.0, 3750.0),
    "u": (320.0, 870.0, 2250.0, 3300.0, 3750.0),
    "@": (500.0, 1500.0, 2500.0, 3300.0, 3750.0),
    "m": (260.0, 1000.0, 2200.0, 3300.0, 3750.0),  # nasal murmur (further damped above 500 Hz)
}
_BANDWIDTHS = np.array([80.0, 95.0, 130.0, 180.0, 250.0])
_DIPHTHONGS = {"a": "i", "o": "u", "e": "i"}
_UNVOICED = ("s", "t", "k", "p", "h", "sh")


def _formant_amps(fk: np.ndarray, formants: np.ndarray, nasal: float) -> np.ndarray:
    """Cascade of five 2-pole resonators (unity gain at DC) evaluated at harmonic frequencies ``fk``."""
    g = np.ones_like(fk)
    for fi, bi in zip(formants, _BANDWIDTHS):
        g *= fi**2 / np.sqrt((fi**2 - fk**2) ** 2 + (fk * bi) ** 2)
    if nasal > 0:
        g *= (1.0 + (fk / 500.0) ** 2) ** (-nasal)
    return g


def _render_vocal(variant: str, onsets: np.ndarray, durs: np.ndarray, pitches: np.ndarray, vels: np.ndarray,
                  p: Params, sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Formant singing voice.

    A glottal-like source (harmonics with a ``k^-tilt`` roll-off) passes through a cascade of five
    formant resonators. Because the source is periodic, its filtered waveform is computed in the
    frequency domain: each harmonic is weighted by the cascade's magnitude response, and the cycle
    is stored as a wavetable. A syllable has up to four keyframes (a nasal onset or, sung legato,
    the previous syllable's vowel; the vowel; a diphthong target); one table per keyframe and
    scanning between them moves the formants from vowel to vowel. Vibrato, pitch
    scoop and slow drift act on the phase accumulator; aspiration noise follows the amplitude; an
    unvoiced consonant (filtered noise burst) precedes some syllables.
    """
    out = np.zeros(n, dtype=_F32)
    breath = np.zeros(n, dtype=_F32)  # summed amplitude envelope, drives the aspiration noise
    scale = p["formant_scale"]
    asp_bp = _butter("bandpass", (1200.0, 5000.0), sr)
    cons_filters = {
        "s": _butter("highpass", 5000.0, sr, 4), "sh": _butter("bandpass", (2200.0, 6000.0), sr),
        "t": _butter("highpass", 3000.0, sr), "k": _butter("bandpass", (1500.0, 3500.0), sr),
        "p": _butter("lowpass", 1200.0, sr), "h": _butter("bandpass", (600.0, 3000.0), sr),
    }
    vowel_names = ("a", "e", "i", "o", "u", "@")
    vowel_w = np.array([0.3, 0.2, 0.15, 0.15, 0.1, 0.1])
    prev_vowel: str | None = None
    prev_end = -1.0
    for i in range(len(onsets)):
        f0 = float(midi_to_hz(pitches[i]))
        v = float(vels[i]) / 127.0
        gate = float(durs[i])
        if i + 1 < len(onsets):
            gate = min(gate, float(onsets[i + 1] - onsets[i]))
        rel = p["release_s"]
        L = _note_len(gate, rel, sr, 8.0, onsets[i], n)
        t = _time(L, sr)
        vowel = str(rng.choice(vowel_names, p=vowel_w))
        onset_kind = str(rng.choice(["none", "voiced", "unvoiced"], p=[0.35, 0.25, 0.4]))
        keys: list[tuple[float, str]] = []
        legato = prev_vowel is not None and onsets[i] - prev_end < 0.15
        if onset_kind == "voiced":
            keys.append((0.0, "m"))
            keys.append((min(0.06, 0.3 * gate), vowel))
        elif onset_kind == "none" and legato and prev_vowel != vowel:  # glide from the previous vowel
            keys.append((0.0, prev_vowel))
            keys.append((min(0.07, 0.35 * gate), vowel))
        else:
            keys.append((0.0, vowel))
        if vowel in _DIPHTHONGS and gate > 0.25 and rng.uniform() < 0.35:
            keys.append((max(keys[-1][0] + 0.05, 0.6 * gate), vowel))
            keys.append((max(keys[-1][0] + 0.05, gate), _DIPHTHONGS[vowel]))
        prev_vowel, prev_end = keys[-1][1], float(onsets[i]) + gate
        h = _n_harmonics(f0, sr, 10000.0, headroom=1.08)
        kk = np.arange(1, h + 1, dtype=np.float64)
        src = kk ** -p["tilt"]
        amps = np.stack([src * _formant_amps(kk * f0, np.array(_VOWELS[name]) * scale, 1.5 if name == "m" else 0.0)
                         for _, name in keys])
        tabs = harmonic_tables(amps)
        tabs /= np.sqrt(np.mean(tabs[:, :-1] ** 2, axis=1)).max() * 2.0
        if len(keys) > 1:
            pos = np.interp(t, np.array([k[0] for k in keys], dtype=_F32), np.arange(len(keys), dtype=_F32)).astype(_F32)
        else:
            pos = None
        freq = _vibrato_freq(t, f0, p["vibrato_cents"], p["vibrato_hz"] * rng.uniform(0.95, 1.05), p["vibrato_delay_s"],
                             rng.uniform(0, _TWO_PI), p["scoop_cents"] * rng.uniform(0.3, 1.0), 0.04,
                             p["drift_cents"], rng.uniform(0.3, 1.2), rng.uniform(0, _TWO_PI))
        env = _adsr(t, p["attack_s"], 0.3, 0.85, rel, gate)
        if onset_kind == "voiced":
            env *= np.minimum(_F32(0.4) + t / _F32(0.08), _F32(1.0))
        env *= _F32(0.4 + 0.6 * v)
        _fade_tail(env, sr)
        y = oscillator(tabs, freq, sr, L, phase0=float(rng.uniform()), pos=pos)
        y *= env
        start = int(round(onsets[i] * sr))
        _mix_in(out, start, y)
        _mix_in(breath, start, env)
        if onset_kind == "unvoiced":
            kind = str(rng.choice(_UNVOICED))
            dur = {"s": 0.08, "sh": 0.09, "h": 0.05}.get(kind, 0.018)
            m = int(dur * sr) + 1
            tc = _time(m, sr)
            shape = np.sin(np.pi * np.minimum(tc / _F32(dur), 1.0)) ** 2 if dur > 0.03 else np.exp(-tc / _F32(dur / 4.0))
            burst = _filt(cons_filters[kind], _noise(rng, m)) * shape.astype(_F32) * _F32(p["consonants"] * v)
            _mix_in(out, start - int(0.8 * m) if dur > 0.03 else start - m // 2, burst)
    out += _F32(p["aspiration"]) * _filt(asp_bp, _noise(rng, n)) * breath
    return out[None]


def _guitar_body(f: np.ndarray, p: Params) -> np.ndarray:
    """Acoustic guitar body: air (Helmholtz) and top-plate resonances as a gain curve over frequency."""
    g = np.ones_like(f)
    b = p.get("body", 0.0)
    if b > 0:
        for fr, gain, bw in ((p["body_hz"], 1.0, 40.0), (p["body_hz"] * 2.1, 0.8, 80.0), (p["body_hz"] * 4.0, 0.5, 200.0)):
            g += b * gain / (1.0 + ((f - fr) / (0.5 * bw)) ** 2)
    return g


def _render_guitar(variant: str, onsets: np.ndarray, durs: np.ndarray, pitches: np.ndarray, vels: np.ndarray,
                   p: Params, sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, dtype=_F32)
    limit = 7000.0 if variant in ("acoustic", "clean") else 5000.0
    for i in range(len(onsets)):
        f0 = float(midi_to_hz(pitches[i]))
        v = float(vels[i]) / 127.0
        gate = float(durs[i])
        rel = p["release_s"]
        L = _note_len(gate, rel, sr, 4.0, onsets[i], n)
        k, f = _string_partials(f0, sr, limit, 48, p["inharm"])
        amps = np.abs(np.sin(np.pi * k * p["pluck_pos"])) / k ** p["rolloff"]
        amps *= np.exp(-(k - 1.0) / (4.0 + 16.0 * v))
        if "pickup_pos" in p:
            amps *= np.abs(np.sin(np.pi * k * p["pickup_pos"])) * 2.0
        amps *= _guitar_body(f, p)
        dec = p["decay0"] + p["decay1"] * (f / 1000.0) ** 2
        if variant == "overdrive" and gate < 0.2:  # palm-muted short notes
            dec = dec + p["mute_decay"]
        t = _time(L, sr)
        y = modal(f, dec, amps, sr, L, phases=rng.uniform(-0.3, 0.3, size=f.size)) * _gate_env(t, gate, rel, 0.001)
        _mix_in(out, int(round(onsets[i] * sr)), _fade_tail(y * _F32(v**1.2), sr))
    if variant == "overdrive":  # the amp and cabinet are part of an electric guitar's sound
        peak = float(np.max(np.abs(out))) or 1.0
        out = np.tanh(_F32(p["drive"] / peak) * out)
        out = _filt(_butter("lowpass", p["cabinet_hz"], sr, 2), _filt(_butter("highpass", 90.0, sr, 2), out))
    return out[None]


_PITCHED: dict[str, Callable[..., np.ndarray]] = {
    "bass": _render_bass,
    "keys": _render_keys,
    "pad": _render_pad,
    "lead": _render_lead,
    "vocal": _render_vocal,
    "guitar": _render_guitar,
    "strings": _render_strings,
}


def render_track(
    cls: str,
    variant: str,
    onsets_s: np.ndarray,
    durations_s: np.ndarray,
    pitches: np.ndarray,
    velocities: np.ndarray,
    params: Params,
    sample_rate: int,
    num_samples: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render one dry instrument stem from its notes.

    Args:
        cls: Instrument class (a key of :data:`VARIANTS`).
        variant: One of ``VARIANTS[cls]``.
        onsets_s: ``(N,)`` note onsets in seconds, sorted.
        durations_s: ``(N,)`` note gate lengths in seconds (drums: nominal, a hit rings out).
        pitches: ``(N,)`` MIDI pitches (drums: General MIDI key numbers, see :data:`GM_DRUMS`).
        velocities: ``(N,)`` MIDI velocities 1..127.
        params: From :func:`sample_params` for the same class and variant.
        sample_rate: Sample rate in Hz.
        num_samples: Stem length in samples (notes ringing past it are cut).
        rng: Seeded generator for noise (consumed).

    Returns:
        ``(channels, num_samples)`` float32 stem, stereo for :data:`STEREO_CLASSES`, else mono;
        not normalised. Not differentiable (numpy synthesis).
    """
    onsets_s = np.asarray(onsets_s, dtype=np.float64)
    order = np.argsort(onsets_s, kind="stable")
    onsets_s = onsets_s[order]
    durations_s = np.asarray(durations_s, dtype=np.float64)[order]
    pitches = np.asarray(pitches)[order]
    velocities = np.asarray(velocities)[order]
    if cls in ("kick", "snare", "hihat", "percussion"):
        y = _render_drums(cls, variant, onsets_s, pitches, velocities, params, sample_rate, num_samples, rng)
    elif cls in _PITCHED:
        y = _PITCHED[cls](variant, onsets_s, durations_s, pitches, velocities, params, sample_rate, num_samples, rng)
    else:
        raise ValueError(f"cannot render instrument class {cls!r}")
    return np.ascontiguousarray(y, dtype=_F32)
