"""Song-level automation: fader rides predicted per window and smoothed into curves.

A static mix uses one set of settings for the whole song. With automation, the mixer
(a console network or the rules) also predicts settings for overlapping windows of the
song; the difference between each window's track gain and the static gain becomes a
*fader ride* (e.g. the vocal pushed in a quiet verse, a lift into the chorus). The rides
are limited to :data:`MAX_RIDE_DB`, smoothed over neighbouring windows, and rendered as
gains interpolated linearly in dB between knots at the window centres, applied after each
track's compressor (where a console's fader sits). Knots are seconds apart, so a ride
changes by at most a few dB per second: no zipper noise, no clicks.

The curves live in the settings document under ``"automation"`` (so ``--params`` /
``--settings`` reproduce an automated mix and a user can edit them like any setting)::

    "automation": {"parameter": "gain_db", "times_s": [4.0, 8.0, ...],
                   "tracks": {"vocal": [0.0, 1.5, ...], ...}}

and export to CSV (``time_s,track,gain_db``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from neuromix.core.errors import ConfigError
from neuromix.core.io import Multitrack

MAX_RIDE_DB = 6.0
MAX_KNOTS = 10_000
SMOOTHING = (0.25, 0.5, 0.25)  # weights over the previous, this and the next window


@dataclass
class Automation:
    """Fader rides: dB offsets from the static gain at knot times.

    Attributes:
        times_s: ``K`` increasing knot times in seconds.
        rides_db: track name -> ``K`` gain offsets in dB (within +-:data:`MAX_RIDE_DB`).
    """

    times_s: list[float]
    rides_db: dict[str, list[float]]

    def to_dict(self) -> dict:
        """The ``"automation"`` section of a settings document."""
        return {
            "parameter": "gain_db",
            "times_s": [round(t, 4) for t in self.times_s],
            "tracks": {name: [round(v, 3) for v in values] for name, values in self.rides_db.items()},
        }

    def to_csv(self) -> str:
        """``time_s,track,gain_db`` rows (one per knot and track)."""
        lines = ["time_s,track,gain_db"]
        for name, values in self.rides_db.items():
            quoted = '"' + name.replace('"', '""') + '"' if any(c in name for c in ',"\n') else name
            lines += [f"{t:.4f},{quoted},{v:.3f}" for t, v in zip(self.times_s, values)]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_dict(cls, doc: object, names: Sequence[str]) -> Automation:
        """Validate an ``"automation"`` section (tracks must be session track names).

        Raises:
            ConfigError: wrong types, unknown tracks, non-increasing times, rides beyond
                +-:data:`MAX_RIDE_DB` or non-finite values.
        """
        if not isinstance(doc, Mapping):
            raise ConfigError("settings: 'automation' must be an object")
        if doc.get("parameter", "gain_db") != "gain_db":
            raise ConfigError("settings: automation.parameter must be 'gain_db' (fader rides)")
        unknown = set(doc) - {"parameter", "times_s", "tracks"}
        if unknown:
            raise ConfigError(f"settings: unknown automation field(s) {', '.join(sorted(map(str, unknown)))}")
        times = doc.get("times_s")
        if not isinstance(times, list) or not 1 <= len(times) <= MAX_KNOTS:
            raise ConfigError(f"settings: automation.times_s must be a list of 1 to {MAX_KNOTS} times")
        times_f = [_finite(t, "automation.times_s") for t in times]
        if any(b <= a for a, b in zip(times_f, times_f[1:])) or times_f[0] < 0:
            raise ConfigError("settings: automation.times_s must be increasing and >= 0")
        tracks = doc.get("tracks", {})
        if not isinstance(tracks, Mapping):
            raise ConfigError("settings: automation.tracks must be an object of track -> list of dB")
        rides: dict[str, list[float]] = {}
        for name, values in tracks.items():
            if name not in names:
                raise ConfigError(f"settings: automation for unknown track {name!r}")
            if not isinstance(values, list) or len(values) != len(times_f):
                raise ConfigError(f"settings: automation.tracks[{name!r}] must list {len(times_f)} values")
            vals = [_finite(v, f"automation.tracks[{name!r}]") for v in values]
            if any(abs(v) > MAX_RIDE_DB + 1e-6 for v in vals):
                raise ConfigError(f"settings: automation.tracks[{name!r}] rides must stay within +-{MAX_RIDE_DB} dB")
            rides[name] = vals
        return cls(times_f, rides)

    def gains_function(self, sample_rate: int, names: Sequence[str] | None = None) -> Callable[[int, int], Tensor]:
        """``(start, stop) -> (1, tracks, stop - start)`` linear gains for the block renderer.

        Gains interpolate linearly in dB between knots and hold before the first and after
        the last. ``names`` orders the tracks (default: the rides' order; tracks without a
        ride get unity gain).
        """
        order = list(names) if names is not None else list(self.rides_db)
        knots = torch.tensor([self.times_s], dtype=torch.float64) * sample_rate  # (1, K)
        values = torch.tensor(
            [self.rides_db.get(n, [0.0] * len(self.times_s)) for n in order], dtype=torch.float64
        )  # (T, K)

        def gains(start: int, stop: int) -> Tensor:
            t = torch.arange(start, stop, dtype=torch.float64)
            db = _interp(t, knots[0], values)
            return torch.pow(10.0, db / 20.0).to(torch.float32)[None]

        return gains


def _finite(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ConfigError(f"settings: {where} must hold finite numbers")
    return float(value)


def _interp(t: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation of rows ``fp (T, K)`` at ``t (n,)``, held at the ends."""
    if xp.numel() == 1:
        return fp[:, :1].expand(-1, t.numel())
    idx = torch.searchsorted(xp, t).clamp(1, xp.numel() - 1)
    x0, x1 = xp[idx - 1], xp[idx]
    w = ((t - x0) / (x1 - x0)).clamp(0.0, 1.0)
    return fp[:, idx - 1] * (1.0 - w) + fp[:, idx] * w


def smooth_rides(raw_db: Tensor, max_db: float = MAX_RIDE_DB) -> Tensor:
    """Limit and smooth raw per-window gain offsets ``(tracks, windows)`` -> same shape.

    Offsets are clamped to +-``max_db``, smoothed with :data:`SMOOTHING` (edges repeat),
    and re-centred so each track's rides average to zero (the static gain stays the
    track's mean level).
    """
    x = raw_db.clamp(-max_db, max_db)
    if x.shape[-1] >= 3:
        padded = torch.cat([x[:, :1], x, x[:, -1:]], dim=-1)
        w = SMOOTHING
        x = w[0] * padded[:, :-2] + w[1] * padded[:, 1:-1] + w[2] * padded[:, 2:]
    x = x - x.mean(-1, keepdim=True)
    return x.clamp(-max_db, max_db)


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Window starts covering the song (the last window ends at the song's end)."""
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return starts


def automate_mix(
    tracks: Tensor | Multitrack,
    sample_rate: int | None = None,
    *,
    model: str | os.PathLike[str] | nn.Module | object = "console",
    classes: Sequence[str] | Mapping[int | str, str] | None = None,
    names: Sequence[str] | None = None,
    window_seconds: float = 8.0,
    block_seconds: float | None = None,
    progress: bool = False,
) -> tuple[object, Automation]:
    """Mix with fader automation predicted per window.

    Args:
        tracks: as in :func:`~neuromix.mixing.inference.mix_multitrack`.
        sample_rate: as in :func:`~neuromix.mixing.inference.mix_multitrack`.
        model: a console-family mixer (``"console"``, ``"rules"``, a console checkpoint).
        classes: as in :func:`~neuromix.mixing.inference.mix_multitrack`.
        names: as in :func:`~neuromix.mixing.inference.mix_multitrack`.
        window_seconds: analysis window; windows overlap by half (knots every half window).
        block_seconds: render block length.
        progress: show progress bars.

    Returns:
        ``(MixOutcome, Automation)``; the outcome's settings carry the ``"automation"`` section.

    Raises:
        ConfigError: the black-box network (no faders), a window outside 2..60 s.
    """
    from neuromix.mixing.inference import (
        _checked_session,
        _decide_classes,
        _excerpt_cache,
        _pad_short,
        _predict_settings,
        _render_document,
        resolve_model,
        rounded_document,
    )

    if not 2.0 <= window_seconds <= 60.0:
        raise ConfigError("the automation window must be between 2 and 60 seconds")
    audio, sr, names_u, paths = _checked_session(tracks, sample_rate, names)
    length = audio.shape[-1]
    audio = _pad_short(audio, sr)
    mixer = resolve_model(model)
    if mixer.kind == "blackbox":
        raise ConfigError("automation rides console faders; the black-box network has none (use console or rules)")
    excerpt = _excerpt_cache(audio, sr)
    x4 = audio[None]
    with torch.no_grad():
        classes_u = _decide_classes(classes, names_u, paths, excerpt, sr, None)
        console, static = _predict_settings(mixer, x4, excerpt, sr, classes_u, None)
        window = int(window_seconds * sr)
        hop = max(1, window // 2)
        starts = window_starts(audio.shape[-1], window, hop)
        raw = []
        for start in starts:
            piece = audio[..., start : start + window]
            _, params = _predict_settings(mixer, piece[None], lambda p=piece: p, sr, classes_u, None)
            raw.append(params.track["gain_db"][0] - static.track["gain_db"][0])
        rides = smooth_rides(torch.stack(raw, dim=-1)) if len(raw) > 1 else torch.zeros(len(names_u), 1)
    times = [(s + min(window, audio.shape[-1]) / 2) / sr for s in starts]
    automation = Automation(times, {n: rides[i].tolist() for i, n in enumerate(names_u)})
    doc = rounded_document(console, static, names_u, classes_u, mixer.name)
    doc["automation"] = automation.to_dict()
    automation = Automation.from_dict(doc["automation"], names_u)  # exactly what is rendered
    outcome = _render_document(console, x4, sr, doc, names_u, classes_u, mixer.name, block_seconds, progress, None,
                               length)
    return outcome, automation
