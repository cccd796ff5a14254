"""Un-mix augmentation and loudness normalisation of stems.

Wet, mix-ready stems (MUSDB, finished stems of released songs) already carry the
engineer's gain, EQ, panning and compression, so a mixer trained to mix them
would learn to do nothing. Following FxNorm-automix (Martínez-Ramírez, Liao,
Fabbro, Uhlich, Nagashima, Mitsufuji, "Automatic music mixing with deep learning
and out-of-domain data", ISMIR 2022), the stems are "un-mixed": every track gets
a random gain, EQ, dynamics and stereo change, and the network learns to undo
them toward the original mix. Separate *sampling* from *applying*::

    params = sample_unmix(num_tracks, seed)            # seeded, per-track tensors
    dry = apply_unmix(tracks, sample_rate, params)     # pure: same params -> same output

:func:`loudness_normalise` is *not* augmentation: it is the evaluation protocol for
real songs (every stem brought to one integrated loudness before a mixer sees it,
as in FxNorm-automix's loudness normalisation of inputs), so results do not depend
on how loud the stems happened to be delivered.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from neuromix.core.dsp import functional as F
from neuromix.core.features import integrated_loudness

__all__ = ["EQ_KINDS", "UnmixParams", "sample_unmix", "apply_unmix", "loudness_normalise"]

EQ_KINDS: tuple[str, str, str] = ("low_shelf", "peaking", "high_shelf")
"""The three EQ bands of the un-mix: a low shelf and a high shelf (together any tilt) and a peak."""

_SHELF_Q = 1.0 / math.sqrt(2.0)
_SILENCE_LUFS = -70.0  # BS.1770 absolute gate


@dataclass(frozen=True)
class UnmixParams:
    """Per-track un-mix settings; every field has the leading shape ``shape`` (e.g. ``(T,)``).

    Attributes:
        gain_db: ``shape`` broadband gain, dB.
        eq_cutoff_hz: ``shape + (3,)`` corner / centre frequencies of :data:`EQ_KINDS`, Hz
            (clamped below 0.45 x the sample rate when applied).
        eq_gain_db: ``shape + (3,)`` band gains, dB.
        eq_q: ``shape + (3,)`` band Q.
        comp_threshold_rel_db: ``shape`` compressor threshold relative to the track's peak
            level (after EQ), dB (<= 0).
        comp_ratio: ``shape`` compression ratio (1: no compression).
        comp_attack_ms: ``shape`` attack time, ms.
        comp_release_ms: ``shape`` release time, ms.
        ride_depth_db: ``shape`` depth of a slow sinusoidal gain ride ("fader riding"), dB
            (0: none).
        ride_rate_hz: ``shape`` rate of the gain ride, Hz.
        ride_phase: ``shape`` start phase of the gain ride, radians.
        pan: ``shape`` balance in [-1, 1] (:func:`~neuromix.core.dsp.functional.pan`; 0: none).
        width: ``shape`` mid/side width (:func:`~neuromix.core.dsp.functional.stereo_width`;
            1: none).
    """

    gain_db: Tensor
    eq_cutoff_hz: Tensor
    eq_gain_db: Tensor
    eq_q: Tensor
    comp_threshold_rel_db: Tensor
    comp_ratio: Tensor
    comp_attack_ms: Tensor
    comp_release_ms: Tensor
    ride_depth_db: Tensor
    ride_rate_hz: Tensor
    ride_phase: Tensor
    pan: Tensor
    width: Tensor

    @property
    def shape(self) -> tuple[int, ...]:
        """Leading shape (one set of settings per track)."""
        return tuple(self.gain_db.shape)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> UnmixParams:
        """A copy with every tensor moved / cast."""
        return UnmixParams(**{f.name: getattr(self, f.name).to(device=device, dtype=dtype) for f in fields(self)})

    def as_dict(self) -> dict[str, Tensor]:
        """The settings as a name -> tensor dict (e.g. for logging)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def neutral(cls, shape: int | Sequence[int]) -> UnmixParams:
        """Settings that leave every track unchanged."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        zeros = torch.zeros(shape)
        ones = torch.ones(shape)
        return cls(
            gain_db=zeros.clone(),
            eq_cutoff_hz=torch.tensor([150.0, 1000.0, 6000.0]).expand(*shape, 3).clone(),
            eq_gain_db=torch.zeros(*shape, 3),
            eq_q=torch.full((*shape, 3), _SHELF_Q),
            comp_threshold_rel_db=zeros.clone(),
            comp_ratio=ones.clone(),
            comp_attack_ms=torch.full(shape, 10.0),
            comp_release_ms=torch.full(shape, 100.0),
            ride_depth_db=zeros.clone(),
            ride_rate_hz=torch.full(shape, 0.25),
            ride_phase=zeros.clone(),
            pan=zeros.clone(),
            width=ones.clone(),
        )


def _uniform(g: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=g)


def _log_uniform(g: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> Tensor:
    return torch.exp(_uniform(g, shape, math.log(low), math.log(high)))


def sample_unmix(
    num_tracks: int | Sequence[int],
    seed: int | torch.Generator,
    *,
    strength: float = 1.0,
    gain: bool = True,
    eq: bool = True,
    dynamics: bool = True,
    stereo: bool = True,
) -> UnmixParams:
    """Draw random un-mix settings, one set per track.

    Ranges at ``strength = 1`` (``strength`` scales every deviation from neutral linearly;
    0 gives neutral settings):

    ==============  ======================================================================
    gain            uniform +-9 dB
    EQ              low shelf at 60-400 Hz, peak at 200-6000 Hz (Q 0.5-2), high shelf at
                    2-12 kHz (frequencies log-uniform), each gain uniform +-6 dB
    compression     on for half of the tracks: ratio 1.5-4, threshold 3-15 dB below the
                    track's peak, attack 1-30 ms, release 50-400 ms (log-uniform)
    gain ride       slow sine on the gain: depth 0-3 dB, 0.1-1 Hz, random phase
    pan / width     balance uniform +-0.5, mid/side width uniform 0.5-1.5
    ==============  ======================================================================

    Every random number is drawn whatever the switches say, in a fixed order, so turning
    a stage off leaves the other stages' values unchanged.

    Args:
        num_tracks: number of tracks, or a leading shape such as ``(batch, tracks)``.
        seed: an ``int`` seed or a ``torch.Generator`` (CPU; advanced by the call).
        strength: scale of the deviations (>= 0).
        gain: randomise the gain (else 0 dB).
        eq: randomise the EQ (else flat).
        dynamics: randomise compression and gain riding (else none).
        stereo: randomise pan and width (else unchanged).

    Returns:
        :class:`UnmixParams` with leading shape ``(num_tracks,)`` (or the given shape),
        float32 on the CPU.

    Raises:
        ValueError: negative ``strength`` or a negative track count.
    """
    if not (strength >= 0 and math.isfinite(strength)):
        raise ValueError(f"strength must be a finite number >= 0, got {strength!r}")
    shape = (int(num_tracks),) if isinstance(num_tracks, int) else tuple(int(s) for s in num_tracks)
    if any(s < 0 for s in shape):
        raise ValueError(f"num_tracks must be >= 0, got {num_tracks!r}")
    if isinstance(seed, torch.Generator):
        g = seed
    else:
        g = torch.Generator().manual_seed(int(seed))
    s = float(strength)

    gain_db = _uniform(g, shape, -9.0, 9.0) * s
    cutoff = torch.stack(
        [_log_uniform(g, shape, 60.0, 400.0), _log_uniform(g, shape, 200.0, 6000.0),
         _log_uniform(g, shape, 2000.0, 12000.0)], dim=-1)
    eq_gain = _uniform(g, shape + (3,), -6.0, 6.0) * s
    q = torch.stack([torch.full(shape, _SHELF_Q), _log_uniform(g, shape, 0.5, 2.0), torch.full(shape, _SHELF_Q)], -1)
    compress = torch.rand(shape, generator=g) < 0.5
    ratio = 1.0 + torch.where(compress, _uniform(g, shape, 0.5, 3.0), torch.zeros(shape)) * s
    threshold = _uniform(g, shape, -15.0, -3.0)
    attack = _log_uniform(g, shape, 1.0, 30.0)
    release = _log_uniform(g, shape, 50.0, 400.0)
    ride_depth = _uniform(g, shape, 0.0, 3.0) * s
    ride_rate = _log_uniform(g, shape, 0.1, 1.0)
    ride_phase = _uniform(g, shape, 0.0, 2.0 * math.pi)
    pan = _uniform(g, shape, -0.5, 0.5) * s
    width = 1.0 + _uniform(g, shape, -0.5, 0.5) * s

    neutral = UnmixParams.neutral(shape)
    return UnmixParams(
        gain_db=gain_db if gain else neutral.gain_db,
        eq_cutoff_hz=cutoff if eq else neutral.eq_cutoff_hz,
        eq_gain_db=eq_gain if eq else neutral.eq_gain_db,
        eq_q=q if eq else neutral.eq_q,
        comp_threshold_rel_db=threshold if dynamics else neutral.comp_threshold_rel_db,
        comp_ratio=ratio if dynamics else neutral.comp_ratio,
        comp_attack_ms=attack if dynamics else neutral.comp_attack_ms,
        comp_release_ms=release if dynamics else neutral.comp_release_ms,
        ride_depth_db=ride_depth if dynamics else neutral.ride_depth_db,
        ride_rate_hz=ride_rate if dynamics else neutral.ride_rate_hz,
        ride_phase=ride_phase if dynamics else neutral.ride_phase,
        pan=pan if stereo else neutral.pan,
        width=width.clamp_min(0.0) if stereo else neutral.width,
    )


def apply_unmix(tracks: Tensor, sample_rate: int, params: UnmixParams, *, eq_fft_size: int = 16384) -> Tensor:
    """Apply un-mix settings to tracks (pure: the same inputs give the same output).

    Chain per track: EQ (:func:`~neuromix.core.dsp.functional.parametric_eq`, RBJ biquads
    as one FFT filter) -> compressor (:func:`~neuromix.core.dsp.functional.compressor`,
    threshold relative to the track's peak after EQ) -> gain ride -> gain -> width
    (:func:`~neuromix.core.dsp.functional.stereo_width`) -> balance
    (:func:`~neuromix.core.dsp.functional.pan`, constant power). A stage whose settings are
    all neutral is skipped exactly. Silent (e.g. padded) tracks stay silent. Without EQ and
    dynamics, a track whose channels are identical changes loudness by exactly
    ``gain_db`` (width does not touch it, the balance law keeps its power).

    The EQ runs as an FIR of ``eq_fft_size // 2`` taps (:func:`~neuromix.core.dsp.functional.fft_filter`);
    the default 16384 (8192 taps, 186 ms at 44.1 kHz) holds the sampled bands' responses
    (corners >= 60 Hz, Q <= 2) and is four times cheaper than the 65536 default of the console.

    Args:
        tracks: ``(*shape, channels, samples)`` audio with ``channels`` 1 or 2 (mono is
            duplicated to stereo first) and ``shape == params.shape``, e.g. ``(T, 2, N)``
            or ``(B, T, 2, N)``.
        sample_rate: Hz.
        params: settings from :func:`sample_unmix` (or built by hand).
        eq_fft_size: FFT size of the EQ's block convolution (even).

    Returns:
        ``(*shape, 2, samples)`` float tensor (a new tensor; ``tracks`` is not modified).
        Differentiable w.r.t. ``tracks`` and the tensors of ``params``.

    Raises:
        ValueError: a shape mismatch between ``tracks`` and ``params``, or more than two channels.
    """
    if tracks.ndim < 2:
        raise ValueError(f"tracks must be (*shape, channels, samples), got {tuple(tracks.shape)}")
    lead = tuple(tracks.shape[:-2])
    channels, n = tracks.shape[-2], tracks.shape[-1]
    if lead != params.shape:
        raise ValueError(f"tracks have leading shape {lead} but params have shape {params.shape}")
    if channels not in (1, 2):
        raise ValueError(f"tracks must be mono or stereo, got {channels} channels")
    x = tracks.reshape(-1, channels, n)
    if channels == 1:
        x = x.expand(-1, 2, -1)
    if x.shape[0] == 0 or n == 0:
        return x.reshape(*lead, 2, n).clone()
    p = params.to(device=x.device, dtype=x.dtype)
    flat = {k: v.reshape(x.shape[0], *v.shape[len(lead):]) for k, v in p.as_dict().items()}

    if bool((flat["eq_gain_db"] != 0).any()):
        cutoff = flat["eq_cutoff_hz"].clamp(10.0, 0.45 * sample_rate)
        x = F.parametric_eq(x, sample_rate, EQ_KINDS, cutoff, flat["eq_gain_db"], flat["eq_q"], n_fft=eq_fft_size)
    if bool((flat["comp_ratio"] != 1).any()):
        peak_db = F.amp_to_db(x.abs().amax(dim=(-2, -1)))
        x = F.compressor(
            x,
            sample_rate,
            threshold_db=peak_db + flat["comp_threshold_rel_db"],
            ratio=flat["comp_ratio"].clamp_min(1.0),
            attack_ms=flat["comp_attack_ms"],
            release_ms=flat["comp_release_ms"],
            knee_db=6.0,
        )
    if bool((flat["ride_depth_db"] != 0).any()):
        t = torch.arange(n, device=x.device, dtype=x.dtype) / sample_rate
        ride_db = flat["ride_depth_db"][:, None] * torch.sin(
            2.0 * math.pi * flat["ride_rate_hz"][:, None] * t + flat["ride_phase"][:, None]
        )
        x = x * F.db_to_amp(ride_db)[:, None, :]
    if bool((flat["gain_db"] != 0).any()):
        x = F.gain(x, flat["gain_db"])
    if bool((flat["width"] != 1).any()):
        x = F.stereo_width(x, flat["width"])
    if bool((flat["pan"] != 0).any()):
        x = F.pan(x, flat["pan"])
    if x.data_ptr() == tracks.data_ptr():
        x = x.clone()
    return x.reshape(*lead, 2, n)


def loudness_normalise(
    tracks: Tensor,
    sample_rate: int,
    target_lufs: float = -23.0,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Bring every stem to the same integrated loudness (ITU-R BS.1770-4).

    The evaluation protocol for real songs: before a mixer (or a baseline) sees a song's
    stems, each is scaled to ``target_lufs``, so scores do not depend on delivery levels.
    Loudness is :func:`neuromix.core.features.integrated_loudness` (gated). A stem whose
    loudness is below the -70 LUFS absolute gate (silence or near-silence: its gated
    loudness is undefined, -inf in BS.1770 terms) is left untouched with a 0 dB gain, and
    so are stems where ``mask`` is False.

    Args:
        tracks: ``(*shape, channels, samples)`` with 1 or 2 channels and at least 400 ms,
            e.g. ``(T, C, N)`` or ``(B, T, C, N)``.
        sample_rate: Hz.
        target_lufs: target integrated loudness, LUFS.
        mask: optional ``shape`` bool; False entries (padding) are not changed.

    Returns:
        ``(normalised (*shape, channels, samples), gains_db shape)``. The gains are
        measured without gradient; the output is differentiable w.r.t. ``tracks`` with
        the gains held constant.

    Raises:
        ValueError: a mask of the wrong shape, or a signal shorter than 400 ms.
    """
    if tracks.ndim < 3:
        raise ValueError(f"tracks must be (*shape, channels, samples), got {tuple(tracks.shape)}")
    lead = tuple(tracks.shape[:-2])
    x = tracks.reshape(-1, *tracks.shape[-2:])
    with torch.no_grad():
        loudness = integrated_loudness(x.detach(), sample_rate)
        active = loudness > _SILENCE_LUFS
        if mask is not None:
            if tuple(mask.shape) != lead:
                raise ValueError(f"mask must have shape {lead}, got {tuple(mask.shape)}")
            active = active & mask.reshape(-1).to(device=active.device, dtype=torch.bool)
        gains_db = torch.where(active, target_lufs - loudness, torch.zeros_like(loudness))
    y = x * F.db_to_amp(gains_db)[:, None, None]
    return y.reshape(tracks.shape), gains_db.reshape(lead)
