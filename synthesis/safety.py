"""The safety contract every sound of the synthesis head obeys.

:func:`make_safe` is the last stage of every render (patch, score, feedback, sweep):

1. **finite**: non-finite samples (NaN, +-Inf, possible after extreme bends) are
   replaced by zeros (counted in the report);
2. **DC-free**: a 4th-order Butterworth high-pass (two cascaded RBJ biquads with
   ``Q = 0.5412`` and ``1.3066``) at ``highpass_hz`` (20 Hz by default), so no DC or
   sub-sonic drift leaves the head; the small mean a causal filter leaves on a finite
   signal is removed along the signal's smoothed envelope (silence stays silent);
3. **optional loudness target**: a static gain to ``loudness_lufs`` (ITU-R BS.1770-4
   integrated loudness, :func:`neuromix.core.features.integrated_loudness`), at most
   +-``max_gain_db``, then a further trim ``gain_db`` (velocity, patch gain);
4. **peak bound**: the core true-peak limiter
   (:func:`neuromix.core.dsp.dynamics.limiter`, 4x oversampled) aiming
   :data:`LIMITER_MARGIN_DB` under ``ceiling_db`` (-1 dBTP by default); the small mean
   its time-varying gain can leave is removed the same way, and should that lift the
   true peak (:func:`true_peak_db`) above ``ceiling_db - 0.01 dB`` the signal is scaled
   down uniformly.

:func:`check_safe` measures a signal against the contract (used by the tests and the
benchmark, and returned as a :class:`SafetyReport`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio.functional as AF
from torch import Tensor

from neuromix.core.dsp.dynamics import limiter
from neuromix.core.features import integrated_loudness

__all__ = ["SafetyReport", "check_safe", "dc_block", "make_safe", "true_peak_db"]

_BUTTER4_Q = (0.5411961001461971, 1.3065629648763766)  # 1 / (2 cos(pi/8)), 1 / (2 cos(3 pi/8))
LIMITER_MARGIN_DB = 0.1
"""The limiter aims this far under the ceiling, so 4x true-peak meters with other filters agree."""
DC_LIMIT = 1e-3
"""Largest accepted mean (DC) of a safe signal, full-scale units (-60 dBFS)."""


@dataclass(frozen=True)
class SafetyReport:
    """What :func:`make_safe` did and what :func:`check_safe` measured.

    Attributes:
        finite: every output sample is finite.
        nonfinite_replaced: samples that were non-finite on input and set to zero.
        dc: largest absolute per-channel mean of the output.
        true_peak_db: 4x-oversampled peak of the output in dBTP.
        loudness_lufs: integrated loudness of the output (None for signals < 0.4 s).
        gain_db: static gain applied before the limiter (loudness target plus trim).
        ceiling_db: the ceiling the output had to respect.
    """

    finite: bool
    nonfinite_replaced: int
    dc: float
    true_peak_db: float
    loudness_lufs: float | None
    gain_db: float
    ceiling_db: float

    @property
    def ok(self) -> bool:
        """True when the output is finite, DC-free and under the ceiling."""
        return self.finite and self.dc <= DC_LIMIT and self.true_peak_db <= self.ceiling_db + 1e-3

    def violations(self) -> list[str]:
        """Human-readable list of broken clauses (empty when :attr:`ok`)."""
        out = []
        if not self.finite:
            out.append("non-finite samples")
        if self.dc > DC_LIMIT:
            out.append(f"DC {self.dc:.2e} > {DC_LIMIT:.0e}")
        if self.true_peak_db > self.ceiling_db + 1e-3:
            out.append(f"true peak {self.true_peak_db:.3f} dBTP > {self.ceiling_db:g}")
        return out


def dc_block(x: Tensor, sample_rate: int, cutoff_hz: float = 20.0) -> Tensor:
    """4th-order Butterworth high-pass (two cascaded RBJ biquads), causal.

    Args:
        x: ``(..., samples)`` audio.
        sample_rate: Hz.
        cutoff_hz: -3 dB corner in Hz (> 0, < Nyquist).

    Returns:
        ``(..., samples)`` filtered copy. Differentiable (``torchaudio`` lfilter).
    """
    y = x
    for q in _BUTTER4_Q:
        y = AF.highpass_biquad(y, sample_rate, cutoff_hz, Q=q)
    return y


def _interpolator(taps: int = 48, beta: float = 8.0) -> Tensor:
    """``(4, 1, taps)`` polyphase kernels of a 4x Kaiser-windowed-sinc interpolator (unit DC gain per phase)."""
    half = taps // 2
    offsets = torch.arange(-half + 1, half + 1, dtype=torch.float64)
    phases = torch.arange(4, dtype=torch.float64)[:, None] / 4.0
    tau = offsets[None, :] - phases
    arg = (1.0 - (tau / (half + 1)) ** 2).clamp_min(0.0)
    window = torch.special.i0(beta * torch.sqrt(arg)) / torch.special.i0(torch.tensor(beta, dtype=torch.float64))
    h = torch.sinc(tau) * window
    h = h / h.sum(dim=1, keepdim=True)
    return h.flip(-1)[:, None, :]  # conv1d correlates: flip to convolve


def _toeplitz(kernel: Tensor, block: int) -> Tensor:
    """``(block + taps - 1, phases * block)`` matrix: a frame times it gives every phase of ``block`` samples."""
    phases, taps = kernel.shape
    mat = torch.zeros(block + taps - 1, phases, block, dtype=kernel.dtype)
    for j in range(block):
        mat[j : j + taps, :, j] = kernel.T
    return mat.reshape(block + taps - 1, phases * block)


def true_peak_db(x: Tensor) -> float:
    """4x-oversampled peak (dBTP) of ``(channels, samples)`` or ``(batch, channels, samples)`` audio.

    Polyphase 4x interpolation with a 48-tap-per-phase Kaiser-windowed sinc (beta 8),
    in the spirit of ITU-R BS.1770-4 Annex 2 (whose reference filter is shorter),
    computed as frames times a block-Toeplitz matrix (one matrix product).
    """
    flat = x.detach().reshape(-1, x.shape[-1]).to(torch.float32)
    n = flat.shape[-1]
    if flat.numel() == 0:
        return -200.0
    kernel = _interpolator()[1:, 0].flip(-1).to(torch.float32)  # phases 1..3, correlation taps
    taps = kernel.shape[-1]
    half = taps // 2
    block = 64
    blocks = -(-n // block)
    padded = torch.nn.functional.pad(flat, (half - 1, blocks * block - n + half))
    frames = padded.unfold(-1, block + taps - 1, block)  # (channels, blocks, block + taps - 1)
    peak = float(flat.abs().max())
    matrix = _toeplitz(kernel, block)
    for start in range(0, blocks, 4096):
        peak = max(peak, float((frames[:, start : start + 4096] @ matrix).abs().max()))
    return 20.0 * torch.log10(torch.tensor(max(peak, 1e-10))).item()


def _loudness(x: Tensor, sample_rate: int) -> float | None:
    if x.shape[-1] < int(0.4 * sample_rate) + 1:
        return None
    return float(integrated_loudness(x[None].to(torch.float32), sample_rate)[0])


def check_safe(
    x: Tensor,
    sample_rate: int,
    *,
    ceiling_db: float = -1.0,
    gain_db: float = 0.0,
    replaced: int = 0,
    measure_loudness: bool = True,
) -> SafetyReport:
    """Measure ``(channels, samples)`` audio against the safety contract."""
    finite = bool(torch.isfinite(x).all())
    dc = float(x.detach().to(torch.float64).mean(dim=-1).abs().max()) if finite else float("inf")
    peak = true_peak_db(x) if finite else float("inf")
    loud = _loudness(x, sample_rate) if (finite and measure_loudness) else None
    return SafetyReport(finite, replaced, dc, peak, loud, gain_db, ceiling_db)


_ENVELOPE_BLOCK_S = 0.05


def _remove_residual_mean(y: Tensor, sample_rate: int) -> Tensor:
    """Subtract each channel's remaining mean, spread along its smoothed envelope (mean exactly 0).

    A causal high-pass leaves a small mean on a finite signal (its ringing past the end
    is cut off). The correction ``mean * e(t) / mean(e)`` follows the channel's amplitude
    envelope ``e`` (mean |y| per 50 ms block, linearly interpolated), so it lies far below
    the audio band, is tiny relative to the signal wherever it acts, and leaves silent
    stretches silent.
    """
    channels, n = y.shape
    mean = y.double().mean(dim=-1, keepdim=True)
    if float(mean.abs().max()) == 0.0:
        return y
    block = max(1, min(n, int(_ENVELOPE_BLOCK_S * sample_rate)))
    blocks = -(-n // block)
    padded = torch.nn.functional.pad(y.abs(), (0, blocks * block - n))
    counts = torch.full((blocks,), float(block))
    counts[-1] = n - (blocks - 1) * block
    coarse = padded.reshape(channels, blocks, block).sum(-1) / counts  # (channels, blocks)
    env = torch.nn.functional.interpolate(coarse[None], size=n, mode="linear", align_corners=False)[0]
    scale = env.double().mean(dim=-1, keepdim=True)
    weight = torch.where(scale > 0, env.double() / scale.clamp_min(1e-300), torch.ones_like(env, dtype=torch.float64))
    return (y.double() - mean * weight).to(y.dtype)


def make_safe(
    x: Tensor,
    sample_rate: int,
    *,
    ceiling_db: float = -1.0,
    loudness_lufs: float | None = None,
    highpass_hz: float = 20.0,
    gain_db: float = 0.0,
    max_gain_db: float = 30.0,
    report: bool = True,
) -> tuple[Tensor, SafetyReport | None]:
    """Apply the safety contract to ``(channels, samples)`` audio.

    Args:
        x: ``(channels, samples)`` float audio (not modified).
        sample_rate: Hz.
        ceiling_db: true-peak ceiling in dBTP (<= 0).
        loudness_lufs: optional integrated-loudness target (LUFS).
        highpass_hz: DC-blocking high-pass corner in Hz.
        gain_db: gain applied after the loudness target and before the limiter (velocity, trim).
        max_gain_db: largest gain (up or down) the loudness target may apply.
        report: measure the result's loudness and DC for the report (the true peak is
            measured anyway).

    Returns:
        ``(y, report)``: ``y`` ``(channels, samples)`` float32, finite, high-passed,
        true peak <= ``ceiling_db``; ``report`` (None when ``report=False``).
        Not differentiable in general (non-finite samples are replaced).
    """
    if x.ndim != 2:
        raise ValueError(f"x must be (channels, samples), got shape {tuple(x.shape)}")
    y = x.detach().to(torch.float32)
    replaced = 0
    if not bool(torch.isfinite(y).all()):
        bad = ~torch.isfinite(y)
        replaced = int(bad.sum())
        y = torch.where(bad, torch.zeros_like(y), y)
    # a runaway signal (e.g. 1e30 after a bend) would overflow the filters: bound it first
    y = y.clamp(-1e6, 1e6)
    y = dc_block(y, sample_rate, highpass_hz)
    y = _remove_residual_mean(y, sample_rate)
    loud_gain = 0.0
    if loudness_lufs is not None:
        current = _loudness(y, sample_rate)
        if current is not None and current > -100.0:
            loud_gain = max(-max_gain_db, min(max_gain_db, loudness_lufs - current))
    total_gain = loud_gain + gain_db
    if total_gain != 0.0:
        y = y * (10.0 ** (total_gain / 20.0))
    gain_db = total_gain
    y = limiter(y[None], sample_rate, ceiling_db=ceiling_db - LIMITER_MARGIN_DB)[0]
    if not bool(torch.isfinite(y).all()):  # pragma: no cover - the limiter keeps finite input finite
        y = torch.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    # the limiter's time-varying gain can leave a small mean: remove it again, and if that
    # lifted the true peak over the ceiling, scale (uniformly, keeping the mean at zero)
    y = _remove_residual_mean(y, sample_rate).contiguous()
    peak = true_peak_db(y)
    target = ceiling_db - 0.01
    if peak > target:
        y = y * (10.0 ** ((target - peak) / 20.0))
        peak = target
    if not report:
        return y, None
    dc = float(y.double().mean(dim=-1).abs().max())
    return y, SafetyReport(True, replaced, dc, peak, _loudness(y, sample_rate), gain_db, ceiling_db)
