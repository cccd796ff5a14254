"""Filters: RBJ biquads, FFT filtering, parametric EQ, delay and reverb against scipy and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal as ss
import torch

from neuromix.core.dsp import filters as F
from neuromix.core.errors import ConfigError

F64 = torch.float64
EQ_KINDS = ["low_shelf", "peaking", "peaking", "high_shelf"]


def _rbj_reference(kind: str, sr: float, f0: float, gain_db: float, q: float) -> tuple[np.ndarray, np.ndarray]:
    """Independent derivation: the cookbook's analog prototype, bilinear transform prewarped at f0."""
    big_a = 10.0 ** (gain_db / 40.0)
    sa = math.sqrt(big_a)
    b, a = {
        "lowpass": ([0.0, 0.0, 1.0], [1.0, 1.0 / q, 1.0]),
        "highpass": ([1.0, 0.0, 0.0], [1.0, 1.0 / q, 1.0]),
        "peaking": ([1.0, big_a / q, 1.0], [1.0, 1.0 / (big_a * q), 1.0]),
        "low_shelf": ([big_a, big_a * sa / q, big_a * big_a], [big_a, sa / q, 1.0]),
        "high_shelf": ([big_a * big_a, big_a * sa / q, big_a], [1.0, sa / q, big_a]),
    }[kind]
    wa = 2.0 * sr * math.tan(math.pi * f0 / sr)  # s -> s / wa puts the prototype's 1 rad/s at f0
    scale = np.array([1.0 / wa**2, 1.0 / wa, 1.0])
    bz, az = ss.bilinear(np.array(b) * scale, np.array(a) * scale, fs=sr)
    return bz / az[0], az / az[0]


def _amplitude_at(y: np.ndarray, freq: float, sr: float) -> float:
    """Least-squares amplitude of a sinusoid of known frequency in ``y`` (1-D)."""
    t = np.arange(y.shape[-1]) / sr
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t), np.ones_like(t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    return float(np.hypot(coef[0], coef[1]))


def _rt60_schroeder(h: np.ndarray, sr: float) -> float:
    """RT60 by Schroeder backward integration, line fit from -5 to -25 dB, extrapolated to -60 dB."""
    edc = np.cumsum(h[::-1] ** 2)[::-1]
    edc_db = 10.0 * np.log10(edc / edc[0])
    idx = np.nonzero((edc_db <= -5.0) & (edc_db >= -25.0))[0]
    slope, _ = np.polyfit(idx / sr, edc_db[idx], 1)
    return -60.0 / slope


# ----------------------------------------------------------------------------- biquads


@pytest.mark.parametrize("kind", F.BIQUAD_KINDS)
def test_coefficients_match_bilinear_analog_prototype(kind):
    sr = 44100
    cutoff = torch.tensor([40.0, 1000.0, 12000.0], dtype=F64)
    gain = torch.tensor([9.0, -6.0, 3.0], dtype=F64)
    q = torch.tensor([0.5, 2.0, 0.9], dtype=F64)
    b, a = F.biquad_coefficients(kind, sr, cutoff, gain, q)
    assert b.shape == (3, 3) and a.shape == (3, 3) and b.dtype == F64
    for i in range(3):
        rb, ra = _rbj_reference(kind, sr, float(cutoff[i]), float(gain[i]), float(q[i]))
        np.testing.assert_allclose(b[i].numpy(), rb, atol=1e-9, rtol=1e-7)
        np.testing.assert_allclose(a[i].numpy(), ra, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("kind", F.BIQUAD_KINDS)
def test_response_matches_freqz(kind):
    sr = 48000
    cutoff, gain = torch.tensor([80.0, 3000.0], dtype=F64), torch.tensor([6.0, -10.0], dtype=F64)
    b, a = F.biquad_coefficients(kind, sr, cutoff, gain, 1.3)
    freqs = np.concatenate([[0.0], np.geomspace(10.0, sr / 2, 300)])
    h = F.biquad_response(b, a, torch.tensor(freqs), sr)
    assert h.shape == (2, freqs.size) and h.dtype == torch.complex128
    for i in range(2):
        _, ref = ss.freqz(b[i].numpy(), a[i].numpy(), worN=freqs, fs=sr)
        np.testing.assert_allclose(h[i].numpy(), ref, atol=1e-4, rtol=0)
    # eq_response of a single band is the same response on the rfft grid
    n_fft = 1024
    grid = F.eq_response(sr, n_fft, [kind], torch.tensor([[80.0], [3000.0]], dtype=F64),
                         torch.tensor([[6.0], [-10.0]], dtype=F64), torch.full((2, 1), 1.3, dtype=F64))
    for i in range(2):
        _, ref = ss.freqz(b[i].numpy(), a[i].numpy(), worN=np.arange(n_fft // 2 + 1) * sr / n_fft, fs=sr)
        np.testing.assert_allclose(grid[i].numpy(), ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["highpass", "lowpass"])
@pytest.mark.parametrize("cutoff", [40.0, 1000.0, 15000.0])
def test_pass_filters_with_butterworth_q_are_butterworth(kind, cutoff):
    sr = 44100
    b, a = F.biquad_coefficients(kind, sr, torch.tensor([cutoff], dtype=F64), 0.0, 1.0 / math.sqrt(2.0))
    rb, ra = ss.butter(2, cutoff, btype=kind, fs=sr)
    np.testing.assert_allclose(b[0].numpy(), rb, atol=1e-6, rtol=0)
    np.testing.assert_allclose(a[0].numpy(), ra, atol=1e-6, rtol=0)


def test_cutoff_is_clamped_inside_nyquist_and_unknown_kind_raises():
    b, a = F.biquad_coefficients("lowpass", 8000, torch.tensor([0.0, 4000.0, 9000.0]), 0.0, 0.7)
    assert torch.isfinite(b).all() and torch.isfinite(a).all()
    # poles stay inside the unit circle
    assert (a[:, 2].abs() < 1).all()
    with pytest.raises(ConfigError, match="unknown biquad kind"):
        F.biquad_coefficients("bandpass", 8000, 100.0, 0.0, 1.0)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- FFT filter / EQ


def _eq_params(batch: int):
    cutoff = torch.tensor([[60.0, 250.0, 2500.0, 8000.0], [45.0, 700.0, 4000.0, 11000.0]], dtype=F64)[:batch]
    gain = torch.tensor([[4.0, -6.0, 5.0, -3.0], [-5.0, 3.0, -8.0, 6.0]], dtype=F64)[:batch]
    q = torch.tensor([[0.707, 1.5, 2.0, 0.707], [0.9, 0.8, 3.0, 0.6]], dtype=F64)[:batch]
    return cutoff, gain, q


def test_parametric_eq_matches_sosfilt_cascade():
    """FFT EQ == the same biquads run recursively (the FIR truncation error is far below 1e-4)."""
    sr = 44100
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, sr, generator=g, dtype=F64)
    cutoff, gain, q = _eq_params(2)
    y = F.parametric_eq(x, sr, EQ_KINDS, cutoff, gain, q)
    assert y.shape == x.shape and y.dtype == F64
    for i in range(2):
        sections = [F.biquad_coefficients(k, sr, cutoff[i, j], gain[i, j], q[i, j]) for j, k in enumerate(EQ_KINDS)]
        sos = np.concatenate([torch.cat([bb, aa], dim=-1).numpy() for bb, aa in sections])
        ref = ss.sosfilt(sos, x[i].numpy(), axis=-1)
        assert np.abs(y[i].numpy() - ref).max() < 1e-4


def test_fft_filter_is_convolution_with_truncated_fir():
    """fft_filter == linear convolution with the first n_fft//2 taps of irfft(response), any length."""
    n_fft = 64
    g = torch.Generator().manual_seed(2)
    fir = torch.randn(2, n_fft, generator=g, dtype=F64)  # longer than the block: gets truncated
    response = torch.fft.rfft(fir)
    gain = torch.tensor([[0.5, 2.0], [1.5, -1.0]], dtype=F64)
    for n in (20, 32, 300):
        x = torch.randn(2, 2, n, generator=g, dtype=F64)
        x_before = x.clone()
        y = F.fft_filter(x, response, gain=gain)  # n_fft inferred from the response
        assert torch.equal(x, x_before)
        for i in range(2):
            for c in range(2):
                ref = gain[i, c].item() * np.convolve(x[i, c].numpy(), fir[i, : n_fft // 2].numpy())[:n]
                np.testing.assert_allclose(y[i, c].numpy(), ref, atol=1e-10)
    # a mono input fans out to one output per response channel
    x = torch.randn(1, 1, 100, generator=g, dtype=F64)
    y = F.fft_filter(x, response[None], n_fft=n_fft)
    assert y.shape == (1, 2, 100)
    for c in range(2):
        np.testing.assert_allclose(y[0, c].numpy(), np.convolve(x[0, 0].numpy(), fir[c, :32].numpy())[:100], atol=1e-10)
    with pytest.raises(ValueError, match="bins"):
        F.fft_filter(x, response, n_fft=128)


@pytest.mark.parametrize("sr", [22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_sine_at_peaking_centre_changes_by_band_gain(sr, channels):
    freqs = [1000.0, 3150.0]
    gains = [6.0, -9.0]
    t = torch.arange(sr) / sr  # 1 s; measured on the last half (steady state)
    x = torch.stack([0.5 * torch.sin(2 * math.pi * f * t) for f in freqs])[:, None].expand(2, channels, sr)
    y = F.parametric_eq(x, sr, ["peaking"], torch.tensor(freqs)[:, None], torch.tensor(gains)[:, None],
                        torch.tensor([[2.0], [0.7]]))
    assert y.shape == x.shape
    for i in range(2):
        for c in range(channels):
            measured = 20 * math.log10(_amplitude_at(y[i, c, sr // 2 :].numpy(), freqs[i], sr) / 0.5)
            assert abs(measured - gains[i]) < 0.1, (sr, i, c, measured)


@pytest.mark.parametrize("sr", [22050, 44100, 48000])
@pytest.mark.parametrize("kind,corner", [("low_shelf", 150.0), ("high_shelf", 5000.0)])
def test_sine_at_shelf_corner_gets_half_the_gain(sr, kind, corner):
    gains = torch.tensor([[12.0], [-9.0]])
    t = torch.arange(sr) / sr
    x = (0.5 * torch.sin(2 * math.pi * corner * t)).expand(2, 1, sr)
    y = F.parametric_eq(x, sr, [kind], torch.full((2, 1), corner), gains, torch.tensor([[0.707], [1.5]]))
    for i in range(2):
        measured = 20 * math.log10(_amplitude_at(y[i, 0, sr // 2 :].numpy(), corner, sr) / 0.5)
        assert abs(measured - gains[i, 0].item() / 2) < 0.1, (kind, i, measured)


def test_parametric_eq_batched_equals_item_by_item():
    sr = 22050
    x = 0.1 * torch.randn(2, 2, sr // 2, generator=torch.Generator().manual_seed(3))
    cutoff, gain, q = (p.float() for p in _eq_params(2))
    batched = F.parametric_eq(x, sr, EQ_KINDS, cutoff, gain, q)
    for i in range(2):
        single = F.parametric_eq(x[i : i + 1], sr, EQ_KINDS, cutoff[i : i + 1], gain[i : i + 1], q[i : i + 1])
        assert (batched[i : i + 1] - single).abs().max() < 1e-6


def test_gradcheck_parametric_eq_parameters():
    sr = 8000
    x = torch.randn(2, 1, 96, generator=torch.Generator().manual_seed(4), dtype=F64)
    cutoff = torch.tensor([[300.0, 1200.0], [500.0, 2000.0]], dtype=F64, requires_grad=True)
    gain = torch.tensor([[4.0, -3.0], [-2.0, 5.0]], dtype=F64, requires_grad=True)
    q = torch.tensor([[0.8, 2.0], [1.2, 0.7]], dtype=F64, requires_grad=True)

    def fn(cutoff, gain, q):
        return F.parametric_eq(x, sr, ["low_shelf", "peaking"], cutoff, gain, q, n_fft=32)

    assert torch.autograd.gradcheck(fn, (cutoff, gain, q), eps=1e-6, atol=1e-6, fast_mode=True)


def test_gradcheck_fft_filter_signal_response_and_gain():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 1, 70, generator=g, dtype=F64, requires_grad=True)
    response = torch.fft.rfft(torch.randn(2, 2, 32, generator=g, dtype=F64)).requires_grad_(True)
    gain = torch.tensor([0.5, -2.0], dtype=F64, requires_grad=True)
    def fn(x, r, k):
        return F.fft_filter(x, r, gain=k)

    assert torch.autograd.gradcheck(fn, (x, response, gain), eps=1e-6, atol=1e-6, fast_mode=True)
    # response held fixed: the multiply runs in place on the signal's spectrum
    fixed = response.detach()
    assert torch.autograd.gradcheck(lambda x: F.fft_filter(x, fixed), (x,), eps=1e-6, atol=1e-6, fast_mode=True)


# ----------------------------------------------------------------------------- delay


@pytest.mark.parametrize("mix", [1.0, 0.25])
def test_delay_impulse_gives_geometric_echoes(mix):
    sr, n, d, fb = 8000, 1000, 100, 0.6
    x = torch.zeros(1, 1, n, dtype=F64)
    x[..., 0] = 1.0
    y = F.delay(x, sr, d * 1000.0 / sr, fb, mix)[0, 0].numpy()
    expected = np.zeros(n)
    expected[0] = 1.0 - mix
    expected[d::d] = mix * fb ** np.arange(len(expected[d::d]))
    np.testing.assert_allclose(y, expected, atol=1e-9)


def test_delay_matches_lfilter_comb_and_fractional_delay_is_a_sinc():
    sr, n = 8000, 4000
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 2, n, generator=g, dtype=F64)
    delays, fbs, mixes = torch.tensor([37.0, 250.0]), torch.tensor([0.9, 0.3]), torch.tensor([0.5, 0.8])
    y = F.delay(x, sr, delays * 1000.0 / sr, fbs, mixes)
    for i in range(2):
        d = int(delays[i])
        b = np.zeros(d + 1)
        b[d] = 1.0
        a = np.zeros(d + 1)
        a[0], a[d] = 1.0, -fbs[i].item()
        wet = ss.lfilter(b, a, x[i].numpy(), axis=-1)
        ref = (1 - mixes[i].item()) * x[i].numpy() + mixes[i].item() * wet
        np.testing.assert_allclose(y[i].numpy(), ref, atol=1e-8)
    # fractional delay, no feedback: a band-limited impulse centred at D
    imp = torch.zeros(1, 1, 2000, dtype=F64)
    imp[..., 0] = 1.0
    d = 500.4
    y = F.delay(imp, sr, d * 1000.0 / sr, 0.0, 1.0)[0, 0].numpy()
    k = np.arange(460, 540)
    np.testing.assert_allclose(y[k], np.sinc(k - d), atol=2e-3)


def test_delay_batched_equals_item_by_item_and_gradcheck():
    sr = 8000
    x = 0.1 * torch.randn(2, 2, 2000, generator=torch.Generator().manual_seed(6))
    delay_ms, fb, mix = torch.tensor([12.3, 40.0]), torch.tensor([0.5, 0.9]), torch.tensor([0.3, 1.0])
    batched = F.delay(x, sr, delay_ms, fb, mix)
    for i in range(2):
        single = F.delay(x[i : i + 1], sr, delay_ms[i : i + 1], fb[i : i + 1], mix[i : i + 1])
        assert (batched[i : i + 1] - single).abs().max() < 1e-6

    xs = torch.randn(1, 2, 128, generator=torch.Generator().manual_seed(7), dtype=F64, requires_grad=True)
    params = [torch.tensor([10.37], dtype=F64), torch.tensor([0.55], dtype=F64), torch.tensor([0.6], dtype=F64)]
    for p in params:
        p.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, d, f, m: F.delay(x, 1000, d, f, m), (xs, *params), eps=1e-6, atol=1e-6,
                                    fast_mode=True)


# ----------------------------------------------------------------------------- reverb


def test_reverb_ir_decay_matches_rt60():
    """Schroeder RT60 of the IR, ensemble-averaged over 4 seeds x 2 channels (ISO 3382-style averaging)."""
    sr, decay, damping = 16000, 0.8, 0.4
    decay_t = torch.tensor([decay], dtype=F64)
    irs = [F.reverb_ir(sr, 2.0, decay_t, damping=damping, predelay_ms=0.0, seed=s) for s in range(4)]
    assert irs[0].shape == (1, 2, 2 * sr)
    low = ss.butter(8, 200.0, btype="lowpass", fs=sr, output="sos")  # bands <= 250 Hz decay in decay_s
    high = ss.butter(8, 7000.0, btype="highpass", fs=sr, output="sos")  # only the 8 kHz band is above 5.7 kHz
    for sos, expected in ((low, decay), (high, decay * damping)):
        energy = sum((ss.sosfiltfilt(sos, ir[0].numpy(), axis=-1) ** 2).sum(axis=0) for ir in irs)
        rt60 = _rt60_schroeder(np.sqrt(energy), sr)
        assert abs(rt60 - expected) < 0.1 * expected, (expected, rt60)


def test_reverb_ir_seeded_decorrelated_unit_energy_with_predelay():
    sr = 16000
    a = F.reverb_ir(sr, 1.0, 0.5, damping=0.5, predelay_ms=25.0, seed=11)
    b = F.reverb_ir(sr, 1.0, 0.5, damping=0.5, predelay_ms=25.0, seed=11)
    c = F.reverb_ir(sr, 1.0, 0.5, damping=0.5, predelay_ms=25.0, seed=12)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.01
    assert abs(a.square().sum(-1).mean().item() - 1.0) < 1e-4
    assert a[..., :400].abs().max() < 1e-5 and a[..., 400:420].abs().max() > 1e-3  # 25 ms = 400 samples
    corr = np.corrcoef(a[0, 0].numpy(), a[0, 1].numpy())[0, 1]
    assert abs(corr) < 0.1, corr


@pytest.mark.parametrize("n", [40000, 3000])  # block-convolution path and full-length path
def test_reverb_is_convolution_with_its_ir(n):
    sr = 8000
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 1, n, generator=g, dtype=F64)
    decay = torch.tensor([0.3, 0.6], dtype=F64)
    wet = F.reverb(x, sr, decay, damping=0.5, predelay_ms=5.0, seed=1, ir_seconds=1.0)
    ir = F.reverb_ir(sr, 1.0, decay, damping=0.5, predelay_ms=5.0, seed=1)
    assert wet.shape == (2, 2, n)
    for i in range(2):
        for c in range(2):
            ref = ss.fftconvolve(x[i, 0].numpy(), ir[i, c].numpy())[:n]
            np.testing.assert_allclose(wet[i, c].numpy(), ref, atol=1e-9)


def test_reverb_batched_equals_item_by_item_and_gradcheck():
    sr = 8000
    x = 0.1 * torch.randn(2, 2, 4000, generator=torch.Generator().manual_seed(9))
    decay, damping, pre = torch.tensor([0.2, 0.5]), torch.tensor([0.3, 0.9]), torch.tensor([0.0, 12.5])
    batched = F.reverb(x, sr, decay, damping=damping, predelay_ms=pre, ir_seconds=0.5)
    for i in range(2):
        single = F.reverb(x[i : i + 1], sr, decay[i : i + 1], damping=damping[i : i + 1], predelay_ms=pre[i : i + 1],
                          ir_seconds=0.5)
        assert (batched[i : i + 1] - single).abs().max() < 1e-6

    xs = torch.randn(1, 1, 128, generator=torch.Generator().manual_seed(10), dtype=F64)
    params = [torch.tensor([v], dtype=F64, requires_grad=True) for v in (0.01, 0.5, 1.3)]

    def fn(decay, damping, pre):
        return F.reverb(xs, sr, decay, damping=damping, predelay_ms=pre, ir_seconds=0.016)

    assert torch.autograd.gradcheck(fn, params, eps=1e-6, atol=1e-6, fast_mode=True)
