"""Network-facing processor modules with named, ranged parameters.

Each module wraps one functional processor, stores its sample rate and
declares an ordered ``param_ranges`` dict that maps a network's normalised
0..1 outputs to physical units (and back, for display and editing)::

    eq = ParametricEQ(44100)
    u = torch.rand(batch, eq.num_params)          # a network's sigmoid outputs
    params = eq.denormalise(u)                    # {"low_gain_db": (batch,), ...}
    y = eq(x, params)                             # (batch, channels, samples)

The modules hold no trainable weights: parameters come from the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from neuromix.core.dsp import functional as F

Params = dict[str, Tensor]


@dataclass(frozen=True)
class ParamRange:
    """Range of one physical parameter and its mapping from a normalised 0..1 value.

    Attributes:
        low: smallest physical value.
        high: largest physical value.
        default: neutral value (what "no processing" means for this parameter).
        scale: ``"linear"`` or ``"log"`` (geometric interpolation; for Hz, ms, ratios).
        unit: display unit.
    """

    low: float
    high: float
    default: float
    scale: Literal["linear", "log"] = "linear"
    unit: str = ""

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"empty range [{self.low}, {self.high}]")
        if not self.low <= self.default <= self.high:
            raise ValueError(f"default {self.default} outside [{self.low}, {self.high}]")
        if self.scale == "log" and self.low <= 0:
            raise ValueError("a log range must be positive")

    def to_physical(self, u: Tensor) -> Tensor:
        """Map normalised ``u`` (clamped to [0, 1]) to physical units. Differentiable."""
        u = u.clamp(0.0, 1.0)
        if self.scale == "log":
            return self.low * torch.exp(u * math.log(self.high / self.low))
        return self.low + u * (self.high - self.low)

    def to_normalised(self, value: Tensor) -> Tensor:
        """Inverse of :meth:`to_physical` (values are clamped into the range first)."""
        value = value.clamp(self.low, self.high)
        if self.scale == "log":
            return torch.log(value / self.low) / math.log(self.high / self.low)
        return (value - self.low) / (self.high - self.low)

    def contains(self, value: float) -> bool:
        """Whether a physical value lies inside the range (inclusive)."""
        return self.low <= value <= self.high


class Processor(nn.Module):
    """Base class: a sample rate, ordered ``param_ranges`` and the 0..1 <-> physical maps."""

    param_ranges: dict[str, ParamRange]

    def __init__(self, sample_rate: int) -> None:
        super().__init__()
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.sample_rate = int(sample_rate)

    @property
    def num_params(self) -> int:
        """Number of parameters (length of a normalised parameter vector)."""
        return len(self.param_ranges)

    def denormalise(self, u: Tensor) -> Params:
        """Map ``(..., num_params)`` normalised values to a dict of physical ``(...)`` tensors."""
        if u.shape[-1] != self.num_params:
            raise ValueError(f"expected {self.num_params} parameters, got {u.shape[-1]}")
        return {name: r.to_physical(u[..., i]) for i, (name, r) in enumerate(self.param_ranges.items())}

    def normalise(self, params: Mapping[str, Tensor]) -> Tensor:
        """Map a dict of physical tensors back to ``(..., num_params)`` normalised values."""
        missing = [name for name in self.param_ranges if name not in params]
        if missing:
            raise KeyError(f"missing parameters: {', '.join(missing)}")
        return torch.stack([r.to_normalised(params[name]) for name, r in self.param_ranges.items()], dim=-1)

    def defaults(self, shape: Sequence[int] | int, like: Tensor | None = None) -> Params:
        """Neutral parameters as tensors of the given shape."""
        dtype = like.dtype if like is not None else torch.float32
        device = like.device if like is not None else None
        return {
            name: torch.full(tuple([shape] if isinstance(shape, int) else shape), r.default, dtype=dtype, device=device)
            for name, r in self.param_ranges.items()
        }


class Gain(Processor):
    """Gain stage (:func:`neuromix.core.dsp.functional.gain`)."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__(sample_rate)
        self.param_ranges = {"gain_db": ParamRange(-48.0, 24.0, 0.0, unit="dB")}

    def forward(self, x: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        return F.gain(x, params["gain_db"])


class Pan(Processor):
    """Constant-power pan (:func:`neuromix.core.dsp.functional.pan`); mono or stereo in, stereo out."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__(sample_rate)
        self.param_ranges = {"pan": ParamRange(-1.0, 1.0, 0.0)}

    def forward(self, x: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        return F.pan(x, params["pan"])


class StereoWidth(Processor):
    """Mid/side width (:func:`neuromix.core.dsp.functional.stereo_width`)."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__(sample_rate)
        self.param_ranges = {"width": ParamRange(0.0, 2.0, 1.0)}

    def forward(self, x: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        return F.stereo_width(x, params["width"])


@dataclass(frozen=True)
class EqBand:
    """One band of a parametric EQ layout.

    Attributes:
        name: parameter prefix (e.g. ``"low"`` gives ``low_cutoff_hz``, ``low_gain_db``).
        kind: ``"peaking"``, ``"low_shelf"``, ``"high_shelf"``, ``"highpass"`` or ``"lowpass"``.
        cutoff_hz: (low, high, default) of the corner/centre frequency.
        q: fixed Q, or None to expose ``<name>_q`` as a parameter (peaking bands).
    """

    name: str
    kind: str
    cutoff_hz: tuple[float, float, float]
    q: float | None = None


TRACK_EQ: tuple[EqBand, ...] = (
    EqBand("hp", "highpass", (20.0, 400.0, 20.0), q=1 / math.sqrt(2)),
    EqBand("low", "low_shelf", (40.0, 400.0, 120.0), q=1 / math.sqrt(2)),
    EqBand("low_mid", "peaking", (120.0, 1500.0, 400.0)),
    EqBand("high_mid", "peaking", (1000.0, 8000.0, 3000.0)),
    EqBand("high", "high_shelf", (2000.0, 14000.0, 8000.0), q=1 / math.sqrt(2)),
)
"""The per-track EQ of the console: high-pass, low shelf, two peaking bands, high shelf."""

MASTER_EQ: tuple[EqBand, ...] = (
    EqBand("low", "low_shelf", (40.0, 400.0, 100.0), q=1 / math.sqrt(2)),
    EqBand("mid", "peaking", (200.0, 5000.0, 1000.0)),
    EqBand("high", "high_shelf", (2000.0, 14000.0, 8000.0), q=1 / math.sqrt(2)),
)
"""The master EQ of the console: low shelf, one peaking band, high shelf."""


class ParametricEQ(Processor):
    """Cascade of RBJ biquad bands applied in the frequency domain (one FFT filter per signal).

    Args:
        sample_rate: Hz.
        bands: the band layout (default :data:`TRACK_EQ`).
        max_gain_db: symmetric range of the shelf/peak gains.
    """

    def __init__(self, sample_rate: int, bands: Sequence[EqBand] = TRACK_EQ, max_gain_db: float = 12.0) -> None:
        super().__init__(sample_rate)
        self.bands = tuple(bands)
        ranges: dict[str, ParamRange] = {}
        for band in self.bands:
            low, high, default = band.cutoff_hz
            ranges[f"{band.name}_cutoff_hz"] = ParamRange(low, high, default, "log", "Hz")
            if band.kind not in ("highpass", "lowpass"):
                ranges[f"{band.name}_gain_db"] = ParamRange(-max_gain_db, max_gain_db, 0.0, unit="dB")
            if band.q is None:
                ranges[f"{band.name}_q"] = ParamRange(0.3, 6.0, 0.707, "log")
        self.param_ranges = ranges

    def band_tensors(self, params: Mapping[str, Tensor]) -> tuple[list[str], Tensor, Tensor, Tensor]:
        """Stack a parameter dict into ``(kinds, cutoff_hz, gain_db, q)``, each ``(..., bands)``."""
        ref = params[f"{self.bands[0].name}_cutoff_hz"]
        cut, gain, q = [], [], []
        for band in self.bands:
            cut.append(params[f"{band.name}_cutoff_hz"])
            gain.append(params.get(f"{band.name}_gain_db", torch.zeros_like(ref)))
            q.append(params[f"{band.name}_q"] if band.q is None else torch.full_like(ref, band.q))
        return [b.kind for b in self.bands], torch.stack(cut, -1), torch.stack(gain, -1), torch.stack(q, -1)

    def response(self, params: Mapping[str, Tensor], n_fft: int, gain_db: Tensor | None = None) -> Tensor:
        """Complex response ``(batch, n_fft//2+1)`` of the cascade, optionally times a broadband gain."""
        kinds, cut, gain, q = self.band_tensors(params)
        h = F.eq_response(self.sample_rate, n_fft, kinds, cut, gain, q)
        if gain_db is not None:
            h = h * F.db_to_amp(gain_db)[:, None]
        return h

    def forward(self, x: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        kinds, cut, gain, q = self.band_tensors(params)
        return F.parametric_eq(x, self.sample_rate, kinds, cut, gain, q)


class Compressor(Processor):
    """Feed-forward, stereo-linked compressor (:func:`neuromix.core.dsp.functional.compressor`)."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__(sample_rate)
        self.param_ranges = {
            "threshold_db": ParamRange(-60.0, 0.0, 0.0, unit="dB"),
            "ratio": ParamRange(1.0, 20.0, 1.0, "log"),
            "attack_ms": ParamRange(0.5, 100.0, 10.0, "log", "ms"),
            "release_ms": ParamRange(10.0, 1000.0, 100.0, "log", "ms"),
            "knee_db": ParamRange(0.0, 12.0, 6.0, unit="dB"),
            "makeup_db": ParamRange(0.0, 24.0, 0.0, unit="dB"),
        }

    def forward(self, x: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        return F.compressor(
            x,
            self.sample_rate,
            threshold_db=params["threshold_db"],
            ratio=params["ratio"],
            attack_ms=params["attack_ms"],
            release_ms=params["release_ms"],
            knee_db=params["knee_db"],
            makeup_db=params["makeup_db"],
        )


class Limiter(Processor):
    """Look-ahead true-peak limiter with an input gain (:func:`neuromix.core.dsp.functional.limiter`)."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__(sample_rate)
        self.param_ranges = {
            "gain_db": ParamRange(-12.0, 12.0, 0.0, unit="dB"),
            "ceiling_db": ParamRange(-6.0, -1.0, -1.0, unit="dBTP"),
            "release_ms": ParamRange(10.0, 500.0, 50.0, "log", "ms"),
        }

    def forward(self, x: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        return F.limiter(
            F.gain(x, params["gain_db"]),
            self.sample_rate,
            ceiling_db=params["ceiling_db"],
            release_ms=params["release_ms"],
        )


class Reverb(Processor):
    """Band-decaying noise reverb, 100 % wet (:func:`neuromix.core.dsp.functional.reverb`).

    Args:
        sample_rate: Hz.
        seed: seed of the impulse response's noise (the reverb is deterministic given it).
        max_seconds: impulse response length.
    """

    def __init__(self, sample_rate: int, seed: int = 0, max_seconds: float = 3.0) -> None:
        super().__init__(sample_rate)
        self.seed = int(seed)
        self.max_seconds = float(max_seconds)
        self.param_ranges = {
            "decay_s": ParamRange(0.2, 4.0, 1.5, "log", "s"),
            "damping": ParamRange(0.1, 1.0, 0.5),
            "predelay_ms": ParamRange(0.0, 80.0, 10.0, unit="ms"),
        }

    def forward(self, x: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        return F.reverb(
            x,
            self.sample_rate,
            params["decay_s"],
            damping=params["damping"],
            predelay_ms=params["predelay_ms"],
            seed=self.seed,
            ir_seconds=self.max_seconds,
        )


class Delay(Processor):
    """Feedback echo (:func:`neuromix.core.dsp.functional.delay`)."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__(sample_rate)
        self.param_ranges = {
            "delay_ms": ParamRange(1.0, 1000.0, 250.0, "log", "ms"),
            "feedback": ParamRange(0.0, 0.95, 0.3),
            "mix": ParamRange(0.0, 1.0, 0.0),
        }

    def forward(self, x: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        return F.delay(x, self.sample_rate, params["delay_ms"], params["feedback"], params["mix"])
