"""Small shared helpers of the DSP layer: parameter broadcasting and dB conversions."""

from __future__ import annotations

import math

import torch
from torch import Tensor

Param = float | Tensor
"""A processor parameter: a python float or a ``(batch,)`` tensor, physical units."""


def as_batch_param(value: Param, batch: int, like: Tensor) -> Tensor:
    """Return ``value`` as a ``(batch,)`` tensor with the dtype and device of ``like``.

    Args:
        value: a float, a 0-d tensor, or a ``(batch,)`` tensor (also ``(1,)``).
        batch: the batch size of the signal being processed.
        like: tensor whose dtype/device the result takes.

    Returns:
        ``(batch,)`` tensor. Differentiable with respect to ``value`` when it is a tensor.

    Raises:
        ValueError: if a tensor's shape cannot broadcast to ``(batch,)``.
    """
    if not isinstance(value, Tensor):
        return torch.full((batch,), float(value), dtype=like.dtype, device=like.device)
    value = value.to(dtype=like.dtype, device=like.device)
    if value.ndim == 0:
        return value.expand(batch)
    if value.ndim == 1 and value.shape[0] in (1, batch):
        return value.expand(batch)
    raise ValueError(f"parameter of shape {tuple(value.shape)} does not broadcast to ({batch},)")


def db_to_amp(db: Param) -> Param:
    """Convert decibels to a linear amplitude factor, ``10 ** (db / 20)``. Differentiable."""
    if isinstance(db, Tensor):
        return torch.pow(10.0, db / 20.0)
    return 10.0 ** (db / 20.0)


def amp_to_db(amp: Param, floor_db: float = -120.0) -> Param:
    """Convert a linear amplitude to decibels, ``20 log10(|amp|)``, floored at ``floor_db``.

    Differentiable (the floor is a clamp on the amplitude, so the gradient is zero below it).
    """
    floor = 10.0 ** (floor_db / 20.0)
    if isinstance(amp, Tensor):
        return 20.0 * torch.log10(amp.abs().clamp_min(floor))
    return 20.0 * math.log10(max(abs(amp), floor))


def power_to_db(power: Param, floor_db: float = -120.0) -> Param:
    """Convert a power (mean square) to decibels, ``10 log10(power)``, floored at ``floor_db``."""
    floor = 10.0 ** (floor_db / 10.0)
    if isinstance(power, Tensor):
        return 10.0 * torch.log10(power.clamp_min(floor))
    return 10.0 * math.log10(max(power, floor))


def check_audio(x: Tensor, name: str = "x") -> tuple[int, int, int]:
    """Check that ``x`` is a ``(batch, channels, samples)`` tensor and return its shape."""
    if x.ndim != 3:
        raise ValueError(f"{name} must be (batch, channels, samples), got shape {tuple(x.shape)}")
    return x.shape[0], x.shape[1], x.shape[2]


def fast_fft_size(n: int) -> int:
    """Smallest ``2**a * 3**b * 5**c >= n``: an FFT length pocketfft handles efficiently."""
    if n <= 1:
        return 1
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            quotient = -(-n // p35)
            best = min(best, p35 * (1 << (quotient - 1).bit_length()))
            p35 *= 3
        p5 *= 5
    return best
