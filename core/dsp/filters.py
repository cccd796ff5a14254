"""Differentiable filters and time-based effects: RBJ biquad EQ, FFT filtering, delay, reverb.

Everything here works in the frequency domain, because that is what makes it fast on a
CPU: a recursive ``lfilter`` per biquad costs about one second per band for 16 channels
x 30 s, while one block FFT convolution applies a whole EQ (any number of bands) in a
fraction of that.

* :func:`biquad_coefficients` / :func:`biquad_response` / :func:`eq_response`: the biquads
  of R. Bristow-Johnson, "Cookbook formulae for audio EQ biquad filter coefficients"
  (the Audio EQ Cookbook), and their exact frequency responses.
* :func:`fft_filter`: applies a per-item frequency response by overlap-add block
  convolution (FFT size ``n_fft``, blocks and FIR of ``n_fft // 2`` samples).
* :func:`parametric_eq`: :func:`eq_response` followed by :func:`fft_filter`.
* :func:`delay`: a feedback echo whose exact (fractional-delay) comb response is applied
  with one full-length FFT.
* :func:`reverb_ir` / :func:`reverb`: a seeded, band-wise exponentially decaying noise
  impulse response (in the spirit of Moorer, "About this reverberation business", 1979,
  and of DDSP's filtered-noise reverb) and its FFT convolution.

Parameters are python floats or ``(batch,)`` tensors in physical units; every function is
differentiable with respect to its continuous parameters (where stated) and to ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from neuromix.core.dsp.utils import Param, as_batch_param, check_audio
from neuromix.core.errors import ConfigError
from neuromix.core.dsp.utils import fast_fft_size

__all__ = [
    "BIQUAD_KINDS",
    "biquad_coefficients",
    "biquad_response",
    "delay",
    "eq_response",
    "fft_filter",
    "parametric_eq",
    "reverb",
    "reverb_ir",
]

BiquadKind = Literal["peaking", "low_shelf", "high_shelf", "highpass", "lowpass"]
BIQUAD_KINDS: tuple[str, ...] = ("peaking", "low_shelf", "high_shelf", "highpass", "lowpass")
"""The biquad kinds :func:`biquad_coefficients` knows."""

_MIN_CUTOFF = 1e-4  # lowest cutoff, as a fraction of Nyquist
_MAX_CUTOFF = 1.0 - 1e-4  # highest cutoff, as a fraction of Nyquist
_MIN_Q = 1e-3
_MAX_FEEDBACK = 0.95
_LN_1000 = math.log(1000.0)  # an amplitude falls by 60 dB when its log falls by ln(1000)

# reverb: octave-band centres (Hz) of the noise split, and the band-to-RT60 mapping
_REVERB_BAND_CENTRES_HZ: tuple[float, ...] = (62.5, 125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0)
_REVERB_FULL_DECAY_HZ = 250.0  # bands centred at or below: RT60 = decay_s
_REVERB_DAMPED_HZ = 8000.0  # bands centred at or above: RT60 = decay_s * damping
_MIN_DAMPING = 0.05
_MIN_RT60_S = 1e-3
_FADE_OUT_S = 0.01


# ---------------------------------------------------------------------------- helpers


def _real_dtype(*values: object) -> torch.dtype:
    """The promoted floating dtype of the tensor arguments (float32 if there are none)."""
    dtype: torch.dtype | None = None
    for v in values:
        if isinstance(v, Tensor):
            vd = v.dtype if v.is_floating_point() else torch.float32
            dtype = vd if dtype is None else torch.promote_types(dtype, vd)
    return torch.float32 if dtype is None else dtype


def _device(*values: object) -> torch.device:
    for v in values:
        if isinstance(v, Tensor):
            return v.device
    return torch.device("cpu")


def _batch_params(*values: Param) -> list[Tensor]:
    """Broadcast floats, 0-d, ``(1,)`` and ``(batch,)`` tensors to ``(batch,)`` tensors of one dtype."""
    batch = 1
    for v in values:
        if isinstance(v, Tensor) and v.ndim == 1 and v.shape[0] != 1:
            batch = v.shape[0]
    like = torch.empty(0, dtype=_real_dtype(*values), device=_device(*values))
    return [as_batch_param(v, batch, like) for v in values]


def _complex_dtype(real: torch.dtype) -> torch.dtype:
    return torch.complex128 if real == torch.float64 else torch.complex64


def _check_sample_rate(sample_rate: float) -> None:
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")


def _check_float_audio(x: Tensor) -> tuple[int, int, int]:
    shape = check_audio(x)
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    return shape


# ---------------------------------------------------------------------------- biquads


def biquad_coefficients(
    kind: BiquadKind, sample_rate: float, cutoff_hz: Param, gain_db: Param, q: Param
) -> tuple[Tensor, Tensor]:
    """Biquad coefficients of the RBJ Audio EQ Cookbook, normalised so that ``a0 == 1``.

    With ``w0 = 2 pi cutoff_hz / sample_rate``, ``alpha = sin(w0) / (2 q)`` and
    ``A = 10 ** (gain_db / 40)``:

    * ``"peaking"``: gain ``gain_db`` at ``cutoff_hz``, bandwidth set by ``q``;
    * ``"low_shelf"`` / ``"high_shelf"``: gain ``gain_db`` below / above the corner and
      ``gain_db / 2`` at it; the cookbook's slope form with ``q`` as Q
      (``2 sqrt(A) alpha`` in the formulas);
    * ``"highpass"`` / ``"lowpass"``: second order, ``gain_db`` is ignored (``q = 1/sqrt(2)``
      is the Butterworth response).

    ``cutoff_hz`` is clamped to ``[1e-4, 1 - 1e-4] * Nyquist`` and ``q`` to ``>= 1e-3``
    (the gradient is zero outside these ranges).

    Args:
        kind: one of :data:`BIQUAD_KINDS`.
        sample_rate: Hz.
        cutoff_hz: centre/corner frequency in Hz, float or ``(batch,)``.
        gain_db: band gain in dB, float or ``(batch,)``.
        q: quality factor, float or ``(batch,)``.

    Returns:
        ``(b, a)``, each ``(batch, 3)`` (``batch`` is 1 when every parameter is a float), in the
        promoted dtype of the tensor parameters (float32 for floats). ``b`` holds
        ``b0, b1, b2`` and ``a`` holds ``1, a1, a2`` of
        ``H(z) = (b0 + b1 z^-1 + b2 z^-2) / (1 + a1 z^-1 + a2 z^-2)``.
        Differentiable w.r.t. ``cutoff_hz``, ``gain_db`` and ``q``.

    Raises:
        ConfigError: unknown ``kind``.
        ValueError: non-positive ``sample_rate`` or parameters that do not broadcast.
    """
    if kind not in BIQUAD_KINDS:
        raise ConfigError(f"unknown biquad kind {kind!r}; expected one of {', '.join(BIQUAD_KINDS)}")
    _check_sample_rate(sample_rate)
    cutoff, gain, qq = _batch_params(cutoff_hz, gain_db, q)
    nyquist = 0.5 * sample_rate
    cutoff = cutoff.clamp(_MIN_CUTOFF * nyquist, _MAX_CUTOFF * nyquist)
    w0 = (2.0 * math.pi / sample_rate) * cutoff
    cos_w0, sin_w0 = torch.cos(w0), torch.sin(w0)
    alpha = sin_w0 / (2.0 * qq.clamp_min(_MIN_Q))

    if kind == "lowpass":
        b0 = (1.0 - cos_w0) / 2.0
        b = (b0, 1.0 - cos_w0, b0)
        a = (1.0 + alpha, -2.0 * cos_w0, 1.0 - alpha)
    elif kind == "highpass":
        b0 = (1.0 + cos_w0) / 2.0
        b = (b0, -(1.0 + cos_w0), b0)
        a = (1.0 + alpha, -2.0 * cos_w0, 1.0 - alpha)
    else:
        big_a = torch.pow(10.0, gain / 40.0)
        if kind == "peaking":
            b = (1.0 + alpha * big_a, -2.0 * cos_w0, 1.0 - alpha * big_a)
            a = (1.0 + alpha / big_a, -2.0 * cos_w0, 1.0 - alpha / big_a)
        else:
            two_sqrt_a_alpha = 2.0 * torch.sqrt(big_a) * alpha
            ap1, am1 = big_a + 1.0, big_a - 1.0
            if kind == "low_shelf":
                b = (
                    big_a * (ap1 - am1 * cos_w0 + two_sqrt_a_alpha),
                    2.0 * big_a * (am1 - ap1 * cos_w0),
                    big_a * (ap1 - am1 * cos_w0 - two_sqrt_a_alpha),
                )
                a = (
                    ap1 + am1 * cos_w0 + two_sqrt_a_alpha,
                    -2.0 * (am1 + ap1 * cos_w0),
                    ap1 + am1 * cos_w0 - two_sqrt_a_alpha,
                )
            else:  # high_shelf
                b = (
                    big_a * (ap1 + am1 * cos_w0 + two_sqrt_a_alpha),
                    -2.0 * big_a * (am1 + ap1 * cos_w0),
                    big_a * (ap1 + am1 * cos_w0 - two_sqrt_a_alpha),
                )
                a = (
                    ap1 - am1 * cos_w0 + two_sqrt_a_alpha,
                    2.0 * (am1 - ap1 * cos_w0),
                    ap1 - am1 * cos_w0 - two_sqrt_a_alpha,
                )
    a0 = a[0]
    b_out = torch.stack([b[0] / a0, b[1] / a0, b[2] / a0], dim=-1)
    a_out = torch.stack([torch.ones_like(a0), a[1] / a0, a[2] / a0], dim=-1)
    return b_out, a_out


def biquad_response(b: Tensor, a: Tensor, freqs_hz: Tensor | Sequence[float], sample_rate: float) -> Tensor:
    """Exact frequency response of biquads, ``H(e^{jw})`` at the given frequencies.

    Args:
        b: ``(batch, 3)`` numerator ``b0, b1, b2`` (a ``(3,)`` tensor is one item).
        a: ``(batch, 3)`` denominator ``a0, a1, a2`` (``a0`` need not be 1).
        freqs_hz: ``(bins,)`` frequencies in Hz.
        sample_rate: Hz.

    Returns:
        Complex ``(batch, bins)`` (complex128 for float64 coefficients, else complex64),
        the same as ``scipy.signal.freqz(b, a, worN=freqs_hz, fs=sample_rate)`` per item.
        Differentiable w.r.t. ``b`` and ``a``.
    """
    _check_sample_rate(sample_rate)
    if b.ndim == 1:
        b = b[None]
    if a.ndim == 1:
        a = a[None]
    if b.shape[-1] != 3 or a.shape[-1] != 3 or b.ndim != 2 or a.ndim != 2:
        raise ValueError(f"b and a must be (batch, 3), got {tuple(b.shape)} and {tuple(a.shape)}")
    dtype = _real_dtype(b, a)
    b, a = b.to(dtype), a.to(dtype)
    f = torch.as_tensor(freqs_hz, dtype=dtype, device=b.device)
    w = (2.0 * math.pi / sample_rate) * f
    cos1, sin1, cos2, sin2 = torch.cos(w), torch.sin(w), torch.cos(2.0 * w), torch.sin(2.0 * w)

    def poly(c: Tensor) -> Tensor:  # c0 + c1 e^{-jw} + c2 e^{-2jw}
        c0, c1, c2 = c[:, 0:1], c[:, 1:2], c[:, 2:3]
        return torch.complex(c0 + c1 * cos1 + c2 * cos2, -(c1 * sin1 + c2 * sin2))

    return poly(b) / poly(a)


def _band_params(value: Tensor | Sequence | float, bands: int, name: str) -> Tensor:
    t = value if isinstance(value, Tensor) else torch.as_tensor(value, dtype=torch.float32)
    if t.ndim == 0:
        t = t.expand(1, bands)
    elif t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[1] != bands:
        raise ValueError(f"{name} must be (batch, {bands}) (one value per band), got {tuple(t.shape)}")
    return t


def eq_response(
    sample_rate: float,
    n_fft: int,
    kinds: Sequence[str],
    cutoff_hz: Tensor | Sequence,
    gain_db: Tensor | Sequence,
    q: Tensor | Sequence,
) -> Tensor:
    """Complex response of a cascade of RBJ biquads on the ``rfft`` grid of size ``n_fft``.

    The response is the product of the bands' exact responses
    (:func:`biquad_response` of :func:`biquad_coefficients`) at the frequencies
    ``k * sample_rate / n_fft``, ``k = 0 .. n_fft // 2``. It is computed in float64
    internally (low cutoffs put the poles close to ``z = 1``, where float32 loses accuracy).

    Args:
        sample_rate: Hz.
        n_fft: FFT size of the grid (even).
        kinds: ``bands`` kinds, each one of :data:`BIQUAD_KINDS`.
        cutoff_hz: ``(batch, bands)`` Hz (``(bands,)`` is one item).
        gain_db: ``(batch, bands)`` dB (ignored by pass filters).
        q: ``(batch, bands)`` quality factors.

    Returns:
        Complex ``(batch, n_fft // 2 + 1)``, complex128 when a parameter is float64, else
        complex64. Differentiable w.r.t. ``cutoff_hz``, ``gain_db`` and ``q``.

    Raises:
        ConfigError: an unknown kind.
        ValueError: parameter shapes that do not match ``kinds``.
    """
    _check_sample_rate(sample_rate)
    if n_fft < 2 or n_fft % 2:
        raise ValueError(f"n_fft must be even and >= 2, got {n_fft}")
    kinds = list(kinds)
    bands = len(kinds)
    params = [_band_params(v, bands, name) for v, name in ((cutoff_hz, "cutoff_hz"), (gain_db, "gain_db"), (q, "q"))]
    out_dtype = _complex_dtype(_real_dtype(*params))
    device = params[0].device
    batch = max(p.shape[0] for p in params)
    for p, name in zip(params, ("cutoff_hz", "gain_db", "q")):
        if p.shape[0] not in (1, batch):
            raise ValueError(f"{name} has batch {p.shape[0]}, expected 1 or {batch}")
    cut, gain, qq = (p.to(device=device, dtype=torch.float64).expand(batch, bands) for p in params)
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64, device=device) * (sample_rate / n_fft)
    response = torch.ones(batch, n_fft // 2 + 1, dtype=torch.complex128, device=device)
    for i, kind in enumerate(kinds):
        b, a = biquad_coefficients(kind, sample_rate, cut[:, i], gain[:, i], qq[:, i])  # type: ignore[arg-type]
        response = response * biquad_response(b, a, freqs, sample_rate)
    return response.to(out_dtype)


# ---------------------------------------------------------------------------- FFT filtering


def fft_filter(
    x: Tensor,
    response: Tensor,
    *,
    n_fft: int | None = None,
    gain: Param | None = None,
) -> Tensor:
    """Apply a per-item frequency response to every channel by block (overlap-add) convolution.

    The response, given on the ``rfft`` grid of size ``n_fft``, is turned into an FIR with
    ``irfft`` and **truncated to its first** ``n_fft // 2`` **taps** (a causal response is
    assumed: the filter adds no latency). Anything the response rings beyond that is cut:
    with the default ``n_fft = 65536`` that is 32768 samples (0.74 s at 44.1 kHz). For RBJ
    EQ bands that is negligible: the energy cut off is below -200 dB for a 20 Hz high-pass,
    a 40 Hz shelf or a +12 dB, Q = 6 peak at 120 Hz, and still -95 dB for such a peak at
    40 Hz (only very narrow boosts at the lowest frequencies ring longer: -64 dB at 20 Hz,
    Q = 6). A shorter ``n_fft`` shortens the FIR accordingly. The signal is cut into blocks of
    ``n_fft // 2`` samples, each is convolved with the FIR by one ``rfft``/``irfft`` of size
    ``n_fft`` (all blocks and channels batched), and the halves are overlap-added. The
    output is exactly the linear convolution of ``x`` with the truncated FIR, cut to the
    input length (zero initial state, like ``scipy.signal.lfilter``).

    Cost: one block ``rfft``/``irfft`` pair of the signal, whatever ``response`` is (an EQ
    with any number of bands, a folded-in gain or pan): about 0.45 CPU-seconds, i.e. about
    0.25 s on two idle CPU cores, for 8 x 2 channels x 30 s at 44.1 kHz (float32).

    Args:
        x: ``(batch, channels, samples)`` float32/float64 audio.
        response: complex ``(batch, n_fft // 2 + 1)`` (the same for every channel) or
            ``(batch, response_channels, n_fft // 2 + 1)`` (one per channel;
            ``response_channels`` equal to ``channels``, or ``channels == 1`` which then
            fans a mono input out to ``response_channels`` outputs). A batch of 1 is
            broadcast.
        n_fft: FFT size the response is sampled on (even); inferred from the response's
            length when None, checked against it otherwise.
        gain: optional linear amplitude factor folded into the response (costs nothing per
            sample): float, ``(batch,)`` or ``(batch, channels)``.

    Returns:
        ``(batch, out_channels, samples)`` in ``x``'s dtype. Differentiable w.r.t. ``x``,
        ``response`` and ``gain``.

    Raises:
        ValueError: wrong shapes, or an ``n_fft`` that does not match the response.
    """
    batch, channels, n = _check_float_audio(x)
    if not torch.is_complex(response):
        raise ValueError(f"response must be a complex tensor, got {response.dtype}")
    bins = response.shape[-1]
    if n_fft is None:
        n_fft = 2 * (bins - 1)
    if n_fft < 2 or n_fft % 2 or bins != n_fft // 2 + 1:
        raise ValueError(f"response has {bins} bins; expected n_fft // 2 + 1 for an even n_fft (n_fft={n_fft})")
    if response.ndim == 2:
        response = response[:, None, :]
    if response.ndim != 3:
        raise ValueError(f"response must be (batch, bins) or (batch, channels, bins), got {tuple(response.shape)}")
    r_batch, r_channels = response.shape[:2]
    if r_batch not in (1, batch):
        raise ValueError(f"response batch {r_batch} does not match x batch {batch}")
    if r_channels not in (1, channels) and channels != 1:
        raise ValueError(f"response has {r_channels} channels, x has {channels}")
    out_channels = max(channels, r_channels)
    block = n_fft // 2

    # FIR truncated to `block` taps, back on the grid (cheap: one row per item/channel)
    response = response.to(device=x.device, dtype=_complex_dtype(x.dtype))
    fir = torch.fft.irfft(response, n=n_fft)[..., :block]
    spectrum = torch.fft.rfft(fir, n=n_fft)
    if gain is not None:
        g = gain if isinstance(gain, Tensor) else torch.tensor(float(gain))
        g = g.to(device=x.device, dtype=x.dtype)
        if g.ndim == 1:
            g = g[:, None]
        if g.ndim > 2 or (g.ndim == 2 and (g.shape[0] not in (1, batch) or g.shape[1] not in (1, out_channels))):
            raise ValueError(f"gain must be a float, (batch,) or (batch, {out_channels}), got {tuple(g.shape)}")
        spectrum = spectrum * g[..., None]
    if n == 0:
        return x.new_zeros(batch, out_channels, 0)

    # blocks of `block` samples, zero-padded to n_fft: one copy of x, no other full-size pass
    num_blocks = -(-n // block)
    full = n // block
    frames = x.new_empty(batch, channels, num_blocks, n_fft)
    frames[..., block:] = 0.0
    if full:
        frames[:, :, :full, :block] = x.unfold(-1, block, block)
    rest = n - full * block
    if rest:
        frames[:, :, full, :rest] = x[..., full * block :]
        frames[:, :, full, rest:block] = 0.0
    spec_x = torch.fft.rfft(frames)  # (batch, channels, blocks, bins)
    h = spectrum[:, :, None, :]
    in_place = spec_x.shape == torch.broadcast_shapes(spec_x.shape, h.shape) and not (
        torch.is_grad_enabled() and h.requires_grad
    )
    spec_y = spec_x.mul_(h) if in_place else spec_x * h
    y = torch.fft.irfft(spec_y, n=n_fft)  # (batch, out_channels, blocks, n_fft)
    head = y[..., :block]
    if num_blocks > 1:
        head[:, :, 1:] += y[:, :, :-1, block:]  # overlap-add the tails of the previous blocks
    return head.reshape(head.shape[0], out_channels, num_blocks * block)[..., :n]


def parametric_eq(
    x: Tensor,
    sample_rate: float,
    kinds: Sequence[str],
    cutoff_hz: Tensor | Sequence,
    gain_db: Tensor | Sequence,
    q: Tensor | Sequence,
    *,
    n_fft: int = 65536,
) -> Tensor:
    """Parametric EQ: a cascade of RBJ biquads applied as one FFT filter.

    ``fft_filter(x, eq_response(sample_rate, n_fft, kinds, cutoff_hz, gain_db, q))``; equal,
    up to the FIR truncation documented in :func:`fft_filter`, to running the biquads in
    series (``scipy.signal.sosfilt``).

    Args:
        x: ``(batch, channels, samples)`` audio.
        sample_rate: Hz.
        kinds: ``bands`` kinds, each one of :data:`BIQUAD_KINDS`.
        cutoff_hz: ``(batch, bands)`` Hz (``(bands,)`` for every item).
        gain_db: ``(batch, bands)`` dB.
        q: ``(batch, bands)``.
        n_fft: FFT size of the block convolution (FIR of ``n_fft // 2`` taps).

    Returns:
        ``(batch, channels, samples)``. Differentiable w.r.t. ``x``, ``cutoff_hz``,
        ``gain_db`` and ``q``.
    """
    response = eq_response(sample_rate, n_fft, kinds, cutoff_hz, gain_db, q)
    return fft_filter(x, response, n_fft=n_fft)


def _full_fft_apply(x: Tensor, response: Tensor, n_fft: int) -> Tensor:
    """``irfft(rfft(x, n_fft) * response)[..., :samples]``; ``response`` ``(batch, [ch,] bins)``."""
    n = x.shape[-1]
    if response.ndim == 2:
        response = response[:, None, :]
    y = torch.fft.irfft(torch.fft.rfft(x, n=n_fft) * response, n=n_fft)
    return y[..., :n]


# ---------------------------------------------------------------------------- delay


def delay(x: Tensor, sample_rate: float, delay_ms: Param, feedback: Param, mix: Param) -> Tensor:
    """Feedback delay (echo) with a fractional delay time.

    The wet path is the feedback comb ``H(w) = e^{-jwD} / (1 - feedback e^{-jwD})``,
    ``D = delay_ms * sample_rate / 1000`` samples (echoes at ``D, 2D, 3D, ...`` with
    amplitudes ``1, feedback, feedback**2, ...``); the output is
    ``(1 - mix) * x + mix * wet``. It is applied exactly in the frequency domain with one
    full-length FFT: only the echoes that land inside the signal matter, so the comb is
    summed in closed form over the ``K = floor(samples / D)`` echoes that do,
    ``e^{-jwD} (1 - (feedback e^{-jwD})^K) / (1 - feedback e^{-jwD})``, on a grid of more
    than twice the signal length, which rules out circular wrap-around. A fractional ``D``
    is an ideal band-limited delay (sinc interpolation; its sinc tails, below
    ``1 / (pi samples)``, wrap around); an integer ``D`` gives exact echoes.

    Args:
        x: ``(batch, channels, samples)`` audio.
        sample_rate: Hz.
        delay_ms: delay time in ms, float or ``(batch,)``; at least one sample (clamped).
        feedback: echo feedback gain, clamped to ``[0, 0.95]``.
        mix: wet/dry balance, clamped to ``[0, 1]`` (0: dry only, 1: echoes only).

    Returns:
        ``(batch, channels, samples)``. Differentiable w.r.t. ``x``, ``delay_ms``,
        ``feedback`` and ``mix`` (the gradient is zero where a value is clamped).
    """
    _check_sample_rate(sample_rate)
    batch, channels, n = _check_float_audio(x)
    like64 = torch.empty(0, dtype=torch.float64, device=x.device)
    d = (as_batch_param(delay_ms, batch, like64) * (sample_rate / 1000.0)).clamp_min(1.0)
    fb = as_batch_param(feedback, batch, like64).clamp(0.0, _MAX_FEEDBACK)
    wet_gain = as_batch_param(mix, batch, like64).clamp(0.0, 1.0)
    if n == 0:
        return x.clone()
    # echoes 1..K with K*D <= n; later ones cannot reach the output (K = 0 if D > n)
    k = torch.floor(n / d.detach())
    n_fft = fast_fft_size(2 * n + 1)
    w = torch.arange(n_fft // 2 + 1, dtype=torch.float64, device=x.device) * (2.0 * math.pi / n_fft)
    phase = w[None, :] * d[:, None]  # float64: K*D*w reaches millions of radians
    echo = torch.complex(torch.cos(phase), -torch.sin(phase))
    phase_k = phase * k[:, None]
    last = torch.complex(torch.cos(phase_k), -torch.sin(phase_k)) * torch.pow(fb, k)[:, None]
    comb = echo * (1.0 - last) / (1.0 - fb[:, None] * echo)
    response = (1.0 - wet_gain)[:, None] + wet_gain[:, None] * comb
    return _full_fft_apply(x, response.to(_complex_dtype(x.dtype)), n_fft)


# ---------------------------------------------------------------------------- reverb


def _band_masks(n: int, sample_rate: float, dtype: torch.dtype) -> Tensor:
    """``(bands, n // 2 + 1)`` amplitude-complementary octave masks (they sum to 1 per bin).

    Crossovers sit halfway (in octaves) between the band centres; each crossover is a
    raised-cosine transition one octave wide, so neighbouring transitions just touch.
    """
    freqs = torch.fft.rfftfreq(n, d=1.0 / sample_rate, dtype=dtype).clamp_min(1e-3)
    log_f = torch.log2(freqs)
    lows = []  # cumulative low-pass masks, one per crossover
    for lo, hi in zip(_REVERB_BAND_CENTRES_HZ[:-1], _REVERB_BAND_CENTRES_HZ[1:]):
        octaves = (log_f - 0.5 * (math.log2(lo) + math.log2(hi))).clamp(-0.5, 0.5)
        lows.append(0.5 * (1.0 - torch.sin(math.pi * octaves)))
    edges = [torch.zeros_like(freqs)] + lows + [torch.ones_like(freqs)]
    return torch.stack([edges[i + 1] - edges[i] for i in range(len(lows) + 1)])


def _band_noise(n: int, sample_rate: float, seed: int, channels: int) -> Tensor:
    """Seeded Gaussian noise split into octave bands: float64 ``(bands, channels, n)``.

    Summing over the bands gives back the (unit-variance) noise exactly.
    """
    generator = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(channels, n, generator=generator, dtype=torch.float64)
    spec = torch.fft.rfft(noise)
    masks = _band_masks(n, sample_rate, torch.float64)
    return torch.fft.irfft(spec[None] * masks[:, None, :], n=n)


def _band_rt60_fraction(dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(bands,)`` position of each band between full decay (0) and damped decay (1)."""
    span = math.log2(_REVERB_DAMPED_HZ / _REVERB_FULL_DECAY_HZ)
    u = [min(max(math.log2(f / _REVERB_FULL_DECAY_HZ) / span, 0.0), 1.0) for f in _REVERB_BAND_CENTRES_HZ]
    return torch.tensor(u, dtype=dtype, device=device)


def reverb_ir(
    sample_rate: float,
    seconds: float,
    decay_s: Param,
    *,
    damping: Param = 0.5,
    predelay_ms: Param = 10.0,
    seed: int = 0,
    channels: int = 2,
) -> Tensor:
    """Impulse response of a band-decaying filtered-noise reverb.

    Seeded Gaussian noise, independent per channel (decorrelated L/R), is split into 8
    octave bands (centres 62.5 Hz .. 8 kHz, complementary raised-cosine crossovers); the
    split depends only on ``seed``, ``seconds``, ``sample_rate`` and ``channels``. Band
    ``k`` gets the envelope ``exp(-ln(1000) t / RT60_k)``, so it decays by 60 dB in
    ``RT60_k``: ``decay_s`` for bands centred at or below 250 Hz, falling linearly with the
    band's position in octaves to ``decay_s * damping`` for bands at or above 8 kHz. The
    bands are summed, the last 10 ms (at most a quarter of the IR) faded out, the tail
    normalised to unit energy (the mean over channels of the sum of squares is 1), and then
    delayed by ``predelay_ms`` with an exact band-limited (fractional) delay and cut to
    ``seconds``; the returned IR has unit energy unless the pre-delay pushes part of the
    tail past the end.

    Args:
        sample_rate: Hz.
        seconds: IR length in seconds (``round(seconds * sample_rate)`` samples, >= 1).
        decay_s: low-frequency RT60 in seconds, float or ``(batch,)`` (clamped to >= 1 ms).
        damping: ratio of the high-frequency RT60 to ``decay_s``, float or ``(batch,)``,
            clamped to ``[0.05, 1]``.
        predelay_ms: silence before the tail in ms, float or ``(batch,)``, clamped to
            ``[0, seconds]``.
        seed: seed of the noise; the IR is a deterministic function of its arguments.
        channels: output channels (2: stereo).

    Returns:
        ``(batch, channels, round(seconds * sample_rate))`` in the promoted dtype of the
        tensor parameters (float32 for floats). Differentiable w.r.t. ``decay_s``,
        ``damping`` and ``predelay_ms``.

    Raises:
        ValueError: non-positive ``sample_rate``, an empty IR or ``channels < 1``.
    """
    _check_sample_rate(sample_rate)
    n = int(round(seconds * sample_rate))
    if n < 1:
        raise ValueError(f"reverb IR of {seconds} s at {sample_rate} Hz has no samples")
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    decay, damp, pre_ms = _batch_params(decay_s, damping, predelay_ms)
    dtype, device = decay.dtype, decay.device
    bands = _band_noise(n, sample_rate, seed, channels).to(dtype=dtype, device=device)  # (k, c, n)

    u = _band_rt60_fraction(dtype, device)
    damp = damp.clamp(_MIN_DAMPING, 1.0)
    rt60 = (decay[:, None] * (1.0 - u[None, :] * (1.0 - damp[:, None]))).clamp_min(_MIN_RT60_S)  # (batch, k)
    t = torch.arange(n, dtype=dtype, device=device) / sample_rate
    envelopes = torch.exp(-_LN_1000 * t[None, None, :] / rt60[:, :, None])  # (batch, k, n)
    tail = torch.einsum("bkn,kcn->bcn", envelopes, bands)
    fade = min(int(round(_FADE_OUT_S * sample_rate)), n // 4)
    if fade > 0:
        ramp = 0.5 * (1.0 + torch.cos(torch.linspace(0.0, math.pi, fade + 2, dtype=dtype, device=device)[1:-1]))
        window = torch.ones(n, dtype=dtype, device=device)
        window[n - fade :] = ramp
        tail = tail * window
    energy = tail.square().sum(dim=-1).mean(dim=-1)  # (batch,)
    tail = tail / torch.sqrt(energy.clamp_min(1e-30))[:, None, None]

    # pre-delay: exact band-limited shift on a grid of >= 2n samples (no wrap-around)
    shift = (pre_ms * (sample_rate / 1000.0)).clamp(0.0, float(n))
    n_fft = fast_fft_size(2 * n)
    w = torch.arange(n_fft // 2 + 1, dtype=dtype, device=device) * (2.0 * math.pi / n_fft)
    phase = w[None, :] * shift[:, None]
    response = torch.complex(torch.cos(phase), -torch.sin(phase))
    return _full_fft_apply(tail, response, n_fft)


def _fft_convolve(x: Tensor, ir: Tensor) -> Tensor:
    """Causal convolution of ``x (batch, c, n)`` with ``ir (batch, c_ir, m)``, cut to ``n``.

    Short IRs against long signals go through the block convolution of :func:`fft_filter`;
    otherwise one full-length FFT (size >= n + m - 1, so the result is exact).
    """
    n, m = x.shape[-1], ir.shape[-1]
    if m <= 32768 and n >= 4 * m:
        n_fft = 2 * (1 << (m - 1).bit_length())
        return fft_filter(x, torch.fft.rfft(ir, n=n_fft), n_fft=n_fft)
    n_fft = fast_fft_size(n + m - 1)
    return _full_fft_apply(x, torch.fft.rfft(ir, n=n_fft), n_fft)


def reverb(
    x: Tensor,
    sample_rate: float,
    decay_s: Param,
    *,
    damping: Param = 0.5,
    predelay_ms: Param = 10.0,
    seed: int = 0,
    ir_seconds: float | None = None,
) -> Tensor:
    """Reverb, 100 % wet: ``x`` convolved with :func:`reverb_ir`.

    A mono or stereo input gives a stereo output (a mono input feeds both decorrelated IR
    channels; a stereo input is convolved channel by channel); other channel counts get one
    decorrelated IR per channel. The convolution is an FFT convolution (block convolution
    for IRs much shorter than the signal, otherwise one full-length ``rfft``), cut to the
    input length.

    Args:
        x: ``(batch, channels, samples)`` audio.
        sample_rate: Hz.
        decay_s: low-frequency RT60 in seconds, float or ``(batch,)``.
        damping: high-frequency RT60 as a fraction of ``decay_s`` (see :func:`reverb_ir`).
        predelay_ms: pre-delay in ms, float or ``(batch,)``.
        seed: noise seed of the IR.
        ir_seconds: IR length; None picks ``predelay + 1.5 * max(decay_s)`` (the tail then
            ends 90 dB down), rounded up to a multiple of 0.5 s so that small changes of
            ``decay_s`` keep the same noise.

    Returns:
        ``(batch, 2 if channels <= 2 else channels, samples)`` in ``x``'s dtype.
        Differentiable w.r.t. ``x``, ``decay_s``, ``damping`` and ``predelay_ms``.
    """
    _check_sample_rate(sample_rate)
    batch, channels, n = _check_float_audio(x)
    decay = as_batch_param(decay_s, batch, x)
    damp = as_batch_param(damping, batch, x)
    pre = as_batch_param(predelay_ms, batch, x)
    if ir_seconds is None:
        longest = float(pre.detach().max()) / 1000.0 + 1.5 * float(decay.detach().max())
        ir_seconds = max(0.5, math.ceil(longest / 0.5) * 0.5)
    ir_channels = 2 if channels <= 2 else channels
    ir = reverb_ir(sample_rate, ir_seconds, decay, damping=damp, predelay_ms=pre, seed=seed, channels=ir_channels)
    if n == 0:
        return x.new_zeros(batch, ir_channels, 0)
    return _fft_convolve(x, ir)
