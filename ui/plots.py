"""Plots of the workbench, drawn with matplotlib's object API (thread-safe, no pyplot state)
and saved as PNG files that a ``gr.Image`` shows and an API client downloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["plot_spectrogram", "plot_spectrum", "plot_waveform"]

_MAX_POINTS = 2000
_SPECTRUM_FFT = 4096
_SPECTRUM_FRAMES = 96


def _figure(width: float = 8.0, height: float = 3.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path)
    return str(path)


def _envelope(x: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of ``x`` (samples,) over ``points`` equal blocks."""
    n = x.shape[-1]
    hop = max(1, n // points)
    usable = (n // hop) * hop
    blocks = x[:usable].reshape(-1, hop)
    return blocks.min(axis=1), blocks.max(axis=1)


def plot_waveform(audio: Tensor, sample_rate: int, path: Path, title: str = "mix") -> str:
    """Min/max envelope of each channel of ``audio`` ``(channels, samples)`` in dBFS-scaled
    amplitude, saved as PNG at ``path``; returns the path."""
    x = audio.detach().to(torch.float32).cpu().numpy()
    fig = _figure()
    ax = fig.subplots()
    labels = ["left", "right"] if x.shape[0] == 2 else ["mono"]
    for channel, label in zip(x, labels):
        lo, hi = _envelope(channel, _MAX_POINTS)
        t = np.arange(lo.shape[0]) * (channel.shape[0] / max(1, lo.shape[0])) / sample_rate
        ax.fill_between(t, lo, hi, alpha=0.5, lw=0, label=label)
    ax.set_ylim(-1.0, 1.0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude (full scale 1)")
    ax.set_title(f"{title}: waveform")
    ax.legend(loc="upper right", fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _average_spectrum_db(x: Tensor, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Welch-style average power spectrum of a mono signal ``(samples,)`` in dB (at most
    ``_SPECTRUM_FRAMES`` half-overlapping Hann frames, spread evenly over the signal)."""
    n_fft = min(_SPECTRUM_FFT, max(256, 1 << (x.shape[-1].bit_length() - 1)))
    if x.shape[-1] < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.shape[-1]))
    frames = x.unfold(-1, n_fft, n_fft // 2)
    if frames.shape[0] > _SPECTRUM_FRAMES:  # evenly spread frames: the average of a long song, cheaply
        frames = frames[torch.linspace(0, frames.shape[0] - 1, _SPECTRUM_FRAMES).long()]
    frames = frames * torch.hann_window(n_fft)
    power = torch.fft.rfft(frames).abs().pow(2).mean(0) / (torch.hann_window(n_fft).pow(2).sum())
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    return freqs[1:], 10.0 * np.log10(power[1:].numpy() + 1e-12)


def plot_spectrum(mix: Tensor, sample_rate: int, path: Path, dry: Tensor | None = None) -> str:
    """Average spectrum of the mix (mid channel), with the plain sum of the dry tracks for
    comparison when ``dry`` ``(tracks, channels, samples)`` is given; PNG at ``path``."""
    fig = _figure()
    ax = fig.subplots()
    freqs, db = _average_spectrum_db(mix.detach().float().mean(0), sample_rate)
    ax.semilogx(freqs, db, lw=1.0, label="mix")
    if dry is not None:
        _, dry_db = _average_spectrum_db(dry.detach().float().sum(0).mean(0), sample_rate)
        ax.semilogx(freqs, dry_db, lw=0.8, alpha=0.7, label="plain sum of the tracks")
    ax.set_xlim(20.0, sample_rate / 2)
    top = float(np.max(db)) if db.size else 0.0
    ax.set_ylim(top - 90.0, top + 6.0)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("power (dB)")
    ax.set_title("average spectrum")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def plot_spectrogram(audio: Tensor, sample_rate: int, path: Path, title: str = "sound") -> str:
    """Log-power spectrogram (mid channel, 1024-point STFT) of ``audio`` ``(channels, samples)``."""
    x = audio.detach().float().mean(0)
    n_fft = 1024
    if x.shape[-1] < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.shape[-1]))
    spec = torch.stft(x, n_fft, hop_length=n_fft // 4, window=torch.hann_window(n_fft), return_complex=True)
    db = 20.0 * torch.log10(spec.abs() + 1e-7).numpy()
    fig = _figure(8.0, 3.5)
    ax = fig.subplots()
    extent = (0.0, x.shape[-1] / sample_rate, 0.0, sample_rate / 2000.0)
    image = ax.imshow(db, origin="lower", aspect="auto", extent=extent, vmin=db.max() - 90.0, vmax=db.max(), cmap="magma")
    fig.colorbar(image, ax=ax, label="dB")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (kHz)")
    ax.set_title(f"{title}: spectrogram")
    return _save(fig, path)
