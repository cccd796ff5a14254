"""Instrument classes for unlabelled tracks: names first, then audio descriptors.

:func:`classify_tracks` decides one class of :data:`~neuromix.mixing.classes.INSTRUMENT_CLASSES`
per track in three steps, the first that answers wins:

1. ``overrides`` (by track index or by track name): the user's word always wins;
2. the file/track name: :func:`neuromix.mixing.data.infer_class_from_name` (keyword rules on
   names such as ``"Kick In"``, ``"BGV 2"``, ``"Gtr L"``); a name that gives ``None`` or
   ``"other"`` falls through;
3. the audio: ten scalar descriptors (:func:`describe_tracks`) fed to a small multinomial
   logistic-regression model (:class:`FeatureClassifier`) whose parameters are shipped as
   ``mixing/class_model.json``. The model is trained on stems of the procedural generator
   (:func:`train_feature_classifier`); its held-out accuracy on songs with seeds the training
   never saw is stored in the JSON (``metrics``) and re-measured by the tests.

Descriptors (all computed on the channel average, without gradients; see :func:`describe_tracks`):
log2 spectral centroid, log spectral flatness, crest factor (dB), log energy share below
150 Hz and above 5 kHz, log2 of the 5 %-energy frequency, log onset rate, active-frame
fraction, periodicity (peak of the normalised autocorrelation for pitches of 50 Hz-1 kHz) and
log2 spectral bandwidth. The rule-based mixer and the mixing-engineer model reuse the same
analysis (:class:`TrackDescriptors`) for their content-dependent decisions.
"""

from __future__ import annotations

import importlib.resources
import json
import math

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from neuromix.core import features
from neuromix.core.errors import ConfigError
from neuromix.mixing.classes import INSTRUMENT_CLASSES
from neuromix.mixing.data import infer_class_from_name

MODEL_FORMAT = "neuromix-class-model"
MODEL_VERSION = 1
MODEL_FILE = "class_model.json"

FEATURE_NAMES: tuple[str, ...] = (
    "log2_centroid_hz",
    "log_flatness",
    "crest_db",
    "log_lf_share",
    "log_hf_share",
    "log2_low_edge_hz",
    "log_onset_rate",
    "active_fraction",
    "periodicity",
    "log2_bandwidth_hz",
)
"""Names (and order) of the classifier's input descriptors."""

_LF_HZ = 150.0
_HF_HZ = 5000.0
_EPS = 1e-10

# --------------------------------------------------------------------------------------------
# descriptors
# --------------------------------------------------------------------------------------------

@dataclass
class TrackDescriptors:
    """Content descriptors of ``T`` tracks (no gradients; all tensors float32).

    Attributes:
        sample_rate: Hz.
        freqs_hz: ``(bins,)`` frequencies of :attr:`spectrum`.
        spectrum: ``(T, bins)`` long-term mean power spectrum (mean-square density, channel average).
        rms_db: ``(T,)`` RMS level, dBFS.
        peak_db: ``(T,)`` sample peak, dBFS.
        crest_db: ``(T,)`` crest factor (peak minus RMS), dB.
        centroid_hz: ``(T,)`` centroid of :attr:`spectrum`, Hz.
        bandwidth_hz: ``(T,)`` spread of :attr:`spectrum` around the centroid, Hz.
        flatness: ``(T,)`` energy-weighted mean of the framewise spectral flatness (0..1).
        lf_share: ``(T,)`` share of the power below 150 Hz (0..1).
        hf_share: ``(T,)`` share of the power above 5 kHz (0..1).
        low_edge_hz: ``(T,)`` frequency below which 5 % of the power lies, Hz.
        onset_rate_hz: ``(T,)`` detected onsets per second of active signal.
        active_fraction: ``(T,)`` share of frames within 25 dB of the loudest frame.
        periodicity: ``(T,)`` energy-weighted mean over frames of the largest normalised
            autocorrelation at lags of 1-20 ms (1 for a steady tone, near 0 for noise).
    """

    sample_rate: int
    freqs_hz: Tensor
    spectrum: Tensor
    rms_db: Tensor
    peak_db: Tensor
    crest_db: Tensor
    centroid_hz: Tensor
    bandwidth_hz: Tensor
    flatness: Tensor
    lf_share: Tensor
    hf_share: Tensor
    low_edge_hz: Tensor
    onset_rate_hz: Tensor
    active_fraction: Tensor
    periodicity: Tensor

    def share_below(self, freq_hz: float) -> Tensor:
        """``(T,)`` share (0..1) of each track's power below ``freq_hz``."""
        low = self.spectrum[:, self.freqs_hz < freq_hz].sum(-1)
        return low / (self.spectrum.sum(-1) + _EPS)

    def energy_fraction_frequency(self, fraction: float) -> Tensor:
        """``(T,)`` frequency in Hz below which ``fraction`` of each track's power lies."""
        cum = self.spectrum.cumsum(-1) / (self.spectrum.sum(-1, keepdim=True) + _EPS)
        idx = (cum < fraction).sum(-1).clamp(max=self.freqs_hz.numel() - 1)
        return self.freqs_hz[idx]

    def feature_matrix(self) -> Tensor:
        """``(T, len(FEATURE_NAMES))`` classifier inputs, in :data:`FEATURE_NAMES` order."""
        cols = [
            torch.log2(self.centroid_hz.clamp_min(10.0)),
            torch.log(self.flatness.clamp_min(1e-6)),
            self.crest_db,
            torch.log(self.lf_share.clamp_min(1e-5)),
            torch.log(self.hf_share.clamp_min(1e-5)),
            torch.log2(self.low_edge_hz.clamp_min(10.0)),
            torch.log1p(self.onset_rate_hz),
            self.active_fraction,
            self.periodicity,
            torch.log2(self.bandwidth_hz.clamp_min(10.0)),
        ]
        return torch.stack(cols, dim=-1)

def _frame_sizes(sample_rate: int) -> tuple[int, int]:
    """FFT size (~46 ms, a power of two) and hop (a quarter of it) at ``sample_rate``."""
    n_fft = 1 << max(8, int(round(math.log2(0.0464 * sample_rate))))
    return n_fft, n_fft // 4

def describe_tracks(tracks: Tensor, sample_rate: int) -> TrackDescriptors:
    """Measure the content descriptors of every track.

    The analysis uses the channel average of each track, an STFT with a ~46 ms periodic Hann
    window (1024 samples at 22.05 kHz, 2048 at 44.1 kHz) and a hop of a quarter window.

    * spectrum: the power spectrogram (:func:`neuromix.core.features.power_spectrogram`)
      averaged over frames; centroid, bandwidth, the shares below 150 Hz / above 5 kHz and the
      5 %-energy frequency come from it;
    * flatness: geometric over arithmetic mean of each frame's power, frames weighted by energy;
    * onsets: band-wise spectral flux in dB (24 log-spaced bands, see :func:`_onset_rate`),
      peaks above 2 dB and above the local mean plus half the local standard deviation, at
      least 50 ms apart; rate = count / active duration;
    * periodicity: each frame's autocorrelation (via FFT), normalised by lag 0, maximum over
      lags of 1-20 ms; energy-weighted mean over frames.

    Args:
        tracks: ``(T, channels, samples)`` audio (any channel count), at ``sample_rate``.
        sample_rate: Hz.

    Returns:
        :class:`TrackDescriptors` for the ``T`` tracks. Not differentiable (computed under
        ``torch.no_grad``).
    """
    if tracks.ndim != 3:
        raise ValueError(f"tracks must be (tracks, channels, samples), got {tuple(tracks.shape)}")
    sample_rate = int(sample_rate)
    n_fft, hop = _frame_sizes(sample_rate)
    with torch.no_grad():
        x = tracks.detach().to(torch.float32)
        mono = x.mean(1, keepdim=True)  # (T, 1, N)
        if mono.shape[-1] < n_fft:
            mono = torch.nn.functional.pad(mono, (0, n_fft - mono.shape[-1]))
        power = features.power_spectrogram(mono, sample_rate, n_fft, hop)[:, 0]  # (T, frames, bins)
        freqs = features.fft_frequencies(sample_rate, n_fft)
        spectrum = power.mean(1)  # (T, bins)
        total = spectrum.sum(-1) + _EPS
        centroid = (spectrum * freqs).sum(-1) / total
        bandwidth = torch.sqrt((spectrum * (freqs - centroid[:, None]).square()).sum(-1) / total + _EPS)
        lf_share = spectrum[:, freqs < _LF_HZ].sum(-1) / total
        hf_share = spectrum[:, freqs > _HF_HZ].sum(-1) / total
        cum = spectrum.cumsum(-1) / total[:, None]
        low_edge = freqs[(cum < 0.05).sum(-1).clamp(max=freqs.numel() - 1)]

        frame_energy = power.sum(-1)  # (T, frames)
        weights = frame_energy / (frame_energy.sum(-1, keepdim=True) + _EPS)
        frame_flat = torch.exp(torch.log(power + _EPS).mean(-1)) / (power.mean(-1) + _EPS)
        flatness = (frame_flat * weights).sum(-1)

        frame_db = 10.0 * torch.log10(frame_energy + _EPS)
        active = frame_db > (frame_db.max(-1, keepdim=True).values - 25.0)
        active_fraction = active.float().mean(-1)

        onset_rate = _onset_rate(power, active, freqs.to(power.dtype), hop / sample_rate)
        periodicity = _periodicity(mono[:, 0], sample_rate, n_fft, hop)

        rms = features.rms_db(x)
        peak = features.peak_db(x)
    return TrackDescriptors(
        sample_rate=sample_rate,
        freqs_hz=freqs.to(torch.float32),
        spectrum=spectrum,
        rms_db=rms,
        peak_db=peak,
        crest_db=peak - rms,
        centroid_hz=centroid,
        bandwidth_hz=bandwidth,
        flatness=flatness,
        lf_share=lf_share,
        hf_share=hf_share,
        low_edge_hz=low_edge.to(torch.float32),
        onset_rate_hz=onset_rate,
        active_fraction=active_fraction,
        periodicity=periodicity,
    )

_ONSET_BANDS = 24
_ONSET_FLOOR_DB = 60.0
_ONSET_MIN_FLUX_DB = 2.0

def _onset_rate(power: Tensor, active: Tensor, freqs: Tensor, frame_s: float) -> Tensor:
    """Onsets per active second from a ``(T, frames, bins)`` power spectrogram.

    Band-wise spectral flux: the power is summed into 24 log-spaced bands (40 Hz to Nyquist),
    turned into dB with a floor 60 dB below the track's loudest band/frame, and the flux is
    the mean over bands of the frame-to-frame rise (dB). Onsets are flux peaks above 2 dB and
    above the mean plus half the standard deviation of the flux over +-8 frames, at least
    50 ms apart. Summing bins into bands keeps stationary noise (whose single bins fluctuate
    strongly) from producing onsets.
    """
    nyquist = float(freqs[-1])
    edges = torch.logspace(math.log10(40.0), math.log10(nyquist), _ONSET_BANDS + 1, dtype=torch.float64)
    band = torch.bucketize(freqs.to(torch.float64), edges)  # 0 below 40 Hz, 1.._ONSET_BANDS inside
    matrix = torch.zeros(freqs.numel(), _ONSET_BANDS + 2, dtype=power.dtype)
    matrix[torch.arange(freqs.numel()), band] = 1.0
    energy = power @ matrix[:, 1 : _ONSET_BANDS + 1]  # (T, frames, bands)
    floor = energy.amax(dim=(1, 2), keepdim=True) * 10.0 ** (-_ONSET_FLOOR_DB / 10.0) + _EPS
    level = 10.0 * torch.log10(energy + floor)
    flux = (level[:, 1:] - level[:, :-1]).clamp_min(0.0).mean(-1)  # (T, frames-1) dB
    flux = torch.nn.functional.pad(flux, (1, 0))
    k = 8
    padded = torch.nn.functional.pad(flux[:, None], (k, k), mode="replicate")[:, 0]
    windows = padded.unfold(-1, 2 * k + 1, 1)  # (T, frames, 2k+1)
    local = windows.mean(-1) + 0.5 * windows.std(-1)
    left = torch.nn.functional.pad(flux, (1, 0))[:, :-1]
    right = torch.nn.functional.pad(flux, (0, 1))[:, 1:]
    peaks = (flux > left) & (flux >= right) & (flux > local) & (flux > _ONSET_MIN_FLUX_DB)
    min_gap = max(1, int(round(0.05 / frame_s)))
    counts = []
    for row in peaks:
        count, last = 0, -min_gap
        for i in torch.nonzero(row).flatten().tolist():
            if i - last >= min_gap:
                count, last = count + 1, i
        counts.append(count)
    seconds = (active.float().sum(-1) * frame_s).clamp_min(frame_s)
    return torch.tensor(counts, dtype=torch.float32) / seconds

def _periodicity(mono: Tensor, sample_rate: int, n_fft: int, hop: int) -> Tensor:
    """Energy-weighted mean of the framewise peak normalised autocorrelation at 1-20 ms lags."""
    if mono.shape[-1] < n_fft:
        mono = torch.nn.functional.pad(mono, (0, n_fft - mono.shape[-1]))
    frames = mono.unfold(-1, n_fft, hop)  # (T, frames, n_fft)
    frames = frames - frames.mean(-1, keepdim=True)
    window = torch.hann_window(n_fft, periodic=True, dtype=frames.dtype)
    spec = torch.fft.rfft(frames * window, n=2 * n_fft)
    acf = torch.fft.irfft(spec.abs().square(), n=2 * n_fft)[..., :n_fft]
    lo = max(1, int(sample_rate / 1000.0))
    hi = min(n_fft - 1, int(sample_rate / 50.0))
    # unbiased-ish normalisation by the window overlap keeps long lags comparable
    overlap = torch.fft.irfft(torch.fft.rfft(window, n=2 * n_fft).abs().square(), n=2 * n_fft)[:n_fft]
    norm = acf / (acf[..., :1] + _EPS) * (overlap[:1] / overlap.clamp_min(1e-3))
    peak = norm[..., lo : hi + 1].amax(-1).clamp(0.0, 1.0)
    energy = acf[..., 0]
    return (peak * energy).sum(-1) / (energy.sum(-1) + _EPS)

# --------------------------------------------------------------------------------------------
# the feature classifier
# --------------------------------------------------------------------------------------------

@dataclass
class FeatureClassifier:
    """Multinomial logistic regression on standardised :data:`FEATURE_NAMES` descriptors.

    ``p(class | f) = softmax(W ((f - mean) / std) + b)``.

    Attributes:
        classes: the classes the model can output (those seen in training), in output order.
        mean: ``(features,)`` standardisation mean.
        std: ``(features,)`` standardisation scale.
        weight: ``(classes, features)``.
        bias: ``(classes,)``.
        metadata: training set-up and measured accuracies (stored in the JSON).
    """

    classes: list[str]
    mean: Tensor
    std: Tensor
    weight: Tensor
    bias: Tensor
    metadata: dict = field(default_factory=dict)

    def logits(self, feats: Tensor) -> Tensor:
        """``(T, features)`` -> ``(T, classes)`` logits."""
        return ((feats - self.mean) / self.std) @ self.weight.T + self.bias

    def predict(self, descriptors: TrackDescriptors) -> list[str]:
        """Most probable class of every described track."""
        idx = self.logits(descriptors.feature_matrix()).argmax(-1)
        return [self.classes[i] for i in idx.tolist()]

    def to_dict(self) -> dict:
        """JSON-serialisable model document (format ``neuromix-class-model``)."""
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "features": list(FEATURE_NAMES),
            "classes": list(self.classes),
            "mean": [round(float(v), 6) for v in self.mean],
            "std": [round(float(v), 6) for v in self.std],
            "weight": [[round(float(v), 6) for v in row] for row in self.weight],
            "bias": [round(float(v), 6) for v in self.bias],
            **({"metadata": self.metadata} if self.metadata else {}),
        }

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, doc: Mapping, where: str = "class model") -> FeatureClassifier:
        """Validate a model document; raises :class:`ConfigError` naming the bad field."""
        if not isinstance(doc, Mapping) or doc.get("format") != MODEL_FORMAT:
            raise ConfigError(f"{where}: not a {MODEL_FORMAT!r} document")
        if doc.get("version") != MODEL_VERSION:
            raise ConfigError(f"{where}: unsupported version {doc.get('version')!r}")
        if list(doc.get("features", [])) != list(FEATURE_NAMES):
            raise ConfigError(f"{where}: 'features' must be {list(FEATURE_NAMES)}")
        classes = doc.get("classes")
        if not isinstance(classes, list) or not classes or any(c not in INSTRUMENT_CLASSES for c in classes):
            raise ConfigError(f"{where}: 'classes' must be a non-empty list of instrument classes")
        nf, nc = len(FEATURE_NAMES), len(classes)

        def tensor(key: str, shape: tuple[int, ...]) -> Tensor:
            try:
                t = torch.tensor(doc[key], dtype=torch.float32)
            except (KeyError, TypeError, ValueError) as err:
                raise ConfigError(f"{where}: '{key}' must be a numeric array") from err
            if tuple(t.shape) != shape or not torch.isfinite(t).all():
                raise ConfigError(f"{where}: '{key}' must be finite with shape {shape}")
            return t

        std = tensor("std", (nf,))
        if (std <= 0).any():
            raise ConfigError(f"{where}: 'std' must be positive")
        return cls(
            classes=list(classes),
            mean=tensor("mean", (nf,)),
            std=std,
            weight=tensor("weight", (nc, nf)),
            bias=tensor("bias", (nc,)),
            metadata=dict(doc.get("metadata", {})),
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> FeatureClassifier:
        """Load a model JSON; ``None`` loads the shipped ``neuromix.mixing/class_model.json``."""
        if path is None:
            resource = importlib.resources.files("neuromix.mixing") / MODEL_FILE
            where = f"neuromix.mixing/{MODEL_FILE}"
            try:
                text = resource.read_text()
            except FileNotFoundError as err:
                raise ConfigError(f"{where} is missing; run train_feature_classifier(...) and save it") from err
        else:
            where = str(path)
            try:
                text = Path(path).read_text()
            except OSError as err:
                raise ConfigError(f"{where}: cannot read ({err})") from err
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{where}: invalid JSON ({err})") from err
        return cls.from_dict(doc, where)

def fit_logistic_regression(feats: Tensor, labels: Sequence[str], *, l2: float = 1e-2,
                            steps: int = 200) -> FeatureClassifier:
    """Fit a multinomial logistic regression (L-BFGS, L2 penalty ``l2`` on the weights).

    Deterministic: zero initialisation, full-batch optimisation in float64.

    Args:
        feats: ``(samples, features)`` descriptors.
        labels: class name per sample.
        l2: weight-decay coefficient (per sample mean loss + ``l2 * |W|^2``).
        steps: maximum L-BFGS iterations.
    """
    classes = [c for c in INSTRUMENT_CLASSES if c in set(labels)]
    y = torch.tensor([classes.index(c) for c in labels], dtype=torch.long)
    x = feats.to(torch.float64)
    mean = x.mean(0)
    std = x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    w = torch.zeros(len(classes), x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, max_eval=2 * steps, tolerance_grad=1e-6,
                            tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w.T + b, y) + l2 * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return FeatureClassifier(classes, mean.float(), std.float(), w.detach().float(), b.detach().float())

def _generated_stems(song_seeds: Sequence[int], seconds: float, sample_rate: int) -> tuple[Tensor, list[str]]:
    """Descriptor matrix and labels of every stem of the generator's songs with ``song_seeds``."""
    from neuromix.mixing.generator import generate_song  # the generator is a sibling module

    rows, labels = [], []
    for seed in song_seeds:
        song = generate_song(int(seed), seconds=seconds, sample_rate=sample_rate)
        stems = [torch.as_tensor(s, dtype=torch.float32) for s in song.stems]
        stems = [s if s.ndim == 2 else s[None] for s in stems]
        n = min(s.shape[-1] for s in stems)
        for stem, cls in zip(stems, song.classes):
            rows.append(describe_tracks(stem[None, :, :n], sample_rate).feature_matrix()[0])
            labels.append(str(cls))
    return torch.stack(rows), labels

def evaluate_classifier(model: FeatureClassifier, song_seeds: Sequence[int], *, seconds: float = 4.0,
                        sample_rate: int = 22050) -> dict:
    """Accuracy of ``model`` on every stem of the generated songs with ``song_seeds``.

    Returns:
        ``{"accuracy": float, "stems": int, "per_class": {class: accuracy}}`` (classes
        present among the stems).
    """
    feats, labels = _generated_stems(song_seeds, seconds, sample_rate)
    predicted = [model.classes[i] for i in model.logits(feats).argmax(-1).tolist()]
    hits = [p == c for p, c in zip(predicted, labels)]
    per_class = {
        c: round(sum(h for h, lab in zip(hits, labels) if lab == c) / labels.count(c), 4)
        for c in INSTRUMENT_CLASSES if c in labels
    }
    return {"accuracy": sum(hits) / len(labels), "stems": len(labels), "per_class": per_class}

HELDOUT_SEED_OFFSET = 100_000
"""Held-out songs use seeds ``seed + HELDOUT_SEED_OFFSET + k``; training uses ``seed + k``."""

def train_feature_classifier(num_songs: int, seed: int, *, heldout_songs: int | None = None,
                             seconds: float = 4.0, sample_rate: int = 22050,
                             path: str | Path | None = None) -> FeatureClassifier:
    """Train the audio classifier on stems of generated songs and measure held-out accuracy.

    Training songs are ``generate_song(seed + k)`` for ``k < num_songs``; the held-out songs
    ``generate_song(seed + HELDOUT_SEED_OFFSET + k)`` for ``k < heldout_songs`` (default
    ``max(4, num_songs // 4)``) never overlap them. Each stem becomes one sample of
    :data:`FEATURE_NAMES` descriptors.

    Args:
        num_songs: number of training songs.
        seed: base seed (deterministic result for a given seed).
        heldout_songs: number of held-out songs for the reported accuracy.
        seconds: song length in seconds.
        sample_rate: Hz.
        path: when given, the model JSON is written there (e.g. ``mixing/class_model.json``).

    Returns:
        The fitted :class:`FeatureClassifier`; ``metadata`` holds the set-up and the train and
        held-out accuracies.
    """
    if num_songs < 1:
        raise ValueError("num_songs must be >= 1")
    heldout_songs = max(4, num_songs // 4) if heldout_songs is None else int(heldout_songs)
    feats, labels = _generated_stems([seed + k for k in range(num_songs)], seconds, sample_rate)
    model = fit_logistic_regression(feats, labels)
    train_acc = sum(p == c for p, c in zip(
        [model.classes[i] for i in model.logits(feats).argmax(-1).tolist()], labels)) / len(labels)
    held = [seed + HELDOUT_SEED_OFFSET + k for k in range(heldout_songs)]
    report = (evaluate_classifier(model, held, seconds=seconds, sample_rate=sample_rate) if heldout_songs
              else {"accuracy": float("nan"), "stems": 0, "per_class": {}})
    counts = {c: labels.count(c) for c in model.classes}
    model.metadata = {
        "trained_by": "neuromix.mixing.classify.train_feature_classifier",
        "num_songs": num_songs,
        "seed": seed,
        "heldout_songs": heldout_songs,
        "heldout_seed_offset": HELDOUT_SEED_OFFSET,
        "seconds": seconds,
        "sample_rate": sample_rate,
        "train_stems": len(labels),
        "train_class_counts": counts,
        "metrics": {
            "train_accuracy": round(train_acc, 4),
            "heldout_accuracy": round(report["accuracy"], 4),
            "heldout_stems": report["stems"],
            "heldout_per_class_accuracy": report["per_class"],
            "chance_accuracy": round(1.0 / len(model.classes), 4),
        },
    }
    if path is not None:
        model.save(path)
    return model

# --------------------------------------------------------------------------------------------
# names and the public entry point
# --------------------------------------------------------------------------------------------

def classify_tracks(names: Sequence[str | None] | None, tracks: Sequence[Tensor] | Tensor | None,
                    sample_rate: int, overrides: Mapping[int | str, str] | None = None,
                    *, model: FeatureClassifier | None = None) -> list[str]:
    """Instrument class of every track: overrides, then names, then audio.

    Args:
        names: track or file names (``None`` entries or ``names=None`` skip the name step).
        tracks: ``(T, channels, samples)`` tensor or a list of ``(channels, samples)`` /
            ``(samples,)`` tensors; may be ``None`` only if every track is decided by an
            override or its name.
        sample_rate: Hz of ``tracks``.
        overrides: class per track index or per track name; always wins.
        model: audio classifier (default: the shipped ``class_model.json``, loaded on demand).

    Returns:
        One class name of :data:`INSTRUMENT_CLASSES` per track.

    Raises:
        ConfigError: an override names an unknown class or track.
        ValueError: ``names`` and ``tracks`` disagree in length.
    """
    count = len(names) if names is not None else (len(tracks) if tracks is not None else 0)
    if names is not None and tracks is not None and len(tracks) != len(names):
        raise ValueError(f"{len(names)} names for {len(tracks)} tracks")
    names = list(names) if names is not None else [None] * count
    decided: list[str | None] = [None] * count
    for key, cls in (overrides or {}).items():
        value = str(cls).strip().lower()
        if value not in INSTRUMENT_CLASSES:
            raise ConfigError(f"override for {key!r}: unknown class {cls!r}; valid: {', '.join(INSTRUMENT_CLASSES)}")
        if isinstance(key, int) and not isinstance(key, bool):
            if not 0 <= key < count:
                raise ConfigError(f"override index {key} out of range for {count} tracks")
            decided[key] = value
        else:
            hits = [i for i, n in enumerate(names) if n == key]
            if not hits:
                raise ConfigError(f"override for unknown track name {key!r}")
            for i in hits:
                decided[i] = value
    for i, name in enumerate(names):
        if decided[i] is None and name:
            guess = infer_class_from_name(name)
            if guess is not None and str(guess) in INSTRUMENT_CLASSES:
                decided[i] = str(guess)
    todo = [i for i, c in enumerate(decided) if c is None]
    if todo:
        if tracks is None:
            raise ValueError("audio is needed to classify tracks that neither an override nor a name decides")
        model = model or FeatureClassifier.load()
        for i in todo:
            t = torch.as_tensor(tracks[i], dtype=torch.float32)
            t = t[None] if t.ndim == 1 else t
            decided[i] = model.predict(describe_tracks(t[None], sample_rate))[0]
    return [str(c) for c in decided]
