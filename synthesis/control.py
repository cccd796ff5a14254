"""Control-space moves: shifting a network's conditioning or predicted settings along axes.

A ``control`` technique holds one or more axes, each with a (time-varying) amount::

    {"type": "control", "axes": [
        {"kind": "gradient", "descriptor": "centroid_hz", "amount": 1.5},
        {"kind": "random", "seed": 4, "amount": {"lfo": {"rate_hz": 0.3, "depth": 2.0}}},
        {"kind": "class", "from": "bass", "to": "vocal", "amount": 0.5}]}

Axis kinds:

* ``gradient`` -- the direction of steepest ascent of a differentiable descriptor of
  the output (``centroid_hz``, ``rms_db``, ``flatness``, ...) with respect to the
  conditioning (black box: the FiLM vectors; console network: the normalised
  settings), found by one backward pass through the instrument in its current
  (bent) state. A positive amount moves toward "more of the descriptor".
* ``random`` -- a seeded random direction.
* ``context`` / ``token`` (black box) -- scale the context (or track token) half of the
  FiLM conditioning by ``1 + amount``.
* ``setting`` (console network) -- add ``amount`` to one normalised setting, e.g.
  ``"track.eq_high_gain_db"`` or ``"master.reverb_decay_s"``.
* ``class`` -- move the sounding slots' instrument-class embedding from one class to
  another (0 = ``from``, 1 = ``to``; values outside [0, 1] extrapolate).

Amounts are in *steps*: one step moves the black box's conditioning by ``step``
times its norm (``gradient``, ``random``), or the console's normalised settings by
``step`` (a distance in the unit cube). Amounts may go far beyond the range the
network was trained on; the safety stage keeps the output bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from neuromix.core.errors import ConfigError
from neuromix.mixing.classes import INSTRUMENT_CLASSES, class_index
from neuromix.synthesis.analysis import DIFFERENTIABLE, differentiable_descriptor
from neuromix.synthesis.bending import Bend
from neuromix.synthesis.instrument import MAX_CONSOLE_KEYFRAMES, ClassMorph, Instrument, State, keyframe_times
from neuromix.synthesis.modulation import Modulation, parse_modulation
from neuromix.synthesis.schema import check_keys, choice, integer, number, string

__all__ = ["AXIS_KINDS", "Axis", "ControlSpace", "apply_axes", "class_morph", "parse_control"]

AXIS_KINDS = ("gradient", "random", "context", "token", "setting", "class")


@dataclass(frozen=True)
class Axis:
    """One control axis (see the module docstring)."""

    kind: str
    amount: Modulation
    descriptor: str | None = None
    seed: int = 0
    setting: str | None = None
    source: str | None = None
    target: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"kind": self.kind, "amount": self.amount.to_json()}
        if self.kind == "gradient":
            doc["descriptor"] = self.descriptor
        if self.kind == "random":
            doc["seed"] = self.seed
        if self.kind == "setting":
            doc["setting"] = self.setting
        if self.kind == "class":
            doc["from"], doc["to"] = self.source, self.target
        return doc


@dataclass(frozen=True)
class ControlSpace:
    """A ``control`` technique: axes, step size and the probe length of gradient axes."""

    axes: tuple[Axis, ...]
    step: float = 0.25
    probe_s: float = 0.5

    def to_json(self) -> dict[str, Any]:
        return {"type": "control", "axes": [a.to_json() for a in self.axes], "step": self.step, "probe_s": self.probe_s}


def parse_control(doc: Any, where: str) -> ControlSpace:
    """Validate a ``control`` technique object."""
    check_keys(doc, where, ("type", "axes", "step", "probe_s"), ("axes",))
    raw = doc["axes"]
    if not isinstance(raw, list) or not 1 <= len(raw) <= 8:
        raise ConfigError(f"{where}.axes: must be a list of 1 to 8 axes")
    axes = []
    for i, item in enumerate(raw):
        w = f"{where}.axes[{i}]"
        check_keys(item, w, ("kind", "amount", "descriptor", "seed", "setting", "from", "to"), ("kind", "amount"))
        kind = choice(item["kind"], f"{w}.kind", AXIS_KINDS)
        low, high = (-4.0, 4.0) if kind == "class" else (-32.0, 32.0)
        axis = Axis(kind=kind, amount=parse_modulation(item["amount"], f"{w}.amount", low=low, high=high))
        if kind == "gradient":
            axis = Axis(
                kind,
                axis.amount,
                descriptor=choice(item.get("descriptor", "centroid_hz"), f"{w}.descriptor", DIFFERENTIABLE),
            )
        elif kind == "random":
            axis = Axis(kind, axis.amount, seed=integer(item.get("seed", 0), f"{w}.seed", low=0, high=2**31 - 1))
        elif kind == "setting":
            if "setting" not in item:
                raise ConfigError(f"{w}.setting: a setting axis names a console setting, e.g. 'track.eq_high_gain_db'")
            axis = Axis(kind, axis.amount, setting=string(item["setting"], f"{w}.setting"))
        elif kind == "class":
            axis = Axis(
                kind,
                axis.amount,
                source=choice(item.get("from"), f"{w}.from", INSTRUMENT_CLASSES),
                target=choice(item.get("to"), f"{w}.to", INSTRUMENT_CLASSES),
            )
        axes.append(axis)
    if sum(a.kind == "class" for a in axes) > 1:
        raise ConfigError(f"{where}.axes: at most one class axis")
    return ControlSpace(
        axes=tuple(axes),
        step=number(doc.get("step", 0.25), f"{where}.step", low=0.0, high=4.0, low_open=True),
        probe_s=number(doc.get("probe_s", 0.5), f"{where}.probe_s", low=0.05, high=4.0),
    )


def class_morph(space: ControlSpace | None, sounding: Sequence[int]) -> ClassMorph | None:
    """The :class:`ClassMorph` of a control space's class axis (None when it has none)."""
    if space is None:
        return None
    for axis in space.axes:
        if axis.kind == "class":
            return ClassMorph(
                class_index(axis.source or "other"), class_index(axis.target or "other"), axis.amount, tuple(sounding)
            )
    return None


def _setting_index(instrument: Instrument, name: str, sample_rate: int) -> tuple[str, int]:
    console = instrument.network.console(sample_rate)
    group, _, key = name.partition(".")
    ranges = console.track_ranges if group == "track" else console.master_ranges if group == "master" else None
    if ranges is None or key not in ranges:
        names = [f"track.{k}" for k in console.track_ranges] + [f"master.{k}" for k in console.master_ranges]
        raise ConfigError(f"unknown console setting {name!r}; settings: {', '.join(names)}")
    return group, list(ranges).index(key)


def _gradient_direction(
    instrument: Instrument,
    state: State,
    tracks: Tensor,
    sounding: Sequence[int],
    sample_rate: int,
    bends: Sequence[Bend],
    descriptor: str,
    probe_s: float,
) -> tuple[Tensor, ...]:
    """Unit-norm gradient of ``descriptor(output)`` w.r.t. the state's (first keyframe) conditioning."""
    fn = differentiable_descriptor(descriptor)
    probe = tracks[..., : max(1, min(tracks.shape[-1], int(probe_s * sample_rate)))]
    with torch.enable_grad():
        if instrument.family == "blackbox":
            cond = state.cond[:1].detach().clone().requires_grad_(True)  # type: ignore[index]
            out = instrument.process(probe, sounding, sample_rate, State(state.times[:1], cond=cond), bends=bends)
            (grad,) = torch.autograd.grad(fn(out, sample_rate).sum(), [cond])
            norm = grad.norm()
            return ((grad[0] / norm) if norm > 0 else torch.zeros_like(grad[0]),)
        track_u = state.track_u[:1].detach().clone().requires_grad_(True)  # type: ignore[index]
        master_u = state.master_u[:1].detach().clone().requires_grad_(True)  # type: ignore[index]
        out = instrument.process(
            probe, sounding, sample_rate, State(state.times[:1], track_u=track_u, master_u=master_u)
        )
        g_track, g_master = torch.autograd.grad(fn(out, sample_rate).sum(), [track_u, master_u])
        norm = torch.sqrt(g_track.square().sum() + g_master.square().sum())
        if norm <= 0:
            return torch.zeros_like(g_track[0]), torch.zeros_like(g_master[0])
        return g_track[0] / norm, g_master[0] / norm


def apply_axes(
    space: ControlSpace | None,
    instrument: Instrument,
    state: State,
    tracks: Tensor,
    sounding: Sequence[int],
    sample_rate: int,
    bends: Sequence[Bend],
    duration_s: float,
) -> State:
    """Add a control space's axes (all but ``class``) to a state.

    Black box: the axes become per-frame terms of :attr:`State.axes`. Console network:
    the axes are added to the normalised settings at the keyframes (re-keyed to at most
    :data:`MAX_CONSOLE_KEYFRAMES` evenly spaced ones when an amount varies over time)
    and clamped to [0, 1].

    Returns:
        The new state (the input is not modified).
    """
    if space is None:
        return state
    axes = [a for a in space.axes if a.kind != "class"]
    if not axes:
        return state
    if instrument.family == "blackbox":
        assert state.cond is not None
        if any(a.kind == "setting" for a in axes):
            raise ConfigError("control axis kind 'setting' needs a console network; this is a black box")
        base = state.cond[0].detach()
        half = base.shape[-1] // 2
        scale = space.step * float(base.norm())
        out_axes = list(state.axes)
        for axis in axes:
            if axis.kind == "gradient":
                (direction,) = _gradient_direction(
                    instrument,
                    state,
                    tracks,
                    sounding,
                    sample_rate,
                    bends,
                    axis.descriptor or "centroid_hz",
                    space.probe_s,
                )
                direction = direction * scale
            elif axis.kind == "random":
                g = torch.Generator().manual_seed(axis.seed)
                direction = torch.randn(base.shape, generator=g, dtype=base.dtype)
                direction = direction / direction.norm() * scale
            elif axis.kind == "context":
                direction = torch.cat([torch.zeros_like(base[:, :half]), base[:, half:]], dim=-1)
            else:  # token
                direction = torch.cat([base[:, :half], torch.zeros_like(base[:, half:])], dim=-1)
            out_axes.append((direction, axis.amount))
        return State(state.times, cond=state.cond, axes=out_axes)

    # console network: offsets in the normalised settings at keyframes
    assert state.track_u is not None and state.master_u is not None
    if any(a.kind in ("context", "token") for a in axes):
        raise ConfigError("control axis kinds 'context' and 'token' need a black-box network")
    varying = any(not a.amount.is_constant for a in axes)
    if varying and state.keyframes == 1:
        times = keyframe_times(duration_s, 4.0, MAX_CONSOLE_KEYFRAMES)
        track_u = state.track_u.expand(times.shape[0], -1, -1).clone()
        master_u = state.master_u.expand(times.shape[0], -1).clone()
    else:
        times, track_u, master_u = state.times, state.track_u.clone(), state.master_u.clone()
    sound = list(sounding)
    for axis in axes:
        amounts = axis.amount.at(times).to(track_u.dtype)  # (K,)
        if axis.kind == "setting":
            group, index = _setting_index(instrument, axis.setting or "", sample_rate)
            if group == "track":
                track_u[:, sound, index] += amounts[:, None]
            else:
                master_u[:, index] += amounts
            continue
        if axis.kind == "gradient":
            d_track, d_master = _gradient_direction(
                instrument, state, tracks, sounding, sample_rate, bends, axis.descriptor or "centroid_hz", space.probe_s
            )
        else:
            g = torch.Generator().manual_seed(axis.seed)
            d_track = torch.randn(track_u.shape[1:], generator=g)
            d_master = torch.randn(master_u.shape[1:], generator=g)
            norm = torch.sqrt(d_track.square().sum() + d_master.square().sum())
            d_track, d_master = d_track / norm, d_master / norm
        track_u = track_u + space.step * amounts[:, None, None] * d_track[None]
        master_u = master_u + space.step * amounts[:, None] * d_master[None]
    return State(times, track_u=track_u.clamp(0.0, 1.0), master_u=master_u.clamp(0.0, 1.0))
