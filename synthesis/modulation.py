"""Time-varying parameters: constants, breakpoint envelopes (trajectories) and LFOs.

A modulatable parameter in a patch is written either as a number or as an object::

    {"value": 1.5, "lfo": {"rate_hz": 0.5, "depth": 0.5, "shape": "sine", "phase": 0.0}}
    {"points": [[0.0, 0.0], [1.5, 2.0]], "curve": "smooth"}
    {"points": [[0.0, 1.0], [2.0, 0.2]], "lfo": {"rate_hz": 6.0, "depth": 0.1}}

The value at time ``t`` (seconds from the start of the note) is the envelope (or the
constant) plus the LFO. Envelopes hold their first value before the first point and
their last value after the last one. ``"smooth"`` interpolation is a smoothstep
between points (continuous value and slope), ``"linear"`` is piecewise linear; both
are continuous, so a parameter moving along a trajectory never clicks. LFO shapes are
``sine``, ``triangle`` and a rounded ``square`` (``tanh(4 sin)`` normalised), all
continuous for the same reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from neuromix.core.errors import ConfigError
from neuromix.synthesis.schema import LIMITS, check_keys, choice, number

__all__ = ["LFO", "Modulation", "parse_modulation"]

LFO_SHAPES = ("sine", "triangle", "square")
CURVES = ("linear", "smooth")


@dataclass(frozen=True)
class LFO:
    """A low-frequency oscillator added to a parameter.

    Attributes:
        rate_hz: frequency in Hz (0 < rate <= 200).
        depth: peak deviation in the parameter's units (>= 0).
        shape: ``"sine"``, ``"triangle"`` or ``"square"`` (rounded).
        phase: start phase in cycles (0..1).
    """

    rate_hz: float
    depth: float
    shape: str = "sine"
    phase: float = 0.0

    def at(self, times: Tensor) -> Tensor:
        """LFO value ``(T,)`` float64 at ``times`` ``(T,)`` seconds."""
        cycles = times.to(torch.float64) * self.rate_hz + self.phase
        theta = 2.0 * math.pi * torch.frac(cycles)
        if self.shape == "sine":
            wave = torch.sin(theta)
        elif self.shape == "triangle":
            frac = torch.frac(cycles + 0.25)
            wave = 1.0 - 4.0 * (frac - 0.5).abs()
        else:
            wave = torch.tanh(4.0 * torch.sin(theta)) / math.tanh(4.0)
        return self.depth * wave

    def to_json(self) -> dict[str, Any]:
        return {"rate_hz": self.rate_hz, "depth": self.depth, "shape": self.shape, "phase": self.phase}


@dataclass(frozen=True)
class Modulation:
    """A parameter value over time: envelope (or constant) plus an optional LFO.

    Attributes:
        value: the constant used when there are no ``points``.
        points: ``((t_s, value), ...)`` breakpoints with increasing times (may be empty).
        curve: ``"linear"`` or ``"smooth"`` interpolation between points.
        lfo: optional :class:`LFO` added on top.
    """

    value: float = 0.0
    points: tuple[tuple[float, float], ...] = ()
    curve: str = "linear"
    lfo: LFO | None = None

    @property
    def is_constant(self) -> bool:
        """True when the value never changes over time."""
        varying_points = len({v for _, v in self.points}) > 1
        return not varying_points and (self.lfo is None or self.lfo.depth == 0.0)

    def initial(self) -> float:
        """Value at ``t = 0``."""
        return float(self.at(torch.zeros(1, dtype=torch.float64))[0])

    def mean(self) -> float:
        """Constant part (first point's value, or ``value``) -- the value a static use takes."""
        return self.points[0][1] if self.points else self.value

    def at(self, times: Tensor) -> Tensor:
        """Evaluate at ``times`` ``(T,)`` seconds; returns ``(T,)`` float64."""
        t = times.to(torch.float64)
        if self.points:
            knots_t = torch.tensor([p[0] for p in self.points], dtype=torch.float64)
            knots_v = torch.tensor([p[1] for p in self.points], dtype=torch.float64)
            if len(self.points) == 1:
                out = torch.full_like(t, float(knots_v[0]))
            else:
                idx = torch.searchsorted(knots_t, t.contiguous(), right=True).clamp(1, len(self.points) - 1)
                t0, t1 = knots_t[idx - 1], knots_t[idx]
                v0, v1 = knots_v[idx - 1], knots_v[idx]
                u = ((t - t0) / (t1 - t0).clamp_min(1e-12)).clamp(0.0, 1.0)
                if self.curve == "smooth":
                    u = u * u * (3.0 - 2.0 * u)
                out = v0 + (v1 - v0) * u
        else:
            out = torch.full_like(t, self.value)
        if self.lfo is not None:
            out = out + self.lfo.at(t)
        return out

    def with_points(self, points: list[tuple[float, float]], curve: str | None = None) -> Modulation:
        """A copy whose envelope is replaced by ``points`` (automation); the LFO is kept."""
        return Modulation(self.value, tuple(points), curve or self.curve, self.lfo)

    def bounds(self) -> tuple[float, float]:
        """Smallest and largest value the parameter can take."""
        values = [v for _, v in self.points] or [self.value]
        depth = self.lfo.depth if self.lfo is not None else 0.0
        return min(values) - depth, max(values) + depth

    def to_json(self) -> float | dict[str, Any]:
        """Canonical JSON form: a plain number when constant without LFO."""
        if not self.points and self.lfo is None:
            return self.value
        doc: dict[str, Any] = {}
        if self.points:
            doc["points"] = [[t, v] for t, v in self.points]
            doc["curve"] = self.curve
        else:
            doc["value"] = self.value
        if self.lfo is not None:
            doc["lfo"] = self.lfo.to_json()
        return doc


def parse_points(value: Any, where: str, *, low: float | None, high: float | None) -> tuple[tuple[float, float], ...]:
    """Validate a breakpoint list ``[[t_s, value], ...]`` with non-decreasing times."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: must be a non-empty list of [time_s, value] pairs")
    if len(value) > LIMITS.max_points:
        raise ConfigError(f"{where}: has {len(value)} points, more than {LIMITS.max_points}")
    points = []
    last = -math.inf
    for i, pair in enumerate(value):
        if not isinstance(pair, list) or len(pair) != 2:
            raise ConfigError(f"{where}[{i}]: must be a [time_s, value] pair")
        t = number(pair[0], f"{where}[{i}][0] (time_s)", low=0.0, high=LIMITS.max_score_s)
        v = number(pair[1], f"{where}[{i}][1] (value)", low=low, high=high)
        if t < last:
            raise ConfigError(f"{where}[{i}]: times must not decrease ({t:g} after {last:g})")
        last = t
        points.append((t, v))
    return tuple(points)


def parse_modulation(
    value: Any, where: str, *, low: float | None = None, high: float | None = None, allow_time: bool = True
) -> Modulation:
    """Validate a modulatable parameter (number or modulation object) within ``[low, high]``.

    Args:
        value: the JSON value.
        where: field path for messages.
        low, high: bounds every value the parameter takes must respect (LFO included).
        allow_time: False for parameters that cannot vary over time (objects are refused).

    Raises:
        ConfigError: naming ``where``.
    """
    if not isinstance(value, dict):
        return Modulation(value=number(value, where, low=low, high=high))
    if not allow_time:
        raise ConfigError(f"{where}: this parameter cannot vary over time; give a number")
    check_keys(value, where, ("value", "points", "curve", "lfo"))
    if "points" in value and "value" in value:
        raise ConfigError(f"{where}: give either value or points, not both")
    curve = choice(value.get("curve", "linear"), f"{where}.curve", CURVES)
    points: tuple[tuple[float, float], ...] = ()
    base = 0.0
    if "points" in value:
        points = parse_points(value["points"], f"{where}.points", low=low, high=high)
    else:
        base = number(value.get("value", 0.0 if low is None else max(low, 0.0)), f"{where}.value", low=low, high=high)
    lfo = None
    if value.get("lfo") is not None:
        spec = check_keys(value["lfo"], f"{where}.lfo", ("rate_hz", "depth", "shape", "phase"), ("rate_hz", "depth"))
        lfo = LFO(
            rate_hz=number(spec["rate_hz"], f"{where}.lfo.rate_hz", low=0.0, high=200.0, low_open=True),
            depth=number(spec["depth"], f"{where}.lfo.depth", low=0.0),
            shape=choice(spec.get("shape", "sine"), f"{where}.lfo.shape", LFO_SHAPES),
            phase=number(spec.get("phase", 0.0), f"{where}.lfo.phase", low=0.0, high=1.0),
        )
    mod = Modulation(base, points, curve, lfo)
    lo, hi = mod.bounds()
    if (low is not None and lo < low - 1e-12) or (high is not None and hi > high + 1e-12):
        raise ConfigError(
            f"{where}: with its LFO the value ranges over [{lo:g}, {hi:g}], outside the allowed "
            f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"
        )
    return mod
