"""Tests of neuromix.core.signals against closed forms and scipy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal as sps

from neuromix.core import signals
from neuromix.core.errors import ConfigError

SR = 44100


def _db(x: np.ndarray | float) -> np.ndarray | float:
    return 20.0 * np.log10(np.abs(x))


def _sine_amplitude(x: np.ndarray, freq_hz: float, sample_rate: float) -> float:
    """Least-squares amplitude of a sine of known frequency in ``x``."""
    t = np.arange(len(x)) / sample_rate
    basis = np.stack([np.sin(2 * np.pi * freq_hz * t), np.cos(2 * np.pi * freq_hz * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x.astype(np.float64), rcond=None)
    return float(np.hypot(*coef))


# ----------------------------------------------------------------------------- simple signals


def test_impulse_position_and_amplitude() -> None:
    x = signals.impulse(0.01, 48000, delay_s=0.001, amplitude=0.5)
    assert x.dtype == torch.float32 and x.shape == (480,)
    assert int(torch.argmax(x.abs())) == 48
    assert float(x[48]) == 0.5
    assert float(x.abs().sum()) == 0.5


def test_sine_matches_closed_form_and_fft_peak() -> None:
    x = signals.sine(1.0, 48000, 997.0, amplitude=0.25, phase=0.3)
    assert x.dtype == torch.float32 and x.shape == (48000,)
    n = np.arange(48000)
    np.testing.assert_allclose(x.numpy(), 0.25 * np.sin(2 * np.pi * 997.0 * n / 48000 + 0.3), atol=1e-6)
    spectrum = np.abs(np.fft.rfft(x.numpy()))  # 1 Hz bins, integer number of periods
    assert int(np.argmax(spectrum)) == 997
    assert spectrum[997] * 2 / 48000 == pytest.approx(0.25, rel=1e-5)

    # non-integer frequency: parabolic interpolation of the Hann-windowed log spectrum
    y = signals.sine(1.0, 48000, 1234.56).numpy()
    mag = np.log(np.abs(np.fft.rfft(y * np.hanning(len(y)))))
    k = int(np.argmax(mag))
    delta = 0.5 * (mag[k - 1] - mag[k + 1]) / (mag[k - 1] - 2 * mag[k] + mag[k + 1])
    assert (k + delta) * 48000 / len(y) == pytest.approx(1234.56, abs=0.02)


def test_chirp_matches_scipy() -> None:
    seconds, sr = 0.5, 16000
    x = signals.chirp(seconds, sr, 100.0, 5000.0, amplitude=0.7).numpy()
    t = np.arange(len(x)) / sr
    ref = 0.7 * sps.chirp(t, f0=100.0, t1=seconds, f1=5000.0, method="linear", phi=-90.0)
    np.testing.assert_allclose(x, ref, atol=2e-6)
    down = signals.chirp(seconds, sr, 5000.0, 100.0).numpy()
    ref_down = sps.chirp(t, f0=5000.0, t1=seconds, f1=100.0, method="linear", phi=-90.0)
    np.testing.assert_allclose(down, ref_down, atol=2e-6)


def test_schroeder_multitone_has_lower_crest_factor() -> None:
    freqs = [100.0 * k for k in range(1, 33)]  # 32 harmonics of 100 Hz; 1 s = 100 periods
    sch = signals.multitone(1.0, 48000, freqs, peak=0.5).numpy().astype(np.float64)
    zero = signals.multitone(1.0, 48000, freqs, peak=0.5, schroeder=False).numpy().astype(np.float64)
    for x in (sch, zero):
        assert np.max(np.abs(x)) == pytest.approx(0.5, rel=1e-6)
    crest_sch = np.max(np.abs(sch)) / np.sqrt(np.mean(sch**2))
    crest_zero = np.max(np.abs(zero)) / np.sqrt(np.mean(zero**2))
    # zero phase: all 32 cosines peak together -> crest sqrt(2 * 32) = 8
    assert crest_zero == pytest.approx(8.0, rel=1e-3)
    assert crest_sch < 2.0 < crest_zero
    # the phases do not change the magnitude spectrum: all tones equal within 0.01 dB
    spectrum = np.abs(np.fft.rfft(sch))
    tones = spectrum[[int(f) for f in freqs]]
    assert np.ptp(_db(tones)) < 0.01
    assert np.sum(np.delete(spectrum, [int(f) for f in freqs]) ** 2) < 1e-8 * np.sum(tones**2)


@pytest.mark.parametrize(("color", "slope_db_per_octave"), [("white", 0.0), ("pink", -3.01), ("brown", -6.02)])
def test_noise_spectral_slope_and_rms(color: str, slope_db_per_octave: float) -> None:
    x = signals.noise(2.0, SR, color=color, rms=0.2, seed=3)
    assert x.dtype == torch.float32 and x.shape == (2 * SR,)
    assert float(x.double().square().mean().sqrt()) == pytest.approx(0.2, rel=1e-5)
    freqs, psd = sps.welch(x.numpy().astype(np.float64), fs=SR, nperseg=4096)
    band = (freqs >= 50.0) & (freqs <= 10000.0)
    # average into 1/3-octave bands so every octave weighs the same in the fit
    edges = 50.0 * 2.0 ** (np.arange(0, 24) / 3.0)
    centres, levels = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = band & (freqs >= lo) & (freqs < hi)
        if np.any(sel):
            centres.append(np.log2(np.sqrt(lo * hi)))
            levels.append(10.0 * np.log10(np.mean(psd[sel])))
    slope = np.polyfit(centres, levels, 1)[0]
    assert slope == pytest.approx(slope_db_per_octave, abs=0.5)


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
def test_noise_is_seeded(color: str) -> None:
    a = signals.noise(0.2, SR, color=color, seed=7)
    b = signals.noise(0.2, SR, color=color, seed=7)
    c = signals.noise(0.2, SR, color=color, seed=8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-3)
    if color != "brown":  # brown noise is dominated by its few lowest bins: chance correlation
        assert float(torch.corrcoef(torch.stack([a, c]))[0, 1].abs()) < 0.3


def _harmonic_check(x: np.ndarray, f0: int, expected: dict[int, float]) -> None:
    """``x`` spans exactly 1 s: check harmonic amplitudes and that nothing else (no alias) is there."""
    spectrum = np.fft.rfft(x.astype(np.float64)) * 2.0 / len(x)
    harmonic_bins = np.arange(f0, len(spectrum), f0)
    for k, amp in expected.items():
        if amp == 0.0:
            assert np.abs(spectrum[k * f0]) < 1e-6
        else:
            assert _db(spectrum[k * f0]) - _db(amp) == pytest.approx(0.0, abs=0.1)
    other = np.delete(np.abs(spectrum) ** 2, harmonic_bins)
    assert np.sum(other) < 1e-10 * np.sum(np.abs(spectrum) ** 2)


def test_square_and_saw_are_band_limited_fourier_series() -> None:
    f0, amp = 1100, 0.8  # 1 s at 44.1 kHz = 1100 periods; harmonics 1..20 lie below Nyquist
    top = int(np.ceil(SR / 2 / f0)) - 1
    assert top == 20
    sq = signals.square(1.0, SR, f0, amplitude=amp).numpy()
    sq_expected = {k: (4 * amp / (np.pi * k) if k % 2 else 0.0) for k in range(1, top + 1)}
    _harmonic_check(sq, f0, sq_expected)
    sw = signals.saw(1.0, SR, f0, amplitude=amp).numpy()
    _harmonic_check(sw, f0, {k: 2 * amp / (np.pi * k) for k in range(1, top + 1)})
    # polarity and shape: a rising ramp from -A to A (value 0 at t = 0)
    ideal = 2 * amp * (np.mod(f0 * np.arange(SR) / SR + 0.5, 1.0) - 0.5)
    assert np.corrcoef(sw, ideal)[0, 1] > 0.95
    # the check can fail: a naive (aliasing) square wave puts energy between the harmonics
    naive = amp * np.sign(np.sin(2 * np.pi * f0 * np.arange(SR) / SR))
    with pytest.raises(AssertionError):
        _harmonic_check(naive, f0, sq_expected)


def test_stepped_sine_levels() -> None:
    levels = [-40.0, -20.0, -6.0, 0.0, -12.5]
    x, starts = signals.stepped_sine(0.1, 48000, 1000.0, levels)
    step = 4800
    assert x.dtype == torch.float32 and x.shape == (step * len(levels),)
    assert starts.dtype == torch.int64 and starts.tolist() == [i * step for i in range(len(levels))]
    for start, level in zip(starts.tolist(), levels):
        segment = x[start : start + step].numpy()
        assert _db(_sine_amplitude(segment, 1000.0, 48000)) == pytest.approx(level, abs=0.05)
        assert _db(np.max(np.abs(segment))) == pytest.approx(level, abs=0.05)


def test_tone_bursts_jump_indices() -> None:
    sr, freq = 48000, 997.0
    bursts = signals.tone_bursts(
        sr, freq, low_db=-30.0, high_db=-10.0, on_seconds=0.05, off_seconds=0.1, repeats=3, lead_seconds=0.02
    )
    assert bursts.up_indices.tolist() == [960, 960 + 7200, 960 + 14400]
    assert bursts.down_indices.tolist() == [960 + 2400, 960 + 9600, 960 + 16800]
    x = bursts.signal.numpy().astype(np.float64)
    assert len(x) == 960 + 3 * 7200
    # envelope = signal / continuous sine (phase 0 at sample 0), where the sine is not tiny
    reference = np.sin(2 * np.pi * freq * np.arange(len(x)) / sr)
    usable = np.abs(reference) > 0.05
    expected = np.full(len(x), 10 ** (-30 / 20))
    for up, down in zip(bursts.up_indices.tolist(), bursts.down_indices.tolist()):
        expected[up:down] = 10 ** (-10 / 20)
        # the sample before the jump is at the old level, the jump sample at the new one
        for index, level in ((up - 1, -30.0), (up, -10.0), (down - 1, -10.0), (down, -30.0)):
            assert abs(reference[index]) > 0.05  # (chosen so: 997 Hz is not a divisor of the rate)
            assert _db(x[index] / reference[index]) == pytest.approx(level, abs=1e-3)
    np.testing.assert_allclose(x[usable] / reference[usable], expected[usable], rtol=1e-4)


# ----------------------------------------------------------------------------- swept sine


@pytest.fixture(scope="module")
def sweep() -> signals.Sweep:
    return signals.exp_sweep(2.0, SR, 20.0, 20000.0, amplitude=0.5)


def test_sweep_is_synchronised(sweep: signals.Sweep) -> None:
    f1_l = sweep.f1_hz * sweep.rate_L
    assert f1_l == pytest.approx(round(f1_l), abs=1e-9) and round(f1_l) >= 1
    assert sweep.duration_s == pytest.approx(2.0, abs=0.5 / sweep.f1_hz * math.log(1000.0))
    x = sweep.signal.numpy().astype(np.float64)
    assert sweep.signal.dtype == torch.float32 and len(x) == round(sweep.duration_s * SR)
    assert np.max(np.abs(x)) == pytest.approx(0.5, rel=1e-3)
    # middle part (no fades): x(t) = A sin(2 pi f1 L (exp(t/L) - 1))
    t = np.arange(len(x)) / SR
    ideal = 0.5 * np.sin(2 * np.pi * f1_l * np.expm1(t / sweep.rate_L))
    mid = slice(len(x) // 4, 3 * len(x) // 4)
    np.testing.assert_allclose(x[mid], ideal[mid], atol=1e-6)
    # synchronisation: the 3rd harmonic of the sweep is the sweep advanced by L ln 3
    shift = sweep.rate_L * np.log(3.0)
    ideal3 = 0.5 * np.sin(3 * 2 * np.pi * f1_l * np.expm1(t / sweep.rate_L))
    advanced = 0.5 * np.sin(2 * np.pi * f1_l * np.expm1((t + shift) / sweep.rate_L))
    np.testing.assert_allclose(ideal3[mid], advanced[mid], atol=1e-6)


def test_sweep_inverse_filter_gives_an_impulse(sweep: signals.Sweep) -> None:
    x = sweep.signal.numpy().astype(np.float64)
    out = sps.fftconvolve(x, sweep.inverse_filter.numpy().astype(np.float64))
    n = len(x)
    assert int(np.argmax(np.abs(out))) == n
    window = out[n - 4096 : n + 4096]
    freqs = np.fft.rfftfreq(len(window), 1 / SR)
    mag = _db(np.fft.rfft(window))
    band = (freqs >= 100.0) & (freqs <= 16000.0)
    assert np.max(np.abs(mag[band])) < 0.5


def test_sweep_recovers_fir_magnitude(sweep: signals.Sweep) -> None:
    fir = sps.firwin2(301, [0, 100, 1000, 5000, 12000, SR / 2], [0.5, 0.5, 1.0, 2.0, 0.7, 0.3], fs=SR)
    y = sps.fftconvolve(sweep.signal.numpy().astype(np.float64), fir)  # includes the tail
    result = signals.deconvolve(torch.from_numpy(y), sweep, ir_length=8192, num_harmonics=1, pre_samples=4096)
    assert result.linear_ir.shape == (8192,) and result.linear_ir.dtype == torch.float64
    n_fft = 16384
    freqs = np.fft.rfftfreq(n_fft, 1 / SR)
    measured = np.fft.rfft(result.linear_ir.numpy(), n_fft)
    _, reference = sps.freqz(fir, worN=freqs, fs=SR)
    band = (freqs >= 50.0) & (freqs <= 16000.0)
    error_db = _db(measured[band]) - _db(reference[band])
    assert np.max(np.abs(error_db)) < 0.5
    # the delay is found too: the FIR's centre (150 samples) after time zero
    assert int(np.argmax(np.abs(result.linear_ir.numpy()))) == 4096 + 150


def _fourier_coefficients(fn, amplitude: float, orders: int = 6) -> np.ndarray:
    """Complex Fourier coefficients ``c_k`` of ``fn(A sin theta)``; ``sin`` has ``c_1 = -1j``."""
    m = 1 << 14
    theta = 2 * np.pi * np.arange(m) / m
    return (np.fft.rfft(fn(amplitude * np.sin(theta))) * 2.0 / m)[: orders + 1]


def _harmonic_spectra(response: np.ndarray, sweep: signals.Sweep) -> tuple[np.ndarray, list[np.ndarray]]:
    result = signals.deconvolve(torch.from_numpy(response), sweep, ir_length=4096, num_harmonics=3, pre_samples=2048)
    assert len(result.harmonic_irs) == 2 and all(h.shape == (4096,) for h in result.harmonic_irs)
    freqs = np.fft.rfftfreq(4096, 1 / SR)
    band = (freqs >= 200.0) & (freqs <= 2000.0)
    spectra = [np.fft.rfft(h.numpy())[band] for h in [result.linear_ir, *result.harmonic_irs]]
    return spectra[0], spectra[1:]


@pytest.mark.parametrize("kind", ["tanh", "asymmetric_tanh"])
def test_sweep_harmonic_levels_match_fourier_series(sweep: signals.Sweep, kind: str) -> None:
    gain, offset = 2.0, 0.3
    if kind == "tanh":
        def fn(v):
            return np.tanh(gain * v)
    else:
        def fn(v):
            return np.tanh(gain * (v + offset)) - np.tanh(gain * offset)
    x = sweep.signal.numpy().astype(np.float64)
    response = fn(np.concatenate([x, np.zeros(2048)]))
    h1, (h2, h3) = _harmonic_spectra(response, sweep)
    c = _fourier_coefficients(fn, sweep.amplitude)
    mean = lambda h: float(np.mean(np.abs(h)))  # noqa: E731

    # linear part: |H1| = |c1| / A
    assert _db(mean(h1)) == pytest.approx(_db(abs(c[1]) / sweep.amplitude), abs=0.1)
    # odd harmonic: |H3| / |H1| = |c3| / |c1|, phase synchronised (ratio phase = arg(c3 / c1))
    assert _db(mean(h3) / mean(h1)) == pytest.approx(_db(abs(c[3] / c[1])), abs=1.0)
    phase3 = np.angle(h3 / h1 / (c[3] / c[1]), deg=True)
    assert np.max(np.abs(phase3)) < 2.0
    if kind == "tanh":
        # tanh is odd: no even harmonics
        assert _db(mean(h2) / mean(h1)) < -50.0
    else:
        assert _db(mean(h2) / mean(h1)) == pytest.approx(_db(abs(c[2] / c[1])), abs=1.0)
        phase2 = np.angle(h2 / h1 / (c[2] / c[1]), deg=True)
        assert np.max(np.abs(phase2)) < 2.0


def test_deconvolve_identity_batched_and_dtype() -> None:
    sweep = signals.exp_sweep(1.0, 16000, 50.0, 7000.0, amplitude=0.5)
    x = sweep.signal
    tail = torch.zeros(1000)
    items = [torch.cat([x, tail]), torch.cat([0.5 * x, tail]), torch.cat([torch.zeros(10), x[:-10], tail])]
    batch = torch.stack(items).reshape(3, 1, -1)
    result = signals.deconvolve(batch, sweep, ir_length=512, num_harmonics=4)
    assert result.linear_ir.shape == (3, 1, 512) and result.linear_ir.dtype == torch.float32
    assert len(result.harmonic_irs) == 3 and result.harmonic_irs[0].shape == (3, 1, 512)
    for i, item in enumerate(items):
        single = signals.deconvolve(item, sweep, ir_length=512, num_harmonics=4)
        torch.testing.assert_close(result.linear_ir[i, 0], single.linear_ir, atol=1e-6, rtol=0)
        torch.testing.assert_close(result.harmonic_irs[2][i, 0], single.harmonic_irs[2], atol=1e-6, rtol=0)
    peaks = result.linear_ir[:, 0].abs().argmax(dim=-1).tolist()
    assert peaks == [0, 0, 10]
    ratio = float(result.linear_ir[1, 0, 0] / result.linear_ir[0, 0, 0])
    assert ratio == pytest.approx(0.5, rel=1e-5)
    # a linear system has (almost) no harmonic responses
    assert float(result.harmonic_irs[0].abs().max()) < 1e-3 * float(result.linear_ir.abs().max())


# ----------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    "call",
    [
        lambda: signals.impulse(0.0, SR),
        lambda: signals.impulse(0.01, SR, delay_s=0.02),
        lambda: signals.sine(1.0, SR, 0.0),
        lambda: signals.sine(1.0, SR, SR / 2),
        lambda: signals.sine(-1.0, SR, 100.0),
        lambda: signals.sine(1.0, 0, 100.0),
        lambda: signals.sine(float("nan"), SR, 100.0),
        lambda: signals.multitone(1.0, SR, []),
        lambda: signals.multitone(1.0, SR, [100.0, 30000.0]),
        lambda: signals.multitone(1.0, SR, [100.0], peak=0.0),
        lambda: signals.noise(1.0, SR, color="blue"),  # type: ignore[arg-type]
        lambda: signals.noise(1.0, SR, rms=-1.0),
        lambda: signals.chirp(1.0, SR, 100.0, 25000.0),
        lambda: signals.square(1.0, SR, 0.0),
        lambda: signals.saw(1.0, SR, 30000.0),
        lambda: signals.stepped_sine(0.1, SR, 1000.0, []),
        lambda: signals.stepped_sine(0.0, SR, 1000.0, [0.0]),
        lambda: signals.tone_bursts(SR, 1000.0, low_db=-10, high_db=-20, on_seconds=0.1, off_seconds=0.1),
        lambda: signals.tone_bursts(SR, 1000.0, low_db=-30, high_db=-10, on_seconds=0.1, off_seconds=0.1, repeats=0),
        lambda: signals.tone_bursts(SR, 1000.0, low_db=-30, high_db=-10, on_seconds=0.0, off_seconds=0.1),
        lambda: signals.exp_sweep(1.0, SR, 2000.0, 1000.0),
        lambda: signals.exp_sweep(1.0, SR, 20.0, SR / 2),
        lambda: signals.exp_sweep(1.0, SR, 0.0, 1000.0),
        lambda: signals.exp_sweep(0.001, SR, 20.0, 20000.0),
        lambda: signals.exp_sweep(1.0, SR, 20.0, 20000.0, fade_s=0.6),
    ],
)
def test_invalid_arguments_raise(call) -> None:
    with pytest.raises(ValueError) as info:
        call()
    assert isinstance(info.value, ConfigError)
    assert str(info.value)


def test_deconvolve_rejects_bad_inputs(sweep: signals.Sweep) -> None:
    x = sweep.signal
    with pytest.raises(ValueError, match="fewer than the sweep"):
        signals.deconvolve(x[:-1], sweep, ir_length=256)
    with pytest.raises(ConfigError, match="overlaps"):
        signals.deconvolve(x, sweep, ir_length=20000, num_harmonics=5)
    with pytest.raises(ConfigError, match="ir_length"):
        signals.deconvolve(x, sweep, ir_length=0)
    with pytest.raises(ConfigError, match="pre_samples"):
        signals.deconvolve(x, sweep, ir_length=256, pre_samples=256)


def test_deconvolve_is_differentiable() -> None:
    sweep = signals.exp_sweep(0.01, 4000, 200.0, 1000.0, fade_s=0.0)  # 32 samples, f1 L = 1
    response = torch.randn(2, len(sweep.signal) + 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    response.requires_grad_(True)

    def fn(y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = signals.deconvolve(y, sweep, ir_length=6, num_harmonics=2, pre_samples=1)
        return (result.linear_ir, *result.harmonic_irs)

    assert torch.autograd.gradcheck(fn, (response,))
