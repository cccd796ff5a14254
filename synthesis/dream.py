"""Input optimisation ("dreaming"): gradient ascent on an excitation signal.

A ``dream`` technique replaces one sounding slot's signal by one optimised so that
the instrument does something as much as possible::

    {"type": "dream", "target": {"kind": "unit", "layer": "tcn.blocks.4.conv", "channel": 7},
     "param": "harmonic", "steps": 30, "lr": 0.05, "smooth": 0.01}
    {"type": "dream", "target": {"kind": "descriptor", "name": "flatness", "sign": 1}, "param": "waveform"}
    {"type": "dream", "target": {"kind": "setting", "name": "master.reverb_decay_s"}}   # console network

Targets: the mean activation of one channel of a layer (``unit``), a setting the
console network predicts (``setting``, normalised 0..1), or a differentiable
descriptor of the output (``descriptor``); ``sign = -1`` minimises instead.

Parameterisations keep the result usable as an instrument's excitation:

* ``harmonic`` -- sine and cosine amplitudes of the first ``harmonics`` harmonics of
  the note's pitch (below Nyquist; a number, rounded to an integer so that a control
  can sweep it): the dreamed signal is periodic at the note's pitch, so a dreamed
  patch stays in tune;
* ``waveform`` -- the complex spectrum of one loop of ``loop_s`` seconds, band-limited
  below 0.95 x Nyquist: a free, seamlessly looping signal (a texture).

The peak bound is exact: the signal is divided by its peak and scaled to the slot's
``level_db`` at every step (and in the final render). Regularisers:
``l2 * mean(x^2)`` (favours sparse, peaky signals) and ``smooth * mean(diff(|c|)^2)``
over the magnitudes of neighbouring harmonics/bins (favours smooth spectra).
Optimisation is Adam for a fixed number of steps from a seeded start, at
``opt_rate`` (half the patch rate above 32 kHz), on a segment of ``seconds``: it is
deterministic, and the result is synthesised at the patch rate for the full note.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from neuromix.core.errors import ConfigError
from neuromix.synthesis.analysis import DIFFERENTIABLE, differentiable_descriptor
from neuromix.synthesis.bending import Bend
from neuromix.synthesis.excitation import harmonic_oscillator
from neuromix.synthesis.instrument import Instrument
from neuromix.synthesis.schema import check_keys, choice, integer, number, string

__all__ = ["Dream", "DreamResult", "DreamTarget", "dream", "opt_rate", "parse_dream"]

TARGET_KINDS = ("unit", "setting", "descriptor")
PARAMS = ("harmonic", "waveform")


@dataclass(frozen=True)
class DreamTarget:
    """What the dream maximises (``sign = -1``: minimises)."""

    kind: str
    layer: str | None = None
    channel: int = 0
    name: str | None = None
    sign: float = 1.0

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"kind": self.kind, "sign": self.sign}
        if self.kind == "unit":
            doc["layer"], doc["channel"] = self.layer, self.channel
        else:
            doc["name"] = self.name
        return doc


@dataclass(frozen=True)
class Dream:
    """A ``dream`` technique (see the module docstring)."""

    target: DreamTarget
    param: str = "harmonic"
    steps: int = 30
    lr: float = 0.05
    seconds: float = 0.5
    l2: float = 0.0
    smooth: float = 0.0
    slot: int = 0
    harmonics: int = 32
    loop_s: float = 0.25

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "dream",
            "target": self.target.to_json(),
            "param": self.param,
            "steps": self.steps,
            "lr": self.lr,
            "seconds": self.seconds,
            "l2": self.l2,
            "smooth": self.smooth,
            "slot": self.slot,
            "harmonics": self.harmonics,
            "loop_s": self.loop_s,
        }


def parse_dream(doc: Any, where: str) -> Dream:
    """Validate a ``dream`` technique object."""
    check_keys(
        doc,
        where,
        ("type", "target", "param", "steps", "lr", "seconds", "l2", "smooth", "slot", "harmonics", "loop_s"),
        ("target",),
    )
    raw = check_keys(doc["target"], f"{where}.target", ("kind", "layer", "channel", "name", "sign"), ("kind",))
    kind = choice(raw["kind"], f"{where}.target.kind", TARGET_KINDS)
    sign = number(raw.get("sign", 1.0), f"{where}.target.sign", low=-1.0, high=1.0)
    if sign not in (-1.0, 1.0):
        raise ConfigError(f"{where}.target.sign: must be 1 (maximise) or -1 (minimise)")
    if kind == "unit":
        if "layer" not in raw:
            raise ConfigError(f"{where}.target.layer: a unit target names a layer")
        target = DreamTarget(
            kind,
            layer=string(raw["layer"], f"{where}.target.layer"),
            channel=integer(raw.get("channel", 0), f"{where}.target.channel", low=0),
            sign=sign,
        )
    elif kind == "descriptor":
        target = DreamTarget(kind, name=choice(raw.get("name"), f"{where}.target.name", DIFFERENTIABLE), sign=sign)
    else:
        if "name" not in raw:
            raise ConfigError(f"{where}.target.name: a setting target names a console setting")
        target = DreamTarget(kind, name=string(raw["name"], f"{where}.target.name"), sign=sign)
    return Dream(
        target=target,
        param=choice(doc.get("param", "harmonic"), f"{where}.param", PARAMS),
        steps=integer(doc.get("steps", 30), f"{where}.steps", low=1, high=400),
        lr=number(doc.get("lr", 0.05), f"{where}.lr", low=0.0, high=1.0, low_open=True),
        seconds=number(doc.get("seconds", 0.5), f"{where}.seconds", low=0.05, high=4.0),
        l2=number(doc.get("l2", 0.0), f"{where}.l2", low=0.0, high=100.0),
        smooth=number(doc.get("smooth", 0.0), f"{where}.smooth", low=0.0, high=100.0),
        slot=integer(doc.get("slot", 0), f"{where}.slot", low=0, high=7),
        harmonics=int(round(number(doc.get("harmonics", 32), f"{where}.harmonics", low=1.0, high=128.0))),
        loop_s=number(doc.get("loop_s", 0.25), f"{where}.loop_s", low=0.01, high=2.0),
    )


def opt_rate(sample_rate: int) -> int:
    """Rate the dream is optimised at: half the patch rate above 32 kHz (when even), else the patch rate."""
    return sample_rate // 2 if sample_rate > 32000 and sample_rate % 2 == 0 else sample_rate


@dataclass(frozen=True)
class DreamResult:
    """A dreamed excitation.

    Attributes:
        param: ``"harmonic"`` or ``"waveform"``.
        sin_amps, cos_amps: ``(K,)`` harmonic amplitudes (harmonic).
        spectrum: ``(bins,)`` complex spectrum of one loop at ``rate`` (waveform).
        loop_samples: loop length at ``rate`` (waveform).
        rate: optimisation rate (Hz).
        history: objective value (before the sign) at every step.
    """

    param: str
    sin_amps: Tensor | None
    cos_amps: Tensor | None
    spectrum: Tensor | None
    loop_samples: int
    rate: int
    history: tuple[float, ...]

    def signal(self, samples: int, sample_rate: int, pitch_hz: float) -> Tensor:
        """The dreamed signal at ``sample_rate`` (``(samples,)`` float32, peak 1)."""
        if self.param == "harmonic":
            assert self.sin_amps is not None
            x = harmonic_oscillator(samples, sample_rate, pitch_hz, self.sin_amps, self.cos_amps)
        else:
            assert self.spectrum is not None
            ratio = sample_rate / self.rate
            length = int(round(self.loop_samples * ratio))
            spec = torch.zeros(length // 2 + 1, dtype=torch.complex64)
            keep = min(spec.shape[0], self.spectrum.shape[0])
            spec[:keep] = self.spectrum[:keep] * ratio
            loop = torch.fft.irfft(spec, n=length)
            x = loop.repeat(-(-samples // length))[:samples]
        peak = float(x.abs().max())
        return x / peak if peak > 0 else x


def _objective(
    instrument: Instrument,
    spec: Dream,
    tracks: Tensor,
    classes: Tensor,
    sounding: Sequence[int],
    rate: int,
    bends: Sequence[Bend],
) -> Tensor:
    target = spec.target
    key = torch.zeros(1, dtype=torch.float64)
    if target.kind == "setting":
        if instrument.family != "console":
            raise ConfigError("dream target kind 'setting' needs a console network")
        state = instrument.condition(tracks, classes, sounding, rate, key, bends=bends)
        from neuromix.synthesis.control import _setting_index

        group, index = _setting_index(instrument, target.name or "", rate)
        if group == "track":
            return state.track_u[0, list(sounding), index].mean()  # type: ignore[index]
        return state.master_u[0, index]  # type: ignore[index]
    if target.kind == "unit":
        info = instrument.layer(target.layer or "")
        if target.channel >= info.channels:
            raise ConfigError(
                f"dream: layer {info.name} has {info.channels} channels; channel {target.channel} does not exist"
            )
        store: list[Tensor] = []
        module = instrument.module(info.name)
        handle = module.register_forward_hook(
            lambda _m, _i, out: store.append(out) if isinstance(out, Tensor) else None
        )
        try:
            state = instrument.condition(tracks, classes, sounding, rate, key, bends=bends)
            if info.path == "audio":
                instrument.process(tracks, sounding, rate, state, bends=bends)
        finally:
            handle.remove()
        out = store[0]
        return out.select(info.channel_axis % out.ndim, target.channel).mean()
    fn = differentiable_descriptor(target.name or "rms_db")
    state = instrument.condition(tracks, classes, sounding, rate, key, bends=bends)
    return fn(instrument.process(tracks, sounding, rate, state, bends=bends), rate).mean()


def dream(
    instrument: Instrument,
    spec: Dream,
    tracks: Tensor,
    classes: Tensor,
    sounding: Sequence[int],
    sample_rate: int,
    pitch_hz: float,
    level: float,
    seed: int,
    bends: Sequence[Bend] = (),
) -> DreamResult:
    """Optimise the excitation of slot ``spec.slot``.

    Args:
        instrument: the (re-initialised) instrument.
        spec: the technique.
        tracks: ``(1, T, 1, samples)`` the other slots' signals at ``opt_rate(sample_rate)``,
            at least ``spec.seconds`` long (the dreamed slot's row is replaced).
        classes: ``(1, T)`` class labels.
        sounding: indices of the sounding slots (``spec.slot`` indexes into them).
        sample_rate: the patch rate (Hz); the optimisation runs at :func:`opt_rate`.
        pitch_hz: the note's pitch (harmonic parameterisation).
        level: the peak amplitude of the slot.
        seed: seed of the starting point.
        bends: active bends (the dream sees the bent instrument).

    Returns:
        The :class:`DreamResult`.
    """
    if spec.slot >= len(sounding):
        raise ConfigError(f"dream.slot {spec.slot}: the patch has only {len(sounding)} sounding slot(s)")
    row = list(sounding)[spec.slot]
    rate = opt_rate(sample_rate)
    n = min(tracks.shape[-1], int(round(spec.seconds * rate)))
    base = tracks[..., :n].detach()
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64) / rate
    if spec.param == "harmonic":
        count = min(spec.harmonics, int(math.ceil(rate / 2.0 / pitch_hz)) - 1)
        if count < 1:
            raise ConfigError(f"dream: the pitch {pitch_hz:.1f} Hz has no harmonic below Nyquist")
        k = torch.arange(1, count + 1, dtype=torch.float64)
        theta = 2.0 * math.pi * torch.frac(t[:, None] * (pitch_hz * k[None, :]))
        basis = torch.cat([torch.sin(theta), torch.cos(theta)], dim=1).to(torch.float32)  # (n, 2K)
        init = 0.1 * torch.randn(2 * count, generator=g)
        init[0] += 1.0
        coeffs = init.clone().requires_grad_(True)

        def synth() -> tuple[Tensor, Tensor]:
            return basis @ coeffs, coeffs[:count].square() + coeffs[count:].square()
    else:
        loop = max(8, int(round(spec.loop_s * rate)))
        bins = loop // 2 + 1
        limit = int(0.95 * (bins - 1))
        phase = 2.0 * math.pi * torch.rand(bins, generator=g)
        mask = torch.zeros(bins)
        mask[1:limit] = 1.0
        init = torch.stack([torch.cos(phase), torch.sin(phase)], dim=-1) * mask[:, None]
        coeffs = init.clone().requires_grad_(True)
        reps = -(-n // loop)

        def synth() -> tuple[Tensor, Tensor]:
            spec_c = torch.complex(coeffs[:, 0] * mask, coeffs[:, 1] * mask)
            one = torch.fft.irfft(spec_c, n=loop)
            return one.repeat(reps)[:n], (coeffs.square().sum(-1) * mask)

    optimiser = torch.optim.Adam([coeffs], lr=spec.lr)
    history = []
    with torch.enable_grad():
        for _ in range(spec.steps):
            optimiser.zero_grad()
            raw, power = synth()
            x = level * raw / (raw.abs().max() + 1e-6)
            inputs = base.clone()
            inputs[0, row, 0] = x
            value = _objective(instrument, spec, inputs, classes, sounding, rate, bends)
            mags = power.add(1e-12).sqrt()
            loss = -spec.target.sign * value + spec.l2 * x.square().mean() + spec.smooth * mags.diff().square().mean()
            loss.backward()
            optimiser.step()
            history.append(float(value.detach()))
    final = coeffs.detach()
    if spec.param == "harmonic":
        return DreamResult("harmonic", final[:count].clone(), final[count:].clone(), None, 0, rate, tuple(history))
    spectrum = torch.complex(final[:, 0] * mask, final[:, 1] * mask)
    return DreamResult("waveform", None, None, spectrum, loop, rate, tuple(history))
