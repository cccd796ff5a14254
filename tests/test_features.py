"""Mix descriptors against pyloudnorm, scipy and closed forms; batching and gradients."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import scipy.signal
import torch

from neuromix.core import features as F

KICK = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "multitracks" / "caesium" / "kick.flac"


# ------------------------------------------------------------------ test signals (numpy, seeded)


def white(seconds: float, sr: int, channels: int, rms: float = 0.1, seed: int = 0) -> np.ndarray:
    """(samples, channels) float64 white noise."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((int(seconds * sr), channels)) * rms


def pink(seconds: float, sr: int, channels: int, rms: float = 0.1, seed: int = 0) -> np.ndarray:
    """(samples, channels) float64 noise with a 1/f power spectrum."""
    n = int(seconds * sr)
    spec = np.fft.rfft(white(seconds, sr, channels, 1.0, seed), axis=0)
    k = np.arange(spec.shape[0], dtype=np.float64)
    k[0] = 1.0
    y = np.fft.irfft(spec / np.sqrt(k)[:, None], n=n, axis=0)
    return y * rms / np.sqrt(np.mean(y**2))


def sine(seconds: float, sr: int, freq: float, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return np.repeat((amp * np.sin(2 * np.pi * freq * t))[:, None], channels, axis=1)


def to_torch(a: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(samples, channels) numpy -> (1, channels, samples) tensor."""
    return torch.tensor(a.T[None].copy(), dtype=dtype)


def lufs_error(a: np.ndarray, sr: int) -> tuple[float, float]:
    ref = pyloudnorm.Meter(sr).integrated_loudness(a)
    ours = float(F.integrated_loudness(to_torch(a), sr)[0])
    return ours, ref


# ------------------------------------------------------------------ K-weighting and loudness


def test_k_weighting_coefficients_reproduce_bs1770_table_at_48k():
    (b1, a1), (b2, a2) = F.k_weighting_coefficients(48000)
    np.testing.assert_allclose(b1, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-10)
    np.testing.assert_allclose(a1, [1.0, -1.69065929318241, 0.73248077421585], atol=1e-10)
    np.testing.assert_allclose(b2, [1.0, -2.0, 1.0], atol=1e-10)
    np.testing.assert_allclose(a2, [1.0, -1.99004745483398, 0.99007225036621], atol=1e-10)


@pytest.mark.parametrize("sr", [16000, 44100, 48000])
def test_k_weighting_fft_equals_lfilter(sr):
    x = white(0.5, sr, 2, seed=1)
    (b1, a1), (b2, a2) = F.k_weighting_coefficients(sr)
    ref = scipy.signal.lfilter(b2, a2, scipy.signal.lfilter(b1, a1, x, axis=0), axis=0)
    ours = F.k_weighting(to_torch(x, torch.float64), sr)[0].numpy().T
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    # float32 path
    ours32 = F.k_weighting(to_torch(x), sr)[0].numpy().T
    np.testing.assert_allclose(ours32, ref, atol=2e-6)


LOUDNESS_CASES = {
    "white-mono-44k": (lambda: white(2.0, 44100, 1), 44100),
    "white-stereo-48k": (lambda: white(2.0, 48000, 2, seed=2), 48000),
    "pink-stereo-44k": (lambda: pink(2.0, 44100, 2, seed=3), 44100),
    "pink-mono-48k": (lambda: pink(2.0, 48000, 1, seed=4), 48000),
    "sine100-stereo-44k": (lambda: sine(1.5, 44100, 100.0, 2), 44100),
    "sine1k-mono-48k": (lambda: sine(1.5, 48000, 1000.0, 1), 48000),
    "sine5k-stereo-48k": (lambda: sine(1.5, 48000, 5000.0, 2), 48000),
    "sine5k-mono-44k": (lambda: sine(1.2, 44100, 5000.0, 1, amp=0.05), 44100),
}


@pytest.mark.parametrize("case", list(LOUDNESS_CASES))
def test_integrated_loudness_matches_pyloudnorm(case):
    make, sr = LOUDNESS_CASES[case]
    ours, ref = lufs_error(make(), sr)
    assert abs(ours - ref) < 0.1, f"{case}: ours {ours:.3f} LUFS, pyloudnorm {ref:.3f} LUFS"


def test_integrated_loudness_gating_matches_pyloudnorm():
    """Loud noise, silence (absolute gate) and a 30 dB quieter part (relative gate)."""
    sr = 44100
    a = np.concatenate([white(1.0, sr, 2, 0.1, 5), np.zeros((sr, 2)), white(1.0, sr, 2, 0.003, 6)])
    ours, ref = lufs_error(a, sr)
    assert abs(ours - ref) < 0.1, (ours, ref)
    ungated = float(F.short_term_loudness(to_torch(a), sr, window_s=len(a) / sr)[0, 0])
    assert ours - ungated > 3.0  # gating really removed the silent and the quiet blocks


def test_integrated_loudness_real_stem_matches_pyloudnorm():
    if not KICK.exists():
        pytest.skip(f"real multitrack data not found at {KICK} (shared data folder absent)")
    import soundfile

    data, sr = soundfile.read(KICK, dtype="float64", always_2d=True)
    ours, ref = lufs_error(data, sr)
    assert abs(ours - ref) < 0.1, (ours, ref)


def test_loudness_closed_form_997hz_full_scale_one_channel():
    """BS.1770-4: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS."""
    sr = 48000
    a = np.zeros((3 * sr, 2))
    a[:, 0] = sine(3.0, sr, 997.0, 1, amp=1.0)[:, 0]
    value = float(F.integrated_loudness(to_torch(a), sr)[0])
    assert abs(value - (-3.01)) < 0.1
    assert abs(value - (-3.01)) < 0.02  # the BS.1770 table filter gives it almost exactly


def test_loudness_scales_with_gain_and_errors():
    x = to_torch(white(1.0, 48000, 2))
    base = F.integrated_loudness(x, 48000)
    torch.testing.assert_close(F.integrated_loudness(x * 10 ** (-12 / 20), 48000), base - 12.0, atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="400 ms"):
        F.integrated_loudness(x[..., :1000], 48000)
    with pytest.raises(ValueError, match="5 channels"):
        F.integrated_loudness(torch.zeros(1, 6, 48000), 48000)


def test_silence_is_finite():
    x = torch.zeros(2, 2, 24000, requires_grad=True)
    value = F.integrated_loudness(x, 48000)
    assert torch.isfinite(value).all() and float(value[0].detach()) < -100.0
    value.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_short_term_loudness_matches_pyloudnorm_blocks():
    sr = 16000
    rng = np.random.default_rng(7)
    env = np.repeat(10 ** (rng.uniform(-20, 0, 12) / 20), sr // 2)  # level changes every 0.5 s
    a = white(6.0, sr, 2, seed=8) * env[:, None]
    meter = pyloudnorm.Meter(sr, block_size=3.0, overlap=2.0 / 3.0)
    meter.integrated_loudness(a)
    ref = np.asarray(meter.blockwise_loudness)
    ours = F.short_term_loudness(to_torch(a), sr)[0].numpy()
    assert len(ours) == 4
    n = min(len(ours), len(ref))
    np.testing.assert_allclose(ours[:n], ref[:n], atol=0.1)
    assert np.ptp(ours) > 1.0  # the windows really differ


# ------------------------------------------------------------------ dynamics


def test_rms_peak_crest_closed_form():
    sr = 48000
    x = to_torch(sine(1.0, sr, 1000.0, 2, amp=0.5))  # 48 samples per period, hits the peak
    rms = 20 * math.log10(0.5 / math.sqrt(2))
    assert abs(float(F.rms_db(x)[0]) - rms) < 1e-3
    assert abs(float(F.peak_db(x)[0]) - 20 * math.log10(0.5)) < 1e-3
    assert abs(float(F.crest_factor_db(x)[0]) - 10 * math.log10(2)) < 1e-3


def test_dynamic_spread_closed_form():
    sr = 16000
    seg = white(0.5, sr, 1, seed=9)[:, 0]
    loud, quiet = seg, seg * 10 ** (-12 / 20)
    a = np.tile(np.concatenate([loud, quiet]), 3)[:, None]
    spread = float(F.dynamic_spread(to_torch(a), sr)[0])
    assert abs(spread - 6.0) < 0.5  # two levels 12 dB apart for equal times -> 6 dB
    steady = float(F.dynamic_spread(to_torch(white(3.0, sr, 1, seed=10)), sr)[0])
    assert steady < 0.5
    frames = F.framewise_rms_db(to_torch(a), sr)
    assert frames.shape == (1, 1 + (len(a) - 800) // 400)


# ------------------------------------------------------------------ spectral


@pytest.mark.parametrize("freq", [440.0, 2000.0, 8000.0])
def test_centroid_of_sine_is_its_frequency(freq):
    sr = 44100
    c = F.spectral_centroid(to_torch(sine(0.5, sr, freq, 2)), sr)
    assert abs(float(c.mean[0]) / freq - 1) < 0.03
    assert c.frames.shape == (1, 1 + int(0.5 * sr) // 512)


def test_bandwidth_of_two_sines_closed_form():
    sr = 16000
    a = sine(0.5, sr, 1000.0) + sine(0.5, sr, 3000.0)
    bw = F.spectral_bandwidth(to_torch(a), sr)
    assert abs(float(bw.mean[0]) - 1000.0) < 30.0  # half the distance for two equal powers


def test_flatness_noise_vs_sine():
    sr = 16000
    noise = float(F.spectral_flatness(to_torch(white(0.5, sr, 1)), sr).mean[0])
    tone = float(F.spectral_flatness(to_torch(sine(0.5, sr, 1000.0)), sr).mean[0])
    assert abs(noise - math.exp(-0.5772)) < 0.05  # exponential power distribution
    assert tone < 1e-3 * noise


def test_rolloff_of_lowpassed_noise():
    sr, cutoff = 16000, 4000.0
    n = sr
    spec = np.fft.rfft(white(1.0, sr, 1, seed=11)[:, 0])
    spec[np.fft.rfftfreq(n, 1 / sr) > cutoff] = 0.0  # brick-wall low-pass
    a = np.fft.irfft(spec, n=n)[:, None]
    r = float(F.spectral_rolloff(to_torch(a), sr, pct=0.85).mean[0])
    assert r < cutoff
    assert abs(r - 0.85 * cutoff) < 0.05 * cutoff  # flat spectrum: 85 % of the power below 0.85 fc
    r50 = float(F.spectral_rolloff(to_torch(a), sr, pct=0.5).mean[0])
    assert abs(r50 - 0.5 * cutoff) < 0.05 * cutoff


def test_band_energies_put_a_sine_in_its_band():
    sr = 44100
    a = sine(0.5, sr, 1000.0, 2, amp=1.0)
    octave = F.band_energies(to_torch(a), sr, "octave")
    assert octave.shape == (1, 2, 10)
    assert int(octave[0, 0].argmax()) == 5  # 707-1414 Hz band
    assert abs(float(octave[0, 0, 5]) - (-3.01)) < 0.3  # the sine's mean square
    assert float(octave[0, 1].max()) < -100.0  # L = R: no side
    bark = F.band_energies(to_torch(a), sr, "bark", mid_side=False)
    assert bark.shape == (1, 1, 24)
    assert int(bark[0, 0].argmax()) == 8  # 920-1080 Hz critical band
    left_only = a.copy()
    left_only[:, 1] = 0.0
    ms = F.band_energies(to_torch(left_only), sr)
    torch.testing.assert_close(ms[0, 0, 5], ms[0, 1, 5])  # M = S = L / 2
    assert abs(float(ms[0, 0, 5]) - 20 * math.log10(0.5 / math.sqrt(2))) < 0.3


# ------------------------------------------------------------------ stereo


def test_stereo_width_and_imbalance():
    sr = 16000
    mono = white(0.5, sr, 1)
    same = np.repeat(mono, 2, axis=1)
    assert float(F.stereo_width(to_torch(same))[0]) < 1e-10
    anti = np.concatenate([mono, -mono], axis=1)
    assert float(F.stereo_width(to_torch(anti))[0]) > 1e6
    indep = white(2.0, sr, 2, seed=12)
    assert abs(float(F.stereo_width(to_torch(indep))[0]) - 1.0) < 0.1
    left = np.concatenate([mono, np.zeros_like(mono)], axis=1)
    assert abs(float(F.stereo_imbalance(to_torch(left))[0]) - 1.0) < 1e-6
    assert abs(float(F.stereo_imbalance(to_torch(left[:, ::-1]))[0]) + 1.0) < 1e-6
    assert abs(float(F.stereo_imbalance(to_torch(same))[0])) < 1e-6
    with pytest.raises(ValueError, match="1 or 2 channels"):
        F.stereo_width(torch.zeros(1, 3, 100))


def constant_power(x: np.ndarray, p: float) -> np.ndarray:
    theta = (p + 1) * math.pi / 4
    return np.stack([x * math.cos(theta), x * math.sin(theta)], axis=1)


def test_panning_spectrum_reads_constant_power_positions():
    sr = 44100
    positions = {250.0: -0.7, 1000.0: 0.0, 4000.0: 0.4}  # octave bands 2, 4, 6
    a = sum(constant_power(sine(1.0, sr, f, 1)[:, 0], p) for f, p in positions.items())
    spectrum = F.panning_spectrum(to_torch(a), sr, "octave")[0]
    for band, p in zip((3, 5, 7), positions.values()):
        assert abs(float(spectrum[band]) - p) < 0.05, (band, float(spectrum[band]), p)
    coarse = F.panning_spectrum(to_torch(a), sr, "coarse")[0]
    assert coarse.shape == (3,) and abs(float(coarse[2]) - 0.4) < 0.05


def test_panning_index_is_avendano_index_remapped():
    """(1 - psi) * sign(dir) of Avendano (2003), from scipy's STFT, mapped to the pan law."""
    sr = 16000
    rng = np.random.default_rng(13)
    a = rng.standard_normal((sr // 2, 2)) * np.array([0.3, 0.1]) + rng.standard_normal((sr // 2, 1)) * 0.2
    _, _, spec = scipy.signal.stft(a.T, nperseg=512, noverlap=384, window="hann", boundary="zeros")
    xl, xr = spec[0], spec[1]
    cross = np.abs(xl * np.conj(xr))
    psi = 2 * cross / (np.abs(xl) ** 2 + np.abs(xr) ** 2)
    direction = np.sign(cross / np.abs(xl) ** 2 - cross / np.abs(xr) ** 2)  # sign(psi_L - psi_R): + = right
    avendano = (1 - psi) * direction
    mapped = direction * (1 - 2 / np.pi * np.arcsin(np.clip(psi, 0, 1)))  # same monotone map
    ours = F.panning_index(to_torch(a, torch.float64), sr, n_fft=512, hop_length=128)[0].numpy().T
    k = min(ours.shape[1], mapped.shape[1])
    energetic = (np.abs(xl) ** 2 + np.abs(xr) ** 2)[:, :k] > 1e-6
    np.testing.assert_allclose(ours[:, :k][energetic], mapped[:, :k][energetic], atol=1e-4)  # EPS in |X|
    # and the order agrees with Avendano's own index
    assert np.all(np.sign(ours[:, :k][energetic]) == np.sign(avendano[:, :k][energetic]))


# ------------------------------------------------------------------ mix_features


def _three_items(sr: int, seconds: float = 0.6) -> torch.Tensor:
    items = [
        white(seconds, sr, 2, 0.1, 20),
        pink(seconds, sr, 2, 0.05, 21),
        constant_power(sine(seconds, sr, 700.0, 1)[:, 0], 0.3),
    ]
    return torch.cat([to_torch(a) for a in items])


def test_mix_features_keys_shapes_and_consistency():
    sr = 16000
    x = _three_items(sr)
    feats = F.mix_features(x, sr)
    assert set(feats) == {k for keys in F.FEATURE_CATEGORIES.values() for k in keys}
    assert set(F.features_by_category(feats)) == {"loudness", "spectral", "panning", "dynamics"}
    torch.testing.assert_close(feats["loudness/integrated_lufs"], F.integrated_loudness(x, sr))
    torch.testing.assert_close(feats["spectral/centroid_hz"], F.spectral_centroid(x, sr).mean)
    torch.testing.assert_close(feats["spectral/bandwidth_hz"], F.spectral_bandwidth(x, sr).mean)
    torch.testing.assert_close(feats["spectral/flatness"], F.spectral_flatness(x, sr).mean)
    torch.testing.assert_close(feats["spectral/rolloff_hz"], F.spectral_rolloff(x, sr).mean)
    torch.testing.assert_close(feats["spectral/band_energy_db"], F.band_energies(x, sr), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(feats["panning/panning_spectrum"], F.panning_spectrum(x, sr))
    torch.testing.assert_close(feats["dynamics/dynamic_spread_db"], F.dynamic_spread(x, sr))
    for key, value in feats.items():
        assert value.shape[0] == 3 and torch.isfinite(value).all(), key
    mono = F.mix_features(x[:, :1], sr)
    assert float(mono["panning/stereo_width"].abs().max()) == 0.0
    assert float(mono["panning/panning_spectrum"].abs().max()) < 1e-6


def test_mix_features_batched_equals_item_by_item():
    sr = 16000
    x = _three_items(sr)
    batched = F.mix_features(x, sr)
    for i in range(3):
        single = F.mix_features(x[i : i + 1], sr)
        for key in batched:
            torch.testing.assert_close(batched[key][i : i + 1], single[key], atol=1e-4, rtol=1e-5)


def test_mix_features_gradients_finite_at_silence_and_on_noise():
    sr = 16000
    for x0 in (torch.zeros(1, 2, 8000), _three_items(sr, 0.5)):
        x = x0.clone().requires_grad_(True)
        feats = F.mix_features(x, sr)
        sum(v.sum() for v in feats.values()).backward()
        assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: F.spectral_centroid(x, 8000, 64, 16).frames,
        lambda x: F.spectral_bandwidth(x, 8000, 64, 16).frames,
        lambda x: F.spectral_flatness(x, 8000, 64, 16).mean,
        lambda x: F.spectral_rolloff(x, 8000, 0.85, 64, 16).frames,
        lambda x: F.band_energies(x, 8000, "bark", True, 64, 16),
        lambda x: F.panning_spectrum(x, 8000, "octave", 64, 16),
        lambda x: torch.stack([F.stereo_width(x), F.stereo_imbalance(x), F.crest_factor_db(x)]),
        lambda x: F.framewise_rms_db(x, 8000, 4.0, 2.0),
    ],
    ids=["centroid", "bandwidth", "flatness", "rolloff", "bands", "panning", "stereo+crest", "framewise-rms"],
)
def test_gradcheck_tiny(fn):
    x = torch.randn(2, 2, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


def test_gradcheck_loudness_along_directions():
    """Integrated and short-term loudness (0.5 s at 8 kHz) checked along 3 random directions."""
    g = torch.Generator().manual_seed(1)
    base = 0.1 * torch.randn(1, 2, 4000, dtype=torch.float64, generator=g)
    dirs = 0.1 * torch.randn(3, 1, 2, 4000, dtype=torch.float64, generator=g)
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)

    def loudness(t: torch.Tensor) -> torch.Tensor:
        x = base + torch.einsum("d,dbcn->bcn", t, dirs)
        return torch.cat([F.integrated_loudness(x, 8000), F.short_term_loudness(x, 8000, 0.2, 0.1)[0]])

    assert torch.autograd.gradcheck(loudness, (theta,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_speed_report(record_property):
    """Reports (does not assert) the cost on 2 ch x 30 s at 44.1 kHz."""
    x = 0.1 * torch.randn(1, 2, 30 * 44100, generator=torch.Generator().manual_seed(0))
    F.integrated_loudness(x[..., :44100], 44100)  # warm-up
    t0 = time.perf_counter()
    F.integrated_loudness(x, 44100)
    t1 = time.perf_counter()
    F.mix_features(x, 44100)
    t2 = time.perf_counter()
    record_property("integrated_loudness_s", t1 - t0)
    record_property("mix_features_s", t2 - t1)
    print(f"\nintegrated_loudness 2ch x 30 s @44.1k: {t1 - t0:.3f} s; mix_features: {t2 - t1:.3f} s")
