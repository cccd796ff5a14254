"""Functional, differentiable audio processors in physical units.

Every function takes ``x`` shaped ``(batch, channels, samples)`` and, where
the processing depends on it, the sample rate as second argument. Parameters
are python floats or ``(batch,)`` tensors (one value per batch item). Nothing
here mutates its input.

The filters (:mod:`neuromix.core.dsp.filters`) and dynamics processors
(:mod:`neuromix.core.dsp.dynamics`) are re-exported, so
``from neuromix.core.dsp import functional as F`` gives the whole set.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from neuromix.core.dsp.dynamics import (  # noqa: F401  (re-exported)
    compressor,
    compressor_gain,
    gain_computer,
    limiter,
    smooth_gain,
)
from neuromix.core.dsp.filters import (  # noqa: F401  (re-exported)
    biquad_coefficients,
    biquad_response,
    delay,
    eq_response,
    fft_filter,
    parametric_eq,
    reverb,
    reverb_ir,
)
from neuromix.core.dsp.utils import Param, amp_to_db, as_batch_param, check_audio, db_to_amp, fast_fft_size  # noqa: F401


def gain(x: Tensor, gain_db: Param) -> Tensor:
    """Scale every channel by ``gain_db`` decibels.

    Args:
        x: ``(batch, channels, samples)`` audio.
        gain_db: gain in dB, float or ``(batch,)``.

    Returns:
        ``(batch, channels, samples)``. Differentiable w.r.t. ``x`` and ``gain_db``.
    """
    batch, _, _ = check_audio(x)
    return x * db_to_amp(as_batch_param(gain_db, batch, x))[:, None, None]


def pan_gains(pan: Tensor) -> tuple[Tensor, Tensor]:
    """Constant-power (sin/cos) pan law: left and right gains for ``pan`` in [-1, 1].

    ``theta = (pan + 1) * pi / 4``, ``left = cos(theta)``, ``right = sin(theta)``, so
    ``left**2 + right**2 == 1`` everywhere and the centre is -3.01 dB per side.
    Differentiable.
    """
    theta = (pan.clamp(-1.0, 1.0) + 1.0) * (math.pi / 4.0)
    return torch.cos(theta), torch.sin(theta)


def pan(x: Tensor, pan: Param) -> Tensor:
    """Pan a mono or stereo signal with the constant-power law.

    A mono input becomes stereo ``(cos theta * x, sin theta * x)``: the summed power is
    the same at every position. A stereo input is balanced with the same law scaled by
    sqrt(2) (unity gain at the centre), i.e. left and right are attenuated independently.

    Args:
        x: ``(batch, 1 or 2, samples)`` audio.
        pan: position in [-1 (left), 1 (right)], float or ``(batch,)``.

    Returns:
        ``(batch, 2, samples)``. Differentiable.
    """
    batch, channels, _ = check_audio(x)
    if channels not in (1, 2):
        raise ValueError(f"pan expects 1 or 2 channels, got {channels}")
    left, right = pan_gains(as_batch_param(pan, batch, x))
    if channels == 1:
        return torch.cat([x * left[:, None, None], x * right[:, None, None]], dim=1)
    scale = math.sqrt(2.0)
    return torch.stack([x[:, 0] * (scale * left)[:, None], x[:, 1] * (scale * right)[:, None]], dim=1)


def stereo_width(x: Tensor, width: Param) -> Tensor:
    """Mid/side stereo width: ``mid = (L+R)/2``, ``side = width * (L-R)/2``.

    ``width = 0`` gives mono, ``1`` leaves the signal unchanged, ``2`` doubles the side.

    Args:
        x: ``(batch, 2, samples)`` stereo audio.
        width: side gain (linear, >= 0), float or ``(batch,)``.

    Returns:
        ``(batch, 2, samples)``. Differentiable.
    """
    batch, channels, _ = check_audio(x)
    if channels != 2:
        raise ValueError(f"stereo_width expects 2 channels, got {channels}")
    w = as_batch_param(width, batch, x)[:, None]
    mid = 0.5 * (x[:, 0] + x[:, 1])
    side = 0.5 * (x[:, 0] - x[:, 1]) * w
    return torch.stack([mid + side, mid - side], dim=1)


def fft_convolve(x: Tensor, ir: Tensor) -> Tensor:
    """Linear convolution of ``x`` with ``ir`` by one zero-padded FFT, cut to ``x``'s length.

    Args:
        x: ``(batch, channels, samples)``.
        ir: ``(batch or 1, channels or 1, taps)`` impulse responses.

    Returns:
        ``(batch, channels, samples)``, the causal convolution. Differentiable w.r.t. both.
    """
    check_audio(x)
    n = x.shape[-1] + ir.shape[-1] - 1
    n_fft = fast_fft_size(n)
    spectrum = torch.fft.rfft(x, n=n_fft) * torch.fft.rfft(ir, n=n_fft)
    return torch.fft.irfft(spectrum, n=n_fft)[..., : x.shape[-1]]

