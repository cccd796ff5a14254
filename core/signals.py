"""Test signals: impulses, sines, multitones, coloured noise, chirps, band-limited
square/saw waves, stepped-level sines, tone bursts and the synchronised
exponential swept sine with its deconvolution into linear and harmonic impulse
responses.

Every generator is a pure function: it returns a new 1-D float32 tensor
``(samples,)`` (amplitude in full-scale units, 1.0 = 0 dBFS), holds no state,
and where randomness is involved takes an explicit ``seed``. Signals are
computed in float64 and cast to float32 at the end. None of the generators is
meant to be differentiated (they take python numbers, not tensors);
:func:`deconvolve` is built from differentiable torch operations.

The number of samples of a signal lasting ``seconds`` is
``round(seconds * sample_rate)``; sample ``n`` lies at time ``n / sample_rate``.

Bad parameter values raise :class:`neuromix.core.errors.ConfigError` (a
``ValueError``) naming the parameter; a response tensor of the wrong shape
raises a plain ``ValueError``.

References:
    A. Novak, P. Lotton, L. Simon, "Synchronized swept-sine: theory,
    application, and implementation", J. Audio Eng. Soc. 63(10), 2015.
    A. Farina, "Simultaneous measurement of impulse response and distortion
    with a swept-sine technique", 108th AES Convention, 2000.
    M. R. Schroeder, "Synthesis of low-peak-factor signals and binary sequences
    with low autocorrelation", IEEE Trans. Inf. Theory 16(1), 1970.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from neuromix.core.errors import ConfigError
from neuromix.core.dsp.utils import fast_fft_size

__all__ = [
    "Deconvolution",
    "Sweep",
    "ToneBursts",
    "chirp",
    "deconvolve",
    "exp_sweep",
    "impulse",
    "multitone",
    "noise",
    "saw",
    "sine",
    "square",
    "stepped_sine",
    "tone_bursts",
]

_F64 = torch.float64


# --------------------------------------------------------------------------- checks


def _finite(value: float, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value}")
    return value


def _positive(value: float, name: str) -> float:
    value = _finite(value, name)
    if value <= 0.0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    return value


def _non_negative(value: float, name: str) -> float:
    value = _finite(value, name)
    if value < 0.0:
        raise ConfigError(f"{name} must be >= 0, got {value}")
    return value


def _rate(sample_rate: int) -> float:
    return _positive(sample_rate, "sample_rate")


def _num_samples(seconds: float, sample_rate: float, name: str = "seconds") -> int:
    seconds = _positive(seconds, name)
    n = int(round(seconds * sample_rate))
    if n < 1:
        raise ConfigError(
            f"{name}={seconds} at sample_rate={sample_rate:g} gives no samples; "
            f"it must last at least one sample"
        )
    return n


def _audio_freq(freq_hz: float, sample_rate: float, name: str, *, allow_zero: bool = False) -> float:
    freq_hz = _finite(freq_hz, name)
    nyquist = sample_rate / 2.0
    low_ok = freq_hz >= 0.0 if allow_zero else freq_hz > 0.0
    if not low_ok or freq_hz >= nyquist:
        bound = "0 <=" if allow_zero else "0 <"
        raise ConfigError(
            f"{name} must satisfy {bound} {name} < Nyquist ({nyquist:g} Hz), got {freq_hz:g}"
        )
    return freq_hz


def _time(n: int, sample_rate: float) -> Tensor:
    return torch.arange(n, dtype=_F64) / sample_rate


def _unit_phase(n: int, sample_rate: float, freq_hz: float) -> Tensor:
    """Phase ``2 pi frac(f n / sr)`` in [0, 2 pi), computed without loss for long signals."""
    cycles = torch.arange(n, dtype=_F64) * (freq_hz / sample_rate)
    return 2.0 * math.pi * torch.frac(cycles)


def _out(x: Tensor) -> Tensor:
    return x.to(torch.float32).contiguous()


# --------------------------------------------------------------------------- simple signals


def impulse(seconds: float, sample_rate: int, *, delay_s: float = 0.0, amplitude: float = 1.0) -> Tensor:
    """Unit (Kronecker) impulse.

    Args:
        seconds: length of the signal in seconds (> 0).
        sample_rate: sample rate in Hz.
        delay_s: time of the impulse in seconds; it sits at sample
            ``round(delay_s * sample_rate)``, which must lie inside the signal.
        amplitude: value of the impulse sample (full-scale units).

    Returns:
        ``(samples,)`` float32 tensor, zero except one sample equal to ``amplitude``.

    Raises:
        ConfigError: on a non-positive duration or a delay outside the signal.
    """
    sr = _rate(sample_rate)
    n = _num_samples(seconds, sr)
    delay_s = _non_negative(delay_s, "delay_s")
    amplitude = _finite(amplitude, "amplitude")
    index = int(round(delay_s * sr))
    if index >= n:
        raise ConfigError(f"delay_s={delay_s} puts the impulse at sample {index}, past the end ({n} samples)")
    x = torch.zeros(n, dtype=_F64)
    x[index] = amplitude
    return _out(x)


def sine(
    seconds: float, sample_rate: int, freq_hz: float, *, amplitude: float = 1.0, phase: float = 0.0
) -> Tensor:
    """Sine wave ``amplitude * sin(2 pi freq_hz n / sample_rate + phase)``.

    Args:
        seconds: length in seconds (> 0).
        sample_rate: sample rate in Hz.
        freq_hz: frequency in Hz, ``0 < freq_hz < sample_rate / 2``.
        amplitude: peak amplitude (full-scale units).
        phase: phase at sample 0 in radians.

    Returns:
        ``(samples,)`` float32 tensor.

    Raises:
        ConfigError: on invalid duration or frequency.
    """
    sr = _rate(sample_rate)
    n = _num_samples(seconds, sr)
    freq_hz = _audio_freq(freq_hz, sr, "freq_hz")
    amplitude = _finite(amplitude, "amplitude")
    phase = _finite(phase, "phase")
    return _out(amplitude * torch.sin(_unit_phase(n, sr, freq_hz) + phase))


def multitone(
    seconds: float,
    sample_rate: int,
    freqs_hz: Sequence[float],
    *,
    peak: float = 1.0,
    schroeder: bool = True,
) -> Tensor:
    """Sum of equal-amplitude cosines, peak-normalised.

    Tone ``k = 1..N`` (in the order given) is ``cos(2 pi f_k t + phi_k)`` with
    Schroeder's low-crest-factor phases ``phi_k = -pi k (k - 1) / N`` when
    ``schroeder`` is true (Schroeder 1970; best for harmonically spaced tones),
    and ``phi_k = 0`` otherwise (a zero-phase multitone: all tones peak together).
    The sum is scaled so that its largest absolute sample equals ``peak``.

    Args:
        seconds: length in seconds (> 0).
        sample_rate: sample rate in Hz.
        freqs_hz: tone frequencies in Hz, each in ``(0, sample_rate / 2)``; at least one.
        peak: largest absolute sample value of the result (> 0).
        schroeder: use Schroeder phases (True) or zero phases (False).

    Returns:
        ``(samples,)`` float32 tensor with ``max |x| == peak``.

    Raises:
        ConfigError: on an empty frequency list, a frequency outside (0, Nyquist),
            a non-positive peak or duration.
    """
    sr = _rate(sample_rate)
    n = _num_samples(seconds, sr)
    freqs = [_audio_freq(f, sr, f"freqs_hz[{i}]") for i, f in enumerate(freqs_hz)]
    if not freqs:
        raise ConfigError("freqs_hz must contain at least one frequency")
    peak = _positive(peak, "peak")
    count = len(freqs)
    x = torch.zeros(n, dtype=_F64)
    for k, f in enumerate(freqs, start=1):
        phi = -math.pi * k * (k - 1) / count if schroeder else 0.0
        x += torch.cos(_unit_phase(n, sr, f) + phi)
    x_peak = x.abs().max()
    if x_peak <= 0.0:  # pragma: no cover - a sum of cosines is 1 + ... at some sample unless n is tiny
        raise ConfigError("the multitone is silent over this duration; use a longer signal")
    return _out(x * (peak / x_peak))


def noise(
    seconds: float,
    sample_rate: int,
    *,
    color: Literal["white", "pink", "brown"] = "white",
    rms: float = 0.1,
    seed: int = 0,
) -> Tensor:
    """Seeded Gaussian noise, white, pink (-3 dB/octave) or brown (-6 dB/octave).

    White Gaussian noise is drawn from a ``torch.Generator`` seeded with ``seed``.
    Pink and brown noise shape its spectrum (one real FFT over the whole signal)
    by ``f ** -1/2`` and ``f ** -1`` in amplitude, i.e. a power spectral density
    proportional to ``1/f`` and ``1/f**2``; the DC bin is set to zero (so the
    coloured signals have zero mean and are circular/loopable). The result is
    scaled so that its sample RMS equals ``rms`` exactly.

    Args:
        seconds: length in seconds (> 0).
        sample_rate: sample rate in Hz.
        color: ``"white"``, ``"pink"`` or ``"brown"``.
        rms: root-mean-square value of the result (> 0, full-scale units).
        seed: seed of the random generator; equal seeds give identical signals.

    Returns:
        ``(samples,)`` float32 tensor.

    Raises:
        ConfigError: on an unknown colour, non-positive rms or duration, or a signal
            too short to colour (fewer than 2 samples).
    """
    sr = _rate(sample_rate)
    n = _num_samples(seconds, sr)
    rms = _positive(rms, "rms")
    if color not in ("white", "pink", "brown"):
        raise ConfigError(f"color must be 'white', 'pink' or 'brown', got {color!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {seed!r}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(n, generator=generator, dtype=_F64)
    if color != "white":
        if n < 2:
            raise ConfigError("coloured noise needs at least 2 samples")
        spectrum = torch.fft.rfft(x)
        bins = torch.arange(spectrum.shape[0], dtype=_F64)
        exponent = 0.5 if color == "pink" else 1.0
        shaping = torch.zeros_like(bins)
        shaping[1:] = bins[1:] ** -exponent
        x = torch.fft.irfft(spectrum * shaping, n=n)
    x_rms = x.square().mean().sqrt()
    if x_rms <= 0.0:
        raise ConfigError("the noise is silent at this length; use a longer signal")
    return _out(x * (rms / x_rms))


def chirp(seconds: float, sample_rate: int, f0_hz: float, f1_hz: float, *, amplitude: float = 1.0) -> Tensor:
    """Linear chirp ``amplitude * sin(2 pi (f0 t + (f1 - f0) t**2 / (2 T)))``.

    The instantaneous frequency goes linearly from ``f0_hz`` at ``t = 0`` to
    ``f1_hz`` at ``t = T = seconds`` (the end of the signal). Down-chirps
    (``f1_hz < f0_hz``) are allowed. Equals ``scipy.signal.chirp(t, f0, T, f1,
    method="linear", phi=-90)`` times ``amplitude``.

    Args:
        seconds: length in seconds (> 0).
        sample_rate: sample rate in Hz.
        f0_hz: start frequency in Hz, ``0 <= f0_hz < sample_rate / 2``.
        f1_hz: end frequency in Hz, ``0 <= f1_hz < sample_rate / 2``.
        amplitude: peak amplitude.

    Returns:
        ``(samples,)`` float32 tensor.

    Raises:
        ConfigError: on a non-positive duration or a frequency outside [0, Nyquist).
    """
    sr = _rate(sample_rate)
    n = _num_samples(seconds, sr)
    f0_hz = _audio_freq(f0_hz, sr, "f0_hz", allow_zero=True)
    f1_hz = _audio_freq(f1_hz, sr, "f1_hz", allow_zero=True)
    amplitude = _finite(amplitude, "amplitude")
    duration = n / sr
    t = _time(n, sr)
    cycles = f0_hz * t + (f1_hz - f0_hz) * t.square() / (2.0 * duration)
    return _out(amplitude * torch.sin(2.0 * math.pi * torch.frac(cycles)))


def _additive(
    n: int, sample_rate: float, freq_hz: float, harmonic_amp: dict[int, float]
) -> Tensor:
    """``sum_k a_k sin(k theta)``, ``theta = 2 pi f n / sr``, by the Chebyshev recurrence.

    ``sin(k t) = 2 cos(t) sin((k-1) t) - sin((k-2) t)``: one multiply-add per harmonic
    instead of one ``sin`` per harmonic and sample (float64; the error grows at most
    like ``k**2 * eps``).
    """
    theta = _unit_phase(n, sample_rate, freq_hz)
    two_cos = 2.0 * torch.cos(theta)
    s_prev = torch.zeros(n, dtype=_F64)  # sin(0 * theta)
    s_curr = torch.sin(theta)  # sin(1 * theta)
    x = torch.zeros(n, dtype=_F64)
    highest = max(harmonic_amp)
    for k in range(1, highest + 1):
        a_k = harmonic_amp.get(k, 0.0)
        if a_k != 0.0:
            x += a_k * s_curr
        s_prev, s_curr = s_curr, two_cos * s_curr - s_prev
    return x


def _harmonic_count(freq_hz: float, sample_rate: float) -> int:
    """Number of harmonics ``k >= 1`` with ``k * freq_hz`` strictly below Nyquist."""
    return int(math.ceil(sample_rate / 2.0 / freq_hz)) - 1


def square(seconds: float, sample_rate: int, freq_hz: float, *, amplitude: float = 1.0) -> Tensor:
    """Band-limited square wave by additive synthesis.

    Fourier series of a square wave switching between ``+amplitude`` and
    ``-amplitude`` (rising edge at ``t = 0``), truncated to the harmonics strictly
    below Nyquist: ``4 A / pi * sum_{k odd, k f < sr/2} sin(2 pi k f t) / k``.
    Nothing aliases. Because of the truncation the waveform rings (Gibbs), so its
    peak exceeds ``amplitude`` by up to about 18 %.

    Args:
        seconds: length in seconds (> 0).
        sample_rate: sample rate in Hz.
        freq_hz: fundamental frequency in Hz, ``0 < freq_hz < sample_rate / 2``.
        amplitude: level of the ideal square wave's plateaus.

    Returns:
        ``(samples,)`` float32 tensor.

    Raises:
        ConfigError: on invalid duration or frequency.
    """
    sr = _rate(sample_rate)
    n = _num_samples(seconds, sr)
    freq_hz = _audio_freq(freq_hz, sr, "freq_hz")
    amplitude = _finite(amplitude, "amplitude")
    count = _harmonic_count(freq_hz, sr)
    amps = {k: 4.0 * amplitude / (math.pi * k) for k in range(1, count + 1, 2)}
    return _out(_additive(n, sr, freq_hz, amps))


def saw(seconds: float, sample_rate: int, freq_hz: float, *, amplitude: float = 1.0) -> Tensor:
    """Band-limited rising sawtooth by additive synthesis.

    Fourier series of a sawtooth rising from ``-amplitude`` to ``+amplitude`` over
    each period (value 0 at ``t = 0``), truncated to the harmonics strictly below
    Nyquist: ``2 A / pi * sum_{k f < sr/2} (-1)**(k+1) sin(2 pi k f t) / k``.
    Nothing aliases; the truncation makes it overshoot near the reset (Gibbs).

    Args:
        seconds: length in seconds (> 0).
        sample_rate: sample rate in Hz.
        freq_hz: fundamental frequency in Hz, ``0 < freq_hz < sample_rate / 2``.
        amplitude: peak level of the ideal sawtooth.

    Returns:
        ``(samples,)`` float32 tensor.

    Raises:
        ConfigError: on invalid duration or frequency.
    """
    sr = _rate(sample_rate)
    n = _num_samples(seconds, sr)
    freq_hz = _audio_freq(freq_hz, sr, "freq_hz")
    amplitude = _finite(amplitude, "amplitude")
    count = _harmonic_count(freq_hz, sr)
    amps = {k: (-1.0) ** (k + 1) * 2.0 * amplitude / (math.pi * k) for k in range(1, count + 1)}
    return _out(_additive(n, sr, freq_hz, amps))


# --------------------------------------------------------------------------- level steps


def stepped_sine(
    step_seconds: float, sample_rate: int, freq_hz: float, levels_db: Sequence[float]
) -> tuple[Tensor, Tensor]:
    """Sine whose peak level steps through ``levels_db`` (dBFS), one step each.

    Step ``i`` lasts ``round(step_seconds * sample_rate)`` samples and holds
    ``10 ** (levels_db[i] / 20) * sin(2 pi f (n - start_i) / sr)``: every step
    restarts the sine at phase 0 (a zero crossing), so the level is constant
    within a step. Useful for static compressor curves and level sweeps.

    Args:
        step_seconds: duration of each step in seconds (> 0).
        sample_rate: sample rate in Hz.
        freq_hz: sine frequency in Hz, ``0 < freq_hz < sample_rate / 2``.
        levels_db: peak level of each step in dBFS (0 dBFS = amplitude 1); at least one.

    Returns:
        ``(signal, step_starts)``: ``signal`` is a ``(steps * step_samples,)``
        float32 tensor; ``step_starts`` is an int64 ``(steps,)`` tensor with the
        first sample index of each step.

    Raises:
        ConfigError: on an empty level list, non-finite levels, invalid duration or
            frequency.
    """
    sr = _rate(sample_rate)
    step = _num_samples(step_seconds, sr, "step_seconds")
    freq_hz = _audio_freq(freq_hz, sr, "freq_hz")
    levels = [_finite(level, f"levels_db[{i}]") for i, level in enumerate(levels_db)]
    if not levels:
        raise ConfigError("levels_db must contain at least one level")
    one_step = torch.sin(_unit_phase(step, sr, freq_hz))
    gains = torch.tensor([10.0 ** (level / 20.0) for level in levels], dtype=_F64)
    signal = (gains[:, None] * one_step[None, :]).reshape(-1)
    starts = torch.arange(len(levels), dtype=torch.int64) * step
    return _out(signal), starts


@dataclass(frozen=True)
class ToneBursts:
    """A tone-burst test signal and where its level jumps.

    Attributes:
        signal: ``(samples,)`` float32 signal.
        up_indices: int64 ``(repeats,)``: first sample at the high level of each burst.
        down_indices: int64 ``(repeats,)``: first sample back at the low level after each burst.
        sample_rate: sample rate in Hz.
        low_db: peak level between bursts in dBFS.
        high_db: peak level during bursts in dBFS.
    """

    signal: Tensor
    up_indices: Tensor
    down_indices: Tensor
    sample_rate: int
    low_db: float
    high_db: float


def tone_bursts(
    sample_rate: int,
    freq_hz: float,
    *,
    low_db: float,
    high_db: float,
    on_seconds: float,
    off_seconds: float,
    repeats: int = 1,
    lead_seconds: float | None = None,
) -> ToneBursts:
    """Sine alternating between a low and a high level, for attack/release timing.

    One continuous sine ``sin(2 pi f n / sr)`` (phase 0 at sample 0, never reset)
    is multiplied by a stepped envelope: ``lead_seconds`` at ``low_db``, then
    ``repeats`` times [``on_seconds`` at ``high_db``, ``off_seconds`` at
    ``low_db``]. The level jumps up at ``up_indices`` (attack) and down at
    ``down_indices`` (release); sample ``up_indices[i]`` is the first one at the
    high level and ``down_indices[i]`` the first one back at the low level.
    Segment lengths are ``round(seconds * sample_rate)`` samples.

    Args:
        sample_rate: sample rate in Hz.
        freq_hz: sine frequency in Hz, ``0 < freq_hz < sample_rate / 2``.
        low_db: peak level outside the bursts in dBFS.
        high_db: peak level during the bursts in dBFS (> ``low_db``).
        on_seconds: burst duration in seconds (> 0).
        off_seconds: low-level duration after each burst in seconds (> 0).
        repeats: number of bursts (>= 1).
        lead_seconds: low-level lead-in before the first burst in seconds (> 0);
            ``None`` uses ``off_seconds``.

    Returns:
        A :class:`ToneBursts` with the signal and the jump indices.

    Raises:
        ConfigError: on ``high_db <= low_db``, non-positive durations, ``repeats < 1``
            or an invalid frequency.
    """
    sr = _rate(sample_rate)
    freq_hz = _audio_freq(freq_hz, sr, "freq_hz")
    low_db = _finite(low_db, "low_db")
    high_db = _finite(high_db, "high_db")
    if high_db <= low_db:
        raise ConfigError(f"high_db ({high_db}) must be greater than low_db ({low_db})")
    on = _num_samples(on_seconds, sr, "on_seconds")
    off = _num_samples(off_seconds, sr, "off_seconds")
    lead = off if lead_seconds is None else _num_samples(lead_seconds, sr, "lead_seconds")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats must be an int >= 1, got {repeats!r}")
    period = on + off
    n = lead + repeats * period
    ups = lead + torch.arange(repeats, dtype=torch.int64) * period
    downs = ups + on
    envelope = torch.full((n,), 10.0 ** (low_db / 20.0), dtype=_F64)
    high = 10.0 ** (high_db / 20.0)
    for up, down in zip(ups.tolist(), downs.tolist()):
        envelope[up:down] = high
    signal = envelope * torch.sin(_unit_phase(n, sr, freq_hz))
    return ToneBursts(
        signal=_out(signal),
        up_indices=ups,
        down_indices=downs,
        sample_rate=sample_rate,
        low_db=low_db,
        high_db=high_db,
    )


# --------------------------------------------------------------------------- swept sine


@dataclass(frozen=True)
class Sweep:
    """A synchronised exponential swept sine (Novak et al. 2015).

    Attributes:
        signal: ``(samples,)`` float32 sweep
            ``amplitude * sin(2 pi f1 L (exp(t / L) - 1))`` with half-Hann fades (see :func:`exp_sweep`).
        inverse_filter: ``(samples + ceil(L ln(2) sample_rate) + 1,)`` float32 FIR
            realisation of the analytic inverse filter (band-limited with
            half-cosine tapers over ``[f1/2, f1]`` and ``[f2, Nyquist]``), delayed
            by ``len(signal)`` samples: ``fftconvolve(signal, inverse_filter)`` is
            approximately a band-limited unit impulse at index ``len(signal)``,
            with harmonic ``k`` responses ``L ln(k) * sample_rate`` samples earlier
            (Farina-style use). :func:`deconvolve` does not need it: it applies
            the exact analytic inverse in the frequency domain.
        f1_hz: start frequency in Hz.
        f2_hz: end frequency in Hz (reached at ``t = L ln(f2/f1)``).
        rate_L: the sweep-rate constant ``L`` in seconds, with ``f1 L`` an integer.
        sample_rate: sample rate in Hz.
        amplitude: peak amplitude of the sweep (the inverse filter divides by it).
    """

    signal: Tensor
    inverse_filter: Tensor
    f1_hz: float
    f2_hz: float
    rate_L: float
    sample_rate: int
    amplitude: float = 1.0

    @property
    def duration_s(self) -> float:
        """Sweep duration ``T = L ln(f2 / f1)`` in seconds."""
        return self.rate_L * math.log(self.f2_hz / self.f1_hz)


@dataclass(frozen=True)
class Deconvolution:
    """Impulse responses separated from a swept-sine measurement.

    Attributes:
        linear_ir: ``(..., ir_length)`` impulse response of the linear part
            (the first-order harmonic response).
        harmonic_irs: list of ``(..., ir_length)`` higher-harmonic impulse
            responses, orders ``2..num_harmonics`` (index 0 is order 2). The
            spectrum of order ``k`` at frequency ``f`` is the output component at
            ``f`` produced by an input at ``f / k`` (Novak et al. 2015, "higher
            harmonic frequency responses"); for a memoryless nonlinearity ``F``
            and sweep amplitude ``A`` its magnitude is ``|c_k| / A`` where ``c_k``
            is the ``k``-th Fourier coefficient of ``F(A sin theta)``.
        pre_samples: samples kept before each response's time origin (index
            ``pre_samples`` is time zero of every response).
    """

    linear_ir: Tensor
    harmonic_irs: list[Tensor]
    pre_samples: int = 0


def _inverse_polar(freqs_hz: Tensor, rate_l: float, f1_hz: float, amplitude: float) -> tuple[Tensor, Tensor]:
    """Magnitude and phase of the analytic inverse of the synchronised sweep's spectrum
    (Novak et al. 2015): ``X~(f) = 2 sqrt(f / L) exp(-j 2 pi f L (1 - ln(f / f1)) + j pi / 4) / A``,
    zero at DC. Continuous-time Fourier convention ``X(f) = int x(t) exp(-j 2 pi f t) dt``.
    """
    f = freqs_hz.clamp_min(1e-30)
    magnitude = torch.where(freqs_hz > 0, 2.0 * torch.sqrt(f / rate_l) / amplitude, torch.zeros_like(f))
    phase = -2.0 * math.pi * f * rate_l * (1.0 - torch.log(f / f1_hz)) + math.pi / 4.0
    return magnitude, phase


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def exp_sweep(
    seconds: float,
    sample_rate: int,
    f1_hz: float,
    f2_hz: float,
    *,
    amplitude: float = 1.0,
    fade_s: float | tuple[float, float] | None = None,
) -> Sweep:
    """Synchronised exponential swept sine and its analytic inverse filter.

    Implements Novak, Lotton & Simon (2015): the rate ``L = round(f1 T' / ln(f2/f1)) / f1``
    is chosen so that ``f1 L`` is an integer, where ``T'`` is the requested
    duration; the actual duration is ``T = L ln(f2/f1)`` (close to ``seconds``)
    and the sweep is ``x(t) = A sin(2 pi f1 L (exp(t/L) - 1))`` for
    ``0 <= t < T``. With ``f1 L`` integral, the ``k``-th harmonic
    ``sin(k phi(t))`` equals ``x(t + L ln k) / A`` exactly, so the harmonic
    impulse responses found by :func:`deconvolve` are phase-synchronised.
    The sweep starts and ends with half-Hann fades. The abrupt start of a sweep
    makes its spectrum ripple (Fresnel ripple) just above ``f1`` over a span of
    about ``sqrt(L / f)`` seconds, so the default fade-in is long: the time the
    sweep takes to rise by a third of an octave, ``L ln(2) / 3`` (at
    20 Hz-20 kHz in 3 s: 0.10 s, which keeps the measured response of an
    identity system within about 0.1 dB from 40 Hz up, where no fade leaves
    about 0.4 dB of ripple at 40-50 Hz). The default fade-out, the last 1/24
    octave (``L ln(2) / 24``), only removes the click of the final sample.

    Args:
        seconds: requested duration in seconds (> 0); the result lasts ``T``.
        sample_rate: sample rate in Hz.
        f1_hz: start frequency in Hz, ``0 < f1_hz < f2_hz``.
        f2_hz: end frequency in Hz, ``f2_hz < sample_rate / 2``.
        amplitude: peak amplitude ``A`` (> 0).
        fade_s: fade lengths in seconds (>= 0): one float for both ends, a pair
            ``(fade_in_s, fade_out_s)``, or ``None`` for the defaults above
            (``L ln(2) / 3`` and ``L ln(2) / 24``, at most a quarter and an
            eighth of the sweep). Both fades together must be shorter than the sweep.

    Returns:
        A :class:`Sweep` (signal ``(round(T * sample_rate),)`` float32, inverse
        filter, ``L`` and the parameters).

    Raises:
        ConfigError: if not ``0 < f1 < f2 < Nyquist``, on a non-positive duration or
            amplitude, if the sweep is too short to hold one integer ``f1 L``, or if
            the fades do not fit.
    """
    sr = _rate(sample_rate)
    seconds = _positive(seconds, "seconds")
    f1_hz = _audio_freq(f1_hz, sr, "f1_hz")
    f2_hz = _audio_freq(f2_hz, sr, "f2_hz")
    if not f1_hz < f2_hz:
        raise ConfigError(f"f1_hz ({f1_hz:g}) must be lower than f2_hz ({f2_hz:g})")
    amplitude = _positive(amplitude, "amplitude")
    cycles = round(f1_hz * seconds / math.log(f2_hz / f1_hz))
    if cycles < 1:
        raise ConfigError(
            f"seconds={seconds} is too short for a synchronised sweep from {f1_hz:g} Hz to "
            f"{f2_hz:g} Hz; it needs at least {0.5 * math.log(f2_hz / f1_hz) / f1_hz:.3g} s"
        )
    rate_l = cycles / f1_hz
    n = int(round(rate_l * math.log(f2_hz / f1_hz) * sr))
    if fade_s is None:
        duration = rate_l * math.log(f2_hz / f1_hz)
        fade_in_s = min(rate_l * math.log(2.0) / 3.0, duration / 4.0)
        fade_out_s = min(rate_l * math.log(2.0) / 24.0, duration / 8.0)
    elif isinstance(fade_s, tuple):
        if len(fade_s) != 2:
            raise ConfigError(f"fade_s must be a float or a (fade_in_s, fade_out_s) pair, got {fade_s!r}")
        fade_in_s = _non_negative(fade_s[0], "fade_s[0]")
        fade_out_s = _non_negative(fade_s[1], "fade_s[1]")
    else:
        fade_in_s = fade_out_s = _non_negative(fade_s, "fade_s")
    fade_in, fade_out = int(round(fade_in_s * sr)), int(round(fade_out_s * sr))
    if fade_in + fade_out >= n:
        raise ConfigError(
            f"fades of {fade_in_s:.3g} s + {fade_out_s:.3g} s do not fit in a {n / sr:.3g} s sweep"
        )

    t = _time(n, sr)
    # sin(2 pi f1 L (e^{t/L} - 1)); reduce the cycle count mod 1 to keep float64 accuracy
    phase_cycles = f1_hz * rate_l * torch.expm1(t / rate_l)
    x = amplitude * torch.sin(2.0 * math.pi * torch.frac(phase_cycles))
    if fade_in > 0:
        x[:fade_in] *= 0.5 - 0.5 * torch.cos(math.pi * torch.arange(fade_in, dtype=_F64) / fade_in)
    if fade_out > 0:
        ramp = 0.5 - 0.5 * torch.cos(math.pi * torch.arange(fade_out, dtype=_F64) / fade_out)
        x[n - fade_out :] *= ramp.flip(0)

    # FIR realisation of the analytic inverse: band-limit with half-cosine tapers,
    # delay by n samples, keep the causal part that carries the band [f1/2, f2].
    extra = int(math.ceil(rate_l * math.log(2.0) * sr)) + 1
    n_inv = n + extra
    n_fft = _next_pow2(2 * n_inv)
    freqs = torch.fft.rfftfreq(n_fft, d=1.0 / sr, dtype=_F64)
    weight = torch.ones_like(freqs)
    low = freqs < f1_hz
    weight[low] = 0.5 - 0.5 * torch.cos(math.pi * ((freqs[low] / f1_hz) * 2.0 - 1.0).clamp(0.0, 1.0))
    high = freqs > f2_hz
    nyquist = sr / 2.0
    weight[high] = 0.5 + 0.5 * torch.cos(math.pi * ((freqs[high] - f2_hz) / (nyquist - f2_hz)).clamp(0.0, 1.0))
    magnitude, phase = _inverse_polar(freqs, rate_l, f1_hz, amplitude)
    inverse = torch.polar(magnitude * weight / sr, phase - 2.0 * math.pi * freqs * (n / sr))
    inverse_fir = torch.fft.irfft(inverse, n=n_fft)[:n_inv]

    return Sweep(
        signal=_out(x),
        inverse_filter=_out(inverse_fir),
        f1_hz=f1_hz,
        f2_hz=f2_hz,
        rate_L=rate_l,
        sample_rate=sample_rate,
        amplitude=amplitude,
    )


def deconvolve(
    response: Tensor,
    sweep: Sweep,
    *,
    ir_length: int,
    num_harmonics: int = 5,
    pre_samples: int = 0,
) -> Deconvolution:
    """Deconvolve a system's response to a synchronised sweep into impulse responses.

    Computes ``h(t) = IFFT(FFT(y) / fs * X~(f))`` with the analytic inverse
    spectrum ``X~`` of Novak et al. (2015) on an FFT long enough that nothing
    wraps. The linear IR starts at ``t = 0`` and the order-``k`` harmonic IR at
    ``t = -L ln(k)``; each is cut out after an exact (fractional-sample,
    frequency-domain) time shift, so harmonic IRs stay phase-synchronised.
    Built from torch FFTs: differentiable with respect to ``response``.

    Args:
        response: ``(..., samples)`` real tensor, the system output recorded from
            the start of ``sweep.signal`` (at least as long as the sweep; include
            the system's tail after it).
        sweep: the :class:`Sweep` that was played.
        ir_length: samples per impulse response (>= 1). With ``num_harmonics >= 2``
            the windows must not overlap:
            ``ir_length <= L ln(num_harmonics / (num_harmonics - 1)) * sample_rate``.
        num_harmonics: highest harmonic order to separate (>= 1; 1 = linear only).
        pre_samples: samples kept before each response's time origin (>= 0,
            < ``ir_length``); time zero sits at index ``pre_samples``. A measured
            response is band-limited to the sweep's band, so it rings on both
            sides of time zero, longest near ``f1`` (about 0.1 s for a 20 Hz
            start). With ``pre_samples=0`` that pre-ringing is cut off and the
            magnitude near the band edges errs (about 1 dB at ``2.5 f1`` for a
            20 Hz-20 kHz sweep); for magnitude or phase measurements keep
            ``pre_samples`` of that order (e.g. ``ir_length // 2``).

    Returns:
        A :class:`Deconvolution`: ``linear_ir`` ``(..., ir_length)`` and
        ``num_harmonics - 1`` harmonic IRs ``(..., ir_length)`` (orders 2..num_harmonics),
        in the dtype of ``response`` (float64 inputs stay float64, otherwise float32).

    Raises:
        ValueError: if ``response`` is not a real tensor of at least one dimension
            or is shorter than the sweep.
        ConfigError: on invalid ``ir_length``, ``num_harmonics`` or ``pre_samples``,
            or overlapping harmonic windows.
    """
    if not isinstance(response, Tensor) or response.ndim < 1 or response.is_complex():
        raise ValueError("response must be a real tensor shaped (..., samples)")
    n_sweep = sweep.signal.shape[-1]
    n_resp = response.shape[-1]
    if n_resp < n_sweep:
        raise ValueError(
            f"response has {n_resp} samples, fewer than the sweep's {n_sweep}; "
            f"record the whole sweep (and the system's tail)"
        )
    for name, value, low in (("ir_length", ir_length, 1), ("num_harmonics", num_harmonics, 1), ("pre_samples", pre_samples, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")
    if pre_samples >= ir_length:
        raise ConfigError(f"pre_samples ({pre_samples}) must be smaller than ir_length ({ir_length})")
    sr = float(sweep.sample_rate)
    rate_l = sweep.rate_L
    if num_harmonics >= 2:
        spacing = rate_l * math.log(num_harmonics / (num_harmonics - 1)) * sr
        if ir_length > spacing:
            raise ConfigError(
                f"ir_length={ir_length} overlaps the harmonic responses: orders "
                f"{num_harmonics - 1} and {num_harmonics} are only {spacing:.0f} samples apart "
                f"for this sweep; use a shorter ir_length, fewer harmonics or a longer sweep"
            )

    out_dtype = torch.float64 if response.dtype == torch.float64 else torch.float32
    y = response.to(_F64)
    # circular length: response + anti-causal extent of the inverse filter + windows
    anticausal = int(math.ceil(rate_l * math.log(sr / 2.0 / sweep.f1_hz) * sr))
    n_fft = fast_fft_size(n_resp + anticausal + ir_length + pre_samples + 1)
    freqs = torch.fft.rfftfreq(n_fft, d=1.0 / sr, dtype=_F64).to(y.device)
    spectrum = torch.fft.rfft(y, n=n_fft)
    magnitude, phase = _inverse_polar(freqs, rate_l, sweep.f1_hz, sweep.amplitude)
    magnitude = magnitude / sr  # FFT(y) / fs approximates the continuous-time spectrum
    omega = 2.0 * math.pi * freqs

    irs = []
    for order in range(1, num_harmonics + 1):
        # delay by L ln(k) + pre: the order-k response's time zero lands on index pre_samples
        shift_s = rate_l * math.log(order) + pre_samples / sr
        inverse = torch.polar(magnitude, phase - omega * shift_s)
        irs.append(torch.fft.irfft(spectrum * inverse, n=n_fft)[..., :ir_length].to(out_dtype))
    return Deconvolution(linear_ir=irs[0], harmonic_irs=irs[1:], pre_samples=pre_samples)
