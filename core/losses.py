"""Training and evaluation losses: multi-resolution STFT, sum/difference STFT, feature losses.

All losses take ``pred`` and ``target`` shaped ``(batch, channels, samples)``, return a scalar
tensor averaged over the batch (so a batched call equals the mean of item-by-item calls) and
are differentiable with respect to ``pred``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from neuromix.core.dsp.utils import check_audio
from neuromix.core.errors import ConfigError
from neuromix.core.features import FEATURE_CATEGORIES, mix_features

__all__ = [
    "FEATURE_LOSS_SCALES",
    "MultiResolutionSTFTLoss",
    "SumDifferenceSTFTLoss",
    "feature_distance",
    "feature_loss",
    "log_magnitude_distance",
    "multi_resolution_stft_loss",
    "spectral_convergence",
    "stft_magnitudes",
    "sum_difference_stft_loss",
    "sum_difference_stft_terms",
]

DEFAULT_FFT_SIZES: tuple[int, ...] = (2048, 1024, 512, 256)


def _check_pair(pred: Tensor, target: Tensor) -> None:
    check_audio(pred, "pred")
    check_audio(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")


def stft_magnitudes(x: Tensor, n_fft: int, hop_length: int | None = None, win_length: int | None = None,
                    eps: float = 1e-8) -> Tensor:
    """STFT magnitudes of every channel, ``sqrt(|X|^2 + eps)``.

    Periodic Hann window of ``win_length`` samples (zero-padded to ``n_fft``), ``center=True``
    with zero padding, no normalisation. ``eps`` keeps the magnitude, its log and its gradient
    finite at silence.

    Args:
        x: ``(batch, channels, samples)`` audio.
        n_fft: FFT size.
        hop_length: hop in samples (default ``n_fft // 4``).
        win_length: window length in samples (default ``n_fft``).
        eps: power added under the square root.

    Returns:
        ``(batch, channels, frames, n_fft // 2 + 1)`` magnitudes. Differentiable.
    """
    b, c, n = check_audio(x)
    hop_length = hop_length or n_fft // 4
    win_length = win_length or n_fft
    window = torch.hann_window(win_length, dtype=x.dtype, device=x.device)
    spec = torch.stft(x.reshape(b * c, n), n_fft, hop_length=hop_length, win_length=win_length, window=window,
                      center=True, pad_mode="constant", return_complex=True)
    mag = torch.sqrt(spec.real.square() + spec.imag.square() + eps)
    return mag.reshape(b, c, mag.shape[-2], mag.shape[-1]).transpose(-1, -2)


def spectral_convergence(pred_mag: Tensor, target_mag: Tensor) -> Tensor:
    """Spectral convergence ``||Y - X||_F / ||Y||_F`` per item (Arik et al. 2019; Yamamoto et al. 2020).

    Args:
        pred_mag: ``(batch, ...)`` predicted magnitudes ``X``.
        target_mag: ``(batch, ...)`` target magnitudes ``Y`` (same shape).

    Returns:
        ``(batch,)`` spectral convergence (``|1 - c|`` for ``X = c Y``). Differentiable.
    """
    diff = (target_mag - pred_mag).flatten(1)
    return diff.norm(dim=1) / target_mag.flatten(1).norm(dim=1).clamp_min(1e-12)


def log_magnitude_distance(pred_mag: Tensor, target_mag: Tensor) -> Tensor:
    """Mean absolute difference of natural-log magnitudes per item (Yamamoto et al. 2020).

    Args:
        pred_mag: ``(batch, ...)`` predicted magnitudes (positive).
        target_mag: ``(batch, ...)`` target magnitudes (positive, same shape).

    Returns:
        ``(batch,)`` distance (``|log c|`` for ``X = c Y``). Differentiable.
    """
    return (torch.log(target_mag) - torch.log(pred_mag)).abs().flatten(1).mean(1)


def _resolutions(fft_sizes: Sequence[int], hop_sizes: Sequence[int] | None,
                 win_lengths: Sequence[int] | None) -> list[tuple[int, int, int]]:
    fft_sizes = tuple(int(f) for f in fft_sizes)
    if not fft_sizes:
        raise ValueError("fft_sizes must not be empty")
    hops = tuple(hop_sizes) if hop_sizes is not None else tuple(f // 4 for f in fft_sizes)
    wins = tuple(win_lengths) if win_lengths is not None else fft_sizes
    if not len(hops) == len(wins) == len(fft_sizes):
        raise ValueError("fft_sizes, hop_sizes and win_lengths must have the same length")
    if any(w > f for w, f in zip(wins, fft_sizes)):
        raise ValueError("every win_length must be <= its fft size")
    return list(zip(fft_sizes, hops, wins))


def _mrstft_per_item(pred: Tensor, target: Tensor, resolutions: list[tuple[int, int, int]], w_sc: float,
                     w_logmag: float, eps: float) -> Tensor:
    total = pred.new_zeros(pred.shape[0])
    for n_fft, hop, win in resolutions:
        pm = stft_magnitudes(pred, n_fft, hop, win, eps)
        tm = stft_magnitudes(target, n_fft, hop, win, eps)
        if w_sc:
            total = total + w_sc * spectral_convergence(pm, tm)
        if w_logmag:
            total = total + w_logmag * log_magnitude_distance(pm, tm)
    return total / len(resolutions)


def multi_resolution_stft_loss(pred: Tensor, target: Tensor, *, fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES,
                               hop_sizes: Sequence[int] | None = None, win_lengths: Sequence[int] | None = None,
                               w_sc: float = 1.0, w_logmag: float = 1.0, eps: float = 1e-8) -> Tensor:
    """Multi-resolution STFT loss (Yamamoto et al. 2020, Parallel WaveGAN; auraloss conventions).

    For each resolution: ``w_sc * spectral_convergence + w_logmag * log_magnitude_distance`` of
    :func:`stft_magnitudes`; the loss is the mean over resolutions and over batch items. Each
    channel is analysed separately (for stereo, see also :func:`sum_difference_stft_loss`).
    For ``pred = c * target`` it equals ``w_sc |1 - c| + w_logmag |log c|`` (up to ``eps``).

    Args:
        pred: ``(batch, channels, samples)`` prediction.
        target: ``(batch, channels, samples)`` target (same shape).
        fft_sizes: FFT sizes of the resolutions.
        hop_sizes: hops (default ``fft_size // 4`` each).
        win_lengths: Hann window lengths (default the FFT sizes).
        w_sc: weight of the spectral convergence term.
        w_logmag: weight of the log-magnitude L1 term.
        eps: power added under the magnitude's square root.

    Returns:
        Scalar loss. Differentiable.
    """
    _check_pair(pred, target)
    return _mrstft_per_item(pred, target, _resolutions(fft_sizes, hop_sizes, win_lengths), w_sc, w_logmag,
                            eps).mean()


class MultiResolutionSTFTLoss(nn.Module):
    """Module form of :func:`multi_resolution_stft_loss` (no parameters, no buffers).

    Args:
        fft_sizes: FFT sizes of the resolutions.
        hop_sizes: hops (default ``fft_size // 4`` each).
        win_lengths: Hann window lengths (default the FFT sizes).
        w_sc: weight of the spectral convergence term.
        w_logmag: weight of the log-magnitude L1 term.
        eps: power added under the magnitude's square root.
    """

    def __init__(self, fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES, hop_sizes: Sequence[int] | None = None,
                 win_lengths: Sequence[int] | None = None, w_sc: float = 1.0, w_logmag: float = 1.0,
                 eps: float = 1e-8) -> None:
        super().__init__()
        self.resolutions = _resolutions(fft_sizes, hop_sizes, win_lengths)
        self.w_sc = float(w_sc)
        self.w_logmag = float(w_logmag)
        self.eps = float(eps)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Scalar loss of ``pred`` against ``target``, both ``(batch, channels, samples)``."""
        _check_pair(pred, target)
        return _mrstft_per_item(pred, target, self.resolutions, self.w_sc, self.w_logmag, self.eps).mean()


def _sum_and_difference(x: Tensor) -> tuple[Tensor, Tensor]:
    if x.shape[1] != 2:
        raise ValueError(f"the sum/difference loss needs stereo (2-channel) audio, got {x.shape[1]} channels")
    left, right = x[:, :1], x[:, 1:]
    return left + right, left - right


def sum_difference_stft_terms(pred: Tensor, target: Tensor, *, fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES,
                              hop_sizes: Sequence[int] | None = None, win_lengths: Sequence[int] | None = None,
                              w_sc: float = 1.0, w_logmag: float = 1.0, eps: float = 1e-8) -> dict[str, Tensor]:
    """The three stereo terms behind :func:`sum_difference_stft_loss`, each a scalar.

    Returns:
        ``{"sum": MR-STFT(L+R), "difference": MR-STFT(L-R), "left_right": MR-STFT(L, R)}``, each
        the scalar :func:`multi_resolution_stft_loss` of those signals. Differentiable.
    """
    _check_pair(pred, target)
    res = _resolutions(fft_sizes, hop_sizes, win_lengths)
    (ps, pd), (ts, td) = _sum_and_difference(pred), _sum_and_difference(target)
    return {
        "sum": _mrstft_per_item(ps, ts, res, w_sc, w_logmag, eps).mean(),
        "difference": _mrstft_per_item(pd, td, res, w_sc, w_logmag, eps).mean(),
        "left_right": _mrstft_per_item(pred, target, res, w_sc, w_logmag, eps).mean(),
    }


def sum_difference_stft_loss(pred: Tensor, target: Tensor, *, w_left_right: float = 0.0,
                             fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES, hop_sizes: Sequence[int] | None = None,
                             win_lengths: Sequence[int] | None = None, w_sc: float = 1.0, w_logmag: float = 1.0,
                             eps: float = 1e-8) -> Tensor:
    """Sum/difference multi-resolution STFT loss for stereo (Steinmetz et al. 2021).

    ``MR-STFT(L+R) + MR-STFT(L-R)`` (+ ``w_left_right * MR-STFT(L, R)``). The sum term sees the
    mid content, the difference term the side content, so a mix with the right spectrum but the
    wrong width is penalised. Because STFT magnitudes ignore polarity, ``L-R`` and ``R-L`` look
    the same: a left/right mirror image of the target costs nothing with the default
    ``w_left_right = 0``; give ``w_left_right > 0`` to penalise mirrored panning.

    Args:
        pred: ``(batch, 2, samples)`` prediction.
        target: ``(batch, 2, samples)`` target.
        w_left_right: weight of the per-channel MR-STFT term.
        fft_sizes, hop_sizes, win_lengths, w_sc, w_logmag, eps: as in
            :func:`multi_resolution_stft_loss`.

    Returns:
        Scalar loss. Differentiable.
    """
    _check_pair(pred, target)
    res = _resolutions(fft_sizes, hop_sizes, win_lengths)
    (ps, pd), (ts, td) = _sum_and_difference(pred), _sum_and_difference(target)
    loss = _mrstft_per_item(ps, ts, res, w_sc, w_logmag, eps) + _mrstft_per_item(pd, td, res, w_sc, w_logmag, eps)
    if w_left_right:
        loss = loss + w_left_right * _mrstft_per_item(pred, target, res, w_sc, w_logmag, eps)
    return loss.mean()


class SumDifferenceSTFTLoss(nn.Module):
    """Module form of :func:`sum_difference_stft_loss` (no parameters, no buffers).

    Args:
        w_left_right: weight of the per-channel MR-STFT term (0: mirror images cost nothing).
        fft_sizes, hop_sizes, win_lengths, w_sc, w_logmag, eps: as in
            :func:`multi_resolution_stft_loss`.
    """

    def __init__(self, w_left_right: float = 0.0, fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES,
                 hop_sizes: Sequence[int] | None = None, win_lengths: Sequence[int] | None = None,
                 w_sc: float = 1.0, w_logmag: float = 1.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.resolutions = _resolutions(fft_sizes, hop_sizes, win_lengths)
        self.w_left_right = float(w_left_right)
        self.w_sc = float(w_sc)
        self.w_logmag = float(w_logmag)
        self.eps = float(eps)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Scalar loss of ``pred`` against ``target``, both ``(batch, 2, samples)``."""
        fft_sizes, hops, wins = zip(*self.resolutions)
        return sum_difference_stft_loss(pred, target, w_left_right=self.w_left_right, fft_sizes=fft_sizes,
                                        hop_sizes=hops, win_lengths=wins, w_sc=self.w_sc, w_logmag=self.w_logmag,
                                        eps=self.eps)


# --------------------------------------------------------------------------------------------
# feature loss
# --------------------------------------------------------------------------------------------

_ALL_FEATURES: tuple[str, ...] = tuple(k for keys in FEATURE_CATEGORIES.values() for k in keys)
_FREQ_OFFSET_HZ = 20.0  # log-frequency distances use log2(f + 20 Hz), finite for silent (0 Hz) input
_FLATNESS_FLOOR = 1e-6
_BAND_FLOOR_DB = -80.0

FEATURE_LOSS_SCALES: dict[str, float] = {
    "loudness/integrated_lufs": 10.0,
    "spectral/centroid_hz": 1.0,
    "spectral/bandwidth_hz": 1.0,
    "spectral/flatness": 1.0,
    "spectral/rolloff_hz": 1.0,
    "spectral/band_energy_db": 10.0,
    "panning/stereo_width": 0.4,
    "panning/stereo_imbalance": 0.8,
    "panning/panning_spectrum": 0.6,
    "dynamics/rms_db": 10.0,
    "dynamics/peak_db": 10.0,
    "dynamics/crest_factor_db": 6.0,
    "dynamics/dynamic_spread_db": 3.0,
}
"""Normalisation of each feature's distance in :func:`feature_distance` (distance / scale).

The scales are chosen so that, roughly, a plainly audible change costs about 1:

* dB features: the L1 difference in dB over 10 dB (crest factor over 6 dB, dynamic spread over
  3 dB); band energies are floored at -80 dB first and averaged over mid/side and bands;
* Hz features (centroid, bandwidth, roll-off): the difference in octaves,
  ``|log2((f_pred + 20) / (f_target + 20))|`` (1 octave costs 1);
* flatness: the difference in decades, ``|log10((F_pred + 1e-6) / (F_target + 1e-6))|``;
* stereo width: the side fraction ``E_S / (E_M + E_S) = w / (1 + w)`` in [0, 1], difference
  over 0.4; imbalance (over 0.8) and panning spectrum (mean over bands, over 0.6) as they are.
"""


def _transform(name: str, value: Tensor) -> Tensor:
    if name.endswith("_hz"):
        return torch.log2(value + _FREQ_OFFSET_HZ)
    if name == "spectral/flatness":
        return torch.log10(value + _FLATNESS_FLOOR)
    if name == "spectral/band_energy_db":
        return value.clamp_min(_BAND_FLOOR_DB)
    if name == "panning/stereo_width":
        return value / (1.0 + value)
    return value


def feature_distance(name: str, pred: Tensor, target: Tensor) -> Tensor:
    """Normalised L1 distance between two values of one :func:`mix_features` feature.

    Args:
        name: feature key (``"<category>/<feature>"``, see :data:`FEATURE_LOSS_SCALES`).
        pred: ``(batch, ...)`` predicted feature.
        target: target feature, broadcastable to ``pred`` (e.g. a scalar goal).

    Returns:
        Scalar: mean over all elements of ``|T(pred) - T(target)| / scale`` with the transform
        ``T`` and scale of the feature (:data:`FEATURE_LOSS_SCALES`). Differentiable.
    """
    if name not in FEATURE_LOSS_SCALES:
        raise ConfigError(f"unknown feature {name!r}; known features: {', '.join(_ALL_FEATURES)}")
    target = torch.as_tensor(target, dtype=pred.dtype, device=pred.device)
    diff = _transform(name, pred) - _transform(name, target)
    return diff.abs().mean() / FEATURE_LOSS_SCALES[name]


def _resolve_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    if weights is None:
        return dict.fromkeys(_ALL_FEATURES, 1.0)
    resolved: dict[str, float] = {}
    for key, w in weights.items():  # categories first, then single features override them
        if key in FEATURE_CATEGORIES:
            resolved.update(dict.fromkeys(FEATURE_CATEGORIES[key], float(w)))
    for key, w in weights.items():
        if key in FEATURE_CATEGORIES:
            continue
        if key not in FEATURE_LOSS_SCALES:
            raise ConfigError(
                f"unknown feature weight {key!r}; use a category ({', '.join(FEATURE_CATEGORIES)}) "
                f"or a feature ({', '.join(_ALL_FEATURES)})"
            )
        resolved[key] = float(w)
    for key, w in resolved.items():
        if not (math.isfinite(w) and w >= 0.0):
            raise ConfigError(f"feature weight for {key!r} must be a finite number >= 0, got {w}")
    return {k: w for k, w in resolved.items() if w > 0.0}


def feature_loss(pred: Tensor, target: Tensor | Mapping[str, Tensor | float], sample_rate: float,
                 weights: Mapping[str, float] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of normalised feature distances between a prediction and a target.

    Features are those of :func:`mix_features`; each distance is
    :func:`feature_distance` (normalised as described in :data:`FEATURE_LOSS_SCALES`), and
    ``total = sum_f weight_f * distance_f``.

    Args:
        pred: ``(batch, 1 or 2, samples)`` prediction (>= 400 ms).
        target: audio shaped like ``pred``, or a mapping of feature key -> target value
            (a tensor broadcastable to the feature's shape, or a float: e.g.
            ``{"loudness/integrated_lufs": -14.0}``) for goal-oriented use; with a mapping only
            the features it contains are compared.
        sample_rate: sampling rate in Hz.
        weights: ``None``: every feature with weight 1. Otherwise the features to use: a
            category name (``"loudness"``, ``"spectral"``, ``"panning"``, ``"dynamics"``) sets
            all of its features, a feature key overrides its category; features not covered
            (or with weight 0) are left out.

    Returns:
        ``(total, per_feature)``: the scalar total and a dict of the unweighted normalised
        distance of each feature used. Differentiable with respect to ``pred``.

    Raises:
        ConfigError: for unknown feature or category names, negative weights, or when no
            feature is left to compare.
    """
    resolved = _resolve_weights(weights)
    pred_features = mix_features(pred, sample_rate)
    if isinstance(target, Mapping):
        unknown = [k for k in target if k not in FEATURE_LOSS_SCALES]
        if unknown:
            raise ConfigError(f"unknown target feature(s) {unknown}; known features: {', '.join(_ALL_FEATURES)}")
        if weights is None:
            resolved = dict.fromkeys(target, 1.0)
        else:
            missing = [k for k in weights if k in resolved and k not in target]
            if missing:
                raise ConfigError(f"weights name feature(s) with no target value: {', '.join(missing)}")
            resolved = {k: w for k, w in resolved.items() if k in target}
        target_features = dict(target)
    else:
        _check_pair(pred, target)
        target_features = mix_features(target, sample_rate)
    if not resolved:
        raise ConfigError("feature_loss has no feature to compare (check weights and target keys)")
    per_feature = {k: feature_distance(k, pred_features[k], target_features[k]) for k in resolved}
    total = sum(resolved[k] * per_feature[k] for k in resolved)
    return total, per_feature

