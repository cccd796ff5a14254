"""Excitation: the signals that drive a network, one per track slot.

A patch's excitation has *sounding* slots (heard through the network's audio path)
and *context* slots (only seen by the conditioning path: they shape the set
transformer's context and are never heard). Each slot is a test signal from
:mod:`neuromix.core.signals` or an oscillator of this module, tuned to the note's
pitch where it has one, or user audio::

    {"signal": "saw", "level_db": -6.0, "class": "lead", "pitch_ratio": 1.0, "detune_cents": 0.0}
    {"signal": "noise", "params": {"color": "pink"}, "level_db": -12.0}
    {"signal": "multitone", "params": {"ratios": [1.0, 2.76, 5.40, 8.93]}}
    {"signal": "audio", "params": {"path": "voice.wav"}}

Pitched oscillators (``saw``, ``square``, ``triangle``, ``impulse_train``, ``sine``,
``multitone``, ``tone_bursts``, ``stepped_sine``, ``harmonics``) are band-limited:
harmonics at or above Nyquist are never generated. The wavetable oscillator
(:func:`harmonic_oscillator`) reads a one-cycle table holding only the wanted
harmonics with a float64 phase accumulator, so the pitch is exact. Every slot is
normalised to a peak of 1, scaled by ``level_db`` and faded in and out
(``fade_ms``) so it never starts or ends with a click.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from neuromix.core import signals as S
from neuromix.core.errors import ConfigError
from neuromix.mixing.classes import INSTRUMENT_CLASSES
from neuromix.synthesis.schema import LIMITS, check_keys, choice, integer, number, string

__all__ = ["SIGNALS", "PITCHED_SIGNALS", "Slot", "generate", "harmonic_oscillator", "parse_slot", "midi_to_hz"]

PITCHED_SIGNALS = (
    "saw",
    "square",
    "triangle",
    "impulse_train",
    "sine",
    "multitone",
    "tone_bursts",
    "stepped_sine",
    "harmonics",
)
SIGNALS = PITCHED_SIGNALS + ("noise", "chirp", "exp_sweep", "impulse", "audio", "silence")

_PARAMS: dict[str, tuple[str, ...]] = {
    "saw": ("max_harmonics",),
    "square": ("max_harmonics",),
    "triangle": ("max_harmonics",),
    "impulse_train": ("max_harmonics", "rate_hz"),
    "sine": (),
    "harmonics": ("amplitudes",),
    "multitone": ("ratios",),
    "tone_bursts": ("on_s", "off_s", "low_db", "high_db"),
    "stepped_sine": ("step_s", "levels_db"),
    "noise": ("color",),
    "chirp": ("f0_hz", "f1_hz"),
    "exp_sweep": ("f1_hz", "f2_hz"),
    "impulse": ("delay_s",),
    "audio": ("path", "start_s"),
    "silence": (),
}


def midi_to_hz(note: float) -> float:
    """MIDI note number (69 = A4) to Hz, equal temperament at A4 = 440 Hz."""
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


@dataclass(frozen=True)
class Slot:
    """One track slot of the excitation.

    Attributes:
        signal: one of :data:`SIGNALS`.
        params: the signal's own parameters (validated).
        level_db: peak level in dBFS.
        instrument_class: class label given to the conditioning path (None: unknown).
        pitch_ratio: frequency multiple of the note pitch.
        detune_cents: detuning in cents.
        fade_ms: fade-in/out length in ms.
    """

    signal: str
    params: dict[str, Any] = field(default_factory=dict)
    level_db: float = -6.0
    instrument_class: str | None = None
    pitch_ratio: float = 1.0
    detune_cents: float = 0.0
    fade_ms: float = 5.0

    @property
    def pitched(self) -> bool:
        """True when the slot follows the note's pitch."""
        if self.signal == "impulse_train":
            return "rate_hz" not in self.params
        return self.signal in PITCHED_SIGNALS

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"signal": self.signal, "level_db": self.level_db, "fade_ms": self.fade_ms}
        if self.params:
            doc["params"] = dict(self.params)
        if self.instrument_class is not None:
            doc["class"] = self.instrument_class
        if self.pitched:
            doc["pitch_ratio"] = self.pitch_ratio
            doc["detune_cents"] = self.detune_cents
        return doc


def _float_list(value: Any, where: str, low: float, high: float, max_len: int = 64) -> list[float]:
    if not isinstance(value, list) or not value or len(value) > max_len:
        raise ConfigError(f"{where}: must be a list of 1 to {max_len} numbers")
    return [number(v, f"{where}[{i}]", low=low, high=high) for i, v in enumerate(value)]


def parse_slot(doc: Any, where: str) -> Slot:
    """Validate one slot object."""
    check_keys(
        doc, where, ("signal", "params", "level_db", "class", "pitch_ratio", "detune_cents", "fade_ms"), ("signal",)
    )
    signal = choice(doc["signal"], f"{where}.signal", SIGNALS)
    raw = doc.get("params") or {}
    check_keys(raw, f"{where}.params", _PARAMS[signal])
    p: dict[str, Any] = {}
    w = f"{where}.params"
    if "max_harmonics" in raw:
        p["max_harmonics"] = integer(raw["max_harmonics"], f"{w}.max_harmonics", low=1, high=2048)
    if "rate_hz" in raw:
        p["rate_hz"] = number(raw["rate_hz"], f"{w}.rate_hz", low=0.1, high=2000.0)
    if signal == "harmonics":
        p["amplitudes"] = _float_list(raw.get("amplitudes", [1.0]), f"{w}.amplitudes", -1.0, 1.0)
    if signal == "multitone":
        p["ratios"] = _float_list(raw.get("ratios", [1.0, 2.0, 3.0]), f"{w}.ratios", 0.01, 64.0, 32)
    if signal == "tone_bursts":
        p["on_s"] = number(raw.get("on_s", 0.1), f"{w}.on_s", low=0.005, high=10.0)
        p["off_s"] = number(raw.get("off_s", 0.1), f"{w}.off_s", low=0.005, high=10.0)
        p["low_db"] = number(raw.get("low_db", -60.0), f"{w}.low_db", low=-120.0, high=0.0)
        p["high_db"] = number(raw.get("high_db", 0.0), f"{w}.high_db", low=-120.0, high=0.0)
        if p["high_db"] <= p["low_db"]:
            raise ConfigError(f"{w}.high_db: must be greater than low_db")
    if signal == "stepped_sine":
        p["step_s"] = number(raw.get("step_s", 0.25), f"{w}.step_s", low=0.01, high=10.0)
        p["levels_db"] = _float_list(raw.get("levels_db", [-24.0, -12.0, 0.0]), f"{w}.levels_db", -120.0, 0.0)
    if signal == "noise":
        p["color"] = choice(raw.get("color", "white"), f"{w}.color", ("white", "pink", "brown"))
    if signal == "chirp":
        p["f0_hz"] = number(raw.get("f0_hz", 50.0), f"{w}.f0_hz", low=0.0, high=48000.0)
        p["f1_hz"] = number(raw.get("f1_hz", 5000.0), f"{w}.f1_hz", low=0.0, high=48000.0)
    if signal == "exp_sweep":
        p["f1_hz"] = number(raw.get("f1_hz", 40.0), f"{w}.f1_hz", low=1.0, high=48000.0, low_open=False)
        p["f2_hz"] = number(raw.get("f2_hz", 8000.0), f"{w}.f2_hz", low=1.0, high=48000.0)
        if p["f2_hz"] <= p["f1_hz"]:
            raise ConfigError(f"{w}.f2_hz: must be greater than f1_hz")
    if signal == "impulse":
        p["delay_s"] = number(raw.get("delay_s", 0.0), f"{w}.delay_s", low=0.0, high=LIMITS.max_render_s)
    if signal == "audio":
        if "path" not in raw:
            raise ConfigError(f"{w}.path: an audio slot needs the path of an audio file")
        p["path"] = string(raw["path"], f"{w}.path", max_len=1000)
        p["start_s"] = number(raw.get("start_s", 0.0), f"{w}.start_s", low=0.0)
    cls = doc.get("class")
    if cls is not None:
        cls = choice(cls, f"{where}.class", INSTRUMENT_CLASSES)
    return Slot(
        signal=signal,
        params=p,
        level_db=number(doc.get("level_db", -6.0), f"{where}.level_db", low=-120.0, high=0.0),
        instrument_class=cls,
        pitch_ratio=number(doc.get("pitch_ratio", 1.0), f"{where}.pitch_ratio", low=0.0625, high=16.0),
        detune_cents=number(doc.get("detune_cents", 0.0), f"{where}.detune_cents", low=-1200.0, high=1200.0),
        fade_ms=number(doc.get("fade_ms", 5.0), f"{where}.fade_ms", low=0.0, high=5000.0),
    )


# --------------------------------------------------------------------------- oscillators


def harmonic_oscillator(
    samples: int, sample_rate: int, freq_hz: float, sin_amps: Tensor, cos_amps: Tensor | None = None
) -> Tensor:
    """Band-limited periodic signal ``sum_k a_k sin(k theta) + b_k cos(k theta)``, ``theta = 2 pi f t``.

    A one-cycle table holding exactly the harmonics ``k f < sample_rate / 2`` (by an
    inverse real FFT) is read with a float64 phase accumulator and linear
    interpolation (table of at least 16 points per harmonic; interpolation images
    stay below -40 dB relative to each harmonic). Harmonics at or above Nyquist are
    dropped. Differentiable w.r.t. the amplitudes.

    Args:
        samples: output length.
        sample_rate: Hz.
        freq_hz: fundamental in Hz (> 0).
        sin_amps: ``(K,)`` sine amplitude of harmonics ``1..K``.
        cos_amps: ``(K,)`` cosine amplitudes (None: zeros).

    Returns:
        ``(samples,)`` float32.
    """
    if not (freq_hz > 0.0 and math.isfinite(freq_hz)):
        raise ConfigError(f"oscillator frequency must be positive and finite, got {freq_hz}")
    kmax = int(math.ceil(sample_rate / 2.0 / freq_hz)) - 1
    count = min(int(sin_amps.shape[0]), max(kmax, 0))
    if count <= 0:
        return torch.zeros(samples)
    a = sin_amps[:count].to(torch.float32)
    b = torch.zeros_like(a) if cos_amps is None else cos_amps[:count].to(torch.float32)
    size = max(2048, 1 << int(math.ceil(math.log2(16 * count + 1))))
    spectrum = torch.zeros(size // 2 + 1, dtype=torch.complex64)
    spectrum[1 : count + 1] = torch.complex(b, -a) * (size / 2.0)
    table = torch.fft.irfft(spectrum, n=size)
    table = torch.cat([table, table[:1]])
    cycles = torch.frac(torch.arange(samples, dtype=torch.float64) * (freq_hz / sample_rate))
    pos = cycles * size
    index = pos.floor().long().clamp(0, size - 1)
    frac = (pos - index).to(torch.float32)
    return table[index] * (1.0 - frac) + table[index + 1] * frac


def _waveform_amps(signal: str, count: int) -> tuple[Tensor, Tensor | None]:
    k = torch.arange(1, count + 1, dtype=torch.float64)
    if signal == "saw":
        return (2.0 / math.pi) * torch.where(k % 2 == 1, 1.0, -1.0) / k, None
    if signal == "square":
        return torch.where(k % 2 == 1, 4.0 / (math.pi * k), torch.zeros_like(k)), None
    if signal == "triangle":
        sign = torch.where(((k - 1) / 2) % 2 == 0, 1.0, -1.0)
        return torch.where(k % 2 == 1, 8.0 / (math.pi**2) * sign / k.square(), torch.zeros_like(k)), None
    # impulse train: equal-amplitude cosines (a band-limited pulse)
    return torch.zeros(count, dtype=torch.float64), torch.ones(count, dtype=torch.float64)


def _fit(x: Tensor, samples: int) -> Tensor:
    """Crop or loop ``x`` to ``samples`` samples."""
    if x.shape[0] >= samples:
        return x[:samples]
    reps = -(-samples // max(1, x.shape[0]))
    return x.repeat(reps)[:samples]


def _fade(x: Tensor, sample_rate: int, fade_ms: float) -> Tensor:
    n = x.shape[0]
    length = min(int(round(fade_ms * 1e-3 * sample_rate)), n // 2)
    if length <= 0:
        return x
    ramp = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(length, dtype=torch.float32) + 0.5) / length)
    y = x.clone()
    y[:length] *= ramp
    y[n - length :] *= ramp.flip(0)
    return y


def generate(
    slot: Slot, samples: int, sample_rate: int, pitch_hz: float, seed: int, base_dir: Path | None = None
) -> Tensor:
    """Render one slot's signal.

    Args:
        slot: the slot.
        samples: length in samples.
        sample_rate: Hz.
        pitch_hz: the note's pitch (pitched slots play ``pitch_hz * pitch_ratio`` detuned).
        seed: seed for noise.
        base_dir: folder that relative audio paths are resolved against.

    Returns:
        ``(samples,)`` float32 with peak ``10 ** (level_db / 20)`` (zeros for silence).

    Raises:
        ConfigError: a frequency outside (0, Nyquist) for a fixed-frequency signal.
        AudioInputError: an unreadable audio file.
    """
    sr = int(sample_rate)
    seconds = samples / sr
    nyquist = sr / 2.0
    freq = pitch_hz * slot.pitch_ratio * 2.0 ** (slot.detune_cents / 1200.0)
    p = slot.params
    sig = slot.signal
    if slot.pitched and not 0.0 < freq < nyquist:
        raise ConfigError(f"slot {sig}: its pitch {freq:.1f} Hz is outside (0, {nyquist:g}) Hz")
    if sig in ("saw", "square", "triangle", "impulse_train"):
        rate = p.get("rate_hz", freq)
        count = int(math.ceil(nyquist / rate)) - 1
        count = min(count, p.get("max_harmonics", count))
        sin_amps, cos_amps = _waveform_amps(sig, max(count, 1))
        x = harmonic_oscillator(samples, sr, rate, sin_amps, cos_amps)
    elif sig == "sine":
        x = harmonic_oscillator(samples, sr, freq, torch.ones(1))
    elif sig == "harmonics":
        x = harmonic_oscillator(samples, sr, freq, torch.tensor(p["amplitudes"], dtype=torch.float64))
    elif sig == "multitone":
        freqs = [freq * r for r in p["ratios"] if freq * r < nyquist * 0.98]
        if not freqs:
            raise ConfigError(f"multitone: every partial of {freq:.1f} Hz x ratios lies above Nyquist")
        x = S.multitone(seconds, sr, freqs, schroeder=True)
    elif sig == "tone_bursts":
        bursts = S.tone_bursts(
            sr,
            freq,
            low_db=p["low_db"],
            high_db=p["high_db"],
            on_seconds=p["on_s"],
            off_seconds=p["off_s"],
            repeats=max(1, int(seconds / (p["on_s"] + p["off_s"])) + 1),
            lead_seconds=p["off_s"],
        )
        x = bursts.signal
    elif sig == "stepped_sine":
        x, _ = S.stepped_sine(p["step_s"], sr, freq, p["levels_db"])
    elif sig == "noise":
        x = S.noise(seconds, sr, color=p["color"], rms=0.25, seed=seed)
    elif sig == "chirp":
        f0, f1 = min(p["f0_hz"], nyquist * 0.98), min(p["f1_hz"], nyquist * 0.98)
        x = S.chirp(seconds, sr, f0, f1)
    elif sig == "exp_sweep":
        f2 = min(p["f2_hz"], nyquist * 0.98)
        if p["f1_hz"] >= f2:
            raise ConfigError(f"exp_sweep: f1_hz {p['f1_hz']:g} must be below Nyquist-limited f2 {f2:g}")
        x = S.exp_sweep(max(seconds, 0.1), sr, p["f1_hz"], f2).signal
    elif sig == "impulse":
        x = S.impulse(seconds, sr, delay_s=min(p["delay_s"], seconds - 1.0 / sr))
    elif sig == "audio":
        from neuromix.core.io import read_audio

        path = Path(p["path"])
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        audio, _ = read_audio(path, sr, start_s=p.get("start_s", 0.0), duration_s=min(seconds, LIMITS.max_render_s))
        x = audio.mean(0)
    else:  # silence
        return torch.zeros(samples)
    x = _fit(x.to(torch.float32), samples)
    peak = float(x.abs().max())
    if peak <= 0.0:
        return torch.zeros(samples)
    level = 10.0 ** (slot.level_db / 20.0)
    fade = slot.fade_ms if sig != "impulse" else 0.0
    return _fade(x * (level / peak), sr, fade)
