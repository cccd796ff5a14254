"""A differentiable mixing console.

Signal flow (every stage can be switched off in :class:`ConsoleConfig`)::

    track ─ gain ─ EQ ─ compressor ─ pan ─┬──────────────────── dry bus ─┐
                                          └─ send ─ reverb bus ─ reverb ─┴─ master EQ ─ width ─ bus compressor ─ limiter ─ mix

Speed comes from doing the expensive work once: the track gain is folded into
the EQ's frequency response (one block-FFT filter per track channel), the
compressor's side chain runs at a reduced frame rate, panning and the reverb
send are one matrix product over tracks, and the reverb runs once on the
stereo send bus, not per track.

Parameters are physical (``gain_db``, ``eq_low_cutoff_hz``, ``comp_ratio``, ...):
per track as ``(batch, tracks)`` tensors and for the master as ``(batch,)``
tensors, held in :class:`ConsoleParams`. ``Console.track_ranges`` and
``Console.master_ranges`` give every parameter's range, default and unit, and
the 0..1 mapping a network uses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import Tensor, nn

from neuromix.core.dsp import functional as F
from neuromix.core.dsp.modules import (
    MASTER_EQ,
    TRACK_EQ,
    Compressor,
    Limiter,
    ParametricEQ,
    ParamRange,
    Reverb,
)
from neuromix.core.errors import ConfigError

SETTINGS_FORMAT = "neuromix-console-settings"
SETTINGS_VERSION = 1


@dataclass(frozen=True)
class ConsoleConfig:
    """Which console stages are active, and the reverb's fixed properties.

    A disabled stage is bypassed exactly (its parameters are ignored), which is
    what a training curriculum over stages uses.
    """

    track_eq: bool = True
    track_compressor: bool = True
    reverb: bool = True
    master_eq: bool = True
    master_width: bool = True
    bus_compressor: bool = True
    limiter: bool = True
    reverb_seconds: float = 2.5
    reverb_seed: int = 0
    eq_fft_size: int = 65536


@dataclass
class ConsoleParams:
    """Physical console settings.

    Attributes:
        track: name -> ``(batch, tracks)`` tensor, names as in ``Console.track_ranges``.
        master: name -> ``(batch,)`` tensor, names as in ``Console.master_ranges``.
    """

    track: dict[str, Tensor] = field(default_factory=dict)
    master: dict[str, Tensor] = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return next(iter(self.master.values())).shape[0]

    def detach(self) -> ConsoleParams:
        """A copy with every tensor detached (no graph), e.g. for display or JSON."""
        return ConsoleParams(
            {k: v.detach().clone() for k, v in self.track.items()},
            {k: v.detach().clone() for k, v in self.master.items()},
        )

    def select(self, index: Sequence[int] | Tensor) -> ConsoleParams:
        """Keep only the given tracks (reorders when ``index`` is a permutation)."""
        index = torch.as_tensor(index, dtype=torch.long)
        return ConsoleParams({k: v[:, index] for k, v in self.track.items()}, dict(self.master))


def _prefixed(prefix: str, ranges: Mapping[str, ParamRange]) -> dict[str, ParamRange]:
    return {f"{prefix}{name}": r for name, r in ranges.items()}


class Console(nn.Module):
    """Differentiable mixing console: multitrack + settings -> stereo mix.

    Args:
        sample_rate: Hz; :meth:`forward` refuses audio at another rate.
        config: active stages (default: all on).

    Example:
        >>> console = Console(44100)
        >>> params = console.default_params(batch=1, tracks=4)
        >>> mix = console(tracks, mask, params)          # (1, 2, samples)
    """

    def __init__(self, sample_rate: int, config: ConsoleConfig | None = None) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.config = config or ConsoleConfig()
        self.track_eq = ParametricEQ(sample_rate, TRACK_EQ)
        self.master_eq = ParametricEQ(sample_rate, MASTER_EQ)
        self.compressor = Compressor(sample_rate)
        self.limiter = Limiter(sample_rate)
        self.reverb = Reverb(sample_rate, seed=self.config.reverb_seed, max_seconds=self.config.reverb_seconds)

        self.track_ranges: dict[str, ParamRange] = {
            "gain_db": ParamRange(-36.0, 12.0, 0.0, unit="dB"),
            **_prefixed("eq_", self.track_eq.param_ranges),
            **_prefixed("comp_", self.compressor.param_ranges),
            "pan": ParamRange(-1.0, 1.0, 0.0),
            "reverb_send_db": ParamRange(-60.0, 0.0, -60.0, unit="dB"),
        }
        self.master_ranges: dict[str, ParamRange] = {
            **_prefixed("eq_", self.master_eq.param_ranges),
            "width": ParamRange(0.0, 2.0, 1.0),
            **_prefixed("comp_", self.compressor.param_ranges),
            **_prefixed("reverb_", self.reverb.param_ranges),
            "reverb_return_db": ParamRange(-24.0, 6.0, 0.0, unit="dB"),
            **_prefixed("limiter_", self.limiter.param_ranges),
        }

    # ------------------------------------------------------------------ parameters

    def default_params(self, batch: int, tracks: int, like: Tensor | None = None) -> ConsoleParams:
        """Neutral settings: unity gain, flat EQ, no compression, centred, no reverb, safety limiter."""
        dtype = like.dtype if like is not None else torch.float32
        device = like.device if like is not None else None
        return ConsoleParams(
            {k: torch.full((batch, tracks), r.default, dtype=dtype, device=device) for k, r in self.track_ranges.items()},
            {k: torch.full((batch,), r.default, dtype=dtype, device=device) for k, r in self.master_ranges.items()},
        )

    def denormalise(self, track_u: Tensor, master_u: Tensor) -> ConsoleParams:
        """Map normalised network outputs to physical settings.

        Args:
            track_u: ``(batch, tracks, len(track_ranges))`` in [0, 1].
            master_u: ``(batch, len(master_ranges))`` in [0, 1].
        """
        if track_u.shape[-1] != len(self.track_ranges) or master_u.shape[-1] != len(self.master_ranges):
            raise ValueError(
                f"expected {len(self.track_ranges)} track and {len(self.master_ranges)} master parameters, "
                f"got {track_u.shape[-1]} and {master_u.shape[-1]}"
            )
        return ConsoleParams(
            {k: r.to_physical(track_u[..., i]) for i, (k, r) in enumerate(self.track_ranges.items())},
            {k: r.to_physical(master_u[..., i]) for i, (k, r) in enumerate(self.master_ranges.items())},
        )

    def normalise(self, params: ConsoleParams) -> tuple[Tensor, Tensor]:
        """Inverse of :meth:`denormalise`: ``(track_u, master_u)``."""
        track_u = torch.stack([r.to_normalised(params.track[k]) for k, r in self.track_ranges.items()], -1)
        master_u = torch.stack([r.to_normalised(params.master[k]) for k, r in self.master_ranges.items()], -1)
        return track_u, master_u

    def reverb_ir(self, master: Mapping[str, Tensor]) -> Tensor:
        """The stereo reverb's impulse response for master settings: ``(batch, 2, samples)``."""
        return F.reverb_ir(
            self.sample_rate,
            self.reverb.max_seconds,
            master["reverb_decay_s"],
            damping=master["reverb_damping"],
            predelay_ms=master["reverb_predelay_ms"],
            seed=self.reverb.seed,
            channels=2,
        )

    # ------------------------------------------------------------------ rendering

    def forward(self, tracks: Tensor, mask: Tensor | None, params: ConsoleParams) -> Tensor:
        """Render the stereo mix.

        Args:
            tracks: ``(batch, tracks, channels, samples)`` with 1 (mono) or 2 (stereo) channels.
            mask: ``(batch, tracks)`` bool, True for real tracks (None: all real).
            params: physical settings (see class docstring).

        Returns:
            ``(batch, 2, samples)`` stereo mix. Differentiable w.r.t. ``tracks`` and every
            parameter of an active stage.
        """
        if tracks.ndim != 4:
            raise ValueError(f"tracks must be (batch, tracks, channels, samples), got {tuple(tracks.shape)}")
        batch, num_tracks, channels, _ = tracks.shape
        if channels not in (1, 2):
            raise ValueError(f"tracks must be mono or stereo, got {channels} channels")
        if mask is None:
            mask = torch.ones(batch, num_tracks, dtype=torch.bool, device=tracks.device)
        wet_tracks = self.process_tracks(tracks, params)
        dry, send = self.route(wet_tracks, mask, params)
        return self.process_master(dry, send, params)

    def process_tracks(self, tracks: Tensor, params: ConsoleParams) -> Tensor:
        """Gain, EQ and compressor of every track: ``(batch, tracks, channels, samples)``."""
        cfg = self.config
        batch, num_tracks = tracks.shape[:2]
        x = rearrange(tracks, "b t c n -> (b t) c n")
        p = {k: rearrange(v, "b t -> (b t)") for k, v in params.track.items()}
        if cfg.track_eq:
            eq_params = {k[3:]: v for k, v in p.items() if k.startswith("eq_")}
            response = self.track_eq.response(eq_params, cfg.eq_fft_size, gain_db=p["gain_db"])
            x = F.fft_filter(x, response, n_fft=cfg.eq_fft_size)
        else:
            x = F.gain(x, p["gain_db"])
        if cfg.track_compressor:
            x = self.compressor(x, {k[5:]: v for k, v in p.items() if k.startswith("comp_")})
        return rearrange(x, "(b t) c n -> b t c n", b=batch, t=num_tracks)

    def route(self, tracks: Tensor, mask: Tensor, params: ConsoleParams) -> tuple[Tensor, Tensor]:
        """Pan, send and sum the processed tracks: ``(dry, send)`` buses, each ``(batch, 2, samples)``."""
        left, right = F.pan_gains(params.track["pan"])  # (batch, tracks)
        if tracks.shape[2] == 2:  # stereo balance, unity at the centre
            left, right = left * math.sqrt(2.0), right * math.sqrt(2.0)
        live = mask.to(tracks.dtype)
        send = F.db_to_amp(params.track["reverb_send_db"]) * live if self.config.reverb else None
        outputs = []
        for ch_gain, channel in ((left, 0), (right, tracks.shape[2] - 1)):
            weights = [ch_gain * live] + ([ch_gain * send] if send is not None else [])
            w = torch.stack(weights, dim=1)  # (batch, buses, tracks)
            outputs.append(torch.bmm(w, tracks[:, :, channel]))  # (batch, buses, samples)
        dry = torch.stack([outputs[0][:, 0], outputs[1][:, 0]], dim=1)
        send_bus = torch.stack([outputs[0][:, 1], outputs[1][:, 1]], dim=1) if send is not None else None
        return dry, send_bus

    def process_master(self, dry: Tensor, send: Tensor | None, params: ConsoleParams) -> Tensor:
        """Reverb return, master EQ, width, bus compressor and limiter: ``(batch, 2, samples)``."""
        cfg, m = self.config, params.master
        x = dry
        if send is not None:
            rev = {k[7:]: v for k, v in m.items() if k.startswith("reverb_") and k != "reverb_return_db"}
            x = x + F.gain(self.reverb(send, rev), m["reverb_return_db"])
        if cfg.master_eq:
            eq = {k[3:]: v for k, v in m.items() if k.startswith("eq_")}
            x = F.fft_filter(x, self.master_eq.response(eq, cfg.eq_fft_size), n_fft=cfg.eq_fft_size)
        if cfg.master_width:
            x = F.stereo_width(x, m["width"])
        if cfg.bus_compressor:
            x = self.compressor(x, {k[5:]: v for k, v in m.items() if k.startswith("comp_")})
        if cfg.limiter:
            x = self.limiter(x, {k[8:]: v for k, v in m.items() if k.startswith("limiter_")})
        return x

    # ------------------------------------------------------------------ settings documents

    def settings_to_dict(self, params: ConsoleParams, track_names: Sequence[str], item: int = 0) -> dict:
        """JSON-serialisable settings of one batch item (physical units, rounded for reading)."""
        names = list(track_names)
        num_tracks = next(iter(params.track.values())).shape[1]
        if len(names) != num_tracks:
            raise ValueError(f"{len(names)} track names for {num_tracks} tracks")
        tracks = [
            {"name": name, **{k: round(float(v[item, i]), 4) for k, v in params.track.items()}}
            for i, name in enumerate(names)
        ]
        master = {k: round(float(v[item]), 4) for k, v in params.master.items()}
        return {
            "format": SETTINGS_FORMAT,
            "version": SETTINGS_VERSION,
            "sample_rate": self.sample_rate,
            "tracks": tracks,
            "master": master,
        }

    def settings_from_dict(self, doc: Mapping, track_names: Sequence[str] | None = None) -> tuple[ConsoleParams, list[str]]:
        """Validate a settings document and turn it into ``(params with batch 1, track names)``.

        Missing parameters take their defaults; unknown names, wrong types and out-of-range
        values raise :class:`~neuromix.core.errors.ConfigError` naming the field. When
        ``track_names`` is given, tracks are matched by name (every name must be present).
        """
        if not isinstance(doc, Mapping):
            raise ConfigError("settings must be a JSON object")
        if doc.get("format", SETTINGS_FORMAT) != SETTINGS_FORMAT:
            raise ConfigError(f"settings: 'format' must be {SETTINGS_FORMAT!r}")
        version = doc.get("version", SETTINGS_VERSION)
        if not isinstance(version, int) or version > SETTINGS_VERSION:
            raise ConfigError(f"settings: unsupported 'version' {version!r} (this build reads {SETTINGS_VERSION})")
        tracks_doc = doc.get("tracks")
        if not isinstance(tracks_doc, list) or not tracks_doc:
            raise ConfigError("settings: 'tracks' must be a non-empty list")
        if len(tracks_doc) > 1024:
            raise ConfigError("settings: too many tracks")
        by_name: dict[str, Mapping] = {}
        order: list[str] = []
        for i, entry in enumerate(tracks_doc):
            if not isinstance(entry, Mapping):
                raise ConfigError(f"settings: tracks[{i}] must be an object")
            name = entry.get("name", f"track{i + 1}")
            if not isinstance(name, str):
                raise ConfigError(f"settings: tracks[{i}].name must be a string")
            if name in by_name:
                raise ConfigError(f"settings: duplicate track name {name!r}")
            by_name[name] = entry
            order.append(name)
        if track_names is not None:
            missing = [n for n in track_names if n not in by_name]
            if missing:
                raise ConfigError(f"settings: no settings for track(s) {', '.join(map(repr, missing))}")
            order = list(track_names)
        track_values = {k: [] for k in self.track_ranges}
        for name in order:
            entry = by_name[name]
            for key in entry:
                if key != "name" and key not in self.track_ranges:
                    raise ConfigError(f"settings: unknown track parameter {key!r} (track {name!r})")
            for key, r in self.track_ranges.items():
                track_values[key].append(_checked_value(entry.get(key, r.default), r, f"tracks[{name!r}].{key}"))
        master_doc = doc.get("master", {})
        if not isinstance(master_doc, Mapping):
            raise ConfigError("settings: 'master' must be an object")
        for key in master_doc:
            if key not in self.master_ranges:
                raise ConfigError(f"settings: unknown master parameter {key!r}")
        params = ConsoleParams(
            {k: torch.tensor([v], dtype=torch.float32) for k, v in track_values.items()},
            {
                k: torch.tensor([_checked_value(master_doc.get(k, r.default), r, f"master.{k}")], dtype=torch.float32)
                for k, r in self.master_ranges.items()
            },
        )
        return params, order

    def settings_to_json(self, params: ConsoleParams, track_names: Sequence[str], item: int = 0) -> str:
        """:meth:`settings_to_dict` as indented JSON text."""
        return json.dumps(self.settings_to_dict(params, track_names, item), indent=2)


def _checked_value(value: object, r: ParamRange, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"settings: {where} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"settings: {where} must be finite")
    tolerance = 1e-3 * (r.high - r.low)
    if not r.low - tolerance <= value <= r.high + tolerance:
        raise ConfigError(f"settings: {where}={value} is outside [{r.low}, {r.high}] {r.unit}".rstrip())
    return min(max(value, r.low), r.high)
