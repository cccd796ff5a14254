"""Differentiable descriptors of mixes and tracks.

Every function takes audio shaped ``(batch, channels, samples)`` (float32 or float64) and the
sample rate second, returns tensors with the batch first, and is differentiable with respect
to ``x`` (small ``eps`` terms keep logs and ratios finite at digital silence). Batch items are
processed independently: a batched call equals item-by-item calls.

Groups:

* loudness: :func:`integrated_loudness`, :func:`short_term_loudness` (ITU-R BS.1770-4), with the
  K-weighting pre-filter applied as a frequency response (:func:`k_weighting`);
* dynamics: :func:`rms_db`, :func:`peak_db`, :func:`crest_factor_db`, :func:`framewise_rms_db`,
  :func:`dynamic_spread`;
* spectral (per STFT frame plus an energy-weighted mean, :class:`Framewise`):
  :func:`spectral_centroid`, :func:`spectral_bandwidth`, :func:`spectral_flatness`,
  :func:`spectral_rolloff`; and :func:`band_energies` (octave or Bark bands, mid/side);
* stereo: :func:`stereo_width`, :func:`stereo_imbalance`, :func:`panning_index`,
  :func:`panning_spectrum` (Avendano 2003; Tzanetakis et al. 2007);
* :func:`mix_features`: all of the above as one flat dict whose keys are
  ``"<category>/<feature>"`` (see :data:`FEATURE_CATEGORIES`), used by the feature loss,
  evaluation and goal-oriented mixing.

Conventions shared by the spectral and stereo features: a periodic Hann window, ``center=True``
with zero padding at the edges, and power spectra scaled so that the sum over the one-sided bins
of a frame equals the frame's (window-weighted) mean square. Mid and side are
``M = (L + R) / 2`` and ``S = (L - R) / 2`` (a mono signal duplicated to both channels has
``M`` equal to the signal). Pan positions run from -1 (hard left) to +1 (hard right).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from neuromix.core.dsp.utils import check_audio
from neuromix.core.dsp.utils import fast_fft_size

__all__ = [
    "EPS",
    "FEATURE_CATEGORIES",
    "Framewise",
    "band_edges",
    "band_energies",
    "crest_factor_db",
    "dynamic_spread",
    "features_by_category",
    "fft_frequencies",
    "framewise_rms_db",
    "integrated_loudness",
    "k_weighting",
    "k_weighting_coefficients",
    "k_weighting_response",
    "mix_features",
    "panning_index",
    "panning_spectrum",
    "peak_db",
    "power_spectrogram",
    "rms_db",
    "short_term_loudness",
    "spectral_bandwidth",
    "spectral_centroid",
    "spectral_flatness",
    "spectral_rolloff",
    "stereo_imbalance",
    "stereo_width",
]

EPS = 1e-12
"""Power added inside logs and denominators: keeps values and gradients finite at silence
(a power floor of -120 dB)."""

BandSpec = Literal["octave", "bark", "coarse"] | Sequence[float]
"""Frequency bands: ``"octave"`` (centres 1 kHz * 2**k, k = -5..4, edges at centre * 2**+-0.5),
``"bark"`` (Zwicker's 24 critical bands, edges 0, 100, ..., 15500 Hz), ``"coarse"`` (0-250,
250-2800 and 2800 Hz-Nyquist, the three panning-spectrum regions of Tzanetakis et al. 2007), or
an ascending sequence of band edges in Hz. Bands starting at or above Nyquist are dropped and the
last kept band is cut at Nyquist, so the number of bands can depend on the sample rate."""

_BARK_EDGES_HZ = (
    0.0, 100.0, 200.0, 300.0, 400.0, 510.0, 630.0, 770.0, 920.0, 1080.0, 1270.0, 1480.0, 1720.0,
    2000.0, 2320.0, 2700.0, 3150.0, 3700.0, 4400.0, 5300.0, 6400.0, 7700.0, 9500.0, 12000.0,
    15500.0,
)  # fmt: skip
_COARSE_EDGES_HZ = (0.0, 250.0, 2800.0, math.inf)

_CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # BS.1770-4 Table 3: L, R, C, Ls, Rs
_LOUDNESS_OFFSET = -0.691  # BS.1770 eq. (2)
_ABSOLUTE_GATE_LUFS = -70.0
_RELATIVE_GATE_LU = -10.0
_BLOCK_S = 0.4
_OVERLAP = 0.75


class Framewise(NamedTuple):
    """A framewise descriptor and its summary.

    Attributes:
        frames: ``(batch, frames)`` value per STFT frame.
        mean: ``(batch,)`` mean over frames weighted by each frame's energy (silent frames,
            whose value is meaningless, do not count).
    """

    frames: Tensor
    mean: Tensor


# --------------------------------------------------------------------------------------------
# K-weighting and loudness (ITU-R BS.1770-4)
# --------------------------------------------------------------------------------------------

# Analog prototypes of the two K-weighting stages, fitted to the 48 kHz coefficients of
# BS.1770-4 Tables 1 and 2 (the parametrisation is B. De Man's, also used by libebur128).
_SHELF_F0_HZ = 1681.974450955533
_SHELF_GAIN_DB = 3.999843853973347
_SHELF_Q = 0.7071752369554196
_SHELF_VB_EXPONENT = 0.4996667741545416
_HIGHPASS_F0_HZ = 38.13547087602444
_HIGHPASS_Q = 0.5003270373238773


def k_weighting_coefficients(
    sample_rate: float,
) -> tuple[tuple[tuple[float, float, float], tuple[float, float, float]], ...]:
    """Biquad coefficients of the BS.1770 K-weighting pre-filter at any sample rate.

    Both stages are discretised from their analog prototypes with the bilinear transform,
    pre-warped at the stage's frequency: stage 1 is the high shelf
    ``(Vh s^2 + Vb (w0/Q) s + w0^2) / (s^2 + (w0/Q) s + w0^2)`` (head acoustics, about +4 dB above
    2 kHz), stage 2 the RLB high-pass ``g s^2 / (s^2 + (w0/Q) s + w0^2)``. At 48 kHz they
    reproduce BS.1770-4 Tables 1 and 2 (to ~1e-12), including the table's high-pass numerator
    ``(1, -2, 1)``. That numerator gives the high-pass a pass-band gain ``g`` of
    ``1 + K/Q + K^2`` (``K = tan(pi f0 / fs)``), which is +0.043 dB at 48 kHz; the gain is
    held at its 48 kHz value at every rate, so readings do not depend on the rate (libebur128
    keeps ``(1, -2, 1)`` at every rate, which lets the gain drift: +0.26 dB at 8 kHz; the two
    agree within 0.004 dB at 44.1 kHz and exactly at 48 kHz). pyloudnorm's default meter uses
    RBJ-cookbook biquads with a unity-gain high-pass instead and reads about 0.04 LU lower.

    Args:
        sample_rate: sampling rate in Hz (> 2 * 1682 Hz).

    Returns:
        ``((b_shelf, a_shelf), (b_highpass, a_highpass))``, each a 3-tuple of python floats with
        ``a[0] == 1``. Not differentiable (constants).

    Raises:
        ValueError: if the sample rate is too low for the shelf.
    """
    fs = float(sample_rate)
    if not fs > 2.0 * _SHELF_F0_HZ:
        raise ValueError(f"sample_rate must exceed {2 * _SHELF_F0_HZ:.0f} Hz for K-weighting, got {fs}")
    k = math.tan(math.pi * _SHELF_F0_HZ / fs)
    vh = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    vb = vh**_SHELF_VB_EXPONENT
    a0 = 1.0 + k / _SHELF_Q + k * k
    b_shelf = ((vh + vb * k / _SHELF_Q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / _SHELF_Q + k * k) / a0)
    a_shelf = (1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _SHELF_Q + k * k) / a0)

    def _highpass_a0(rate: float) -> float:
        kk = math.tan(math.pi * _HIGHPASS_F0_HZ / rate)
        return 1.0 + kk / _HIGHPASS_Q + kk * kk

    k = math.tan(math.pi * _HIGHPASS_F0_HZ / fs)
    a0 = _highpass_a0(fs)
    g = _highpass_a0(48000.0)  # pass-band gain of the table's (1, -2, 1) numerator at 48 kHz
    b_hp = (g / a0, -2.0 * g / a0, g / a0)
    a_hp = (1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _HIGHPASS_Q + k * k) / a0)
    return (b_shelf, a_shelf), (b_hp, a_hp)


def k_weighting_response(sample_rate: float, n_fft: int, *, dtype: torch.dtype = torch.float32,
                         device: torch.device | str | None = None) -> Tensor:
    """Complex frequency response of the K-weighting filter on an ``rfft`` grid.

    Args:
        sample_rate: sampling rate in Hz.
        n_fft: FFT size of the grid.
        dtype: real dtype of the signals it will be applied to (the response is computed in
            float64 and returned as the matching complex dtype).
        device: device of the result.

    Returns:
        ``(n_fft // 2 + 1,)`` complex tensor, ``H(exp(j 2 pi k / n_fft))`` of the cascade of
        :func:`k_weighting_coefficients`. Not differentiable (constant).
    """
    omega = torch.arange(n_fft // 2 + 1, dtype=torch.float64, device=device) * (2.0 * math.pi / n_fft)
    z1 = torch.polar(torch.ones_like(omega), -omega)  # z^-1
    z2 = z1 * z1
    response = torch.ones_like(z1)
    for b, a in k_weighting_coefficients(sample_rate):
        response = response * (b[0] + b[1] * z1 + b[2] * z2) / (a[0] + a[1] * z1 + a[2] * z2)
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    return response.to(complex_dtype)


def k_weighting(x: Tensor, sample_rate: float) -> Tensor:
    """Apply the BS.1770 K-weighting pre-filter (shelf + RLB high-pass).

    The causal IIR cascade (zero initial state) is applied as its frequency response with one
    zero-padded ``rfft``/``irfft`` pair per channel. The padding (0.25 s plus rounding up to a
    fast FFT size) exceeds the filter's effective impulse-response length by a wide margin, so
    the circular wrap-around is far below float32 precision and the output equals
    ``scipy.signal.lfilter`` of the two biquads. Much faster than time-domain biquads for long
    signals.

    Args:
        x: ``(batch, channels, samples)`` audio.
        sample_rate: sampling rate in Hz.

    Returns:
        ``(batch, channels, samples)`` K-weighted audio, same dtype. Differentiable.
    """
    check_audio(x)
    n = x.shape[-1]
    n_fft = fast_fft_size(n + int(math.ceil(0.25 * sample_rate)))
    response = k_weighting_response(sample_rate, n_fft, dtype=x.dtype, device=x.device)
    spectrum = torch.fft.rfft(x, n=n_fft)
    return torch.fft.irfft(spectrum * response, n=n_fft)[..., :n]


def _channel_weighted_power(y: Tensor) -> Tensor:
    """``sum_c G_c y_c[n]^2`` with the BS.1770 channel weights -> ``(batch, samples)``."""
    channels = y.shape[1]
    if channels > len(_CHANNEL_WEIGHTS):
        raise ValueError(f"loudness supports 1 to 5 channels (L, R, C, Ls, Rs), got {channels}")
    weights = torch.tensor(_CHANNEL_WEIGHTS[:channels], dtype=y.dtype, device=y.device)
    return torch.einsum("bcn,c->bn", y * y, weights)


def _window_sums(power: Tensor, starts: Sequence[int], ends: Sequence[int]) -> Tensor:
    """Sums of ``power`` ``(batch, samples)`` over ``[start, end)`` windows -> ``(batch, windows)``.

    Uses a float64 cumulative sum (exact enough for 30 s and more; differentiable).
    """
    cumsum = torch.nn.functional.pad(power.to(torch.float64).cumsum(-1), (1, 0))
    lo = torch.tensor(list(starts), dtype=torch.long, device=power.device)
    hi = torch.tensor(list(ends), dtype=torch.long, device=power.device)
    return (cumsum[:, hi] - cumsum[:, lo]).to(power.dtype)


def _gating_blocks(num_samples: int, sample_rate: float) -> tuple[list[int], list[int]]:
    """Start/end samples of the 400 ms, 75 %-overlap gating blocks (BS.1770-4 eq. 3).

    The block count and bounds are computed exactly like pyloudnorm (rounded block count, each
    bound truncated to an integer sample), so both meters integrate the same samples.
    """
    duration = num_samples / sample_rate
    step = 1.0 - _OVERLAP
    num_blocks = int(round((duration - _BLOCK_S) / (_BLOCK_S * step))) + 1
    starts = [int(_BLOCK_S * (j * step) * sample_rate) for j in range(num_blocks)]
    ends = [min(int(_BLOCK_S * (j * step + 1) * sample_rate), num_samples) for j in range(num_blocks)]
    return starts, ends


def integrated_loudness(x: Tensor, sample_rate: float) -> Tensor:
    """Gated integrated loudness per ITU-R BS.1770-4, in LUFS (= LKFS).

    K-weighting (:func:`k_weighting`), mean square per 400 ms block with 75 % overlap, channel
    weights 1.0 for L, R, C and 1.41 for Ls, Rs (channel order L, R, C, Ls, Rs; a mono signal is
    one channel of weight 1), block loudness ``-0.691 + 10 log10(sum_c G_c z_c)``, an absolute
    gate at -70 LUFS and a relative gate 10 LU below the loudness of the blocks passing the
    absolute gate.

    Differentiability: the gates are step functions of the signal, so they are computed as
    boolean block masks under ``torch.no_grad`` and the loudness is differentiated through the
    power of the selected blocks; this is the exact gradient wherever it exists (everywhere
    except where a block sits exactly on a threshold). Where no block passes the gates (silence
    or near-silence) the mean over all blocks is used instead of returning -inf, and ``EPS`` is
    added to the power, so the value (-120.7 LUFS at digital silence) and its gradient stay
    finite.

    Args:
        x: ``(batch, channels, samples)`` audio, 1 to 5 channels, at least 400 ms long.
        sample_rate: sampling rate in Hz.

    Returns:
        ``(batch,)`` integrated loudness in LUFS. Differentiable.

    Raises:
        ValueError: for more than 5 channels or a signal shorter than one 400 ms block.
    """
    _, _, n = check_audio(x)
    starts, ends = _gating_blocks(n, sample_rate)
    if n < _BLOCK_S * sample_rate or not starts:
        raise ValueError(
            f"integrated loudness needs at least one 400 ms gating block; the signal has {n} "
            f"samples ({n / sample_rate:.3f} s at {sample_rate} Hz)"
        )
    power = _channel_weighted_power(k_weighting(x, sample_rate))
    z = _window_sums(power, starts, ends) / (_BLOCK_S * sample_rate)  # (batch, blocks)
    with torch.no_grad():
        block_lufs = _LOUDNESS_OFFSET + 10.0 * torch.log10(z)
        absolute = block_lufs >= _ABSOLUTE_GATE_LUFS
        mean_abs = (z * absolute).sum(-1) / absolute.sum(-1).clamp_min(1)
        relative_gate = _LOUDNESS_OFFSET + 10.0 * torch.log10(mean_abs) + _RELATIVE_GATE_LU
        gate = absolute & (block_lufs > relative_gate[:, None]) & (block_lufs > _ABSOLUTE_GATE_LUFS)
        none_passed = ~gate.any(-1, keepdim=True)
        mask = torch.where(none_passed, torch.ones_like(gate), gate).to(z.dtype)
    mean_power = (z * mask).sum(-1) / mask.sum(-1)
    return _LOUDNESS_OFFSET + 10.0 * torch.log10(mean_power + EPS)


def short_term_loudness(x: Tensor, sample_rate: float, window_s: float = 3.0, hop_s: float = 1.0) -> Tensor:
    """Ungated short-term loudness (BS.1770-4 / EBU Tech 3341 "S"), in LUFS per window.

    K-weighted, channel-weighted mean square over sliding windows of ``window_s`` seconds every
    ``hop_s`` seconds, ``-0.691 + 10 log10(. + EPS)``. A signal shorter than one window gives a
    single frame over the whole signal.

    Args:
        x: ``(batch, channels, samples)`` audio, 1 to 5 channels.
        sample_rate: sampling rate in Hz.
        window_s: window length in seconds (3 s short-term; 0.4 s gives momentary loudness).
        hop_s: hop between windows in seconds.

    Returns:
        ``(batch, frames)`` loudness in LUFS, ``frames = 1 + (samples - window) // hop``
        (at least 1). Differentiable.
    """
    _, _, n = check_audio(x)
    window = max(1, int(round(window_s * sample_rate)))
    hop = max(1, int(round(hop_s * sample_rate)))
    power = _channel_weighted_power(k_weighting(x, sample_rate))
    ms = _framewise_mean_square(power, window, hop)
    return _LOUDNESS_OFFSET + 10.0 * torch.log10(ms + EPS)


# --------------------------------------------------------------------------------------------
# dynamics
# --------------------------------------------------------------------------------------------


def _framewise_mean_square(power: Tensor, frame: int, hop: int) -> Tensor:
    """Mean of ``power`` ``(batch, samples)`` over frames -> ``(batch, frames)``.

    ``frames = 1 + (samples - frame) // hop``; a signal shorter than a frame gives one frame
    over all of it.
    """
    n = power.shape[-1]
    if n <= frame:
        return power.mean(-1, keepdim=True)
    num = 1 + (n - frame) // hop
    starts = [j * hop for j in range(num)]
    return _window_sums(power, starts, [s + frame for s in starts]) / frame


def rms_db(x: Tensor) -> Tensor:
    """RMS level in dBFS: ``10 log10(mean square over channels and samples + EPS)``.

    A full-scale sine reads -3.01 dB. Differentiable.

    Args:
        x: ``(batch, channels, samples)`` audio.

    Returns:
        ``(batch,)`` RMS level in dB.
    """
    check_audio(x)
    return 10.0 * torch.log10(x.square().mean(dim=(1, 2)) + EPS)


def peak_db(x: Tensor) -> Tensor:
    """Sample peak level in dBFS: ``20 log10(max |x| over channels and samples)``.

    Computed as ``10 log10(max x^2 + EPS)``. Differentiable (the gradient flows to the
    peak sample).

    Args:
        x: ``(batch, channels, samples)`` audio.

    Returns:
        ``(batch,)`` peak level in dB.
    """
    check_audio(x)
    return 10.0 * torch.log10(x.square().amax(dim=(1, 2)) + EPS)


def crest_factor_db(x: Tensor) -> Tensor:
    """Crest factor, :func:`peak_db` minus :func:`rms_db`, in dB (3.01 dB for a sine).

    Args:
        x: ``(batch, channels, samples)`` audio.

    Returns:
        ``(batch,)`` crest factor in dB. Differentiable.
    """
    return peak_db(x) - rms_db(x)


def framewise_rms_db(x: Tensor, sample_rate: float, frame_ms: float = 50.0, hop_ms: float = 25.0) -> Tensor:
    """Short-time RMS level in dBFS (mean square over channels and the frame).

    Args:
        x: ``(batch, channels, samples)`` audio.
        sample_rate: sampling rate in Hz.
        frame_ms: frame length in milliseconds.
        hop_ms: hop in milliseconds.

    Returns:
        ``(batch, frames)`` level in dB, ``frames = 1 + (samples - frame) // hop`` (at least 1).
        Differentiable.
    """
    check_audio(x)
    frame = max(1, int(round(frame_ms * 1e-3 * sample_rate)))
    hop = max(1, int(round(hop_ms * 1e-3 * sample_rate)))
    ms = _framewise_mean_square(x.square().mean(1), frame, hop)
    return 10.0 * torch.log10(ms + EPS)


def dynamic_spread(x: Tensor, sample_rate: float, frame_ms: float = 50.0, hop_ms: float = 25.0) -> Tensor:
    """Dynamic spread: mean absolute deviation of the short-time RMS level around its mean, in dB.

    ``mean_t |r_t - mean_t r_t|`` with ``r_t`` = :func:`framewise_rms_db`. 0 dB for a stationary
    signal; grows with level changes between frames (a signal alternating between two levels
    ``d`` dB apart for equal times reads ``d / 2``). Silent frames count at the -120 dB floor, so
    a track with long silences has a large spread by design.

    Args:
        x: ``(batch, channels, samples)`` audio.
        sample_rate: sampling rate in Hz.
        frame_ms: frame length in milliseconds.
        hop_ms: hop in milliseconds.

    Returns:
        ``(batch,)`` spread in dB. Differentiable.
    """
    levels = framewise_rms_db(x, sample_rate, frame_ms, hop_ms)
    return (levels - levels.mean(-1, keepdim=True)).abs().mean(-1)


# --------------------------------------------------------------------------------------------
# spectral
# --------------------------------------------------------------------------------------------


def fft_frequencies(sample_rate: float, n_fft: int, *, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> Tensor:
    """Centre frequencies of the one-sided FFT bins, ``(n_fft // 2 + 1,)`` in Hz."""
    return torch.arange(n_fft // 2 + 1, dtype=dtype, device=device) * (sample_rate / n_fft)


def _stft(x: Tensor, n_fft: int, hop_length: int) -> Tensor:
    """Complex STFT of every channel: ``(batch, channels, n)`` -> ``(batch, channels, frames, bins)``.

    Periodic Hann window, ``center=True`` with zero padding, scaled so that
    ``sum_k c_k |X_k|^2`` (``c_k = 2`` except DC and Nyquist) is the frame's window-weighted
    mean square.
    """
    b, c, n = check_audio(x)
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    spec = torch.stft(x.reshape(b * c, n), n_fft, hop_length=hop_length, window=window, center=True,
                      pad_mode="constant", return_complex=True)
    spec = spec * (1.0 / math.sqrt(n_fft * float(window.square().sum())))
    return spec.reshape(b, c, spec.shape[-2], spec.shape[-1]).transpose(-1, -2)


def _onesided_weights(n_fft: int, like: Tensor) -> Tensor:
    """``c_k``: 2 for interior bins, 1 for DC and (even ``n_fft``) Nyquist -> ``(bins,)``."""
    w = torch.full((n_fft // 2 + 1,), 2.0, dtype=like.dtype, device=like.device)
    w[0] = 1.0
    if n_fft % 2 == 0:
        w[-1] = 1.0
    return w


def _power(spec: Tensor, n_fft: int) -> Tensor:
    """Mean-square density ``c_k |X_k|^2`` of a scaled complex STFT (any leading shape)."""
    power = spec.real.square() + spec.imag.square()
    return power * _onesided_weights(n_fft, power)


def power_spectrogram(x: Tensor, sample_rate: float, n_fft: int = 2048, hop_length: int = 512) -> Tensor:
    """Power spectrogram per channel, scaled as a mean-square density.

    Periodic Hann window of ``n_fft`` samples, ``center=True`` with zero padding. The sum over
    bins of one frame equals that frame's window-weighted mean square (Parseval), so a
    full-scale sine contributes 0.5 in total.

    Args:
        x: ``(batch, channels, samples)`` audio.
        sample_rate: sampling rate in Hz (kept for a uniform signature; bins are
            ``k * sample_rate / n_fft`` Hz, see :func:`fft_frequencies`).
        n_fft: FFT size.
        hop_length: hop in samples.

    Returns:
        ``(batch, channels, frames, n_fft // 2 + 1)`` power. Differentiable.
    """
    del sample_rate
    return _power(_stft(x, n_fft, hop_length), n_fft)


def _weighted_frame_mean(values: Tensor, energy: Tensor) -> Tensor:
    """Energy-weighted mean over frames: ``(batch, frames)`` x2 -> ``(batch,)``."""
    return (values * energy).sum(-1) / (energy.sum(-1) + EPS)


def _centroid(power: Tensor, freqs: Tensor) -> Tensor:
    return (power * freqs).sum(-1) / (power.sum(-1) + EPS)


def _bandwidth(power: Tensor, freqs: Tensor) -> Tensor:
    centroid = _centroid(power, freqs)
    var = (power * (freqs - centroid[..., None]).square()).sum(-1) / (power.sum(-1) + EPS)
    return torch.sqrt(var + EPS)


def _flatness(power: Tensor) -> Tensor:
    geometric = torch.exp(torch.log(power + EPS).mean(-1))
    return geometric / (power.mean(-1) + EPS)


def _rolloff(power: Tensor, bin_hz: float, pct: float) -> Tensor:
    total = power.sum(-1, keepdim=True)
    cum = power.cumsum(-1) / (total + EPS)
    prev = torch.nn.functional.pad(cum[..., :-1], (1, 0))
    fraction = ((pct - prev) / (cum - prev + EPS)).clamp(0.0, 1.0)
    return (bin_hz * (fraction.sum(-1) - 0.5)).clamp_min(0.0)


def _mean_power(x: Tensor, n_fft: int, hop_length: int) -> Tensor:
    """Channel-averaged power spectrogram ``(batch, frames, bins)``."""
    return _power(_stft(x, n_fft, hop_length), n_fft).mean(1)


def spectral_centroid(x: Tensor, sample_rate: float, n_fft: int = 2048, hop_length: int = 512) -> Framewise:
    """Spectral centroid, the power-weighted mean frequency of each frame, in Hz.

    Computed on the channel-averaged power spectrogram (:func:`power_spectrogram`); 0 Hz for
    a silent frame.

    Args:
        x: ``(batch, channels, samples)`` audio.
        sample_rate: sampling rate in Hz.
        n_fft: FFT size.
        hop_length: hop in samples.

    Returns:
        :class:`Framewise` with ``frames`` ``(batch, frames)`` Hz and the energy-weighted
        ``mean`` ``(batch,)`` Hz. Differentiable.
    """
    power = _mean_power(x, n_fft, hop_length)
    frames = _centroid(power, fft_frequencies(sample_rate, n_fft, dtype=power.dtype, device=power.device))
    return Framewise(frames, _weighted_frame_mean(frames, power.sum(-1)))


def spectral_bandwidth(x: Tensor, sample_rate: float, n_fft: int = 2048, hop_length: int = 512) -> Framewise:
    """Spectral bandwidth: power-weighted standard deviation of frequency around the centroid, Hz.

    ``sqrt(sum_k P_k (f_k - centroid)^2 / sum_k P_k)`` per frame (librosa's ``p = 2``), on the
    channel-averaged power spectrogram.

    Args:
        x: ``(batch, channels, samples)`` audio.
        sample_rate: sampling rate in Hz.
        n_fft: FFT size.
        hop_length: hop in samples.

    Returns:
        :class:`Framewise` in Hz (``frames`` ``(batch, frames)``, ``mean`` ``(batch,)``).
        Differentiable.
    """
    power = _mean_power(x, n_fft, hop_length)
    frames = _bandwidth(power, fft_frequencies(sample_rate, n_fft, dtype=power.dtype, device=power.device))
    return Framewise(frames, _weighted_frame_mean(frames, power.sum(-1)))


def spectral_flatness(x: Tensor, sample_rate: float, n_fft: int = 2048, hop_length: int = 512) -> Framewise:
    """Spectral flatness (Wiener entropy): geometric over arithmetic mean of the power spectrum.

    Per frame over all one-sided bins of the channel-averaged power spectrogram, with ``EPS``
    added to the power. In [0, 1]: about 0.56 (``exp(-Euler gamma)``) for one channel of white
    noise (about 0.76 for two independent noise channels, whose averaged power fluctuates less),
    near 0 for a sine.

    Args:
        x: ``(batch, channels, samples)`` audio.
        sample_rate: sampling rate in Hz (unused by the value; kept for a uniform signature).
        n_fft: FFT size.
        hop_length: hop in samples.

    Returns:
        :class:`Framewise`, unitless (``frames`` ``(batch, frames)``, ``mean`` ``(batch,)``).
        Differentiable.
    """
    del sample_rate
    power = _mean_power(x, n_fft, hop_length)
    frames = _flatness(power)
    return Framewise(frames, _weighted_frame_mean(frames, power.sum(-1)))


def spectral_rolloff(x: Tensor, sample_rate: float, pct: float = 0.85, n_fft: int = 2048,
                     hop_length: int = 512) -> Framewise:
    """Spectral roll-off: the frequency below which ``pct`` of a frame's power lies, in Hz.

    Differentiable version of librosa's roll-off: each bin's power is spread uniformly over its
    width ``[f_k - df/2, f_k + df/2]`` and the crossing of the cumulative power with ``pct`` is
    interpolated linearly inside the crossing bin, so the result moves continuously with the
    spectrum (librosa returns the crossing bin's centre; the two agree within half a bin).

    Args:
        x: ``(batch, channels, samples)`` audio.
        sample_rate: sampling rate in Hz.
        pct: fraction of the power, in (0, 1).
        n_fft: FFT size.
        hop_length: hop in samples.

    Returns:
        :class:`Framewise` in Hz (``frames`` ``(batch, frames)``, ``mean`` ``(batch,)``).
        Differentiable.
    """
    if not 0.0 < pct < 1.0:
        raise ValueError(f"pct must be in (0, 1), got {pct}")
    power = _mean_power(x, n_fft, hop_length)
    frames = _rolloff(power, sample_rate / n_fft, pct)
    return Framewise(frames, _weighted_frame_mean(frames, power.sum(-1)))


def band_edges(bands: BandSpec, sample_rate: float) -> list[tuple[float, float]]:
    """Lower and upper edges in Hz of the bands of a :data:`BandSpec` at ``sample_rate``.

    Bands whose lower edge is at or above Nyquist are dropped; the last band is cut at Nyquist.

    Raises:
        ValueError: for an unknown band name or edges that are not ascending.
    """
    nyquist = sample_rate / 2.0
    if isinstance(bands, str):
        if bands == "octave":
            pairs = [(1000.0 * 2.0 ** (k - 0.5), 1000.0 * 2.0 ** (k + 0.5)) for k in range(-5, 5)]
        elif bands == "bark":
            pairs = list(zip(_BARK_EDGES_HZ[:-1], _BARK_EDGES_HZ[1:]))
        elif bands == "coarse":
            pairs = list(zip(_COARSE_EDGES_HZ[:-1], _COARSE_EDGES_HZ[1:]))
        else:
            raise ValueError(f"bands must be 'octave', 'bark', 'coarse' or a sequence of edges, got {bands!r}")
    else:
        edges = [float(e) for e in bands]
        if len(edges) < 2 or any(b <= a for a, b in zip(edges[:-1], edges[1:])):
            raise ValueError(f"band edges must be at least two ascending frequencies in Hz, got {edges}")
        pairs = list(zip(edges[:-1], edges[1:]))
    kept = [(lo, min(hi, nyquist)) for lo, hi in pairs if lo < nyquist]
    if not kept:
        raise ValueError(f"no band lies below Nyquist ({nyquist} Hz)")
    return kept


def _band_matrix(bands: BandSpec, sample_rate: float, n_fft: int, like: Tensor) -> Tensor:
    """``(bands, bins)`` 0/1 matrix assigning each bin to the band with ``lo <= f < hi``.

    Nyquist itself belongs to the last band.
    """
    freqs = fft_frequencies(sample_rate, n_fft, dtype=torch.float64, device=like.device)
    rows = []
    pairs = band_edges(bands, sample_rate)
    for i, (lo, hi) in enumerate(pairs):
        upper = freqs <= hi if i == len(pairs) - 1 else freqs < hi
        rows.append((freqs >= lo) & upper)
    return torch.stack(rows).to(like.dtype)


def _mid_side(x: Tensor) -> Tensor:
    """``(batch, 1 or 2, n)`` -> ``(batch, 2, n)`` of ``M = (L + R) / 2``, ``S = (L - R) / 2``."""
    if x.shape[1] == 1:
        return torch.cat([x, torch.zeros_like(x)], dim=1)
    if x.shape[1] != 2:
        raise ValueError(f"mid/side and stereo features need 1 or 2 channels, got {x.shape[1]}")
    left, right = x[:, :1], x[:, 1:]
    return torch.cat([(left + right) * 0.5, (left - right) * 0.5], dim=1)


def _band_energies_from_power(power: Tensor, matrix: Tensor) -> Tensor:
    """``(batch, k, frames, bins)`` power -> ``(batch, k, bands)`` dB (mean over frames)."""
    return 10.0 * torch.log10(power.mean(-2) @ matrix.T + EPS)


def band_energies(x: Tensor, sample_rate: float, bands: BandSpec = "octave", mid_side: bool = True,
                  n_fft: int = 2048, hop_length: int = 512) -> Tensor:
    """Mean power per frequency band in dB, of mid and side or of the channel average.

    A band's value is the STFT power (mean-square density, :func:`power_spectrogram`) summed over
    the bins of the band and averaged over frames: for a sine well inside one band that band
    reads the sine's mean square (-3.01 dB at full scale). Bins are assigned to the band with
    ``lower <= f < upper``.

    Args:
        x: ``(batch, channels, samples)`` audio; 1 or 2 channels when ``mid_side`` (a mono
            signal has a silent side).
        sample_rate: sampling rate in Hz.
        bands: band layout, see :data:`BandSpec`.
        mid_side: ``True``: mid ``(L + R) / 2`` and side ``(L - R) / 2``; ``False``: the
            power averaged over channels.
        n_fft: FFT size.
        hop_length: hop in samples.

    Returns:
        ``(batch, 2, bands)`` (mid, side) when ``mid_side`` else ``(batch, 1, bands)``, in dB
        (floor -120 dB). Differentiable.
    """
    check_audio(x)
    signal = _mid_side(x) if mid_side else x
    power = power_spectrogram(signal, sample_rate, n_fft, hop_length)
    if not mid_side:
        power = power.mean(1, keepdim=True)
    return _band_energies_from_power(power, _band_matrix(bands, sample_rate, n_fft, power))


# --------------------------------------------------------------------------------------------
# stereo
# --------------------------------------------------------------------------------------------


def _as_stereo(x: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x.expand(-1, 2, -1)
    if x.shape[1] != 2:
        raise ValueError(f"stereo features need 1 or 2 channels, got {x.shape[1]}")
    return x


def stereo_width(x: Tensor) -> Tensor:
    """Stereo width as the side-to-mid energy ratio ``E_S / E_M`` (``M, S = (L +- R) / 2``).

    0 for a mono (L = R) signal, 1 for uncorrelated channels of equal level, and very large
    (``E_S / EPS``) for L = -R. A mono (1-channel) input reads 0.

    Args:
        x: ``(batch, 1 or 2, samples)`` audio.

    Returns:
        ``(batch,)`` ratio >= 0. Differentiable.
    """
    check_audio(x)
    ms = _mid_side(x)
    energy = ms.square().mean(-1)
    return energy[:, 1] / (energy[:, 0] + EPS)


def stereo_imbalance(x: Tensor) -> Tensor:
    """Left/right energy imbalance ``(E_L - E_R) / (E_L + E_R)``.

    +1 for hard left, -1 for hard right, 0 for balanced channels (and for mono input). Note
    the sign is opposite to the pan position convention (-1 = left).

    Args:
        x: ``(batch, 1 or 2, samples)`` audio.

    Returns:
        ``(batch,)`` imbalance in [-1, 1]. Differentiable.
    """
    check_audio(x)
    energy = _as_stereo(x).square().mean(-1)
    return (energy[:, 0] - energy[:, 1]) / (energy[:, 0] + energy[:, 1] + EPS)


def _panning_from_spec(spec: Tensor) -> tuple[Tensor, Tensor]:
    """Panning index and bin power from a stereo STFT ``(batch, 2, frames, bins)``."""
    power = spec.real.square() + spec.imag.square()  # (batch, 2, frames, bins)
    mag = torch.sqrt(power + EPS)
    left, right = mag[:, 0], mag[:, 1]
    index = (4.0 / math.pi) * torch.atan2(right - left, right + left)
    return index, power.sum(1)


def panning_index(x: Tensor, sample_rate: float, n_fft: int = 2048, hop_length: int = 512) -> Tensor:
    """Per time-frequency bin panning index, in [-1 (left), +1 (right)].

    Avendano (2003) computes the inter-channel similarity
    ``psi = 2 |X_L X_R*| / (|X_L|^2 + |X_R|^2)`` and a direction from the partial similarities,
    giving the index ``(1 - psi) * sign(|X_R| - |X_L|)``. Since ``psi = sin(2 theta)`` with
    ``theta = atan2(|X_R|, |X_L|)``, that index is a monotone function of ``theta``; here it is
    re-mapped to ``4 theta / pi - 1`` (computed as ``(4/pi) atan2(|X_R| - |X_L|, |X_R| + |X_L|)``),
    which reads exactly ``p`` for a source panned with constant-power gains
    ``(cos, sin)((p + 1) pi / 4)``, and is smooth (no ``sign``, no ``arcsin``) for gradients.
    Silent bins read 0.

    Args:
        x: ``(batch, 1 or 2, samples)`` audio (mono reads 0 everywhere).
        sample_rate: sampling rate in Hz (unused by the value; kept for a uniform signature).
        n_fft: FFT size.
        hop_length: hop in samples.

    Returns:
        ``(batch, frames, n_fft // 2 + 1)`` index. Differentiable.
    """
    del sample_rate
    check_audio(x)
    return _panning_from_spec(_stft(_as_stereo(x), n_fft, hop_length))[0]


def _band_average(values: Tensor, weights: Tensor, matrix: Tensor) -> Tensor:
    """Weighted average of ``(batch, frames, bins)`` values per band -> ``(batch, bands)``."""
    num = (values * weights).sum(-2) @ matrix.T
    den = weights.sum(-2) @ matrix.T
    return num / (den + EPS)


def panning_spectrum(x: Tensor, sample_rate: float, bands: BandSpec = "octave", n_fft: int = 2048,
                     hop_length: int = 512) -> Tensor:
    """Stereo panning spectrum per band (Avendano 2003; Tzanetakis, Jones & McNally 2007).

    The per-bin panning index of :func:`panning_index` averaged over the frames and bins of
    each band, weighted by the bins' power ``|X_L|^2 + |X_R|^2``. A band holding one source
    panned at ``p`` (constant-power law) reads ``p``.

    Args:
        x: ``(batch, 1 or 2, samples)`` audio.
        sample_rate: sampling rate in Hz.
        bands: band layout, see :data:`BandSpec` (``"coarse"`` gives Tzanetakis et al.'s
            low/mid/high regions).
        n_fft: FFT size.
        hop_length: hop in samples.

    Returns:
        ``(batch, bands)`` index in [-1, 1] (0 for an empty or silent band). Differentiable.
    """
    check_audio(x)
    index, power = _panning_from_spec(_stft(_as_stereo(x), n_fft, hop_length))
    return _band_average(index, power, _band_matrix(bands, sample_rate, n_fft, power))


# --------------------------------------------------------------------------------------------
# all features
# --------------------------------------------------------------------------------------------

FEATURE_CATEGORIES: dict[str, tuple[str, ...]] = {
    "loudness": ("loudness/integrated_lufs",),
    "spectral": (
        "spectral/centroid_hz",
        "spectral/bandwidth_hz",
        "spectral/flatness",
        "spectral/rolloff_hz",
        "spectral/band_energy_db",
    ),
    "panning": ("panning/stereo_width", "panning/stereo_imbalance", "panning/panning_spectrum"),
    "dynamics": ("dynamics/rms_db", "dynamics/peak_db", "dynamics/crest_factor_db", "dynamics/dynamic_spread_db"),
}
"""Category -> feature keys of :func:`mix_features`.

========================== ======================== ===============================================
key                        shape                    meaning
========================== ======================== ===============================================
loudness/integrated_lufs   (batch,)                 :func:`integrated_loudness`, LUFS
spectral/centroid_hz       (batch,)                 :func:`spectral_centroid` mean, Hz
spectral/bandwidth_hz      (batch,)                 :func:`spectral_bandwidth` mean, Hz
spectral/flatness          (batch,)                 :func:`spectral_flatness` mean, 0..1
spectral/rolloff_hz        (batch,)                 :func:`spectral_rolloff` mean (85 %), Hz
spectral/band_energy_db    (batch, 2, bands)        :func:`band_energies`, octave, mid/side, dB
panning/stereo_width       (batch,)                 :func:`stereo_width`, E_S / E_M
panning/stereo_imbalance   (batch,)                 :func:`stereo_imbalance`, -1..1
panning/panning_spectrum   (batch, bands)           :func:`panning_spectrum`, octave, -1..1
dynamics/rms_db            (batch,)                 :func:`rms_db`, dBFS
dynamics/peak_db           (batch,)                 :func:`peak_db`, dBFS
dynamics/crest_factor_db   (batch,)                 :func:`crest_factor_db`, dB
dynamics/dynamic_spread_db (batch,)                 :func:`dynamic_spread`, dB
========================== ======================== ===============================================
"""


def features_by_category(features: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    """Group a flat ``"<category>/<name>"`` feature dict by category: ``{category: {name: t}}``."""
    grouped: dict[str, dict[str, Tensor]] = {}
    for key, value in features.items():
        category, _, name = key.partition("/")
        grouped.setdefault(category, {})[name] = value
    return grouped


def mix_features(x: Tensor, sample_rate: float, n_fft: int = 2048, hop_length: int = 512) -> dict[str, Tensor]:
    """All mix descriptors at once, keyed ``"<category>/<feature>"`` (see :data:`FEATURE_CATEGORIES`).

    One STFT of the (stereo) signal feeds the spectral, band and panning features, one K-weighting
    FFT the loudness, so this costs little more than its most expensive member. Values equal
    those of the individual functions with the same ``n_fft``/``hop_length`` (octave bands,
    85 % roll-off, 50/25 ms RMS frames). A mono (1-channel) input is treated as L = R for the
    stereo features (width 0, imbalance 0, centred panning, silent side).

    Args:
        x: ``(batch, 1 or 2, samples)`` audio, at least 400 ms long (integrated loudness).
        sample_rate: sampling rate in Hz.
        n_fft: FFT size of the spectral analysis.
        hop_length: hop in samples.

    Returns:
        dict of feature tensors (shapes in :data:`FEATURE_CATEGORIES`). Differentiable.
    """
    check_audio(x)
    stereo = _as_stereo(x)
    spec = _stft(stereo, n_fft, hop_length)  # (batch, 2, frames, bins)
    power = _power(spec, n_fft).mean(1)  # channel-averaged (a duplicated mono gives its own power)
    freqs = fft_frequencies(sample_rate, n_fft, dtype=power.dtype, device=power.device)
    energy = power.sum(-1)
    octave = _band_matrix("octave", sample_rate, n_fft, power)
    mid_side_power = _power(torch.stack([(spec[:, 0] + spec[:, 1]) * 0.5, (spec[:, 0] - spec[:, 1]) * 0.5], 1), n_fft)
    pan_index, pan_power = _panning_from_spec(spec)
    rms = rms_db(x)
    peak = peak_db(x)
    return {
        "loudness/integrated_lufs": integrated_loudness(x, sample_rate),
        "spectral/centroid_hz": _weighted_frame_mean(_centroid(power, freqs), energy),
        "spectral/bandwidth_hz": _weighted_frame_mean(_bandwidth(power, freqs), energy),
        "spectral/flatness": _weighted_frame_mean(_flatness(power), energy),
        "spectral/rolloff_hz": _weighted_frame_mean(_rolloff(power, sample_rate / n_fft, 0.85), energy),
        "spectral/band_energy_db": _band_energies_from_power(mid_side_power, octave),
        "panning/stereo_width": stereo_width(x),
        "panning/stereo_imbalance": stereo_imbalance(x),
        "panning/panning_spectrum": _band_average(pan_index, pan_power, octave),
        "dynamics/rms_db": rms,
        "dynamics/peak_db": peak,
        "dynamics/crest_factor_db": peak - rms,
        "dynamics/dynamic_spread_db": dynamic_spread(x, sample_rate),
    }
