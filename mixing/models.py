"""Mixing networks: a console network and a black-box network.

Both read a multitrack ``(batch, tracks, channels, samples)`` with its mask,
are permutation invariant over tracks (a shared per-track encoder, a set
transformer without positional encoding) and accept 1 to 64 mono or stereo
tracks.

* :class:`ConsoleNet` predicts every parameter of the differentiable
  :class:`~neuromix.core.dsp.console.Console` (per track: gain, EQ, compressor,
  pan, reverb send; master: EQ, width, bus compressor, reverb, limiter) and
  renders the mix with it. The settings are physical, so the network analyses
  audio at its own (analysis) sample rate and the console renders at any rate.
  Optional reference-mix tokens steer it toward a reference's style; trained
  with reference dropout, the same model works with or without one.
* :class:`BlackBoxNet` mixes without any mixing device: for every track a
  temporal convolutional network over STFT frames, FiLM-conditioned on the
  track's token and the cross-track context, predicts time-varying gains per
  mel band for the left and right outputs; the masked spectra are resynthesised
  and summed. Nothing in it is a gain, EQ, compressor or pan module; what it
  learned is measured by the datasheets (probe).

Model types for checkpoints are listed in :data:`MODEL_REGISTRY`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torchaudio.functional as AF
from einops import rearrange
from torch import Tensor, nn

from neuromix.core import checkpoint
from neuromix.core.blocks import SetAggregator, TCN, TrackEncoder
from neuromix.core.dsp.console import Console, ConsoleConfig, ConsoleParams
from neuromix.mixing.classes import INSTRUMENT_CLASSES

ALL_STAGES: tuple[str, ...] = (
    "track_eq",
    "track_compressor",
    "reverb",
    "master_eq",
    "master_width",
    "bus_compressor",
    "limiter",
)
MAX_TRACKS = 64
UNKNOWN_CLASS = len(INSTRUMENT_CLASSES)
"""Class index meaning "not given" (a learned embedding of its own)."""


@dataclass
class MixResult:
    """What a mixing network returns.

    Attributes:
        mix: ``(batch, 2, samples)`` stereo mix at the session rate (``None`` when the console
            network was asked for settings only, ``render=False``).
        params: physical console settings (console network only; ``None`` for the black box).
        track_u: normalised per-track settings ``(batch, tracks, P)`` (console network only).
        master_u: normalised master settings ``(batch, M)`` (console network only).
    """

    mix: Tensor | None
    params: ConsoleParams | None = None
    track_u: Tensor | None = None
    master_u: Tensor | None = None


# --------------------------------------------------------------------------- shared analysis


def _windows(x: Tensor, window: int, count: int) -> Tensor:
    """Cut ``count`` windows of ``window`` samples spread evenly over the last axis.

    ``(..., samples) -> (..., count, window)``; short inputs give one window (the whole input).
    """
    n = x.shape[-1]
    if n <= window:
        return x[..., None, :]
    if count <= 1:
        starts = [(n - window) // 2]
    else:
        starts = torch.linspace(0, n - window, count).round().long().tolist()
    return torch.stack([x[..., s : s + window] for s in starts], dim=-2)


class TrackAnalyser(nn.Module):
    """Encode every track (plus optional reference-mix tokens) and let the tokens attend.

    Tracks are resampled to the analysis rate, cut into ``windows`` windows of
    ``window_seconds`` spread over the song (static settings for a whole song come
    from the mean embedding of its windows), encoded by a shared
    :class:`~neuromix.core.blocks.TrackEncoder`, given an instrument-class embedding,
    and passed through a :class:`~neuromix.core.blocks.SetAggregator`.

    Returns ``(track_tokens (batch, tracks, dim), context (batch, dim))``.
    """

    def __init__(
        self,
        sample_rate: int,
        embed_dim: int,
        encoder_channels: int,
        heads: int,
        layers: int,
        dropout: float,
        windows: int,
        window_seconds: float,
        reference_windows: int,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.windows = windows
        self.window = int(round(window_seconds * sample_rate))
        self.reference_windows = reference_windows
        self.encoder = TrackEncoder(sample_rate, channels=encoder_channels, embed_dim=embed_dim)
        self.class_embedding = nn.Embedding(len(INSTRUMENT_CLASSES) + 1, embed_dim)
        nn.init.normal_(self.class_embedding.weight, std=0.02)
        self.aggregator = SetAggregator(embed_dim, heads=heads, layers=layers, dropout=dropout)
        if reference_windows > 0:
            self.reference_encoder = TrackEncoder(sample_rate, channels=encoder_channels, embed_dim=embed_dim)
            self.reference_type = nn.Parameter(torch.zeros(embed_dim))

    def _to_rate(self, x: Tensor, sample_rate: int) -> Tensor:
        return x if sample_rate == self.sample_rate else AF.resample(x, sample_rate, self.sample_rate)

    def encode(self, audio: Tensor, encoder: TrackEncoder, count: int) -> Tensor:
        """``(n, 2, samples)`` at the analysis rate -> ``(n, dim)`` mean embedding over windows."""
        win = _windows(audio, self.window, count)  # (n, 2, k, w)
        k = win.shape[2]
        emb = encoder(rearrange(win, "n c k w -> (n k) c w"), self.sample_rate)
        return rearrange(emb, "(n k) d -> n k d", k=k).mean(dim=1)

    def forward(
        self,
        tracks: Tensor,
        mask: Tensor,
        sample_rate: int,
        classes: Tensor | None = None,
        reference: Tensor | None = None,
        reference_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        batch, num_tracks, channels, _ = tracks.shape
        if channels == 1:
            tracks = tracks.expand(-1, -1, 2, -1)
        x = self._to_rate(rearrange(tracks, "b t c n -> (b t) c n"), sample_rate)
        tokens = rearrange(self.encode(x, self.encoder, self.windows), "(b t) d -> b t d", b=batch)
        if classes is None:
            classes = torch.full((batch, num_tracks), UNKNOWN_CLASS, dtype=torch.long, device=tracks.device)
        tokens = tokens + self.class_embedding(classes.clamp(0, UNKNOWN_CLASS))
        token_mask = mask
        if reference is not None and self.reference_windows > 0:
            ref = self._to_rate(reference if reference.shape[1] == 2 else reference.expand(-1, 2, -1), sample_rate)
            win = _windows(ref, self.window, self.reference_windows)  # (b, 2, k, w)
            k = win.shape[2]
            ref_tokens = self.reference_encoder(rearrange(win, "b c k w -> (b k) c w"), self.sample_rate)
            ref_tokens = rearrange(ref_tokens, "(b k) d -> b k d", k=k) + self.reference_type
            if reference_mask is None:
                reference_mask = torch.ones(batch, dtype=torch.bool, device=tracks.device)
            tokens = torch.cat([tokens, ref_tokens], dim=1)
            token_mask = torch.cat([mask, reference_mask[:, None].expand(-1, k)], dim=1)
        out, _ = self.aggregator(tokens, token_mask)
        track_tokens = out[:, :num_tracks]
        # context over the tracks only, so the reference steers through attention
        weights = mask.to(out.dtype).unsqueeze(-1)
        context = (track_tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return track_tokens, context


def _mlp(inp: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, out))


def _check_input(tracks: Tensor, mask: Tensor | None) -> Tensor:
    if tracks.ndim != 4:
        raise ValueError(f"tracks must be (batch, tracks, channels, samples), got {tuple(tracks.shape)}")
    if not 1 <= tracks.shape[1] <= MAX_TRACKS:
        raise ValueError(f"between 1 and {MAX_TRACKS} tracks are supported, got {tracks.shape[1]}")
    if tracks.shape[2] not in (1, 2):
        raise ValueError(f"tracks must be mono or stereo, got {tracks.shape[2]} channels")
    if mask is None:
        mask = torch.ones(tracks.shape[:2], dtype=torch.bool, device=tracks.device)
    return mask.to(torch.bool)


# --------------------------------------------------------------------------- console network


@dataclass(frozen=True)
class ConsoleNetConfig:
    """Configuration of :class:`ConsoleNet` (stored as JSON in checkpoints).

    Attributes:
        sample_rate: analysis rate in Hz (input is resampled to it for analysis only).
        embed_dim, encoder_channels, heads, layers, dropout: network size.
        windows, window_seconds: analysis windows spread over a song.
        reference_windows: tokens taken from a reference mix (0 disables references).
        console_stages: active console stages (see :class:`ConsoleConfig`).
    """

    sample_rate: int = 22050
    embed_dim: int = 128
    encoder_channels: int = 64
    heads: int = 4
    layers: int = 2
    dropout: float = 0.0
    windows: int = 4
    window_seconds: float = 4.0
    reference_windows: int = 4
    console_stages: tuple[str, ...] = ALL_STAGES
    reverb_seed: int = 0


def console_config(stages: tuple[str, ...] | list[str], reverb_seed: int = 0) -> ConsoleConfig:
    """A :class:`ConsoleConfig` with exactly ``stages`` active."""
    unknown = set(stages) - set(ALL_STAGES)
    if unknown:
        raise ValueError(f"unknown console stages {sorted(unknown)}; valid: {ALL_STAGES}")
    return ConsoleConfig(**{s: s in stages for s in ALL_STAGES}, reverb_seed=reverb_seed)


class ConsoleNet(nn.Module):
    """Predict console settings from the tracks (and optionally a reference mix), then render."""

    model_type = "console_net"

    def __init__(self, config: ConsoleNetConfig) -> None:
        super().__init__()
        self.config = config
        self.console_config = console_config(config.console_stages, config.reverb_seed)
        layout = Console(config.sample_rate, self.console_config)
        self.track_names = list(layout.track_ranges)
        self.master_names = list(layout.master_ranges)
        self.analyser = TrackAnalyser(
            config.sample_rate,
            config.embed_dim,
            config.encoder_channels,
            config.heads,
            config.layers,
            config.dropout,
            config.windows,
            config.window_seconds,
            config.reference_windows,
        )
        d = config.embed_dim
        self.track_head = _mlp(2 * d, d, len(self.track_names))
        self.master_head = _mlp(d, d, len(self.master_names))
        self._consoles: dict[int, Console] = {}

    def console(self, sample_rate: int) -> Console:
        """The (parameter-free) console used to render at ``sample_rate``."""
        if sample_rate not in self._consoles:
            self._consoles[sample_rate] = Console(sample_rate, self.console_config)
        return self._consoles[sample_rate]

    def predict(
        self,
        tracks: Tensor,
        mask: Tensor | None,
        sample_rate: int,
        classes: Tensor | None = None,
        reference: Tensor | None = None,
        reference_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Normalised settings ``(track_u (batch, tracks, P), master_u (batch, M))`` in [0, 1]."""
        mask = _check_input(tracks, mask)
        tokens, context = self.analyser(tracks, mask, sample_rate, classes, reference, reference_mask)
        expanded = context[:, None].expand_as(tokens)
        track_u = torch.sigmoid(self.track_head(torch.cat([tokens, expanded], dim=-1)))
        master_u = torch.sigmoid(self.master_head(context))
        return track_u, master_u

    def settings(self, tracks: Tensor, mask: Tensor | None, sample_rate: int, **kwargs: Tensor | None) -> ConsoleParams:
        """Physical settings predicted for the tracks."""
        track_u, master_u = self.predict(tracks, mask, sample_rate, **kwargs)
        return self.console(sample_rate).denormalise(track_u, master_u)

    def forward(
        self,
        tracks: Tensor,
        mask: Tensor | None,
        sample_rate: int,
        classes: Tensor | None = None,
        reference: Tensor | None = None,
        reference_mask: Tensor | None = None,
        render: bool = True,
    ) -> MixResult:
        """Mix ``tracks`` (any rate): ``MixResult(mix (batch, 2, samples), params, track_u, master_u)``.

        With ``render=False`` only the settings are predicted (``mix`` is None).
        """
        mask = _check_input(tracks, mask)
        track_u, master_u = self.predict(tracks, mask, sample_rate, classes, reference, reference_mask)
        console = self.console(sample_rate)
        params = console.denormalise(track_u, master_u)
        mix = console(tracks, mask, params) if render else None
        return MixResult(mix, params, track_u, master_u)


# --------------------------------------------------------------------------- black-box network


@dataclass(frozen=True)
class BlackBoxConfig:
    """Configuration of :class:`BlackBoxNet` (stored as JSON in checkpoints).

    The STFT runs at the session rate with the same frame duration (``hop / sample_rate``
    seconds) and mel bands (in Hz) as at the training rate, so the network is rate-agnostic;
    bins above ``max_band_hz`` take the top band's gain.
    """

    sample_rate: int = 22050
    embed_dim: int = 96
    encoder_channels: int = 48
    heads: int = 4
    layers: int = 2
    dropout: float = 0.0
    windows: int = 4
    window_seconds: float = 4.0
    n_fft: int = 1024
    hop: int = 256
    n_bands: int = 48
    max_band_hz: float = 11025.0
    tcn_channels: int = 64
    tcn_kernel: int = 3
    tcn_dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    max_gain_db: float = 30.0


class BlackBoxNet(nn.Module):
    """Mix as a content-based transformation: learned time-frequency gains per track, summed."""

    model_type = "blackbox_net"

    def __init__(self, config: BlackBoxConfig) -> None:
        super().__init__()
        self.config = config
        self.analyser = TrackAnalyser(
            config.sample_rate,
            config.embed_dim,
            config.encoder_channels,
            config.heads,
            config.layers,
            config.dropout,
            config.windows,
            config.window_seconds,
            0,
        )
        self.tcn = TCN(
            2 * config.n_bands,
            2 * config.n_bands,
            channels=config.tcn_channels,
            kernel=config.tcn_kernel,
            dilations=config.tcn_dilations,
            cond_dim=2 * config.embed_dim,
        )
        # start as "pass everything at -6 dB per side": zero output -> gain 10**(-6/20)
        nn.init.zeros_(self.tcn.out.weight)
        nn.init.constant_(self.tcn.out.bias, math.atanh(-6.0 / config.max_gain_db))

    def _stft_setup(self, sample_rate: int, device: torch.device, dtype: torch.dtype) -> tuple[int, int, Tensor, Tensor]:
        cfg = self.config
        scale = sample_rate / cfg.sample_rate
        n_fft = int(round(cfg.n_fft * scale))
        n_fft += n_fft % 2
        hop = max(1, int(round(cfg.hop * scale)))
        bins = n_fft // 2 + 1
        top = min(cfg.max_band_hz, sample_rate / 2)
        fbank = AF.melscale_fbanks(bins, 20.0, top, cfg.n_bands, sample_rate).to(device=device, dtype=dtype)
        # band -> bin interpolation: normalised triangles; above the top band, the top band's gain
        spread = fbank / fbank.sum(dim=1, keepdim=True).clamp_min(1e-8)
        freqs = torch.linspace(0, sample_rate / 2, bins, device=device, dtype=dtype)
        empty = fbank.sum(dim=1) <= 1e-8
        high = empty & (freqs > top / 2)
        low = empty & ~high
        spread[high, -1] = 1.0
        spread[low, 0] = 1.0
        return n_fft, hop, fbank, spread

    def forward(
        self,
        tracks: Tensor,
        mask: Tensor | None,
        sample_rate: int,
        classes: Tensor | None = None,
        reference: Tensor | None = None,
        reference_mask: Tensor | None = None,
    ) -> MixResult:
        """Mix ``tracks`` (any rate): ``MixResult(mix (batch, 2, samples), None)``.

        ``reference`` is accepted for interface compatibility and ignored (this family has
        no reference input).
        """
        mask = _check_input(tracks, mask)
        cfg = self.config
        batch, num_tracks, channels, samples = tracks.shape
        if channels == 1:
            tracks = tracks.expand(-1, -1, 2, -1)
        tokens, context = self.analyser(tracks, mask, sample_rate, classes)
        cond = torch.cat([tokens, context[:, None].expand_as(tokens)], dim=-1)
        cond = rearrange(cond, "b t d -> (b t) d")
        n_fft, hop, fbank, spread = self._stft_setup(sample_rate, tracks.device, tracks.dtype)
        window = torch.hann_window(n_fft, device=tracks.device, dtype=tracks.dtype)
        x = rearrange(tracks, "b t c n -> (b t c) n")
        spec = torch.stft(x, n_fft, hop, window=window, center=True, return_complex=True)  # (btc, bins, frames)
        power = spec.real.square() + spec.imag.square()
        bands = torch.log(torch.einsum("nft,fm->nmt", power, fbank) + 1e-8)
        feats = rearrange(bands, "(bt c) m f -> bt (c m) f", c=2)
        feats = (feats + 5.0) / 8.0
        gains_db = cfg.max_gain_db * torch.tanh(self.tcn(feats, cond))  # (bt, 2*bands, frames)
        gains = torch.pow(10.0, rearrange(gains_db, "bt (c m) f -> (bt c) m f", c=2) / 20.0)
        bin_gains = torch.einsum("fm,nmt->nft", spread, gains)
        out = torch.istft(spec * bin_gains, n_fft, hop, window=window, center=True, length=samples)
        out = rearrange(out, "(b t c) n -> b t c n", b=batch, t=num_tracks, c=2)
        mix = (out * mask.to(out.dtype)[:, :, None, None]).sum(dim=1)
        return MixResult(mix, None)


# --------------------------------------------------------------------------- registry and loading

MODEL_REGISTRY: dict[str, tuple[type[nn.Module], type]] = {
    ConsoleNet.model_type: (ConsoleNet, ConsoleNetConfig),
    BlackBoxNet.model_type: (BlackBoxNet, BlackBoxConfig),
}
"""Model type name -> (model class, config dataclass); used by checkpoints."""


def load_model(path: str | Path) -> tuple[nn.Module, checkpoint.CheckpointInfo]:
    """Load a mixing network from a safetensors checkpoint (strict; never unpickles)."""
    return checkpoint.load(path, MODEL_REGISTRY)


def build_model(model_type: str, config: dict | None = None) -> nn.Module:
    """Build an untrained model from its type name and a config dict (unknown keys rejected)."""
    if model_type not in MODEL_REGISTRY:
        raise KeyError(f"unknown model type {model_type!r}; valid: {', '.join(MODEL_REGISTRY)}")
    model_cls, config_cls = MODEL_REGISTRY[model_type]
    cfg = dict(config or {})
    for key, value in cfg.items():
        if isinstance(value, list):
            cfg[key] = tuple(value)
    return model_cls(config_cls(**cfg))


__all__ = [
    "ALL_STAGES",
    "BlackBoxConfig",
    "BlackBoxNet",
    "ConsoleNet",
    "ConsoleNetConfig",
    "MODEL_REGISTRY",
    "MixResult",
    "TrackAnalyser",
    "build_model",
    "load_model",
]
