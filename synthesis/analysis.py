"""Measuring sounds: descriptors, decay, fundamental frequency, rank correlation, diversity.

* :func:`describe` gives the descriptors the synthesis head reports and maps over
  control grids (loudness, centroid, decay, ...), built on :mod:`neuromix.core.features`.
* :func:`differentiable_descriptor` gives the differentiable ones (for "dreaming" and
  for gradient control axes).
* :func:`estimate_f0` finds a fundamental to a fraction of a cent: YIN (de Cheveigne &
  Kawahara 2002) for the octave, then a harmonic fit on a zero-padded spectrum.
* :func:`spearman` is Spearman's rank correlation (average ranks for ties).
* :func:`descriptor_vector` / :func:`pairwise_distances` measure how distinct sounds are.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from neuromix.core import features as FE
from neuromix.core.errors import ConfigError

__all__ = [
    "DESCRIPTORS",
    "decay_time",
    "describe",
    "descriptor_vector",
    "differentiable_descriptor",
    "estimate_f0",
    "pairwise_distances",
    "spearman",
]

DESCRIPTORS: dict[str, str] = {
    "loudness_lufs": "integrated loudness, ITU-R BS.1770-4 (LUFS)",
    "rms_db": "RMS level (dBFS)",
    "centroid_hz": "spectral centroid, energy-weighted over frames (Hz)",
    "bandwidth_hz": "spectral bandwidth around the centroid (Hz)",
    "flatness": "spectral flatness (0 tonal .. 1 noise-like)",
    "rolloff_hz": "85 % spectral roll-off (Hz)",
    "crest_db": "crest factor (dB)",
    "width": "stereo width (side/mid energy)",
    "decay_s": "time after the energy peak until the Schroeder energy decay curve has fallen 20 dB (s)",
    "spread_db": "dynamic spread of the 50 ms RMS level (dB)",
}
"""Descriptor name -> meaning and unit."""

DIFFERENTIABLE = ("rms_db", "loudness_lufs", "centroid_hz", "flatness", "bandwidth_hz", "rolloff_hz", "width")


def _batch(x: Tensor) -> Tensor:
    if x.ndim == 2:
        return x[None]
    if x.ndim != 3:
        raise ValueError(f"audio must be (channels, samples) or (batch, channels, samples), got {tuple(x.shape)}")
    return x


def decay_time(x: Tensor, sample_rate: int, drop_db: float = 20.0, frame_s: float = 0.01) -> Tensor:
    """Decay time: from the energy peak until the backward-integrated energy falls ``drop_db``.

    The Schroeder energy decay curve ``EDC(t) = sum_{u >= t} e(u)`` (Schroeder 1965) of
    the frame energies ``e`` (``frame_s`` frames, channels summed) is compared with its
    value at the frame of largest energy; the result is the time until it is ``drop_db``
    lower. A sound that holds until it is cut reads about its remaining length; a
    percussive one reads short.

    Args:
        x: ``(batch, channels, samples)`` or ``(channels, samples)``.
        sample_rate: Hz.
        drop_db: level drop in dB.
        frame_s: frame length in seconds.

    Returns:
        ``(batch,)`` decay time in seconds (float32; not differentiable).
    """
    x = _batch(x).detach().to(torch.float64)
    frame = max(1, int(round(frame_s * sample_rate)))
    n = x.shape[-1] // frame * frame
    if n == 0:
        return torch.zeros(x.shape[0])
    energy = x[..., :n].square().sum(1).reshape(x.shape[0], -1, frame).sum(-1)  # (batch, frames)
    edc = energy.flip(-1).cumsum(-1).flip(-1)
    out = []
    for b in range(x.shape[0]):
        peak = int(energy[b].argmax())
        ref = float(edc[b, peak])
        if ref <= 0.0:
            out.append(0.0)
            continue
        below = torch.nonzero(edc[b, peak:] <= ref * 10.0 ** (-drop_db / 10.0))
        idx = int(below[0]) if below.numel() else edc.shape[1] - peak
        out.append(idx * frame / sample_rate)
    return torch.tensor(out, dtype=torch.float32)


def describe(x: Tensor, sample_rate: int, n_fft: int = 2048, hop_length: int = 512) -> dict[str, Tensor]:
    """All descriptors of :data:`DESCRIPTORS` for ``(batch, channels, samples)`` audio.

    Signals shorter than 0.4 s get a loudness computed from their RMS (K-weighting
    without gating is not defined for them); everything else comes from
    :func:`neuromix.core.features.mix_features`.

    Returns:
        name -> ``(batch,)`` tensor (detached).
    """
    x = _batch(x).detach().to(torch.float32)
    if x.shape[-1] >= int(0.4 * sample_rate) + 1:
        feats = FE.mix_features(x, sample_rate, n_fft, hop_length)
        loud = feats["loudness/integrated_lufs"]
    else:
        feats = FE.mix_features(
            torch.nn.functional.pad(x, (0, int(0.4 * sample_rate) + 1 - x.shape[-1])), sample_rate, n_fft, hop_length
        )
        loud = FE.rms_db(x) - 0.691
    return {
        "loudness_lufs": loud,
        "rms_db": feats["dynamics/rms_db"],
        "centroid_hz": feats["spectral/centroid_hz"],
        "bandwidth_hz": feats["spectral/bandwidth_hz"],
        "flatness": feats["spectral/flatness"],
        "rolloff_hz": feats["spectral/rolloff_hz"],
        "crest_db": feats["dynamics/crest_factor_db"],
        "width": feats["panning/stereo_width"],
        "decay_s": decay_time(x, sample_rate),
        "spread_db": feats["dynamics/dynamic_spread_db"],
        "_bands_db": feats["spectral/band_energy_db"][:, 0],
    }


def differentiable_descriptor(name: str) -> Callable[[Tensor, int], Tensor]:
    """A differentiable descriptor ``f(x (batch, channels, samples), sample_rate) -> (batch,)``.

    Available: ``rms_db``, ``loudness_lufs`` (BS.1770 for >= 0.4 s, else K-free RMS),
    ``centroid_hz``, ``flatness``, ``bandwidth_hz``, ``rolloff_hz``, ``width``.

    Raises:
        ConfigError: unknown or non-differentiable descriptor.
    """
    if name not in DIFFERENTIABLE:
        raise ConfigError(f"descriptor {name!r} is not differentiable; use one of {', '.join(DIFFERENTIABLE)}")

    def fn(x: Tensor, sample_rate: int) -> Tensor:
        if name == "rms_db":
            return FE.rms_db(x)
        if name == "loudness_lufs":
            if x.shape[-1] >= int(0.4 * sample_rate) + 1:
                return FE.integrated_loudness(x, sample_rate)
            return FE.rms_db(x) - 0.691
        if name == "centroid_hz":
            return FE.spectral_centroid(x, sample_rate).mean
        if name == "flatness":
            return FE.spectral_flatness(x, sample_rate).mean
        if name == "bandwidth_hz":
            return FE.spectral_bandwidth(x, sample_rate).mean
        if name == "rolloff_hz":
            return FE.spectral_rolloff(x, sample_rate).mean
        return FE.stereo_width(x)

    return fn


# --------------------------------------------------------------------------- pitch


def _yin(x: np.ndarray, sample_rate: int, fmin: float, fmax: float, threshold: float = 0.15) -> float | None:
    """YIN period estimate (de Cheveigne & Kawahara 2002) of a 1-D frame, in Hz."""
    tau_max = min(int(sample_rate / fmin) + 2, len(x) // 2)
    tau_min = max(2, int(sample_rate / fmax))
    if tau_max <= tau_min + 2:
        return None
    w = len(x) - tau_max
    n_fft = 1 << int(math.ceil(math.log2(len(x) + w)))
    spec_x = np.fft.rfft(x, n_fft)
    spec_w = np.fft.rfft(x[:w], n_fft)
    corr = np.fft.irfft(spec_x * np.conj(spec_w), n_fft)[: tau_max + 1]
    sq = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    energy_tau = sq[np.arange(tau_max + 1) + w] - sq[np.arange(tau_max + 1)]
    diff = sq[w] + energy_tau - 2.0 * corr
    diff[0] = 0.0
    cmnd = np.ones_like(diff)
    running = np.cumsum(diff[1:])
    cmnd[1:] = diff[1:] * np.arange(1, tau_max + 1) / np.maximum(running, 1e-20)
    candidates = np.nonzero(cmnd[tau_min:tau_max] < threshold)[0]
    if candidates.size:
        tau = tau_min + int(candidates[0])
        while tau + 1 < tau_max and cmnd[tau + 1] < cmnd[tau]:
            tau += 1
    else:
        tau = tau_min + int(np.argmin(cmnd[tau_min:tau_max]))
    if 1 <= tau < tau_max:
        a, b, c = cmnd[tau - 1], cmnd[tau], cmnd[tau + 1]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if abs(denom) > 1e-12 else 0.0
        tau_f = tau + float(np.clip(shift, -1, 1))
    else:
        tau_f = float(tau)
    return sample_rate / tau_f


def _refine_harmonics(x: np.ndarray, sample_rate: int, f_guess: float, harmonics: int = 8) -> float:
    """Refine ``f_guess`` from the peaks near its first harmonics (zero-padded Hann spectrum)."""
    n = len(x)
    n_fft = 1 << int(math.ceil(math.log2(n * 8)))
    spec = np.abs(np.fft.rfft(x * np.hanning(n), n_fft)) + 1e-20
    log_mag = np.log(spec)
    bin_hz = sample_rate / n_fft
    top = spec.max()
    estimates, weights = [], []
    for k in range(1, harmonics + 1):
        target = k * f_guess
        if target >= sample_rate / 2 * 0.95:
            break
        half = max(3, int(0.03 * target / bin_hz))  # +-50 cents
        centre = int(round(target / bin_hz))
        lo, hi = max(1, centre - half), min(len(spec) - 2, centre + half)
        if hi <= lo:
            continue
        i = lo + int(np.argmax(spec[lo : hi + 1]))
        if spec[i] < top * 1e-3:
            continue
        a, b, c = log_mag[i - 1], log_mag[i], log_mag[i + 1]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if abs(denom) > 1e-12 else 0.0
        estimates.append((i + shift) * bin_hz / k)
        weights.append(spec[i] * k)  # higher harmonics give finer estimates
    if not estimates:
        return f_guess
    return float(np.average(estimates, weights=weights))


def estimate_f0(
    x: Tensor,
    sample_rate: int,
    *,
    fmin: float = 30.0,
    fmax: float = 2000.0,
    start_s: float | None = None,
    seconds: float = 0.5,
) -> float | None:
    """Fundamental frequency of a (mostly steady) pitched sound, in Hz.

    YIN picks the period on a frame of the mono mix; octave errors are corrected from
    the partials present (see :func:`_octave_check`: halved while a partial sits at an
    odd multiple of half the candidate, doubled while only even multiples hold
    partials); the estimate is then refined by parabolic interpolation of the peaks near its first 8
    harmonics in a zero-padded Hann spectrum of the same segment (weighted mean of
    ``f_k / k``), which is accurate to well under a cent on steady tones.

    Args:
        x: ``(channels, samples)`` or ``(samples,)`` audio.
        sample_rate: Hz.
        fmin, fmax: search range in Hz.
        start_s: start of the analysed segment (default: a quarter into the signal).
        seconds: length of the segment (clipped to the signal).

    Returns:
        f0 in Hz, or None when nothing periodic is found (silence).
    """
    mono = x.detach().to(torch.float64)
    if mono.ndim == 2:
        mono = mono.mean(0)
    arr = mono.numpy()
    n = len(arr)
    seg = min(n, int(seconds * sample_rate))
    start = int((start_s if start_s is not None else 0.25 * n / sample_rate) * sample_rate)
    start = max(0, min(start, n - seg))
    frame = arr[start : start + seg]
    if frame.size < 64 or np.sqrt(np.mean(frame**2)) < 1e-6:
        return None
    guess = _yin(frame, sample_rate, fmin, fmax)
    if guess is None:
        return None
    guess = _octave_check(frame, sample_rate, guess, fmin, fmax)
    return _refine_harmonics(frame, sample_rate, guess)


def _octave_check(x: np.ndarray, sample_rate: int, f: float, fmin: float, fmax: float) -> float:
    """Correct octave errors of a period estimate from the partials present.

    A *partial* at ``g`` is a spectral peak within 1 % of ``g`` holding at least 0.1 % of
    the power (-30 dB) of the strongest harmonic of ``f`` and standing 10 dB over the median
    of the spectrum within 25 % of ``g``. The estimate is halved while the partials at odd
    multiples of ``f / 2`` together hold at least 1 % of the power of the first 8 harmonics
    of ``f`` (the period is then twice as long; a single faint subharmonic under a rich
    harmonic spectrum does not move the perceived pitch) and doubled while no odd
    multiple of ``f`` holds a partial but an even one does.
    """
    n_fft = 1 << int(math.ceil(math.log2(len(x) * 4)))
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)), n_fft)) ** 2
    bin_hz = sample_rate / n_fft
    nyquist = sample_rate / 2.0

    def peak(freq: float, rel: float) -> float:
        lo, hi = int(freq * (1 - rel) / bin_hz), int(math.ceil(freq * (1 + rel) / bin_hz)) + 1
        return float(power[max(0, lo) : min(len(power), hi)].max()) if lo < len(power) else 0.0

    def median(freq: float) -> float:
        lo, hi = int(freq * 0.75 / bin_hz), int(freq * 1.25 / bin_hz) + 1
        return float(np.median(power[max(0, lo) : min(len(power), hi)])) if lo < len(power) else 0.0

    def partial(freq: float, reference: float) -> bool:
        if freq >= nyquist * 0.95:
            return False
        p = peak(freq, 0.01)
        return p >= 1e-3 * reference and p >= 10.0 * median(freq)

    def subharmonic_share(f: float, strongest: float) -> float:
        harmonics = sum(peak(k * f, 0.01) for k in range(1, 9) if k * f < nyquist * 0.95)
        odd_halves = sum(
            peak(g, 0.01) for g in ((2 * k + 1) * f / 2.0 for k in range(8)) if partial(g, strongest)
        )
        return odd_halves / max(harmonics, 1e-30)

    for _ in range(3):
        strongest = max((peak(k * f, 0.01) for k in range(1, 9) if k * f < nyquist), default=0.0)
        if strongest <= 0.0:
            return f
        if f / 2.0 >= fmin and subharmonic_share(f, strongest) >= 1e-2:
            f /= 2.0
            continue
        odd = any(partial(k * f, strongest) for k in (1, 3, 5, 7))
        even = any(partial(k * f, strongest) for k in (2, 4, 6, 8))
        if not odd and even and 2.0 * f <= fmax:
            f *= 2.0
            continue
        break
    return f


def cents(f: float, reference: float) -> float:
    """Interval from ``reference`` to ``f`` in cents."""
    return 1200.0 * math.log2(f / reference)


# --------------------------------------------------------------------------- statistics


def _ranks(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    order = np.argsort(arr, kind="mergesort")
    ranks = np.empty(len(arr))
    ranks[order] = np.arange(len(arr), dtype=np.float64)
    # average the ranks of ties
    sorted_vals = arr[order]
    i = 0
    while i < len(arr):
        j = i
        while j + 1 < len(arr) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        if j > i:
            ranks[order[i : j + 1]] = 0.5 * (i + j)
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of two equal-length sequences (0.0 when one is constant)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("spearman needs two sequences of the same length >= 2")
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


VECTOR_FIELDS = ("centroid", "bandwidth", "flatness", "rolloff", "crest", "spread", "width", "decay", "bands")


def descriptor_vector(desc: dict[str, Tensor], item: int = 0) -> np.ndarray:
    """A level-independent descriptor vector for comparing timbres.

    Components (each scaled so one unit is a clearly audible difference): log2 of
    centroid, bandwidth and roll-off (octaves), flatness in dB / 10, crest factor / 6 dB,
    dynamic spread / 3 dB, stereo width x 2, log2 of the decay time, and the octave-band
    profile of the mid signal relative to its strongest band (dB / 10, floored at -60 dB).
    """

    def f(key: str) -> float:
        return float(desc[key][item])

    bands = desc["_bands_db"][item].detach().double().numpy()
    bands = np.maximum(bands - bands.max(), -60.0) / 10.0
    head = [
        math.log2(max(f("centroid_hz"), 20.0) / 1000.0),
        math.log2(max(f("bandwidth_hz"), 20.0) / 1000.0),
        10.0 * math.log10(max(f("flatness"), 1e-6)) / 10.0,
        math.log2(max(f("rolloff_hz"), 20.0) / 1000.0),
        f("crest_db") / 6.0,
        f("spread_db") / 3.0,
        2.0 * f("width"),
        math.log2(max(f("decay_s"), 0.02)),
    ]
    return np.concatenate([np.asarray(head), bands])


def pairwise_distances(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """Euclidean distance matrix ``(n, n)`` between descriptor vectors."""
    mat = np.stack(vectors)
    diff = mat[:, None, :] - mat[None, :, :]
    return np.sqrt((diff**2).sum(-1))
