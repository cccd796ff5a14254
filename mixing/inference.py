"""Mixing whole songs: static settings from analysis windows, a streaming render in blocks.

:func:`mix_multitrack` is what ``neuromix mix`` runs. It takes a multitrack of any length
(1 to 64 mono or stereo tracks), decides one static set of settings for the song, and
renders the stereo mix block by block, so memory stays bounded whatever the song's length::

    from neuromix.core.io import load_multitrack
    from neuromix.mixing.inference import mix_multitrack

    song = load_multitrack("stems/")
    outcome = mix_multitrack(song, model="rules")          # or "console", "blackbox", a path
    outcome.mix        # (2, samples) float32, true peak <= -1 dBTP
    outcome.settings   # console settings document (JSON-serialisable), None for the black box

**Settings** come from analysis windows spread over the song: the networks'
:class:`~neuromix.mixing.models.TrackAnalyser` encodes ``windows`` windows of
``window_seconds`` and averages their embeddings; the rule-based mixer and the instrument
classifier measure an excerpt of :data:`ANALYSIS_WINDOWS` windows spread over the song
(:func:`analysis_excerpt`). The console settings are the rounded, JSON-serialisable values
of :meth:`Console.settings_to_dict <neuromix.core.dsp.console.Console.settings_to_dict>`,
and the mix is always rendered *from that document*: rendering a saved document again
(``--params`` then ``--settings``) reproduces the mix bit for bit (with the same torch build
and thread count; FFT round-off may differ in the last bits across them).

**Streaming console render** (:func:`render_console`). Every stateful stage of the console
carries its state from one block to the next, so the result equals rendering the whole song
at once (:meth:`Console.forward <neuromix.core.dsp.console.Console.forward>`) up to float
round-off, for any block size that is a multiple of the compressor's detector hop:

* track EQ (with the fader gain folded in), master EQ and the reverb: linear convolutions
  with FIRs (the EQ's FIR truncated to ``eq_fft_size / 2`` taps exactly as
  :func:`~neuromix.core.dsp.filters.fft_filter` does; the reverb's impulse response of
  ``reverb_seconds``). :class:`StreamingFIR` runs them as FFT overlap-add and carries the
  convolution tail (``taps - 1`` samples) into the next block: exact.
* compressors (per track and on the bus): the side chain (block peak per
  ``DETECTOR_HOP`` samples, static gain computer) is memoryless on hop-aligned blocks; the
  attack/release smoother's state is one number per track, the smoothed reduction of the
  last frame. :class:`StreamingCompressor` carries it into the next block by prepending one
  frame whose target, ``y / (1 - alpha_attack)``, makes the smoother's recursion
  (``y[n] = a y[n-1] + (1 - a) x[n]`` from ``y = 0``, attack branch) land exactly on it; the
  gain knot at the block start is carried over too.
* pan, sends, width: memoryless.
* limiter and the final safety limiter: their look-ahead, release and safety re-measurement
  (a maximum over the whole signal) are not block-local, so they run once on the whole
  stereo bus, which the streaming pass has written (two channels only: 106 MB for five
  minutes at 44.1 kHz, whatever the number of tracks). Same function, same input: exact.

**Black box** (:func:`render_blackbox`): the network's conditioning (track tokens and
context) is computed once for the song; the time-frequency gains are rendered on
overlapping blocks that carry enough context on both sides for the STFT frames and the
TCN's receptive field (then the block's interior equals the whole render) and joined with
complementary raised-cosine crossfades.

Blocks are sized from a memory budget (:data:`CONSOLE_BLOCK_BUDGET`,
:data:`BLACKBOX_BLOCK_BUDGET` channel-samples) unless ``block_seconds`` is given.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from einops import rearrange
from torch import Tensor, nn
from tqdm.auto import tqdm

from neuromix.core.dsp import functional as F
from neuromix.core.dsp.console import Console, ConsoleConfig, ConsoleParams
from neuromix.core.dsp.dynamics import DETECTOR_HOP, block_peak_db, interpolate_knots
from neuromix.core.dsp.utils import fast_fft_size
from neuromix.core.errors import AudioInputError, ConfigError, NeuromixError
from neuromix.core.io import Multitrack, read_text_file
from neuromix.mixing.classes import INSTRUMENT_CLASSES, class_index
from neuromix.mixing.goals import DEFAULT_STEPS, SolveReport, Targets, guide_settings, parse_targets
from neuromix.mixing import shipped
from neuromix.mixing.models import ALL_STAGES, MAX_TRACKS, BlackBoxNet, ConsoleNet, load_model

__all__ = [
    "ANALYSIS_SECONDS",
    "ANALYSIS_WINDOWS",
    "BLACKBOX_BLOCK_BUDGET",
    "CONSOLE_BLOCK_BUDGET",
    "SAFETY_CEILING_DB",
    "MixOutcome",
    "MixerModel",
    "StreamingCompressor",
    "StreamingFIR",
    "analysis_excerpt",
    "console_from_settings",
    "mix_multitrack",
    "read_settings",
    "render_blackbox",
    "render_console",
    "resolve_model",
    "safety_limit",
    "settings_document",
]

SAFETY_CEILING_DB: float = -1.0
"""True-peak ceiling (dBTP, 4x oversampled) of the safety limiter at the end of every mix."""

ANALYSIS_SECONDS: float = 30.0
"""Songs up to this long are analysed whole by the rule-based mixer and the classifier;
longer ones through an excerpt of this length (:func:`analysis_excerpt`)."""

ANALYSIS_WINDOWS: int = 6
"""Windows spread over a long song that make up its analysis excerpt."""

CONSOLE_BLOCK_BUDGET: int = 1 << 24
"""Channel-samples (tracks x channels x block samples) per block of the console render
(about 270 MB of transient FFT buffers)."""

BLACKBOX_BLOCK_BUDGET: int = 1 << 23
"""Channel-samples per block of the black-box render (its STFT buffers take ~60 bytes per
channel-sample: about 500 MB)."""

_CROSSFADE_HOPS: int = 8
_EXCERPT_FADE_S: float = 0.01
_RULES_MIN_SECONDS: float = 0.5
_SETTINGS_MAX_BYTES: int = 10_000_000


# --------------------------------------------------------------------------- results and models


@dataclass
class MixOutcome:
    """What :func:`mix_multitrack` returns.

    Attributes:
        mix: ``(2, samples)`` float32 stereo mix at the session rate, finite, true peak
            <= :data:`SAFETY_CEILING_DB`.
        settings: the console settings document the mix was rendered from
            (:func:`settings_document`), or ``None`` for the black-box network.
        classes: instrument class of every track (names of ``INSTRUMENT_CLASSES``).
        model_name: what decided the mix (``"rules"``, ``"console_net:<file>:<hash>"``, ...).
        names: the track names used in ``settings`` (unique).
        report: what goal-oriented optimisation did (reference, targets, re-solve), else ``None``.
    """

    mix: Tensor
    settings: dict | None
    classes: list[str]
    model_name: str
    names: list[str] = field(default_factory=list)
    report: SolveReport | None = None


@dataclass(frozen=True)
class MixerModel:
    """A resolved mixer: the rule-based mixer, or a console / black-box network.

    Attributes:
        kind: ``"rules"``, ``"console"`` or ``"blackbox"``.
        name: description stored in settings documents.
        network: the network (``None`` for the rules).
    """

    kind: Literal["rules", "console", "blackbox"]
    name: str
    network: nn.Module | None = None


def resolve_model(model: str | os.PathLike[str] | nn.Module | MixerModel) -> MixerModel:
    """Turn a model spec into a :class:`MixerModel`.

    Args:
        model: ``"rules"``; ``"console"`` / ``"blackbox"`` (the newest shipped checkpoint of
            that family, see :func:`shipped_checkpoint`); the path of any checkpoint
            (:func:`~neuromix.mixing.models.load_model`); a ``ConsoleNet`` / ``BlackBoxNet``
            instance; or a :class:`MixerModel` (returned as is).

    Raises:
        NeuromixError: no shipped checkpoint, no such file, or an unknown spec.
        CheckpointError: the file is not a valid neuromix checkpoint.
    """
    if isinstance(model, MixerModel):
        return model
    if isinstance(model, nn.Module):
        if isinstance(model, ConsoleNet):
            return MixerModel("console", model.model_type, model)
        if isinstance(model, BlackBoxNet):
            return MixerModel("blackbox", model.model_type, model)
        raise ConfigError(f"cannot mix with a {type(model).__name__}; expected a ConsoleNet or a BlackBoxNet")
    if not isinstance(model, (str, os.PathLike)):
        raise ConfigError(f"model must be a name, a path or a network, got {type(model).__name__}")
    spec = os.fspath(model)
    if spec == "rules":
        return MixerModel("rules", "rules")
    if spec in ("console", "blackbox"):
        path = shipped.shipped_checkpoint(spec)
    else:
        path = Path(spec)
        if not path.is_file():
            reason = "is a directory" if path.is_dir() else "no such checkpoint file"
            raise NeuromixError(
                f"model {spec!r}: {reason}; use 'console', 'blackbox', 'rules' or the path of a "
                ".safetensors checkpoint"
            )
    network, info = load_model(path)
    network.eval()
    kind = "console" if isinstance(network, ConsoleNet) else "blackbox"
    if spec in ("console", "blackbox") and kind != spec:
        raise NeuromixError(f"{path}: shipped as a {spec} checkpoint but holds a {info.model_type}")
    return MixerModel(kind, f"{info.model_type}:{path.name}:{info.short_hash}", network)


# --------------------------------------------------------------------------- streaming stages


class StreamingFIR:
    """Exact block-by-block linear convolution with an FIR: FFT overlap-add with a carried tail.

    Feeding consecutive blocks of a signal (any lengths) returns consecutive blocks of
    ``x * fir`` (causal, zero initial state, cut to the input's length), i.e. what one
    convolution of the whole signal gives (:func:`~neuromix.core.dsp.filters.fft_filter`
    for an FIR of ``n_fft / 2`` taps, or the reverb's full-length FFT convolution). Inside a
    block, frames of ``frame`` samples are convolved by one ``rfft``/``irfft`` of size
    ``>= frame + taps - 1``; the last ``taps - 1`` samples of the block's result are the
    tail that the next block adds to its start. Not differentiable (inference only).

    Args:
        fir: ``(batch or 1, channels or 1, taps)`` impulse responses.
        frame: samples per FFT frame (>= ``taps - 1``; default: the next power of two >= taps).
    """

    def __init__(self, fir: Tensor, frame: int | None = None) -> None:
        if fir.ndim != 3:
            raise ValueError(f"fir must be (batch, channels, taps), got {tuple(fir.shape)}")
        self.taps = int(fir.shape[-1])
        self.frame = int(frame) if frame is not None else 1 << max(0, (self.taps - 1).bit_length())
        if self.frame < max(1, self.taps - 1):
            raise ValueError(f"frame ({self.frame}) must be >= taps - 1 ({self.taps - 1})")
        self.n_fft = fast_fft_size(self.frame + self.taps - 1)
        self.spectrum = torch.fft.rfft(fir, n=self.n_fft)[:, :, None, :]  # (b, c, 1, bins)
        self.carry: Tensor | None = None

    @classmethod
    def from_response(cls, response: Tensor, n_fft: int) -> StreamingFIR:
        """The FIR that :func:`~neuromix.core.dsp.filters.fft_filter` applies for ``response``.

        Args:
            response: complex ``(batch, n_fft // 2 + 1)`` (or ``(batch, channels, bins)``) on
                the ``rfft`` grid of size ``n_fft``.
            n_fft: that grid's size; the FIR is ``irfft(response)[:n_fft // 2]``.
        """
        if response.ndim == 2:
            response = response[:, None, :]
        fir = torch.fft.irfft(response.to(torch.complex64), n=n_fft)[..., : n_fft // 2]
        return cls(fir, frame=n_fft // 2)

    def __call__(self, x: Tensor) -> Tensor:
        """Filter the next block ``(batch, channels, samples)``; returns the same shape."""
        batch, channels, n = x.shape
        length, taps, n_fft = self.frame, self.taps, self.n_fft
        count = -(-n // length)
        full = n // length
        frames = x.new_empty(batch, channels, count, n_fft)
        frames[..., length:] = 0.0
        if full:
            frames[..., :full, :length] = x[..., : full * length].unflatten(-1, (full, length))
        if n > full * length:
            frames[..., full, : n - full * length] = x[..., full * length :]
            frames[..., full, n - full * length : length] = 0.0
        spec = torch.fft.rfft(frames)
        del frames
        if spec.shape == torch.broadcast_shapes(spec.shape, self.spectrum.shape):
            spec.mul_(self.spectrum)
        else:
            spec = spec * self.spectrum
        y = torch.fft.irfft(spec, n=n_fft)  # (b, c, count, n_fft): frame k's output starts at k * length
        del spec
        if taps > 1 and count > 1:  # overlap-add: each frame's tail (taps - 1 <= length) into the next frame
            y[..., 1:, : taps - 1] += y[..., :-1, length : length + taps - 1]
        out = y[..., :length].reshape(y.shape[0], y.shape[1], count * length)
        if taps > 1:
            if self.carry is not None:  # the previous block's tail
                out[..., : taps - 1] += self.carry
            # what reaches past this block: the rest of `out` after n samples, then the last frame's tail
            self.carry = torch.cat([out[..., n:], y[..., -1, length : length + taps - 1]], dim=-1)[..., : taps - 1]
        return out[..., :n]


class StreamingCompressor:
    """:func:`~neuromix.core.dsp.dynamics.compressor` block by block, with its state carried over.

    Blocks must be multiples of ``hop`` samples (only the last may be shorter), so that the
    detector blocks fall where they fall in the whole signal. The side chain (block peak,
    :func:`~neuromix.core.dsp.dynamics.gain_computer`) is memoryless. The attack/release
    smoother (:func:`~neuromix.core.dsp.dynamics.smooth_gain`, the branching recursion
    ``y[n] = a[n] y[n-1] + (1 - a[n]) x[n]`` started from ``y[-1] = 0``) has one number of
    state per item, the last smoothed reduction ``y``; each block after the first is
    smoothed with one extra frame in front whose target ``y / (1 - alpha_A)`` (above 0, so
    the attack branch) makes that frame's output exactly ``y`` (up to float32 rounding of
    the target). The gain knot on the block's first sample is carried from the previous
    block. Together the blocks give the whole-signal gain curve.

    Args:
        sample_rate: Hz.
        params: ``threshold_db``, ``ratio``, ``attack_ms``, ``release_ms``, ``knee_db``,
            ``makeup_db``, each ``(batch,)``.
        hop: detector block (``DETECTOR_HOP``, as the whole-signal compressor).
    """

    def __init__(self, sample_rate: int, params: Mapping[str, Tensor], hop: int = DETECTOR_HOP) -> None:
        self.hop = int(hop)
        self.frame_rate = sample_rate / self.hop
        self.p = {k: params[k] for k in ("threshold_db", "ratio", "attack_ms", "release_ms", "knee_db", "makeup_db")}
        log_alpha = -1000.0 / (self.p["attack_ms"].to(torch.float64) * self.frame_rate)
        self.attack_gain = -torch.expm1(log_alpha)  # 1 - alpha_A, (batch,) float64
        self.state: Tensor | None = None  # last smoothed reduction (batch,) in dB
        self.knot: Tensor = self.p["makeup_db"][:, None]
        self.finished = False

    def __call__(self, x: Tensor) -> Tensor:
        """Compress the next block ``(batch, channels, samples)``."""
        if self.finished:
            raise ValueError(f"only the last block may have a length that is not a multiple of {self.hop}")
        n = x.shape[-1]
        self.finished = n % self.hop != 0
        p = self.p
        reduction = F.gain_computer(block_peak_db(x, self.hop), p["threshold_db"], p["ratio"], p["knee_db"])
        if self.state is not None:
            lead = (self.state.to(torch.float64) / self.attack_gain).to(reduction.dtype)
            reduction = torch.cat([lead[:, None], reduction], dim=1)
        smoothed = F.smooth_gain(reduction, self.frame_rate, p["attack_ms"], p["release_ms"])
        if self.state is not None:
            smoothed = smoothed[:, 1:]
        knots = torch.cat([self.knot, p["makeup_db"][:, None] - smoothed], dim=1)
        amplitude = interpolate_knots(knots * (math.log(10.0) / 20.0), self.hop, n).exp_()
        self.knot = knots[:, -1:]
        self.state = smoothed[:, -1]
        return x * amplitude[:, None, :]


# --------------------------------------------------------------------------- block layout


def _block_samples(
    block_seconds: float | None, sample_rate: int, channel_count: int, budget: int, align: int, prefer: int = 1
) -> int:
    """Block length: ``block_seconds`` or the memory budget, a multiple of ``align`` (and of
    ``prefer`` when that is not shorter than half the length)."""
    if block_seconds is not None:
        if not (isinstance(block_seconds, (int, float)) and math.isfinite(block_seconds) and block_seconds > 0):
            raise ConfigError(f"block_seconds must be a positive number of seconds, got {block_seconds!r}")
        wanted = round(block_seconds * sample_rate)
    else:
        wanted = budget // max(1, channel_count)
    block = max(align, wanted // align * align)
    if prefer > align and block >= 2 * prefer:
        block = block // prefer * prefer
    return block


def _progress(total: int, enabled: bool, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="block", disable=not enabled or total <= 1, leave=False)


# --------------------------------------------------------------------------- console render


def render_console(
    console: Console,
    tracks: Tensor,
    mask: Tensor | None,
    params: ConsoleParams,
    *,
    block_samples: int,
    progress: bool = False,
    rides: Callable[[int, int], Tensor] | None = None,
) -> Tensor:
    """Render ``console(tracks, mask, params)`` block by block with bounded memory.

    The result equals :meth:`Console.forward <neuromix.core.dsp.console.Console.forward>`
    on the whole input up to float round-off (see the module docstring for why each stage
    is exact). Memory: one block of every track at a time plus the stereo bus of the whole
    song (the limiter's input).

    Args:
        console: the console (its config says which stages run).
        tracks: ``(batch, tracks, 1 or 2, samples)`` at ``console.sample_rate``.
        mask: ``(batch, tracks)`` bool (None: all real).
        params: physical settings.
        block_samples: samples per block (rounded down to a multiple of ``DETECTOR_HOP``).
        progress: show a progress bar.
        rides: fader automation: ``rides(start, stop)`` -> ``(batch, tracks, stop - start)``
            linear gains applied after each track's compressor (where a console's fader sits),
            e.g. :meth:`neuromix.mixing.automation.Automation.gains`.

    Returns:
        ``(batch, 2, samples)`` mix. Not differentiable (run under ``torch.no_grad``).
    """
    if tracks.ndim != 4 or tracks.shape[2] not in (1, 2):
        raise ValueError(f"tracks must be (batch, tracks, 1 or 2, samples), got {tuple(tracks.shape)}")
    cfg, sr = console.config, console.sample_rate
    batch, num_tracks, _, n = tracks.shape
    if mask is None:
        mask = torch.ones(batch, num_tracks, dtype=torch.bool, device=tracks.device)
    block = max(DETECTOR_HOP, int(block_samples) // DETECTOR_HOP * DETECTOR_HOP)
    track_p = {k: rearrange(v, "b t -> (b t)") for k, v in params.track.items()}
    m = params.master
    with torch.no_grad():
        if cfg.track_eq:
            eq = {k[3:]: v for k, v in track_p.items() if k.startswith("eq_")}
            track_fir = StreamingFIR.from_response(
                console.track_eq.response(eq, cfg.eq_fft_size, gain_db=track_p["gain_db"]), cfg.eq_fft_size
            )
        track_comp = (
            StreamingCompressor(sr, {k[5:]: v for k, v in track_p.items() if k.startswith("comp_")})
            if cfg.track_compressor
            else None
        )
        reverb_fir = None
        if cfg.reverb:
            ir = console.reverb_ir(m)
            reverb_fir = StreamingFIR(ir.to(tracks.dtype))
        master_fir = None
        if cfg.master_eq:
            eq = {k[3:]: v for k, v in m.items() if k.startswith("eq_")}
            master_fir = StreamingFIR.from_response(console.master_eq.response(eq, cfg.eq_fft_size), cfg.eq_fft_size)
        bus_comp = (
            StreamingCompressor(sr, {k[5:]: v for k, v in m.items() if k.startswith("comp_")})
            if cfg.bus_compressor
            else None
        )
        out = tracks.new_empty(batch, 2, n)
        starts = range(0, n, block)
        bar = _progress(len(starts), progress, "mixing")
        for start in starts:
            stop = min(n, start + block)
            x = rearrange(tracks[..., start:stop], "b t c n -> (b t) c n")
            x = track_fir(x) if cfg.track_eq else F.gain(x, track_p["gain_db"])
            if track_comp is not None:
                x = track_comp(x)
            x = rearrange(x, "(b t) c n -> b t c n", b=batch)
            if rides is not None:
                x = x * rides(start, stop)[:, :, None, :].to(x.dtype)
            dry, send = console.route(x, mask, params)
            del x
            if send is not None and reverb_fir is not None:
                dry = dry + F.gain(reverb_fir(send), m["reverb_return_db"])
            if master_fir is not None:
                dry = master_fir(dry)
            if cfg.master_width:
                dry = F.stereo_width(dry, m["width"])
            if bus_comp is not None:
                dry = bus_comp(dry)
            out[..., start:stop] = dry
            bar.update(1)
        bar.close()
        if cfg.limiter:
            out = console.limiter(out, {k[8:]: v for k, v in m.items() if k.startswith("limiter_")})
    return out


# --------------------------------------------------------------------------- black-box render


def _blackbox_context(model: BlackBoxNet, sample_rate: int) -> tuple[int, int]:
    """``(hop, context)``: context samples on each side that make a block's interior exact."""
    n_fft, hop = model.stft_geometry(sample_rate)
    frames = (model.tcn.receptive_field - 1) // 2 + 2
    context = -(-(frames * hop + n_fft) // hop) * hop
    return hop, context


def render_blackbox(
    model: BlackBoxNet,
    tracks: Tensor,
    mask: Tensor | None,
    sample_rate: int,
    cond: Tensor,
    *,
    block_samples: int,
    progress: bool = False,
) -> Tensor:
    """Render the black-box mix on overlapping blocks joined by crossfades.

    Block ``k`` owns samples ``[b_k, b_{k+1})`` (multiples of the STFT hop). It is rendered
    from the input ``[b_k - h - C, b_{k+1} + h + C)`` (clipped to the song), where ``h`` is
    half the crossfade (:data:`_CROSSFADE_HOPS` hops) and ``C`` covers the inverse STFT
    frame, the TCN's receptive field (in frames) and the STFT frame, so every kept sample
    equals the whole render up to float round-off; the kept parts ``[b_k - h, b_{k+1} + h)``
    are joined with complementary ``sin^2`` / ``cos^2`` crossfades of ``2 h`` samples.

    Args:
        model: the network.
        tracks: ``(batch, tracks, 1 or 2, samples)`` at ``sample_rate``.
        mask: ``(batch, tracks)`` bool or None.
        sample_rate: Hz.
        cond: ``(batch * tracks, 2 * embed_dim)`` from ``model.condition`` on the whole song.
        block_samples: samples owned by each block (rounded to a multiple of the hop, at
            least two crossfades).
        progress: show a progress bar.

    Returns:
        ``(batch, 2, samples)``. Not differentiable.
    """
    n = tracks.shape[-1]
    hop, context = _blackbox_context(model, sample_rate)
    half = _CROSSFADE_HOPS // 2 * hop
    block = max(4 * half, int(block_samples) // hop * hop)
    with torch.no_grad():
        if n <= block + 2 * half:
            return model.render(tracks, mask, sample_rate, cond)
        bounds = list(range(0, n, block))
        if n - bounds[-1] < 4 * half:  # a last block too short for two crossfades joins the previous one
            bounds.pop()
        bounds.append(n)
        out = tracks.new_zeros(tracks.shape[0], 2, n)
        ramp = torch.sin(0.5 * math.pi * (torch.arange(2 * half, dtype=tracks.dtype) + 0.5) / (2 * half)).square()
        count = len(bounds) - 1
        bar = _progress(count, progress, "mixing")
        for k in range(count):
            keep_lo = bounds[k] - half if k > 0 else 0
            keep_hi = bounds[k + 1] + half if k < count - 1 else n
            in_lo, in_hi = max(0, keep_lo - context), min(n, keep_hi + context)
            y = model.render(tracks[..., in_lo:in_hi], mask, sample_rate, cond)
            y = y[..., keep_lo - in_lo : keep_hi - in_lo]
            if k > 0:
                y[..., : 2 * half] *= ramp
            if k < count - 1:
                y[..., -2 * half :] *= 1.0 - ramp
            out[..., keep_lo:keep_hi] += y
            bar.update(1)
        bar.close()
    return out


# --------------------------------------------------------------------------- analysis and settings


def analysis_excerpt(
    tracks: Tensor, sample_rate: int, *, seconds: float = ANALYSIS_SECONDS, windows: int = ANALYSIS_WINDOWS
) -> Tensor:
    """An excerpt for analysis: the whole song if short, else windows spread over it.

    Songs longer than ``seconds`` give ``windows`` windows of ``seconds / windows`` seconds,
    evenly spread from the start to the end, joined with 10 ms complementary crossfades.

    Args:
        tracks: ``(tracks, channels, samples)``.
        sample_rate: Hz.
        seconds: excerpt length (and the longest song analysed whole).
        windows: windows in the excerpt.

    Returns:
        ``(tracks, channels, excerpt_samples)`` (``tracks`` itself when short enough).
    """
    n = tracks.shape[-1]
    if n <= int(seconds * sample_rate) or windows < 1:
        return tracks
    w = int(seconds * sample_rate / windows)
    fade = min(int(_EXCERPT_FADE_S * sample_rate), w // 4)
    starts = torch.linspace(0, n - w, windows).round().long().tolist()
    out = tracks.new_zeros(*tracks.shape[:-1], windows * w - (windows - 1) * fade)
    ramp = torch.sin(0.5 * math.pi * (torch.arange(fade, dtype=tracks.dtype) + 0.5) / max(fade, 1)).square()
    pos = 0
    for i, s in enumerate(starts):
        piece = tracks[..., s : s + w].clone()
        if fade:
            if i > 0:
                piece[..., :fade] *= ramp
            if i < windows - 1:
                piece[..., -fade:] *= 1.0 - ramp
        out[..., pos : pos + w] += piece
        pos += w - fade
    return out


def settings_document(
    console: Console, params: ConsoleParams, names: Sequence[str], classes: Sequence[str], model_name: str
) -> dict:
    """The settings JSON: ``Console.settings_to_dict`` plus ``model``, ``classes`` and ``console``.

    ``console`` records the console's stages and fixed properties (``stages``,
    ``reverb_seconds``, ``reverb_seed``, ``eq_fft_size``) so that :func:`console_from_settings`
    rebuilds the same console.
    """
    doc = console.settings_to_dict(params, list(names))
    cfg = console.config
    doc["model"] = model_name
    doc["classes"] = dict(zip(names, classes))
    doc["console"] = {
        "stages": [s for s in ALL_STAGES if getattr(cfg, s)],
        "reverb_seconds": cfg.reverb_seconds,
        "reverb_seed": cfg.reverb_seed,
        "eq_fft_size": cfg.eq_fft_size,
    }
    return doc


def rounded_document(
    console: Console, params: ConsoleParams, names: Sequence[str], classes: Sequence[str], model_name: str
) -> dict:
    """:func:`settings_document` whose values survive their own float32 round trip, so the
    document written (``--params``) is exactly what is rendered and re-rendered."""
    doc = settings_document(console, params, names, classes, model_name)
    return settings_document(console, console.settings_from_dict(doc, list(names))[0], names, classes, model_name)


def console_from_settings(doc: Mapping, sample_rate: int) -> Console:
    """The console a settings document was made with (all stages when it does not say).

    Raises:
        ConfigError: an invalid ``console`` section (names the field).
    """
    return Console(sample_rate, settings_config(doc))


def settings_config(doc: Mapping) -> ConsoleConfig:
    """The :class:`ConsoleConfig` a settings document records (all stages when it does not say).

    Raises:
        ConfigError: an invalid ``console`` section (names the field).
    """
    section = doc.get("console", {}) if isinstance(doc, Mapping) else {}
    if not isinstance(section, Mapping):
        raise ConfigError("settings: 'console' must be an object")
    unknown = sorted(set(section) - {"stages", "reverb_seconds", "reverb_seed", "eq_fft_size"})
    if unknown:
        raise ConfigError(f"settings: unknown console field(s) {', '.join(unknown)}")
    stages = section.get("stages", list(ALL_STAGES))
    if not isinstance(stages, list) or not all(isinstance(s, str) and s in ALL_STAGES for s in stages):
        raise ConfigError(f"settings: console.stages must be a list of {', '.join(ALL_STAGES)}")
    base = ConsoleConfig()
    reverb_seconds = section.get("reverb_seconds", base.reverb_seconds)
    if isinstance(reverb_seconds, bool) or not isinstance(reverb_seconds, (int, float)) or not 0.05 <= reverb_seconds <= 10.0:
        raise ConfigError("settings: console.reverb_seconds must be a number of seconds in [0.05, 10]")
    reverb_seed = section.get("reverb_seed", base.reverb_seed)
    if isinstance(reverb_seed, bool) or not isinstance(reverb_seed, int) or reverb_seed < 0:
        raise ConfigError("settings: console.reverb_seed must be an integer >= 0")
    eq_fft_size = section.get("eq_fft_size", base.eq_fft_size)
    if (
        isinstance(eq_fft_size, bool)
        or not isinstance(eq_fft_size, int)
        or not 256 <= eq_fft_size <= 1 << 20
        or eq_fft_size & (eq_fft_size - 1)
    ):
        raise ConfigError("settings: console.eq_fft_size must be a power of two in [256, 1048576]")
    cfg = replace(
        base,
        **{s: s in stages for s in ALL_STAGES},
        reverb_seconds=float(reverb_seconds),
        reverb_seed=reverb_seed,
        eq_fft_size=eq_fft_size,
    )
    return cfg


def read_settings(path: str | os.PathLike[str]) -> dict:
    """Read a settings JSON file (as written by ``neuromix mix --params``).

    Raises:
        ConfigError: missing, unreadable, too large or not a JSON object (names the file).
    """
    p = Path(path)
    text = read_text_file(p, max_bytes=_SETTINGS_MAX_BYTES, what="settings")
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ConfigError(f"{p}: settings file is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{p}: settings must be a JSON object")
    return doc


def safety_limit(mix: Tensor, sample_rate: int, ceiling_db: float = SAFETY_CEILING_DB) -> Tensor:
    """The final safety limiter: ``(batch, 2, samples)`` with true peak <= ``ceiling_db`` dBTP.

    :func:`~neuromix.core.dsp.dynamics.limiter` (4x true peak, look-ahead, 50 ms release)
    on the whole mix. A mix already below the ceiling passes unchanged.
    """
    return F.limiter(mix, sample_rate, ceiling_db=ceiling_db, release_ms=50.0)


# --------------------------------------------------------------------------- the entry point


def _unique_names(names: Sequence[str]) -> list[str]:
    counts = Counter(names)
    seen: Counter = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(name if counts[name] == 1 else f"{name}#{seen[name]}")
    return out


def _class_overrides(
    classes: Mapping, names: Sequence[str], paths: Sequence[Path]
) -> dict[int | str, str]:
    """Map override keys (index, track name, file name or stem) to track names / indices."""
    overrides: dict[int | str, str] = {}
    by_file = {p.name: names[i] for i, p in enumerate(paths)}
    for key, cls in classes.items():
        if (isinstance(key, int) and not isinstance(key, bool)) or key in names:
            overrides[key] = cls
        elif key in by_file:
            overrides[by_file[key]] = cls
        elif Path(str(key)).stem in names:
            overrides[Path(str(key)).stem] = cls
        else:
            raise ConfigError(f"classes: no track named {key!r} (tracks: {', '.join(names)})")
    return overrides


def _decide_classes(
    classes: Sequence[str] | Mapping | None,
    names: list[str],
    paths: Sequence[Path],
    excerpt: Callable[[], Tensor],
    sample_rate: int,
    from_settings: Mapping | None,
) -> list[str]:
    from neuromix.mixing.classify import classify_tracks

    if classes is not None and not isinstance(classes, Mapping):
        decided = [str(c).strip().lower() for c in classes]
        if len(decided) != len(names):
            raise ConfigError(f"{len(decided)} classes given for {len(names)} tracks")
        for i, c in enumerate(decided):
            if c not in INSTRUMENT_CLASSES:
                raise ConfigError(f"classes[{i}]: unknown instrument class {c!r}; valid: {', '.join(INSTRUMENT_CLASSES)}")
        return decided
    overrides: dict[int | str, str] = {}
    if from_settings:
        overrides.update({k: v for k, v in from_settings.items() if k in names and isinstance(v, str)})
    if classes:
        overrides.update(_class_overrides(classes, names, paths))
    decided = all(n in overrides or i in overrides for i, n in enumerate(names))
    return classify_tracks(names, None if decided else excerpt(), sample_rate, overrides=overrides)


def _as_tracks(tracks: Tensor | Multitrack, sample_rate: int | None) -> tuple[Tensor, int, list[str] | None, list[Path]]:
    if isinstance(tracks, Multitrack):
        if sample_rate is not None and int(sample_rate) != tracks.sample_rate:
            raise ConfigError(
                f"the multitrack is at {tracks.sample_rate} Hz, not {sample_rate} Hz; load it at the rate you want"
            )
        return tracks.audio, tracks.sample_rate, list(tracks.names), list(tracks.paths)
    if not isinstance(tracks, Tensor):
        raise TypeError(f"tracks must be a (tracks, channels, samples) tensor or a Multitrack, got {type(tracks).__name__}")
    if sample_rate is None or isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ConfigError(f"sample_rate must be a positive integer number of Hz, got {sample_rate!r}")
    if tracks.ndim != 3 or tracks.shape[1] not in (1, 2):
        raise ValueError(f"tracks must be (tracks, 1 or 2 channels, samples), got shape {tuple(tracks.shape)}")
    if not tracks.is_floating_point():
        raise ValueError(f"tracks must be a float tensor, got {tracks.dtype}")
    return tracks, int(sample_rate), None, []


def mix_multitrack(
    tracks: Tensor | Multitrack,
    sample_rate: int | None = None,
    *,
    model: str | os.PathLike[str] | nn.Module | MixerModel = "console",
    classes: Sequence[str] | Mapping[int | str, str] | None = None,
    names: Sequence[str] | None = None,
    settings: Mapping | None = None,
    reference: Tensor | None = None,
    targets: Targets | str | Mapping | None = None,
    locks: Sequence[str] = (),
    steps: int = DEFAULT_STEPS,
    block_seconds: float | None = None,
    progress: bool = False,
) -> MixOutcome:
    """Mix a multitrack of any length into a stereo mix, optionally toward a goal.

    Args:
        tracks: ``(tracks, channels, samples)`` float tensor (1 to 64 tracks, 1 or 2
            channels) or a :class:`~neuromix.core.io.Multitrack` (its rate and names are used).
        sample_rate: Hz of a tensor ``tracks`` (for a Multitrack: ``None`` or its rate).
        model: ``"console"``, ``"blackbox"`` (shipped checkpoints), ``"rules"``, a checkpoint
            path, a network, or a :class:`MixerModel`. Ignored when ``settings`` is given.
        classes: one class per track, or overrides ``{track name | file name | index: class}``
            (the rest from :func:`~neuromix.mixing.classify.classify_tracks`: names, then audio).
        names: track names (default: the Multitrack's, else ``track1``, ``track2``, ...).
        settings: a settings document (:func:`settings_document`, e.g. from ``--params``):
            start from it instead of predicting; tracks are matched by name.
        reference: ``(channels, samples)`` reference mix at the session rate. A console
            network takes it as extra tokens; then (console networks and rules) the settings
            are optimised toward its features (:mod:`neuromix.mixing.goals`).
        targets: explicit or semantic targets (:func:`~neuromix.mixing.goals.parse_targets`),
            met by optimising the settings.
        locks: settings kept exactly while optimising (``"vocals.gain_db"``, ``"master.width"``).
        steps: optimisation steps of a goal-oriented mix.
        block_seconds: block length of the streaming render; ``None`` sizes blocks from
            :data:`CONSOLE_BLOCK_BUDGET` / :data:`BLACKBOX_BLOCK_BUDGET`.
        progress: show progress bars.

    Returns:
        :class:`MixOutcome` with the ``(2, samples)`` mix (finite, true peak <= -1 dBTP) and,
        for a goal-oriented mix, the :class:`~neuromix.mixing.goals.SolveReport`.

    Raises:
        NeuromixError: bad model spec or checkpoint, bad settings, classes, targets, locks or
            input values; a goal for the black-box network (it has no settings to optimise).
        ValueError: ``tracks`` of the wrong shape or type (a programming error).
    """
    audio, sr, names_u, paths = _checked_session(tracks, sample_rate, names)
    length = audio.shape[-1]
    audio = _pad_short(audio, sr)
    reference = _checked_reference(reference)
    goal_targets = _as_targets(targets)
    guided = reference is not None or goal_targets is not None
    if locks and not guided:
        raise ConfigError("locks only matter when there is a goal: give a reference or targets (or use resolve_mix)")
    excerpt = _excerpt_cache(audio, sr)
    x4 = audio[None]
    num_tracks, channels, _ = audio.shape
    with torch.no_grad():
        if settings is not None:
            console, doc, classes_u, model_name = _settings_start(settings, sr, names_u, classes, paths, excerpt)
        else:
            mixer = resolve_model(model)
            model_name = mixer.name
            classes_u = _decide_classes(classes, names_u, paths, excerpt, sr, None)
            if mixer.kind == "blackbox":
                if guided:
                    raise ConfigError(
                        "a reference or targets need a mixer with console settings to optimise "
                        "(--model console or rules); the black-box network has none"
                    )
                net = mixer.network
                assert isinstance(net, BlackBoxNet)
                with _eval_mode(net):
                    cond = net.condition(x4, None, sr, _class_ids(classes_u))
                    block = _block_samples(block_seconds, sr, num_tracks * channels, BLACKBOX_BLOCK_BUDGET, 1)
                    mix = render_blackbox(net, x4, None, sr, cond, block_samples=block, progress=progress)
                return _finish(mix[..., :length], sr, None, classes_u, model_name, names_u)
            console, predicted = _predict_settings(mixer, x4, excerpt, sr, classes_u, reference)
            doc = rounded_document(console, predicted, names_u, classes_u, model_name)
    report = None
    if guided:
        doc, report = guide_settings(
            audio, sr, doc, names=names_u, classes=classes_u, reference=reference, targets=goal_targets,
            locks=locks, steps=steps, progress=_step_progress(steps, progress),
        )
    return _render_document(console, x4, sr, doc, names_u, classes_u, model_name, block_seconds, progress, report,
                            length)


def resolve_mix(
    tracks: Tensor | Multitrack,
    sample_rate: int | None = None,
    settings: Mapping | None = None,
    *,
    locks: Sequence[str] = (),
    reference: Tensor | None = None,
    targets: Targets | str | Mapping | None = None,
    anchor: Mapping | None = None,
    model: str | os.PathLike[str] | nn.Module | MixerModel = "console",
    classes: Sequence[str] | Mapping[int | str, str] | None = None,
    names: Sequence[str] | None = None,
    steps: int = DEFAULT_STEPS,
    block_seconds: float | None = None,
    progress: bool = False,
) -> MixOutcome:
    """Re-solve edited settings: keep the locked ones exactly, re-optimise the rest, render.

    The goal is the reference and/or the targets when given; otherwise the mix features of
    ``anchor`` (a settings document, e.g. the network's original prediction), and when that
    is missing too, of the settings ``model`` predicts for these tracks (the network's own
    mix).

    Args:
        tracks: as in :func:`mix_multitrack`.
        sample_rate: as in :func:`mix_multitrack`.
        settings: the edited settings document to start from.
        locks: lock keys ``"TRACK.PARAMETER"`` / ``"master.PARAMETER"`` (``TRACK.*`` locks a
            whole channel strip). Locked values are copied into the result unchanged.
        reference: a reference mix ``(channels, samples)`` at the session rate.
        targets: explicit or semantic targets.
        anchor: the settings document whose mix is the goal when there is no reference or targets.
        model: predicts the anchor when neither goal nor anchor is given (not ``"blackbox"``).
        classes: as in :func:`mix_multitrack`.
        names: as in :func:`mix_multitrack`.
        steps: optimisation steps.
        block_seconds: as in :func:`mix_multitrack`.
        progress: show progress bars.

    Returns:
        :class:`MixOutcome` with the re-solved settings, its mix and the report.

    Raises:
        NeuromixError: as :func:`mix_multitrack`, and for unknown lock keys.
    """
    if settings is None or not isinstance(settings, Mapping):
        raise ConfigError("re-solving needs a settings document (a JSON object) to start from")
    audio, sr, names_u, paths = _checked_session(tracks, sample_rate, names)
    length = audio.shape[-1]
    audio = _pad_short(audio, sr)
    reference = _checked_reference(reference)
    goal_targets = _as_targets(targets)
    excerpt = _excerpt_cache(audio, sr)
    x4 = audio[None]
    with torch.no_grad():
        console, doc, classes_u, model_name = _settings_start(settings, sr, names_u, classes, paths, excerpt)
        if reference is None and goal_targets is None and anchor is None:
            mixer = resolve_model(model)
            if mixer.kind == "blackbox":
                raise ConfigError("the black-box network has no settings to re-solve toward; use console or rules")
            anchor_console, predicted = _predict_settings(mixer, x4, excerpt, sr, classes_u, None)
            anchor = settings_document(anchor_console, predicted, names_u, classes_u, mixer.name)
    doc, report = guide_settings(
        audio, sr, doc, names=names_u, classes=classes_u, reference=reference, targets=goal_targets,
        anchor=anchor, locks=locks, steps=steps, progress=_step_progress(steps, progress),
    )
    return _render_document(console, x4, sr, doc, names_u, classes_u, model_name, block_seconds, progress, report,
                            length)


MIN_ANALYSIS_SECONDS = 1.0
"""Shorter sessions are padded with silence to this length for analysis and rendering (the
networks and the loudness measurement need whole 400 ms blocks); the mix is cut back."""


def _pad_short(audio: Tensor, sample_rate: int) -> Tensor:
    short = int(math.ceil(MIN_ANALYSIS_SECONDS * sample_rate)) - audio.shape[-1]
    return torch.nn.functional.pad(audio, (0, short)) if short > 0 else audio


def _checked_session(
    tracks: Tensor | Multitrack, sample_rate: int | None, names: Sequence[str] | None
) -> tuple[Tensor, int, list[str], list[Path]]:
    audio, sr, track_names, paths = _as_tracks(tracks, sample_rate)
    num_tracks, _, n = audio.shape
    if not 1 <= num_tracks <= MAX_TRACKS:
        raise AudioInputError(f"between 1 and {MAX_TRACKS} tracks can be mixed, got {num_tracks}")
    if n == 0:
        raise AudioInputError("the tracks contain no samples")
    # one cheap pass (a sum is finite unless a sample is NaN/Inf or it overflows); confirm if not
    if not bool(torch.isfinite(audio.sum())) and not bool(torch.isfinite(audio).all()):
        raise AudioInputError("the tracks contain non-finite samples (NaN or Inf)")
    if names is not None:
        track_names = [str(x) for x in names]
        if len(track_names) != num_tracks:
            raise ConfigError(f"{len(track_names)} names for {num_tracks} tracks")
    names_u = _unique_names(track_names or [f"track{i + 1}" for i in range(num_tracks)])
    return audio.to(torch.float32), sr, names_u, paths


def _checked_reference(reference: Tensor | None) -> Tensor | None:
    if reference is None:
        return None
    reference = torch.as_tensor(reference, dtype=torch.float32)
    reference = reference[None] if reference.ndim == 1 else reference
    if reference.ndim != 2 or reference.shape[0] not in (1, 2) or reference.shape[-1] == 0:
        raise ValueError(f"reference must be (channels, samples), got shape {tuple(reference.shape)}")
    if not bool(torch.isfinite(reference).all()):
        raise AudioInputError("the reference contains non-finite samples (NaN or Inf)")
    return reference


def _as_targets(targets: Targets | str | Mapping | None) -> Targets | None:
    if targets is None or isinstance(targets, Targets):
        return targets or None
    return parse_targets(targets)


def _excerpt_cache(audio: Tensor, sample_rate: int) -> Callable[[], Tensor]:
    cache: list[Tensor] = []

    def excerpt() -> Tensor:  # computed once, only when the classifier or the rules need it
        if not cache:
            cache.append(analysis_excerpt(audio, sample_rate))
        return cache[0]

    return excerpt


def _settings_start(
    settings: Mapping,
    sample_rate: int,
    names: list[str],
    classes: Sequence[str] | Mapping[int | str, str] | None,
    paths: list[Path],
    excerpt: Callable[[], Tensor],
) -> tuple[Console, dict, list[str], str]:
    """Validate a given settings document: ``(console, document, classes, model name)``."""
    if not isinstance(settings, Mapping):
        raise ConfigError("settings must be a JSON object (a settings document)")
    console = console_from_settings(settings, sample_rate)
    params, _ = console.settings_from_dict(settings, names)
    doc_classes = settings.get("classes")
    classes_u = _decide_classes(
        classes, names, paths, excerpt, sample_rate, doc_classes if isinstance(doc_classes, Mapping) else None
    )
    model_name = str(settings.get("model", "settings"))
    doc = settings_document(console, params, names, classes_u, model_name)
    # keep the user's own numbers (not their float32 round trip): an unedited value stays bit-identical
    given = {t.get("name", f"track{i + 1}"): t for i, t in enumerate(settings["tracks"])}
    for entry in doc["tracks"]:
        entry.update({k: v for k, v in given[entry["name"]].items() if k in console.track_ranges})
    doc["master"].update({k: v for k, v in settings.get("master", {}).items() if k in console.master_ranges})
    for key, value in settings.items():
        doc.setdefault(key, value)
    return console, doc, classes_u, model_name


def _step_progress(steps: int, enabled: bool) -> Callable[[int, int], None] | None:
    if not enabled:
        return None
    bar = _progress(steps, True, "optimising")

    def update(step: int, total: int) -> None:
        bar.update(1)
        if step >= total:
            bar.close()

    return update


def _render_document(
    console: Console,
    x4: Tensor,
    sample_rate: int,
    doc: dict,
    names: list[str],
    classes: list[str],
    model_name: str,
    block_seconds: float | None,
    progress: bool,
    report: SolveReport | None,
    length: int | None = None,
) -> MixOutcome:
    """Render exactly what the document says (so --params then --settings gives the same mix);
    the mix is cut to ``length`` samples (the session before :func:`_pad_short`)."""
    with torch.no_grad():
        params, _ = console.settings_from_dict(doc, names)
        _, num_tracks, channels, _ = x4.shape
        block = _block_samples(
            block_seconds, sample_rate, num_tracks * channels, CONSOLE_BLOCK_BUDGET, DETECTOR_HOP,
            console.config.eq_fft_size // 2,
        )
        rides = None
        if doc.get("automation") is not None:
            from neuromix.mixing.automation import Automation

            rides = Automation.from_dict(doc["automation"], names).gains_function(sample_rate, names)
        mix = render_console(console, x4, None, params, block_samples=block, progress=progress, rides=rides)
    outcome = _finish(mix[..., :length], sample_rate, doc, classes, model_name, names)
    outcome.report = report
    return outcome


def _class_ids(classes: Sequence[str]) -> Tensor:
    return torch.tensor([[class_index(c) for c in classes]], dtype=torch.long)


def _predict_settings(
    mixer: MixerModel, x4: Tensor, excerpt: Callable[[], Tensor], sample_rate: int, classes: list[str], reference: Tensor | None
) -> tuple[Console, ConsoleParams]:
    """Console settings for the song from a console network (analysis windows over the whole
    song) or the rule-based mixer (the analysis excerpt)."""
    if mixer.kind == "console":
        net = mixer.network
        assert isinstance(net, ConsoleNet)
        ref = None if reference is None else reference[None]
        with _eval_mode(net):
            track_u, master_u = net.predict(x4, None, sample_rate, classes=_class_ids(classes), reference=ref)
        console = net.console(sample_rate)
        return console, console.denormalise(track_u, master_u)
    from neuromix.mixing.rules import RuleMixer

    rules = RuleMixer(sample_rate)
    analysed = excerpt()
    short = int(_RULES_MIN_SECONDS * sample_rate) - analysed.shape[-1]
    if short > 0:  # the rules measure loudness in 0.4 s blocks; silence is gated out
        analysed = torch.nn.functional.pad(analysed, (0, short))
    return rules.console, rules.settings(analysed, classes)


class _eval_mode:
    """Context manager: a module in eval mode, its previous mode restored afterwards."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.was_training = module.training

    def __enter__(self) -> nn.Module:
        self.module.eval()
        return self.module

    def __exit__(self, *exc: object) -> None:
        self.module.train(self.was_training)


def _finish(
    mix: Tensor, sample_rate: int, doc: dict | None, classes: list[str], model_name: str, names: list[str]
) -> MixOutcome:
    if not bool(torch.isfinite(mix).all()):
        raise NeuromixError(f"the mix by {model_name} is not finite (NaN or Inf); the model may be broken")
    mix = safety_limit(mix, sample_rate)
    return MixOutcome(mix[0], doc, classes, model_name, names)
