"""Control-space sweeps: descriptor maps over one or two controls, and controllability.

:func:`sweep` renders a patch over a grid of one or two of its controls (values may
lie beyond the range the network was trained on) and measures descriptors
(loudness, centroid, decay, ...) at every grid point; optionally it also renders the
sound of travelling through the grid (a zig-zag trajectory, click-free automation).
:func:`controllability` sweeps a patch's main control and reports the Spearman rank
correlation between the control and the descriptor it is meant to move.

Maps are measured without the patch's loudness target (so loudness reflects what the
network does); the safety stage still applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from neuromix.core.errors import ConfigError
from neuromix.synthesis.analysis import DESCRIPTORS, describe, spearman
from neuromix.synthesis.patch import Patch

__all__ = ["Controllability", "SweepResult", "controllability", "sweep", "unnormalised"]


@dataclass
class SweepResult:
    """Descriptor maps over a control grid.

    Attributes:
        controls: the swept control names (one or two).
        values: the grid values of each control.
        maps: descriptor -> array shaped ``(len(values[0]),)`` or ``(len(values[0]), len(values[1]))``.
        trajectory: ``(2, samples)`` sound of a zig-zag path through the grid (or None).
        sample_rate: Hz.
    """

    controls: list[str]
    values: list[list[float]]
    maps: dict[str, np.ndarray]
    trajectory: Tensor | None
    sample_rate: int


def unnormalised(patch: Patch) -> Patch:
    """A copy of ``patch`` without its loudness target."""
    doc = patch.to_dict()
    doc["output"]["loudness_lufs"] = None
    return patch._derive(doc)


def sweep(
    patch: Patch,
    control_a: str,
    values_a: Sequence[float],
    control_b: str | None = None,
    values_b: Sequence[float] | None = None,
    *,
    seconds: float = 1.0,
    note: float | None = None,
    seed: int | None = None,
    descriptors: Sequence[str] = ("loudness_lufs", "centroid_hz", "decay_s"),
    trajectory_s: float | None = None,
) -> SweepResult:
    """Render ``patch`` over a grid of one or two controls and map descriptors.

    Args:
        patch: the patch.
        control_a, values_a: first control and its values.
        control_b, values_b: optional second control and its values.
        seconds: gate length of each grid render.
        note: MIDI note (default the patch's).
        seed: seed (default the patch's).
        descriptors: names from :data:`neuromix.synthesis.analysis.DESCRIPTORS`.
        trajectory_s: if given, also render a zig-zag path through the grid lasting this long
            (automating the controls, or crossfading grid renders where a control cannot
            vary over time, e.g. an LFO's depth).

    Returns:
        :class:`SweepResult`.
    """
    unknown = [d for d in descriptors if d not in DESCRIPTORS]
    if unknown:
        raise ConfigError(f"unknown descriptor(s) {unknown}; descriptors: {', '.join(DESCRIPTORS)}")
    if not values_a or (control_b is not None and not values_b):
        raise ConfigError("sweep: give at least one value per swept control")
    base = unnormalised(patch)
    grid_b: list[float | None] = list(values_b) if control_b is not None and values_b is not None else [None]
    shape = (len(values_a), len(grid_b)) if control_b is not None else (len(values_a),)
    maps = {d: np.zeros(shape) for d in descriptors}
    for i, a in enumerate(values_a):
        for j, b in enumerate(grid_b):
            settings = {control_a: float(a)}
            if control_b is not None and b is not None:
                settings[control_b] = float(b)
            rendered = base.with_controls(settings).render(seconds, note=note, seed=seed)
            desc = describe(rendered.audio, rendered.sample_rate)
            for d in descriptors:
                index = (i, j) if control_b is not None else (i,)
                maps[d][index] = float(desc[d][0])
    trajectory = None
    if trajectory_s is not None:
        trajectory = _trajectory(
            patch, control_a, list(values_a), control_b, list(values_b or []), trajectory_s, note, seed
        )
    names = [control_a] + ([control_b] if control_b is not None else [])
    values = [list(map(float, values_a))] + ([list(map(float, values_b or []))] if control_b is not None else [])
    return SweepResult(names, values, maps, trajectory, patch.sample_rate)


def _trajectory(
    patch: Patch,
    control_a: str,
    values_a: list[float],
    control_b: str | None,
    values_b: list[float],
    seconds: float,
    note: float | None,
    seed: int | None,
) -> Tensor:
    """The sound of a zig-zag path through the grid: automation when the controls accept it,
    else renders of the grid points in path order joined by 20 ms raised-cosine crossfades."""
    low_a, high_a = min(values_a), max(values_a)
    curves: dict[str, list[list[float]]] = {control_a: [[0.0, low_a], [seconds, high_a]]}
    if control_b is not None and values_b:
        legs = max(1, len(values_b) - 1)
        curves[control_a] = [[seconds * k / legs, low_a if k % 2 == 0 else high_a] for k in range(legs + 1)]
        curves[control_b] = [[0.0, min(values_b)], [seconds, max(values_b)]]
    try:
        automated = patch.with_automation(curves)
    except ConfigError:
        automated = None
    if automated is not None:
        return automated.render(seconds, note=note, seed=seed).audio
    path: list[dict[str, float]] = []
    for j, b in enumerate(values_b or [None]):  # type: ignore[list-item]
        row = values_a if j % 2 == 0 else values_a[::-1]
        path += [{control_a: a, **({control_b: b} if control_b is not None and b is not None else {})} for a in row]
    sr = patch.sample_rate
    fade = int(0.02 * sr)
    step = max(2 * fade + 1, int(round(seconds * sr / len(path))))
    total = step * len(path) + int(round(patch.envelope.release_s * sr))
    out = torch.zeros(2, total + fade)
    ramp = 0.5 - 0.5 * torch.cos(torch.pi * (torch.arange(fade) + 0.5) / fade)
    for k, settings in enumerate(path):
        last = k == len(path) - 1
        length = total - k * step if last else step + fade
        audio = patch.with_controls(settings).render(length / sr, note=note, seed=seed).audio[:, :length]
        window = torch.ones(audio.shape[-1])
        if k > 0:
            window[:fade] = ramp
        if not last:
            window[-fade:] = ramp.flip(0)
        out[:, k * step : k * step + audio.shape[-1]] += audio * window
    return out[:, :total]


@dataclass
class Controllability:
    """How well a control moves its intended descriptor.

    Attributes:
        control: control name.
        descriptor: the descriptor it is meant to move.
        values: control values swept.
        measured: descriptor values measured.
        rho: Spearman rank correlation between them.
        spread: max - min of the measured descriptor.
    """

    control: str
    descriptor: str
    values: list[float]
    measured: list[float]
    rho: float
    spread: float


def controllability(
    patch: Patch,
    control: str | None = None,
    *,
    points: int = 6,
    seconds: float = 1.0,
    note: float | None = None,
    seed: int | None = None,
) -> Controllability:
    """Sweep a control (default the patch's main control) over its range and correlate with its descriptor."""
    name = control or patch.main_control
    if name is None:
        raise ConfigError(f"patch {patch.name} has no main control")
    ctrl = patch.controls.get(name)
    if ctrl is None:
        raise ConfigError(f"unknown control {name!r}; controls: {', '.join(patch.controls) or 'none'}")
    if ctrl.descriptor is None:
        raise ConfigError(f"control {name!r} names no descriptor to correlate with")
    values = list(np.linspace(ctrl.low, ctrl.high, points))
    result = sweep(patch, name, values, seconds=seconds, note=note, seed=seed, descriptors=(ctrl.descriptor,))
    measured = [float(v) for v in result.maps[ctrl.descriptor]]
    return Controllability(
        name,
        ctrl.descriptor,
        [float(v) for v in values],
        measured,
        spearman(values, measured),
        max(measured) - min(measured),
    )
