"""Activation sonification: listening to what a layer does.

A ``sonify`` technique captures one layer's output while the instrument plays and
turns the chosen channels into sound::

    {"type": "sonify", "layer": "tcn.blocks.2.act", "mode": "wavetable", "top_k": 24, "mix": 1.0}

The capture is reduced to a ``(channels, frames)`` matrix (first sounding slot;
channel-last layers are transposed; a layer without a time axis gives its rows).
Channels are chosen by index (``channels``) or as the ``top_k`` with the largest
variance over frames (default: all). Modes:

* ``wavetable`` -- at every frame the selected channels, in order, are one cycle of
  a waveform: its harmonics (a real FFT over the channel axis, DC removed, at most
  ``harmonics`` and only those below Nyquist) are interpolated between frames and
  synthesised additively at the note's pitch, tilted by ``tilt_db`` per octave of
  harmonic number. The layer's channel profile becomes the timbre, its evolution over
  time the timbre's evolution; the pitch is exact.
* ``envelope`` -- the mean of the selected channels, normalised to [0, 1] and
  resampled (linearly) to the audio rate, is an amplitude envelope on the
  network's output: the layer plays the rhythm.
* ``direct`` -- the mean of the selected channels, standardised, is read as a
  waveform at ``rate_hz`` samples per second, resampled to the audio rate by
  band-limited sinc interpolation (``torchaudio.functional.resample``) and looped
  with 5 ms crossfade windows at the loop points.

The result replaces (``mix = 1``) or blends with the network's output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torchaudio.functional as AF
from torch import Tensor

from neuromix.core.errors import ConfigError
from neuromix.synthesis.instrument import LayerInfo
from neuromix.synthesis.schema import check_keys, choice, integer, number, string

__all__ = ["SONIFY_MODES", "Sonify", "activation_matrix", "parse_sonify", "sonify"]

SONIFY_MODES = ("wavetable", "envelope", "direct")


@dataclass(frozen=True)
class Sonify:
    """A ``sonify`` technique (see the module docstring)."""

    layer: str
    mode: str = "wavetable"
    channels: tuple[int, ...] | None = None
    top_k: int | None = None
    mix: float = 1.0
    rate_hz: float = 2000.0
    harmonics: int = 48
    tilt_db: float = 0.0

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": "sonify", "layer": self.layer, "mode": self.mode, "mix": self.mix}
        if self.channels is not None:
            doc["channels"] = list(self.channels)
        if self.top_k is not None:
            doc["top_k"] = self.top_k
        if self.mode == "direct":
            doc["rate_hz"] = self.rate_hz
        if self.mode == "wavetable":
            doc["harmonics"] = self.harmonics
            doc["tilt_db"] = self.tilt_db
        return doc


def parse_sonify(doc: Any, where: str) -> Sonify:
    """Validate a ``sonify`` technique object."""
    check_keys(
        doc, where, ("type", "layer", "mode", "channels", "top_k", "mix", "rate_hz", "harmonics", "tilt_db"), ("layer",)
    )
    channels = None
    if doc.get("channels") is not None:
        raw = doc["channels"]
        if not isinstance(raw, list) or not 1 <= len(raw) <= 4096:
            raise ConfigError(f"{where}.channels: must be a non-empty list of channel indices")
        channels = tuple(integer(c, f"{where}.channels[{i}]", low=0) for i, c in enumerate(raw))
    top_k = None if doc.get("top_k") is None else integer(doc["top_k"], f"{where}.top_k", low=1, high=4096)
    if channels is not None and top_k is not None:
        raise ConfigError(f"{where}: give channels or top_k, not both")
    return Sonify(
        layer=string(doc["layer"], f"{where}.layer"),
        mode=choice(doc.get("mode", "wavetable"), f"{where}.mode", SONIFY_MODES),
        channels=channels,
        top_k=top_k,
        mix=number(doc.get("mix", 1.0), f"{where}.mix", low=0.0, high=1.0),
        rate_hz=number(doc.get("rate_hz", 2000.0), f"{where}.rate_hz", low=20.0, high=48000.0),
        harmonics=integer(doc.get("harmonics", 48), f"{where}.harmonics", low=1, high=256),
        tilt_db=number(doc.get("tilt_db", 0.0), f"{where}.tilt_db", low=-24.0, high=24.0),
    )


def activation_matrix(captured: Tensor, info: LayerInfo) -> Tensor:
    """Reduce a captured layer output to ``(channels, frames)`` float32 (first item / slot)."""
    x = captured.detach().to(torch.float32)
    axis = info.channel_axis % x.ndim
    x = x.movedim(axis, 0)  # (C, ...)
    if x.ndim == 1:
        return x[:, None]
    if info.channel_axis == 1 and x.ndim >= 3:
        x = x[:, 0]  # first slot / batch item
    return x.reshape(x.shape[0], -1)


def _select(matrix: Tensor, spec: Sonify) -> Tensor:
    channels = matrix.shape[0]
    if spec.channels is not None:
        bad = [c for c in spec.channels if c >= channels]
        if bad:
            raise ConfigError(f"sonify: layer {spec.layer} has {channels} channels; {bad} do not exist")
        return matrix[list(spec.channels)]
    if spec.top_k is not None and spec.top_k < channels:
        var = matrix.var(dim=1, unbiased=False) if matrix.shape[1] > 1 else matrix.abs()[:, 0]
        order = torch.argsort(-var, stable=True)[: spec.top_k]
        return matrix[order.sort().values]
    return matrix


def _frame_positions(frame_times: Tensor | None, frames: int, samples: int, sample_rate: int) -> Tensor:
    """Fractional frame index of every output sample ``(samples,)`` float64."""
    t = torch.arange(samples, dtype=torch.float64) / sample_rate
    if frame_times is not None and frame_times.shape[0] == frames and frames > 1:
        period = float(frame_times[1] - frame_times[0])
        pos = (t - float(frame_times[0])) / period
    else:
        pos = t / max(samples / sample_rate, 1e-9) * (frames - 1)
    return pos.clamp(0.0, frames - 1)


def _interp_frames(values: Tensor, pos: Tensor) -> Tensor:
    """Linear interpolation of ``(..., frames)`` at fractional positions ``(samples,)``."""
    frames = values.shape[-1]
    if frames == 1:
        return values[..., :1].expand(*values.shape[:-1], pos.shape[0])
    i0 = pos.floor().long().clamp(0, frames - 2)
    frac = (pos - i0).to(values.dtype)
    return values[..., i0] * (1 - frac) + values[..., i0 + 1] * frac


def _frames_to_samples(values: Tensor, samples: int, hop: int | None) -> Tensor:
    """Linear interpolation of ``(rows, frames)`` to ``(rows, samples)``.

    Audio-path frames sit every ``hop`` samples from sample 0 (held after the last one);
    without a hop the frames are spread evenly over the whole render.
    """
    rows, frames = values.shape
    if frames == 1:
        return values.expand(rows, samples)
    if hop is None:
        return torch.nn.functional.interpolate(values[None], size=samples, mode="linear", align_corners=True)[0]
    length = (frames - 1) * hop + 1
    up = torch.nn.functional.interpolate(values[None], size=length, mode="linear", align_corners=True)[0]
    if length >= samples:
        return up[:, :samples]
    return torch.cat([up, up[:, -1:].expand(rows, samples - length)], dim=1)


def _wavetable(sel: Tensor, spec: Sonify, samples: int, sample_rate: int, pitch_hz: float, hop: int | None) -> Tensor:
    tables = sel - sel.mean(dim=0, keepdim=True)  # (C, F), DC removed per frame
    coeffs = torch.fft.rfft(tables, dim=0)[1:]  # (H, F) complex, harmonics 1..C//2
    kmax = int(math.ceil(sample_rate / 2.0 / pitch_hz)) - 1
    count = min(coeffs.shape[0], spec.harmonics, kmax)
    if count <= 0:
        return torch.zeros(samples)
    coeffs = coeffs[:count]
    if spec.tilt_db != 0.0:
        k = torch.arange(1, count + 1, dtype=torch.float32)
        coeffs = coeffs * (10.0 ** (spec.tilt_db * torch.log2(k) / 20.0))[:, None]
    scale = float(coeffs.abs().square().sum(0).sqrt().max())
    if scale <= 0:
        return torch.zeros(samples)
    coeffs = coeffs / scale
    theta = 2.0 * math.pi * torch.frac(torch.arange(samples, dtype=torch.float64) * (pitch_hz / sample_rate))
    step = torch.polar(torch.ones_like(theta), theta).to(torch.complex64)  # e^{i theta}
    z = step.clone()  # e^{i k theta} by recurrence over k
    out = torch.zeros(samples, dtype=torch.float32)
    group = 8  # harmonics upsampled at a time (bounded memory)
    for k0 in range(0, count, group):
        re = _frames_to_samples(coeffs.real[k0 : k0 + group].contiguous(), samples, hop)
        im = _frames_to_samples(coeffs.imag[k0 : k0 + group].contiguous(), samples, hop)
        for i in range(re.shape[0]):  # sum_k Re(c_k e^{i k theta})
            out += re[i] * z.real - im[i] * z.imag
            z = z * step
    return out


def _direct(sel: Tensor, spec: Sonify, samples: int, sample_rate: int) -> Tensor:
    seq = sel.mean(dim=0)
    seq = (seq - seq.mean()) / seq.std().clamp_min(1e-8) if seq.numel() > 1 else torch.zeros(1)
    rate = int(round(spec.rate_hz))
    gcd = math.gcd(rate, int(sample_rate))
    wave = AF.resample(seq[None].double(), rate // gcd, int(sample_rate) // gcd)[0].to(torch.float32)
    if wave.numel() < 2:
        return torch.zeros(samples)
    fade = min(int(0.005 * sample_rate), wave.numel() // 2)
    if fade > 0:
        ramp = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(fade, dtype=torch.float32) + 0.5) / fade)
        wave = wave.clone()
        wave[:fade] *= ramp
        wave[-fade:] *= ramp.flip(0)
    reps = -(-samples // wave.numel())
    return wave.repeat(reps)[:samples]


def sonify(
    captured: Tensor,
    info: LayerInfo,
    spec: Sonify,
    network_out: Tensor,
    sample_rate: int,
    pitch_hz: float,
    frame_times: Tensor | None,
) -> Tensor:
    """Turn a captured layer output into stereo audio and blend it with the network's output.

    Args:
        captured: the layer's output from the render.
        info: the layer.
        spec: the technique.
        network_out: ``(2, samples)`` the network's output of the same render.
        sample_rate: Hz.
        pitch_hz: note pitch (wavetable mode).
        frame_times: ``(frames,)`` times of the audio path's frames (None for
            conditioning-path layers, whose frames are spread over the render).

    Returns:
        ``(2, samples)`` float32.
    """
    samples = network_out.shape[-1]
    sel = _select(activation_matrix(captured, info), spec)
    pos = _frame_positions(frame_times if info.path == "audio" else None, sel.shape[1], samples, sample_rate)
    if spec.mode == "envelope":
        env = sel.mean(dim=0)
        lo, hi = float(env.min()), float(env.max())
        env = (env - lo) / (hi - lo) if hi > lo else torch.ones_like(env)
        shaped = network_out * _interp_frames(env[None], pos)[0].to(network_out.dtype)
        return (1.0 - spec.mix) * network_out + spec.mix * shaped
    if spec.mode == "wavetable":
        hop = None
        if info.path == "audio" and frame_times is not None and frame_times.shape[0] > 1:
            hop = int(round(float(frame_times[1] - frame_times[0]) * sample_rate))
        mono = _wavetable(sel, spec, samples, sample_rate, pitch_hz, hop)
    else:
        mono = _direct(sel, spec, samples, sample_rate)
    peak_net = float(network_out.abs().max())
    peak = float(mono.abs().max())
    level = (peak_net if peak_net > 1e-6 else 0.5) / peak if peak > 0 else 0.0
    return (1.0 - spec.mix) * network_out + spec.mix * (mono * level)[None].expand(2, -1)
