"""Objective evaluation of mixing systems against reference mixes: ``neuromix eval``.

Every song is mixed by every system; each mix is compared with the song's reference mix
by the automatic-mixing feature set of automix-toolkit (Steinmetz et al. 2022; the metrics of
Martínez-Ramírez et al., "Automatic music mixing with deep learning and out-of-domain data",
ISMIR 2022), plus a sum/difference multi-resolution STFT distance and, where the reference's
console settings are known (synthetic songs), errors of the settings themselves. Results are
written as Markdown and CSV tables and PNG plots by :func:`write_report`.

Metric definitions (:func:`mix_metrics`)
---------------------------------------
Each feature is computed frame by frame on the output ``y`` and the reference ``r``; frames
where the reference is silent (its frame level more than 60 dB below its loudest frame or
below -100 dB) are dropped, both sequences are smoothed by a running mean over ``smooth_s``
(1 s) of frames (automix-toolkit uses 40 frames), and the metric is the **mean absolute
percentage error** ``100 * mean_t |y_t - r_t| / |r_t|`` over the smoothed frames (:func:`mape`;
deviations from automix-toolkit: frames and bands are power-weighted where it averages bins
uniformly, flatness is in dB, and near-silent bins are floored relative to the frame). Features in
dB are compared as they are (relative to ``|r|`` in dB, as automix-toolkit does), so e.g. a
copy 6 dB louder than a reference at -20 LUFS scores 30 % in integrated loudness; the sample
peak and RMS levels in dBFS, which can come close to 0 dBFS, are compared as ``1 - level``
(automix-toolkit's transform of the RMS level), e.g. a reference RMS of -19 dBFS and an output
6 dB louder score 6 / 20 = 30 %.

=========  =================  ===============================================================
category   key                feature per frame
=========  =================  ===============================================================
loudness   integrated_lufs    BS.1770-4 integrated loudness of the whole excerpt (one "frame")
loudness   short_term_lufs    short-term loudness, 3 s windows every 0.25 s
loudness   peak_db            sample peak in dBFS, 0.4 s frames every 0.1 s (as ``1 - dBFS``)
spectral   centroid_hz        spectral centroid (STFT, channel-averaged power)
spectral   bandwidth_hz       spectral bandwidth (power-weighted std. dev. of frequency)
spectral   contrast_low_db    spectral contrast (Jiang et al. 2002) below 250 Hz: mean of the
                              top 2 % bin powers over the bottom 2 %, in dB
spectral   contrast_mid_db    mean contrast of the octaves 250-500, 500-1000, 1000-2000 Hz
spectral   contrast_high_db   contrast above 2 kHz
spectral   rolloff_hz         85 % spectral roll-off
spectral   flatness_db        spectral flatness in dB (geometric / arithmetic mean power, bins
                              floored 100 dB below the mean; in dB because the linear ratio of
                              tonal or band-limited spectra is tiny and its MAPE explodes)
panning    sps_total          RMS of the stereo panning spectrum (Avendano 2003; Tzanetakis
                              et al. 2007) over all bins, weighted by bin power
panning    sps_low|mid|high   the same in 0-250 Hz, 250-2500 Hz, 2500 Hz-Nyquist (the panning
                              MAPEs divide by ``max(|r_t|, 0.05)``: a centred reference band
                              reads about 0)
dynamics   rms_db             RMS level in dBFS (frames of ``n_fft`` samples, hop ``n_fft/4``;
                              as ``1 - dBFS``)
dynamics   dynamic_spread_db  RMS level minus the mean of ``20 log10 |x_n|`` over the frame's
                              samples, ``|x_n|`` floored 60 dB below the frame's RMS (Ma et al.
                              2015, sign flipped so it is positive; a sine reads 3.01 dB)
dynamics   crest_factor_db    peak minus RMS level in dB
=========  =================  ===============================================================

A category's score is the mean of its features' MAPEs; ``overall/mean_mape`` is the mean of
the four categories. The panning RMS features are blind to left/right mirroring (as in
automix-toolkit), so ``panning/signed_error`` adds the mean absolute difference of the
*signed* power-weighted panning spectrum (pan units, -1..1) in the low/mid/high bands, and
``stft/sum_difference`` is :func:`neuromix.core.losses.sum_difference_stft_loss`.

Setting errors (synthetic songs, :func:`setting_errors`) compare a system's console settings
with the engineer's: mean absolute error of track gain (dB) and pan, of the track EQ's and the
master EQ's magnitude responses (dB, at 1/3-octave frequencies 31.5 Hz-16 kHz), of the
compressor threshold (dB), and the relative error of the compressor ratio (%). The plain sum
is scored as "neutral settings" (unity gain, centred, flat EQ, no compression) and the
equal-loudness sum as neutral settings with its normalisation gains.

Protocols
---------
* **Synthetic** (``synthetic:N``): held-out songs of :class:`~neuromix.mixing.train.EngineerDataset`
  with seeds ``TEST_SEED_OFFSET + i`` (never used by training or validation), segments of
  ``seconds`` at the training rate, the seeded engineer's mix as the reference. Stems and mixes
  are used as they are: the target loudness is one of the engineer's decisions.
* **Real songs** (folders): every stem is loudness-normalised to -23 LUFS first (removing the
  level decisions baked into finished stems), the systems mix those, then every output and the
  reference mix are normalised to -23 LUFS before comparison; when the reference is
  band-limited (a lossy-coded mix, :func:`reference_bandwidth`), both are compared below its
  bandwidth only. On real songs the plain sum and the equal-loudness sum therefore nearly
  coincide (they differ only through stems whose gated loudness moves with their gain, i.e.
  stems near the -70 LUFS gate). A published mix is a loose reference (other processing,
  possibly other stems, lossy coding).

Baselines always present: ``sum``, ``loudness-sum`` (every stem at the same loudness) and
``rules`` (:class:`~neuromix.mixing.rules.RuleMixer`). Per-song values, means and 95 %
percentile-bootstrap confidence intervals (seeded: a re-run gives the same numbers).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from neuromix.core.dsp.console import Console, ConsoleParams
from neuromix.core.dsp.filters import biquad_coefficients, biquad_response
from neuromix.core.dsp.modules import MASTER_EQ, TRACK_EQ, ParametricEQ
from neuromix.core.errors import AudioInputError, ConfigError, NeuromixError
from neuromix.core.features import (
    EPS,
    integrated_loudness,
    panning_index,
    power_spectrogram,
    short_term_loudness,
    spectral_bandwidth,
    spectral_centroid,
    spectral_rolloff,
)
from neuromix.core.io import write_text_atomic
from neuromix.core.losses import sum_difference_stft_loss
from neuromix.mixing import shipped
from neuromix.mixing.classes import CLASS_INDEX, INSTRUMENT_CLASSES
from torch import Tensor

__all__ = [
    "BASELINES",
    "CATEGORIES",
    "DEFAULT_SYSTEMS",
    "FEATURES",
    "SETTING_METRICS",
    "EvalConfig",
    "EvalResults",
    "EvalSong",
    "MetricConfig",
    "MixingSystem",
    "SystemOutput",
    "bootstrap_ci",
    "evaluate",
    "folder_songs",
    "load_data",
    "mape",
    "mix_metrics",
    "reference_bandwidth",
    "resolve_systems",
    "setting_errors",
    "summarise",
    "summary_table",
    "synthetic_songs",
    "write_report",
]

CATEGORIES: tuple[str, ...] = ("loudness", "spectral", "panning", "dynamics")

FEATURES: dict[str, tuple[str, ...]] = {
    "loudness": ("integrated_lufs", "short_term_lufs", "peak_db"),
    "spectral": (
        "centroid_hz",
        "bandwidth_hz",
        "contrast_low_db",
        "contrast_mid_db",
        "contrast_high_db",
        "rolloff_hz",
        "flatness_db",
    ),
    "panning": ("sps_total", "sps_low", "sps_mid", "sps_high"),
    "dynamics": ("rms_db", "dynamic_spread_db", "crest_factor_db"),
}
"""Category -> feature names; metric keys are ``"<category>/<feature>"`` (MAPE in %)."""

SETTING_METRICS: tuple[str, ...] = (
    "settings/gain_db",
    "settings/pan",
    "settings/eq_db",
    "settings/comp_threshold_db",
    "settings/comp_ratio_pct",
    "settings/master_eq_db",
)
"""Setting-error keys of :func:`setting_errors` (see the module docstring)."""

BASELINES: tuple[str, ...] = ("sum", "loudness-sum", "rules")
DEFAULT_SYSTEMS: tuple[str, ...] = ("console", "blackbox", "rules", "sum", "loudness-sum")
NORMALISE_LUFS = -23.0
"""Loudness (LUFS) of stems, outputs and references under the real-song protocol."""

_PAN_BANDS_HZ: dict[str, tuple[float, float]] = {
    "total": (0.0, math.inf),
    "low": (0.0, 250.0),
    "mid": (250.0, 2500.0),
    "high": (2500.0, math.inf),
}
_PAN_FLOOR = 0.05  # smallest denominator of the panning MAPEs (a centred reference band reads ~0)
_CONTRAST_EDGES_HZ = (0.0, 250.0, 500.0, 1000.0, 2000.0, math.inf)
_CONTRAST_QUANTILE = 0.02
_SAMPLE_FLOOR = 1e-6  # |x| floor (-120 dBFS) of the dynamic spread's per-sample levels ...
_SAMPLE_FLOOR_REL = 1e-3  # ... and 60 dB below the frame's RMS (keeps the spread scale-invariant)
_ABS_SILENCE_DB = -100.0
_EQ_FREQS_HZ = tuple(1000.0 * 2.0 ** (k / 3.0) for k in range(-15, 15))  # 31.5 Hz .. 15.9 kHz


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class MetricConfig:
    """Analysis settings of :func:`mix_metrics`.

    Attributes:
        n_fft: STFT size of the spectral, panning and dynamics frames; ``None`` picks the power
            of two nearest to 93 ms (2048 at 22.05 kHz, 4096 at 44.1/48 kHz, as automix-toolkit).
        smooth_s: length of the running mean over frames, in seconds.
        silence_db: frames more than this many dB below the reference's loudest frame are dropped.
        short_term_window_s, short_term_hop_s: short-term loudness framing.
        peak_frame_s, peak_hop_s: framing of the peak level.
        max_freq_hz: compare only below this frequency (both signals are low-passed with a
            brick-wall FFT filter first); ``None``: the whole band. The real-song protocol sets
            it to the reference's bandwidth (:func:`reference_bandwidth`).
    """

    n_fft: int | None = None
    smooth_s: float = 1.0
    silence_db: float = 60.0
    short_term_window_s: float = 3.0
    short_term_hop_s: float = 0.25
    peak_frame_s: float = 0.4
    peak_hop_s: float = 0.1
    max_freq_hz: float | None = None

    def fft_size(self, sample_rate: int) -> int:
        """STFT size at ``sample_rate`` (see :attr:`n_fft`)."""
        if self.n_fft is not None:
            return int(self.n_fft)
        return 1 << max(6, round(math.log2(0.093 * sample_rate)))


@dataclass
class _Track:
    """A framewise feature and the level (dB) of each of its frames, ``(batch, frames)`` each."""

    values: Tensor
    levels: Tensor
    hop_s: float
    denominator_floor: float = 1e-9


def _frames(x: Tensor, frame: int, hop: int) -> Tensor:
    """``(batch, channels, n)`` -> ``(batch, channels, frames, frame)`` (one frame if ``n <= frame``)."""
    n = x.shape[-1]
    if n <= frame:
        return x[..., None, :]
    return x.unfold(-1, frame, hop)


def _band_mask(freqs: Tensor, lo: float, hi: float) -> Tensor:
    return (freqs >= lo) & (freqs < hi) if math.isfinite(hi) else freqs >= lo


def _contrast(power: Tensor, freqs: Tensor) -> Tensor:
    """Spectral contrast per band: ``(batch, frames, bins)`` -> ``(batch, frames, 5)`` dB.

    Peak and valley powers are floored 100 dB below the frame's total power, so the contrast
    does not depend on the level and an empty band reads 0 dB.
    """
    floor = (power.sum(-1) * 1e-10).clamp_min(1e-30)
    out = []
    for lo, hi in zip(_CONTRAST_EDGES_HZ[:-1], _CONTRAST_EDGES_HZ[1:]):
        band = power[..., _band_mask(freqs, lo, hi)]
        if band.shape[-1] == 0:
            out.append(torch.zeros(power.shape[:-1], dtype=power.dtype))
            continue
        k = max(1, int(round(_CONTRAST_QUANTILE * band.shape[-1])))
        ordered = band.sort(dim=-1).values
        valley = ordered[..., :k].mean(-1)
        peak = ordered[..., -k:].mean(-1)
        out.append(10.0 * torch.log10((peak + floor) / (valley + floor)))
    return torch.stack(out, -1)


def _flatness(power: Tensor) -> Tensor:
    """Spectral flatness per frame, ``(batch, frames, bins)`` -> ``(batch, frames)``.

    Geometric over arithmetic mean of the bin powers, each floored 100 dB below the frame's
    mean bin power (level-independent; :func:`neuromix.core.features.spectral_flatness` floors
    at an absolute -120 dB instead, which makes very tonal frames depend on the level).
    """
    floor = (power.mean(-1, keepdim=True) * 1e-10).clamp_min(1e-30)
    p = power + floor
    return torch.exp(torch.log(p).mean(-1)) / p.mean(-1)


def _feature_tracks(x: Tensor, sample_rate: int, cfg: MetricConfig) -> dict[str, _Track]:
    """Every framewise feature of ``x`` ``(batch, 1 or 2, n)`` keyed ``"<category>/<feature>"``."""
    if x.shape[1] == 1:
        x = x.expand(-1, 2, -1)
    sr = int(sample_rate)
    n_fft = cfg.fft_size(sr)
    hop = n_fft // 4
    stft_hop_s = hop / sr
    tracks: dict[str, _Track] = {}

    # loudness
    lufs = integrated_loudness(x, sr)[:, None]
    tracks["loudness/integrated_lufs"] = _Track(lufs, lufs, 1.0)
    st = short_term_loudness(x, sr, cfg.short_term_window_s, cfg.short_term_hop_s)
    tracks["loudness/short_term_lufs"] = _Track(st, st, cfg.short_term_hop_s)
    pf = _frames(x, max(1, round(cfg.peak_frame_s * sr)), max(1, round(cfg.peak_hop_s * sr)))
    peak = 20.0 * torch.log10(pf.abs().amax(dim=(1, 3)) + EPS)
    level = 10.0 * torch.log10(pf.square().mean(dim=(1, 3)) + EPS)
    tracks["loudness/peak_db"] = _Track(1.0 - peak, level, cfg.peak_hop_s)  # compared as 1 - dBFS

    # spectral (channel-averaged power, one framing)
    power_lr = power_spectrogram(x, sr, n_fft, hop)  # (b, 2, frames, bins)
    power = power_lr.mean(1)
    frame_db = 10.0 * torch.log10(power.sum(-1) + EPS)
    freqs = torch.arange(n_fft // 2 + 1, dtype=power.dtype) * (sr / n_fft)
    band = freqs <= (cfg.max_freq_hz or sr / 2.0)
    spectral = {
        "centroid_hz": spectral_centroid(x, sr, n_fft, hop).frames,
        "bandwidth_hz": spectral_bandwidth(x, sr, n_fft, hop).frames,
        "rolloff_hz": spectral_rolloff(x, sr, 0.85, n_fft, hop).frames,
        "flatness_db": 10.0 * torch.log10(_flatness(power[..., band])),
    }
    contrast = _contrast(power[..., band], freqs[band])
    spectral["contrast_low_db"] = contrast[..., 0]
    spectral["contrast_mid_db"] = contrast[..., 1:4].mean(-1)
    spectral["contrast_high_db"] = contrast[..., 4]
    for name in FEATURES["spectral"]:
        tracks[f"spectral/{name}"] = _Track(spectral[name], frame_db, stft_hop_s)

    # panning: power-weighted RMS of the panning index per band and frame
    index = panning_index(x, sr, n_fft, hop)  # (b, frames, bins)
    weight = power_lr.sum(1)
    for band, (lo, hi) in _PAN_BANDS_HZ.items():
        m = _band_mask(freqs, lo, hi).to(weight.dtype)
        w = weight * m
        rms = torch.sqrt((w * index.square()).sum(-1) / (w.sum(-1) + EPS))
        tracks[f"panning/sps_{band}"] = _Track(rms, frame_db, stft_hop_s, denominator_floor=_PAN_FLOOR)

    # dynamics
    fr = _frames(x, n_fft, hop)  # (b, 2, frames, n_fft)
    ms = fr.square().mean(dim=(1, 3))
    rms = 10.0 * torch.log10(ms + EPS)
    pk = 20.0 * torch.log10(fr.abs().amax(dim=(1, 3)) + EPS)
    floor = torch.maximum(torch.sqrt(ms) * _SAMPLE_FLOOR_REL, torch.full_like(ms, _SAMPLE_FLOOR))[:, None, :, None]
    mean_sample_db = (20.0 * torch.log10(torch.maximum(fr.abs(), floor))).mean(dim=(1, 3))
    tracks["dynamics/rms_db"] = _Track(1.0 - rms, rms, stft_hop_s)  # compared as 1 - dBFS
    tracks["dynamics/dynamic_spread_db"] = _Track(rms - mean_sample_db, rms, stft_hop_s)
    tracks["dynamics/crest_factor_db"] = _Track(pk - rms, rms, stft_hop_s)
    return tracks


def _lowpass(x: Tensor, sample_rate: int, cutoff_hz: float) -> Tensor:
    """Brick-wall low-pass: zero every FFT bin above ``cutoff_hz`` (whole-signal FFT)."""
    n = x.shape[-1]
    spec = torch.fft.rfft(x.double(), n=n)
    freqs = torch.fft.rfftfreq(n, 1.0 / sample_rate, dtype=torch.float64)
    spec[..., freqs > cutoff_hz] = 0.0
    return torch.fft.irfft(spec, n=n).to(x.dtype)


def reference_bandwidth(reference: Tensor, sample_rate: int, *, drop_db: float = 80.0) -> float | None:
    """Effective bandwidth of a (possibly lossy-coded) reference mix, in Hz.

    The long-term power density is measured in 1/6-octave bands from 1 kHz to Nyquist; the
    bandwidth is the upper edge of the highest band within ``drop_db`` of the densest band
    (anywhere in the spectrum). Published mixes coded at low bit rates stop at 11-16 kHz;
    comparing above that would score every system on content the reference cannot have.

    Args:
        reference: ``(channels, samples)`` or ``(batch, channels, samples)`` audio.
        sample_rate: Hz.
        drop_db: how far below the densest band counts as "no content".

    Returns:
        The bandwidth in Hz, or ``None`` when it reaches 90 % of Nyquist (full band).
    """
    x = reference.reshape(-1, reference.shape[-1]).double()
    n_fft = 4096
    power = power_spectrogram(x[:, None], sample_rate, n_fft, n_fft // 2).mean(dim=(0, 1, 2))
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * (sample_rate / n_fft)
    nyquist = sample_rate / 2.0
    edges = [0.0] + [1000.0 * 2.0 ** (k / 6.0) for k in range(60) if 1000.0 * 2.0 ** (k / 6.0) < nyquist] + [nyquist]
    levels = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (freqs >= lo) & (freqs < hi)
        levels.append(10.0 * math.log10(float(power[m].mean()) + 1e-30) if bool(m.any()) else -300.0)
    peak = max(levels)
    top = max(i for i, v in enumerate(levels) if v >= peak - drop_db)
    cutoff = edges[top + 1]
    return None if cutoff >= 0.9 * nyquist else float(cutoff)


def _running_mean(x: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(window, x.shape[0]))
    c = np.cumsum(np.concatenate([[0.0], x]))
    return (c[window:] - c[:-window]) / window


def mape(output: Tensor | np.ndarray, reference: Tensor | np.ndarray, *, smooth: int = 1,
         valid: Tensor | np.ndarray | None = None, denominator_floor: float = 1e-9) -> float:
    """Mean absolute percentage error of one framewise feature, in %.

    ``100 * mean_t |y_t - r_t| / max(|r_t|, denominator_floor)`` after keeping the ``valid``
    frames and smoothing both sequences with a running mean of ``smooth`` frames
    (automix-toolkit's protocol).

    Args:
        output: ``(frames,)`` feature of the system's mix.
        reference: ``(frames,)`` feature of the reference mix.
        smooth: running-mean length in frames (clipped to the number of valid frames).
        valid: ``(frames,)`` bool, frames to use (default all).
        denominator_floor: smallest denominator (keeps near-zero references finite).

    Returns:
        The MAPE in percent, or NaN when no frame is usable. Not differentiable (numpy).
    """
    y = np.asarray(output, dtype=np.float64).reshape(-1)
    r = np.asarray(reference, dtype=np.float64).reshape(-1)
    if y.shape != r.shape:
        raise ValueError(f"output and reference need the same number of frames, got {y.shape} and {r.shape}")
    if valid is not None:
        keep = np.asarray(valid, dtype=bool).reshape(-1)
        y, r = y[keep], r[keep]
    if y.size == 0:
        return float("nan")
    y, r = _running_mean(y, smooth), _running_mean(r, smooth)
    return float(100.0 * np.mean(np.abs(y - r) / np.maximum(np.abs(r), denominator_floor)))


def _signed_panning(x: Tensor, sample_rate: int, n_fft: int) -> tuple[Tensor, Tensor]:
    """Power-weighted signed panning per frame in the low/mid/high bands: ``(b, frames, 3)``, levels."""
    if x.shape[1] == 1:
        x = x.expand(-1, 2, -1)
    hop = n_fft // 4
    index = panning_index(x, sample_rate, n_fft, hop)
    weight = power_spectrogram(x, sample_rate, n_fft, hop).sum(1)
    freqs = torch.arange(n_fft // 2 + 1, dtype=weight.dtype) * (sample_rate / n_fft)
    out = []
    for band in ("low", "mid", "high"):
        w = weight * _band_mask(freqs, *_PAN_BANDS_HZ[band]).to(weight.dtype)
        out.append((w * index).sum(-1) / (w.sum(-1) + EPS))
    return torch.stack(out, -1), 10.0 * torch.log10(weight.sum(-1) / 2.0 + EPS)


def _valid_frames(levels: np.ndarray, silence_db: float) -> np.ndarray:
    return (levels > levels.max() - silence_db) & (levels > _ABS_SILENCE_DB) if levels.size else levels > 0


def mix_metrics(output: Tensor, reference: Tensor, sample_rate: int,
                config: MetricConfig | None = None) -> list[dict[str, float]]:
    """Objective metrics of mixes against references (see the module docstring).

    Args:
        output: ``(batch, 1 or 2, samples)`` system mixes.
        reference: ``(batch, 1 or 2, samples)`` reference mixes (same length, at least 0.4 s).
        sample_rate: Hz of both.
        config: analysis settings.

    Returns:
        One dict per batch item: ``"<category>/<feature>"`` MAPEs (%), ``"<category>/mean"``,
        ``"overall/mean_mape"``, ``"panning/signed_error"`` (pan units) and
        ``"stft/sum_difference"``. NaN where a feature has no usable frame. Not differentiable.
    """
    cfg = config or MetricConfig()
    if output.ndim != 3 or reference.ndim != 3 or output.shape[0] != reference.shape[0]:
        raise ValueError(f"output and reference must be (batch, channels, samples), got "
                         f"{tuple(output.shape)} and {tuple(reference.shape)}")
    n = min(output.shape[-1], reference.shape[-1])
    output, reference = output[..., :n].float(), reference[..., :n].float()
    if cfg.max_freq_hz is not None:
        output, reference = _lowpass(output, sample_rate, cfg.max_freq_hz), _lowpass(reference, sample_rate, cfg.max_freq_hz)
    with torch.no_grad():
        out_tracks = _feature_tracks(output, sample_rate, cfg)
        ref_tracks = _feature_tracks(reference, sample_rate, cfg)
        n_fft = cfg.fft_size(sample_rate)
        out_pan, _ = _signed_panning(output, sample_rate, n_fft)
        ref_pan, ref_pan_level = _signed_panning(reference, sample_rate, n_fft)
        stereo = lambda t: t if t.shape[1] == 2 else t.expand(-1, 2, -1)
        stft = [float(sum_difference_stft_loss(stereo(output[i : i + 1]), stereo(reference[i : i + 1])))
                for i in range(output.shape[0])]
    results = []
    for i in range(output.shape[0]):
        row: dict[str, float] = {}
        for key, ref in ref_tracks.items():
            out = out_tracks[key]
            levels = ref.levels[i].double().numpy()
            valid = _valid_frames(levels, cfg.silence_db)
            smooth = max(1, int(round(cfg.smooth_s / ref.hop_s)))
            row[key] = mape(out.values[i].double().numpy(), ref.values[i].double().numpy(), smooth=smooth,
                            valid=valid, denominator_floor=ref.denominator_floor)
        for category in CATEGORIES:
            row[f"{category}/mean"] = _nanmean([row[f"{category}/{f}"] for f in FEATURES[category]])
        row["overall/mean_mape"] = _nanmean([row[f"{c}/mean"] for c in CATEGORIES])
        valid = _valid_frames(ref_pan_level[i].double().numpy(), cfg.silence_db)
        diff = (out_pan[i] - ref_pan[i]).abs().double().numpy()[valid]
        row["panning/signed_error"] = float(diff.mean()) if diff.size else float("nan")
        row["stft/sum_difference"] = stft[i]
        results.append(row)
    return results


def _nanmean(values: Iterable[float]) -> float:
    v = [x for x in values if not math.isnan(x)]
    return float(sum(v) / len(v)) if v else float("nan")


# --------------------------------------------------------------------------- setting errors


def _eq_db(eq: ParametricEQ, params: Mapping[str, Tensor], freqs: Sequence[float]) -> Tensor:
    """Magnitude response in dB of an EQ layout: params ``(n,)`` each -> ``(n, len(freqs))``."""
    kinds, cut, gain, q = eq.band_tensors(params)
    f = torch.tensor([x for x in freqs if x < 0.45 * eq.sample_rate], dtype=torch.float64)
    h = torch.ones(cut.shape[0], f.shape[0], dtype=torch.complex128)
    for i, kind in enumerate(kinds):
        b, a = biquad_coefficients(kind, eq.sample_rate, cut[:, i].double(), gain[:, i].double(), q[:, i].double())
        h = h * biquad_response(b, a, f, eq.sample_rate)
    return 20.0 * torch.log10(h.abs().clamp_min(1e-12))


def setting_errors(predicted: ConsoleParams, target: ConsoleParams, sample_rate: int,
                   mask: Tensor | None = None) -> dict[str, float]:
    """Errors of console settings against known target settings (batch item 0).

    Args:
        predicted: the system's settings, ``(1, T)`` per track and ``(1,)`` master tensors.
        target: the reference's settings, same shapes.
        sample_rate: Hz (for the EQ responses).
        mask: ``(1, T)`` or ``(T,)`` bool, tracks to score (default all).

    Returns:
        The :data:`SETTING_METRICS` (mean over the scored tracks): absolute errors of gain (dB),
        pan, track EQ response (dB, mean over 1/3-octave frequencies), compressor threshold
        (dB), master EQ response (dB), and the relative compressor-ratio error (%).
    """
    p, t = predicted.track, target.track
    tracks = t["gain_db"].shape[-1]
    keep = torch.ones(tracks, dtype=torch.bool) if mask is None else mask.reshape(-1).to(torch.bool).cpu()
    if int(keep.sum()) == 0:
        return {k: float("nan") for k in SETTING_METRICS}

    def track(d: Mapping[str, Tensor], key: str) -> Tensor:
        return d[key].detach().reshape(-1)[keep].double().cpu()

    eq = ParametricEQ(sample_rate, TRACK_EQ)
    master = ParametricEQ(sample_rate, MASTER_EQ)
    eq_p = _eq_db(eq, {k[3:]: track(p, k) for k in p if k.startswith("eq_")}, _EQ_FREQS_HZ)
    eq_t = _eq_db(eq, {k[3:]: track(t, k) for k in t if k.startswith("eq_")}, _EQ_FREQS_HZ)
    m_p = _eq_db(master, {k[3:]: v.detach().reshape(-1)[:1].double() for k, v in predicted.master.items()
                          if k.startswith("eq_")}, _EQ_FREQS_HZ)
    m_t = _eq_db(master, {k[3:]: v.detach().reshape(-1)[:1].double() for k, v in target.master.items()
                          if k.startswith("eq_")}, _EQ_FREQS_HZ)
    ratio_t = track(t, "comp_ratio")
    return {
        "settings/gain_db": float((track(p, "gain_db") - track(t, "gain_db")).abs().mean()),
        "settings/pan": float((track(p, "pan") - track(t, "pan")).abs().mean()),
        "settings/eq_db": float((eq_p - eq_t).abs().mean()),
        "settings/comp_threshold_db": float((track(p, "comp_threshold_db") - track(t, "comp_threshold_db")).abs().mean()),
        "settings/comp_ratio_pct": float(100.0 * ((track(p, "comp_ratio") - ratio_t).abs() / ratio_t).mean()),
        "settings/master_eq_db": float((m_p - m_t).abs().mean()),
    }


# --------------------------------------------------------------------------- songs


@dataclass
class EvalSong:
    """One song to evaluate.

    Attributes:
        name: song name (unique within its dataset).
        dataset: name of the data source (``"synthetic"`` or a folder).
        tracks: ``(T, 2, samples)`` stems at ``sample_rate``.
        classes: instrument class per stem (names of ``INSTRUMENT_CLASSES``).
        reference: ``(2, samples)`` reference mix.
        sample_rate: Hz.
        settings: the reference's console settings when known (synthetic), else ``None``.
        normalise: apply the real-song protocol (loudness-normalise stems, outputs, reference).
    """

    name: str
    dataset: str
    tracks: Tensor
    classes: list[str]
    reference: Tensor
    sample_rate: int
    settings: ConsoleParams | None = None
    normalise: bool = False


def synthetic_songs(count: int = 20, *, seconds: float = 5.0, sample_rate: int = 22050,
                    base_seed: int | None = None) -> Iterator[EvalSong]:
    """Held-out synthetic songs: seeds ``TEST_SEED_OFFSET + i``, the engineer's mix as reference.

    Args:
        count: number of songs.
        seconds: segment length (the reference is the engineer's mix of that segment).
        sample_rate: Hz (the training rate by default).
        base_seed: first seed (default :data:`neuromix.mixing.train.TEST_SEED_OFFSET`).

    Yields:
        :class:`EvalSong` with known settings, ``normalise=False``.
    """
    from neuromix.mixing.train import TEST_SEED_OFFSET, EngineerDataset

    if count < 1:
        raise ConfigError(f"synthetic: the number of songs must be >= 1, got {count}")
    if seconds < 0.5:
        raise ConfigError(f"synthetic segments must be at least 0.5 s long, got {seconds}")
    base = TEST_SEED_OFFSET if base_seed is None else int(base_seed)
    data = EngineerDataset(count, base_seed=base, seconds=seconds, sample_rate=sample_rate)
    for i in range(count):
        item = data[i]
        track_u, master_u = item["track_u"][None], item["master_u"][None]
        yield EvalSong(
            name=f"seed{item['seed']}",
            dataset="synthetic",
            tracks=item["tracks"],
            classes=[INSTRUMENT_CLASSES[int(c)] for c in item["classes"]],
            reference=item["mix"],
            sample_rate=sample_rate,
            settings=data.console.denormalise(track_u, master_u),
        )


def folder_songs(path: str | os.PathLike[str], *, sample_rate: int = 44100,
                 max_seconds: float | None = 30.0) -> Iterator[EvalSong]:
    """Real songs with a mixdown under ``path`` (a song folder or a folder of songs).

    Stem classes come from the folder's metadata, then from names and audio
    (:func:`neuromix.mixing.classify.classify_tracks`). Songs without a mixdown are skipped.

    Args:
        path: folder.
        sample_rate: Hz to evaluate at (files are resampled).
        max_seconds: evaluate at most this many seconds from the start (``None``: all).

    Yields:
        :class:`EvalSong` with ``normalise=True`` (the real-song protocol).

    Raises:
        AudioInputError: no folder there, or no song with a mixdown in it.
    """
    from neuromix.core.io import read_audio
    from neuromix.mixing.classify import classify_tracks
    from neuromix.mixing.data import find_songs

    songs = [s for s in find_songs(path) if s.has_mix]
    if not songs:
        raise AudioInputError("no song folder with a mixdown (reference mix) found", path)
    label = Path(path).name or str(path)
    for song in songs:
        multitrack = song.load(sample_rate, duration_s=max_seconds)
        mix, _ = read_audio(song.mix_path, sample_rate, duration_s=max_seconds)
        if mix.shape[0] == 1:
            mix = mix.expand(2, -1)
        n = min(mix.shape[-1], multitrack.audio.shape[-1])
        audio = multitrack.audio[..., :n]
        overrides = {i: c for i, c in enumerate(song.stem_classes) if c is not None}
        classes = classify_tracks(multitrack.names, audio, sample_rate, overrides=overrides)
        yield EvalSong(song.name, label, audio, list(classes), mix[:2, :n].contiguous(), sample_rate, None, True)


def load_data(spec: str, *, seconds: float = 5.0, sample_rate: int | None = None,
              max_seconds: float | None = 30.0) -> list[EvalSong]:
    """Songs of one ``--data`` entry: ``synthetic``, ``synthetic:N`` (default 20) or a folder.

    Args:
        spec: the entry.
        seconds: synthetic segment length.
        sample_rate: Hz (default 22050 for synthetic songs, 44100 for folders).
        max_seconds: longest excerpt of a real song.

    Raises:
        ConfigError: a malformed ``synthetic:N``.
        AudioInputError: a folder that is missing or holds no song with a mixdown.
    """
    name, _, count = spec.partition(":")
    if name == "synthetic":
        try:
            n = int(count) if count else 20
        except ValueError:
            raise ConfigError(f"--data {spec!r}: expected synthetic or synthetic:N with N an integer") from None
        return list(synthetic_songs(n, seconds=seconds, sample_rate=sample_rate or 22050))
    return list(folder_songs(spec, sample_rate=sample_rate or 44100, max_seconds=max_seconds))


# --------------------------------------------------------------------------- systems


@dataclass
class SystemOutput:
    """A system's mix ``(2, samples)`` and its console settings (``None`` if it has none)."""

    mix: Tensor
    params: ConsoleParams | None = None


class MixingSystem:
    """A mixer under evaluation: ``mix(tracks (T, 2, N), classes, sample_rate) -> SystemOutput``.

    Args:
        name: display name (table rows, file names).
        kind: ``"baseline"``, ``"network"`` or ``"rules"``.
    """

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind

    def mix(self, tracks: Tensor, classes: Sequence[str], sample_rate: int) -> SystemOutput:  # pragma: no cover
        raise NotImplementedError


def _neutral_params(tracks: int, sample_rate: int) -> ConsoleParams:
    return Console(sample_rate).default_params(1, tracks)


class _SumSystem(MixingSystem):
    """Plain sum of the stems (scored against neutral settings)."""

    def __init__(self) -> None:
        super().__init__("sum", "baseline")

    def mix(self, tracks: Tensor, classes: Sequence[str], sample_rate: int) -> SystemOutput:
        return SystemOutput(tracks.sum(0), _neutral_params(tracks.shape[0], sample_rate))


class _LoudnessSumSystem(MixingSystem):
    """Every stem normalised to the same integrated loudness, then summed."""

    def __init__(self, target_lufs: float = NORMALISE_LUFS) -> None:
        super().__init__("loudness-sum", "baseline")
        self.target_lufs = target_lufs

    def mix(self, tracks: Tensor, classes: Sequence[str], sample_rate: int) -> SystemOutput:
        from neuromix.mixing.augment import loudness_normalise

        normalised, gains = loudness_normalise(tracks, sample_rate, self.target_lufs)
        params = _neutral_params(tracks.shape[0], sample_rate)
        params.track["gain_db"] = gains[None].to(params.track["gain_db"].dtype)
        return SystemOutput(normalised.sum(0), params)


class _RulesSystem(MixingSystem):
    """The rule-based expert mixer (:class:`~neuromix.mixing.rules.RuleMixer`)."""

    def __init__(self) -> None:
        super().__init__("rules", "rules")
        self._mixers: dict[int, Any] = {}

    def mix(self, tracks: Tensor, classes: Sequence[str], sample_rate: int) -> SystemOutput:
        from neuromix.mixing.rules import RuleMixer

        if sample_rate not in self._mixers:
            self._mixers[sample_rate] = RuleMixer(sample_rate)
        mix, params = self._mixers[sample_rate].mix(tracks, list(classes))
        return SystemOutput(mix[0], params)


class _NetworkSystem(MixingSystem):
    """A trained mixing network (console or black box) called on the whole excerpt."""

    def __init__(self, name: str, model: torch.nn.Module) -> None:
        super().__init__(name, "network")
        self.model = model.eval()

    def mix(self, tracks: Tensor, classes: Sequence[str], sample_rate: int) -> SystemOutput:
        idx = torch.tensor([[CLASS_INDEX[c] for c in classes]], dtype=torch.long)
        with torch.no_grad():
            result = self.model(tracks[None], None, sample_rate, idx)
        return SystemOutput(result.mix[0], result.params)


def _system_from_checkpoint(path: Path, name: str | None = None) -> MixingSystem:
    from neuromix.mixing.models import load_model

    model, _ = load_model(path)
    return _NetworkSystem(name or path.stem, model)


def resolve_systems(spec: str | Sequence[str], *, add_baselines: bool = True) -> list[MixingSystem]:
    """Build the systems of a ``--systems`` list (comma-separated string or a sequence).

    Names: ``console`` / ``blackbox`` (the newest shipped checkpoint of that family), ``rules``,
    ``sum``, ``loudness-sum``, or a path to any checkpoint. The three baselines are added when
    missing (``add_baselines``); duplicates are dropped; the order is kept.

    Raises:
        CheckpointError: ``console``/``blackbox`` with no shipped checkpoint, or a bad file.
        ConfigError: an unknown name that is not an existing file.
    """
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if add_baselines:
        names += [b for b in BASELINES if b not in names]
    systems: list[MixingSystem] = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        if name == "sum":
            systems.append(_SumSystem())
        elif name == "loudness-sum":
            systems.append(_LoudnessSumSystem())
        elif name == "rules":
            systems.append(_RulesSystem())
        elif name in ("console", "blackbox"):
            systems.append(_system_from_checkpoint(shipped.shipped_checkpoint(name), name))
        elif Path(name).is_file():
            system = _system_from_checkpoint(Path(name))
            while system.name in {s.name for s in systems}:
                system.name += "'"
            systems.append(system)
        else:
            raise ConfigError(
                f"--systems: {name!r} is neither a system (console, blackbox, rules, sum, loudness-sum) "
                f"nor a checkpoint file"
            )
    return systems


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class EvalConfig:
    """Settings of :func:`evaluate` and the report.

    Attributes:
        metrics: analysis settings of :func:`mix_metrics`.
        bootstrap: bootstrap resamples for the confidence intervals.
        seed: bootstrap seed.
        target_lufs: loudness of stems, outputs and references under the real-song protocol.
    """

    metrics: MetricConfig = field(default_factory=MetricConfig)
    bootstrap: int = 2000
    seed: int = 0
    target_lufs: float = NORMALISE_LUFS


@dataclass
class EvalResults:
    """Per-song metric values.

    Attributes:
        rows: one dict per (song, system): ``dataset``, ``song``, ``system`` and metric values.
        systems: system names in order.
        datasets: dataset names in order.
        config: the configuration used.
        notes: remarks for the report (protocols, skipped items).
    """

    rows: list[dict[str, Any]]
    systems: list[str]
    datasets: list[str]
    config: EvalConfig
    notes: list[str] = field(default_factory=list)

    def metric_names(self) -> list[str]:
        """Metric keys present, in a stable order (categories, extras, settings)."""
        order = [f"{c}/mean" for c in CATEGORIES] + ["overall/mean_mape", "stft/sum_difference",
                                                     "panning/signed_error"]
        order += [f"{c}/{f}" for c in CATEGORIES for f in FEATURES[c]] + list(SETTING_METRICS)
        present = {k for row in self.rows for k in row if k not in ("dataset", "song", "system")}
        return [k for k in order if k in present] + sorted(present - set(order))

    def values(self, dataset: str, system: str, metric: str) -> list[float]:
        """Per-song values (NaN dropped) of one metric for one system on one dataset."""
        out = []
        for row in self.rows:
            if row["dataset"] == dataset and row["system"] == system:
                v = row.get(metric, float("nan"))
                if v is not None and not math.isnan(v):
                    out.append(float(v))
        return out


def evaluate(songs: Iterable[EvalSong], systems: Sequence[MixingSystem], *, config: EvalConfig | None = None,
             progress: bool = True, total: int | None = None) -> EvalResults:
    """Mix every song with every system and measure the mixes against the references.

    Real songs (``song.normalise``) follow the protocol of the module docstring. Deterministic.

    Args:
        songs: the songs.
        systems: the systems (:func:`resolve_systems`).
        config: settings.
        progress: show a progress bar (stderr).
        total: number of songs, for the progress bar.

    Returns:
        :class:`EvalResults`.
    """
    from neuromix.mixing.augment import loudness_normalise
    from tqdm import tqdm

    cfg = config or EvalConfig()
    rows: list[dict[str, Any]] = []
    datasets: list[str] = []
    notes: list[str] = []
    bar = tqdm(total=None if total is None else total * len(systems), desc="eval", unit="mix",
               disable=not progress)
    try:
        for song in songs:
            if song.dataset not in datasets:
                datasets.append(song.dataset)
            sr = song.sample_rate
            tracks, reference = song.tracks.float(), song.reference.float()
            if song.normalise:
                tracks, _ = loudness_normalise(tracks, sr, cfg.target_lufs)
                reference = loudness_normalise(reference[None], sr, cfg.target_lufs)[0][0]
            metric_cfg = cfg.metrics
            if song.normalise and metric_cfg.max_freq_hz is None:
                bandwidth = reference_bandwidth(reference, sr)
                if bandwidth is not None:
                    metric_cfg = replace(metric_cfg, max_freq_hz=bandwidth)
                    notes.append(f"{song.dataset}/{song.name}: the reference mix stops at {bandwidth:.0f} Hz; "
                                 f"mixes and reference are compared below that frequency")
            for system in systems:
                bar.set_postfix_str(f"{song.name} / {system.name}")
                with torch.no_grad():
                    out = system.mix(tracks, song.classes, sr)
                mix = out.mix.float()
                if mix.shape[-1] != reference.shape[-1]:
                    raise NeuromixError(f"{system.name} returned {mix.shape[-1]} samples for {song.name}, "
                                        f"expected {reference.shape[-1]}")
                if song.normalise:
                    mix = loudness_normalise(mix[None], sr, cfg.target_lufs)[0][0]
                if not torch.isfinite(mix).all():
                    notes.append(f"{system.name} produced non-finite samples on {song.name}; scored as NaN")
                    metrics = {}
                else:
                    metrics = mix_metrics(mix[None], reference[None], sr, metric_cfg)[0]
                if song.settings is not None and out.params is not None:
                    metrics.update(setting_errors(out.params, song.settings, sr))
                rows.append({"dataset": song.dataset, "song": song.name, "system": system.name, **metrics})
                bar.update(1)
    finally:
        bar.close()
    return EvalResults(rows, [s.name for s in systems], datasets, cfg, notes)


# --------------------------------------------------------------------------- summary and report


def bootstrap_ci(values: Sequence[float], *, resamples: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap confidence interval of the mean.

    Args:
        values: per-song values (no NaN).
        resamples: bootstrap resamples.
        seed: seed of the resampling (the same seed gives the same interval).
        level: confidence level.

    Returns:
        ``(mean, low, high)``; NaNs for no values; ``(v, v, v)`` for one value.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(v.mean())
    if v.size == 1 or resamples < 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return mean, float(low), float(high)


def summarise(results: EvalResults) -> list[dict[str, Any]]:
    """Mean and 95 % bootstrap CI per (dataset, system, metric): list of dict rows."""
    out = []
    for dataset in results.datasets:
        for system in results.systems:
            for metric in results.metric_names():
                values = results.values(dataset, system, metric)
                if not values:
                    continue
                mean, low, high = bootstrap_ci(values, resamples=results.config.bootstrap, seed=results.config.seed)
                out.append({"dataset": dataset, "system": system, "metric": metric, "mean": mean,
                            "ci_low": low, "ci_high": high, "n": len(values)})
    return out


def _fmt(v: float, digits: int = 2) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _cell(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "—"
    if entry["n"] == 1:
        return _fmt(entry["mean"])
    return f"{_fmt(entry['mean'])} [{_fmt(entry['ci_low'])}, {_fmt(entry['ci_high'])}]"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


_SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("loudness/mean", "loudness %"),
    ("spectral/mean", "spectral %"),
    ("panning/mean", "panning %"),
    ("dynamics/mean", "dynamics %"),
    ("overall/mean_mape", "mean %"),
    ("stft/sum_difference", "SD-MRSTFT"),
    ("panning/signed_error", "pan err"),
)


def summary_table(results: EvalResults, summary: Sequence[Mapping[str, Any]], dataset: str,
                  metrics: Sequence[tuple[str, str]] = _SUMMARY_COLUMNS) -> str:
    """Markdown table: one row per system, one column per metric, ``mean [95 % CI]``."""
    index = {(s["system"], s["metric"]): s for s in summary if s["dataset"] == dataset}
    rows = [[system] + [_cell(index.get((system, m))) for m, _ in metrics] for system in results.systems]
    return _markdown_table(["system"] + [label for _, label in metrics], rows)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "data"


def _plot_category(results: EvalResults, summary: Sequence[Mapping[str, Any]], dataset: str,
                   metrics: Sequence[str], title: str, ylabel: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    index = {(s["system"], s["metric"]): s for s in summary if s["dataset"] == dataset}
    systems = results.systems
    fig = Figure(figsize=(max(6.0, 1.2 * len(metrics) + 2.0), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(systems))
    x = np.arange(len(metrics))
    for j, system in enumerate(systems):
        means, lows, highs = [], [], []
        for m in metrics:
            e = index.get((system, m))
            mean = e["mean"] if e else float("nan")
            means.append(mean)
            lows.append(mean - e["ci_low"] if e else 0.0)
            highs.append(e["ci_high"] - mean if e else 0.0)
        ax.bar(x + (j - (len(systems) - 1) / 2) * width, means, width, yerr=[lows, highs], capsize=2, label=system)
    ax.set_xticks(x)
    ax.set_xticklabels([m.split("/", 1)[1] for m in metrics], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def _ensure_output(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} is not empty; pass --force to overwrite")
    out.mkdir(parents=True, exist_ok=True)


def write_report(results: EvalResults, output: str | os.PathLike[str], *, command: str | None = None,
                 force: bool = False) -> list[Path]:
    """Write ``report.md``, ``per_song.csv``, ``summary.csv``, ``results.json`` and PNG plots.

    Args:
        results: from :func:`evaluate`.
        output: report folder (created).
        command: the command line, quoted in the report.
        force: write into a non-empty folder.

    Returns:
        The files written.

    Raises:
        FileExistsError: the folder is not empty and ``force`` is False.
    """
    out = Path(output)
    _ensure_output(out, force)
    summary = summarise(results)
    metrics = results.metric_names()
    written: list[Path] = []

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["dataset", "song", "system"] + metrics)
    for row in results.rows:
        writer.writerow([row["dataset"], row["song"], row["system"]]
                        + [repr(float(row[m])) if m in row else "" for m in metrics])
    write_text_atomic(out / "per_song.csv", buf.getvalue(), overwrite=True)
    written.append(out / "per_song.csv")

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["dataset", "system", "metric", "mean", "ci_low", "ci_high", "n"])
    for s in summary:
        writer.writerow([s["dataset"], s["system"], s["metric"], repr(s["mean"]), repr(s["ci_low"]),
                         repr(s["ci_high"]), s["n"]])
    write_text_atomic(out / "summary.csv", buf.getvalue(), overwrite=True)
    written.append(out / "summary.csv")

    doc = {"format": "neuromix-eval", "version": 1, "command": command, "config": asdict(results.config),
           "systems": results.systems, "datasets": results.datasets, "per_song": results.rows,
           "summary": summary, "notes": results.notes}
    write_text_atomic(out / "results.json", json.dumps(doc, indent=1, allow_nan=True), overwrite=True)
    written.append(out / "results.json")

    lines = ["# neuromix evaluation report", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [
        "Metrics follow automix-toolkit (Martínez-Ramírez et al. 2022): per-frame features of the system's",
        "mix and the reference, running mean over 1 s, mean absolute percentage error (MAPE, %; lower is",
        "better). Category columns are the mean MAPE of their features; `SD-MRSTFT` is the sum/difference",
        "multi-resolution STFT distance; `pan err` the mean absolute error of the signed panning spectrum",
        "(the MAPE panning features cannot see left/right mirroring). Cells: mean [95 % bootstrap CI].",
        "",
    ]
    for dataset in results.datasets:
        songs = sorted({r["song"] for r in results.rows if r["dataset"] == dataset})
        lines += [f"## Data: {dataset} ({len(songs)} songs)", ""]
        if dataset == "synthetic":
            lines += ["Held-out synthetic songs (seeds TEST_SEED_OFFSET + i, never used in training or validation);",
                      "reference = the seeded engineer's mix; levels as generated.", ""]
        else:
            lufs = f"{results.config.target_lufs:g} LUFS"
            lines += [(f"Real songs, protocol: every stem loudness-normalised to {lufs}, mixed, outputs and "
                       f"reference normalised to {lufs}, then compared (so `sum` ~ `loudness-sum`); a band-limited "
                       "reference is compared below its bandwidth only (see Notes)."),
                      "A published mix is a loose reference (other processing, lossy coding).", ""]
        lines += ["### Summary", "", summary_table(results, summary, dataset), ""]
        for category in CATEGORIES:
            cols = [(f"{category}/{f}", f) for f in FEATURES[category]]
            lines += [f"### {category.capitalize()} (MAPE %)", "", summary_table(results, summary, dataset, cols), ""]
            name = f"{_safe(dataset)}_{category}.png"
            _plot_category(results, summary, dataset, [c for c, _ in cols] + [f"{category}/mean"],
                           f"{dataset}: {category}", "MAPE (%)", out / name)
            written.append(out / name)
            lines += [f"![{category}]({name})", ""]
        if any(s["metric"] in SETTING_METRICS for s in summary if s["dataset"] == dataset):
            cols = [(m, m.split("/", 1)[1]) for m in SETTING_METRICS]
            lines += ["### Setting errors (against the engineer's settings)", "",
                      summary_table(results, summary, dataset, cols), ""]
            name = f"{_safe(dataset)}_settings.png"
            _plot_category(results, summary, dataset, list(SETTING_METRICS), f"{dataset}: setting errors",
                           "error (dB / pan / %)", out / name)
            written.append(out / name)
            lines += [f"![settings]({name})", ""]
        lines += ["### Per song (mean MAPE % by category)", ""]
        header = ["song", "system"] + [c for c in CATEGORIES] + ["SD-MRSTFT"]
        table = []
        for row in results.rows:
            if row["dataset"] == dataset:
                table.append([row["song"], row["system"]] + [_fmt(row.get(f"{c}/mean", float("nan"))) for c in CATEGORIES]
                             + [_fmt(row.get("stft/sum_difference", float("nan")), 3)])
        lines += [_markdown_table(header, table), ""]
    if results.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in results.notes] + [""]
    lines += ["Files: `per_song.csv` (every value), `summary.csv` (means and CIs), `results.json`.", ""]
    write_text_atomic(out / "report.md", "\n".join(lines), overwrite=True)
    written.append(out / "report.md")
    return written
