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
  mel band for the left and right outputs; the masked spectra are summed over the
  tracks and resynthesised (the inverse STFT is linear: one per output channel). Nothing in it is a gain, EQ, compressor or pan module; what it
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
from neuromix.mixing.rules import RuleMixer, rule_prior

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
PRIOR_SECONDS = 8.0
"""Most audio (seconds at the analysis rate, all windows together) the rule prior analyses."""
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
    starts = _window_starts(n, window, count)
    return torch.stack([x[..., s : s + window] for s in starts], dim=-2)


def _window_starts(n: int, window: int, count: int) -> list[int]:
    """Start samples of the windows :func:`_windows` cuts from ``n`` samples (``n > window``)."""
    if count <= 1:
        return [(n - window) // 2]
    return torch.linspace(0, n - window, count).round().long().tolist()


_RESAMPLE_LOWPASS_WIDTH = 6  # torchaudio.functional.resample defaults
_RESAMPLE_ROLLOFF = 0.99


def _resampled_windows(x: Tensor, sample_rate: int, target_rate: int, window: int, count: int) -> Tensor:
    """The windows of ``resample(x)`` that :func:`_windows` would cut, resampling only those.

    ``_windows(AF.resample(x, sample_rate, target_rate), window, count)`` resamples the whole
    signal although only ``count`` windows are kept; on a five-minute song that is most of
    the analysis time and gigabytes of memory. Here each window is resampled from a piece of
    ``x`` that starts on a resampler block boundary (a multiple of ``sample_rate / gcd``
    input samples, so the piece's output grid is the whole signal's) and extends on both
    sides by more than the sinc kernel's half-width: every kept output sample sees exactly
    the input samples it would see in the whole-signal resampling (the same values up to
    float32 round-off; identical where the piece reaches the signal's start or end).

    Args:
        x: ``(..., samples)`` at ``sample_rate``.
        sample_rate: rate of ``x`` in Hz.
        target_rate: analysis rate in Hz.
        window: window length in samples at ``target_rate``.
        count: number of windows.

    Returns:
        ``(..., k, window)`` (``k = count``), or ``(..., 1, n)`` with the whole resampled
        signal when it is not longer than ``window``.
    """
    n = x.shape[-1]
    g = math.gcd(int(sample_rate), int(target_rate))
    orig, new = int(sample_rate) // g, int(target_rate) // g
    n_out = -(-new * n // orig)  # torchaudio's output length: ceil(n * new / orig)
    if n_out <= window:
        return AF.resample(x, sample_rate, target_rate)[..., None, :]
    half_width = math.ceil(_RESAMPLE_LOWPASS_WIDTH * orig / (min(orig, new) * _RESAMPLE_ROLLOFF))
    margin = -(-half_width // orig) + 2  # in resampler blocks of `orig` input samples
    pieces = []
    for start in _window_starts(n_out, window, count):
        first = max(0, start // new - margin)  # first resampler block of the piece
        last = min(-(-n // orig), -(-(start + window) // new) + margin)
        piece = AF.resample(x[..., first * orig : min(n, last * orig)].contiguous(), sample_rate, target_rate)
        offset = start - first * new
        pieces.append(piece[..., offset : offset + window])
    return torch.stack(pieces, dim=-2)


class TrackAnalyser(nn.Module):
    """Encode every track (plus optional reference-mix tokens) and let the tokens attend.

    Tracks are cut into ``windows`` windows of ``window_seconds`` spread over the song
    (static settings for a whole song come from the mean embedding of its windows), the
    windows are resampled to the analysis rate (only they: the cost does not grow with the
    song's length, see :meth:`analysis_windows`), encoded by a shared
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

    def analysis_windows(self, audio: Tensor, sample_rate: int, count: int) -> Tensor:
        """``(n, c, samples)`` at ``sample_rate`` -> ``(n, c, k, window)`` windows at the analysis rate.

        The same windows as cutting the whole signal after resampling it to the analysis
        rate, but only the windows are resampled (see :func:`_resampled_windows`), so the
        cost does not grow with the song's length.
        """
        if sample_rate == self.sample_rate:
            return _windows(audio, self.window, count)
        return _resampled_windows(audio, sample_rate, self.sample_rate, self.window, count)

    def encode(self, audio: Tensor, encoder: TrackEncoder, count: int) -> Tensor:
        """``(n, 2, samples)`` at the analysis rate -> ``(n, dim)`` mean embedding over windows."""
        return self.encode_windows(_windows(audio, self.window, count), encoder)

    def encode_windows(self, win: Tensor, encoder: TrackEncoder) -> Tensor:
        """``(n, 2, k, window)`` windows at the analysis rate -> ``(n, dim)`` mean embedding."""
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
        # windows first (mono tracks stay mono until then: half the resampling), then dual mono
        win = self.analysis_windows(rearrange(tracks, "b t c n -> (b t) c n"), sample_rate, self.windows)
        if channels == 1:
            win = win.expand(-1, 2, -1, -1)
        tokens = rearrange(self.encode_windows(win, self.encoder), "(b t) d -> b t d", b=batch)
        if classes is None:
            classes = torch.full((batch, num_tracks), UNKNOWN_CLASS, dtype=torch.long, device=tracks.device)
        tokens = tokens + self.class_embedding(classes.clamp(0, UNKNOWN_CLASS))
        token_mask = mask
        if reference is not None and self.reference_windows > 0:
            win = self.analysis_windows(reference, sample_rate, self.reference_windows)  # (b, c, k, w)
            if win.shape[1] != 2:
                win = win.expand(-1, 2, -1, -1)
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


def _analyser(config: ConsoleNetConfig | BlackBoxConfig, reference_windows: int) -> TrackAnalyser:
    """The :class:`TrackAnalyser` described by a model config (both families share the fields)."""
    return TrackAnalyser(
        config.sample_rate,
        config.embed_dim,
        config.encoder_channels,
        config.heads,
        config.layers,
        config.dropout,
        config.windows,
        config.window_seconds,
        reference_windows,
    )


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
        rule_prior: predict corrections to the rule-based mixer's settings (expert knowledge
            as a prior) instead of settings from scratch: ``u = sigmoid(logit(u_rules) + head)``,
            with the heads' last layers initialised to zero, so an untrained network mixes
            exactly like the rules and training learns what the rules miss.
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
    rule_prior: bool = False


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
        self.analyser = _analyser(config, config.reference_windows)
        d = config.embed_dim
        self.track_head = _mlp(2 * d, d, len(self.track_names))
        self.master_head = _mlp(d, d, len(self.master_names))
        if config.rule_prior:
            for head in (self.track_head, self.master_head):
                nn.init.zeros_(head[-1].weight)
                nn.init.zeros_(head[-1].bias)
        self._consoles: dict[int, Console] = {}
        self._rule_mixer = None

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
        prior: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Normalised settings ``(track_u (batch, tracks, P), master_u (batch, M))`` in [0, 1].

        ``prior`` (rule-prior models only): precomputed :meth:`rule_prior` output; computed
        here when omitted.
        """
        mask = _check_input(tracks, mask)
        tokens, context = self.analyser(tracks, mask, sample_rate, classes, reference, reference_mask)
        expanded = context[:, None].expand_as(tokens)
        track_logit = self.track_head(torch.cat([tokens, expanded], dim=-1))
        master_logit = self.master_head(context)
        if self.config.rule_prior:
            prior_track, prior_master = prior if prior is not None else self.rule_prior(tracks, mask, sample_rate, classes)
            track_logit = track_logit + torch.logit(prior_track.to(track_logit).clamp(1e-4, 1 - 1e-4))
            master_logit = master_logit + torch.logit(prior_master.to(master_logit).clamp(1e-4, 1 - 1e-4))
        return torch.sigmoid(track_logit), torch.sigmoid(master_logit)

    def rule_prior(
        self, tracks: Tensor, mask: Tensor, sample_rate: int, classes: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """The rule-based mixer's normalised settings per item: ``((batch, tracks, P), (batch, M))``.

        Computed at the analysis rate on the analysis windows joined end to end; when they
        add up to more than :data:`PRIOR_SECONDS`, on as many whole windows as fit, spread
        evenly over the song (whole windows, as in training), so the cost is bounded
        whatever the song's length. Unknown classes are classified from audio.
        """
        sr = self.config.sample_rate
        if self._rule_mixer is None:
            self._rule_mixer = RuleMixer(sr)
        batch, num_tracks = tracks.shape[:2]
        track_u = tracks.new_full((batch, num_tracks, len(self.track_names)), 0.5)
        master_u = tracks.new_zeros((batch, len(self.master_names)))
        with torch.no_grad():
            for b in range(batch):
                valid = mask[b].nonzero().squeeze(1)
                win = self.analyser.analysis_windows(tracks[b, valid], sample_rate, self.config.windows)
                count = max(1, int(PRIOR_SECONDS * sr) // win.shape[3])
                if count < win.shape[2]:  # whole windows, spread evenly, as in training
                    win = win[:, :, torch.linspace(0, win.shape[2] - 1, count).round().long()]
                audio = rearrange(win.expand(-1, 2, -1, -1), "t c k w -> t c (k w)")
                names = [None if classes is None or int(c) >= UNKNOWN_CLASS else INSTRUMENT_CLASSES[int(c)]
                         for c in (classes[b, valid] if classes is not None else valid)]
                t_u, m_u = rule_prior(audio, names, sr, self._rule_mixer)
                track_u[b, valid] = t_u.to(track_u)
                master_u[b] = m_u.to(master_u)
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
        prior: tuple[Tensor, Tensor] | None = None,
    ) -> MixResult:
        """Mix ``tracks`` (any rate): ``MixResult(mix (batch, 2, samples), params, track_u, master_u)``.

        With ``render=False`` only the settings are predicted (``mix`` is None).
        """
        mask = _check_input(tracks, mask)
        track_u, master_u = self.predict(tracks, mask, sample_rate, classes, reference, reference_mask, prior)
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
        self.analyser = _analyser(config, 0)
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
        # (rate, device, dtype) -> STFT geometry and filterbanks: constants, built once
        self._setup_cache: dict[tuple[int, str, torch.dtype], tuple[int, int, Tensor, Tensor]] = {}

    def _stft_setup(self, sample_rate: int, device: torch.device, dtype: torch.dtype) -> tuple[int, int, Tensor, Tensor]:
        key = (int(sample_rate), str(device), dtype)
        if key not in self._setup_cache:
            self._setup_cache[key] = self._build_stft_setup(int(sample_rate), device, dtype)
        return self._setup_cache[key]

    def _build_stft_setup(
        self, sample_rate: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[int, int, Tensor, Tensor]:
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

    def stft_geometry(self, sample_rate: int) -> tuple[int, int]:
        """``(n_fft, hop)`` in samples of the STFT used at ``sample_rate`` (same durations as in training)."""
        n_fft, hop, _, _ = self._stft_setup(sample_rate, torch.device("cpu"), torch.float32)
        return n_fft, hop

    def condition(
        self,
        tracks: Tensor,
        mask: Tensor | None,
        sample_rate: int,
        classes: Tensor | None = None,
    ) -> Tensor:
        """FiLM conditioning of every track: ``(batch * tracks, 2 * embed_dim)``.

        The track token and the cross-track context, from the analysis windows spread over
        the whole input (see :class:`TrackAnalyser`). It is static: a long song is rendered
        block by block (:meth:`render`) with the conditioning computed once for the song.
        """
        mask = _check_input(tracks, mask)
        tokens, context = self.analyser(tracks, mask, sample_rate, classes)
        cond = torch.cat([tokens, context[:, None].expand_as(tokens)], dim=-1)
        return rearrange(cond, "b t d -> (b t) d")

    def render(self, tracks: Tensor, mask: Tensor | None, sample_rate: int, cond: Tensor) -> Tensor:
        """Apply the learned time-frequency gains to ``tracks`` and sum: ``(batch, 2, samples)``.

        Args:
            tracks: ``(batch, tracks, 1 or 2, samples)`` at ``sample_rate`` (a whole song or
                one block of it).
            mask: ``(batch, tracks)`` bool (None: all real).
            sample_rate: Hz.
            cond: ``(batch * tracks, 2 * embed_dim)`` from :meth:`condition`.

        An output sample depends on the input within ``n_fft + hop * (receptive_field + 1) / 2``
        samples of it (STFT frame, TCN receptive field in frames, inverse STFT frame), so a
        block processed with that much context on both sides reproduces the whole render.
        """
        mask = _check_input(tracks, mask)
        cfg = self.config
        batch, num_tracks, channels, samples = tracks.shape
        n_fft, hop, fbank, spread = self._stft_setup(sample_rate, tracks.device, tracks.dtype)
        window = torch.hann_window(n_fft, device=tracks.device, dtype=tracks.dtype)
        # a mono track is analysed once (its two channels would be identical)
        x = rearrange(tracks, "b t c n -> (b t c) n")
        spec = torch.stft(x, n_fft, hop, window=window, center=True, return_complex=True)  # (btc, bins, frames)
        power = spec.real.square() + spec.imag.square()
        bands = torch.log(torch.einsum("nft,fm->nmt", power, fbank) + 1e-8)
        del power
        bands = rearrange(bands, "(bt c) m f -> bt c m f", c=channels).expand(-1, 2, -1, -1)
        feats = (rearrange(bands, "bt c m f -> bt (c m) f") + 5.0) / 8.0
        gains_db = cfg.max_gain_db * torch.tanh(self.tcn(feats, cond))  # (bt, 2*bands, frames)
        gains = torch.pow(10.0, gains_db / 20.0) * mask.reshape(-1, 1, 1).to(gains_db.dtype)
        gains = rearrange(gains, "(b t) (c m) f -> b t c m f", b=batch, c=2)
        spec = rearrange(spec, "(b t c) k f -> b t c k f", b=batch, c=channels)
        # the inverse STFT is linear: sum the tracks' masked spectra, then invert two channels
        mixed = torch.view_as_real(spec.new_zeros(batch, 2, spec.shape[-2], spec.shape[-1]))
        for t in range(num_tracks):  # one track's bin gains at a time (memory)
            bin_gains = torch.matmul(spread, gains[:, t])[..., None]  # (b, 2, bins, frames, 1)
            term = torch.view_as_real(spec[:, t])  # (b, 1 or 2, bins, frames, 2)
            if torch.is_grad_enabled():
                mixed = mixed + term * bin_gains
            else:
                mixed.addcmul_(term, bin_gains)
        mixed = torch.view_as_complex(rearrange(mixed, "b c k f r -> (b c) k f r").contiguous())
        out = torch.istft(mixed, n_fft, hop, window=window, center=True, length=samples)
        return out.reshape(batch, 2, samples)

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
        no reference input). Equal to ``render(tracks, mask, sample_rate, condition(...))``.
        """
        cond = self.condition(tracks, mask, sample_rate, classes)
        return MixResult(self.render(tracks, mask, sample_rate, cond), None)


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
