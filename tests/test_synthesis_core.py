"""Synthesis head building blocks: modulation, oscillators, analysis, safety, feedback maths, schema bounds.

No network is involved here; references are closed forms, scipy.signal and scipy.stats.
"""

from __future__ import annotations

import cmath
import json
import math

import numpy as np
import pytest
import scipy.signal
import scipy.stats
import torch

from neuromix.core.errors import ConfigError
from neuromix.synthesis.analysis import cents, decay_time, describe, estimate_f0, spearman
from neuromix.synthesis.excitation import Slot, generate, harmonic_oscillator, midi_to_hz, parse_slot
from neuromix.synthesis.feedback import _period_mean, loop_delay
from neuromix.synthesis.modulation import parse_modulation
from neuromix.synthesis.safety import DC_LIMIT, dc_block, make_safe, true_peak_db
from neuromix.synthesis.schema import LIMITS, parse_document

SR = 44100


def _scipy_true_peak_db(x: torch.Tensor) -> float:
    up = scipy.signal.resample_poly(x.double().numpy(), 4, 1, axis=-1)
    return 20 * math.log10(max(np.abs(up).max(), np.abs(x.double().numpy()).max(), 1e-10))


# --------------------------------------------------------------------------- modulation


def test_modulation_constant_envelope_and_lfo_values():
    t = torch.tensor([0.0, 0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    const = parse_modulation(1.5, "x")
    assert const.is_constant and torch.equal(const.at(t), torch.full((5,), 1.5, dtype=torch.float64))
    env = parse_modulation({"points": [[1.0, 0.0], [2.0, 4.0]], "curve": "linear"}, "x")
    torch.testing.assert_close(env.at(t), torch.tensor([0.0, 0.0, 0.0, 4.0, 4.0], dtype=torch.float64))
    smooth = parse_modulation({"points": [[0.0, 0.0], [2.0, 1.0]], "curve": "smooth"}, "x")
    # smoothstep 3u^2 - 2u^3 at u = 0.25 and 0.5
    torch.testing.assert_close(
        smooth.at(torch.tensor([0.5, 1.0], dtype=torch.float64)), torch.tensor([0.15625, 0.5], dtype=torch.float64)
    )
    lfo = parse_modulation({"value": 1.0, "lfo": {"rate_hz": 2.0, "depth": 0.5}}, "x")
    times = torch.linspace(0, 1, 101, dtype=torch.float64)
    torch.testing.assert_close(lfo.at(times), 1.0 + 0.5 * torch.sin(2 * math.pi * 2.0 * times))
    assert not lfo.is_constant and lfo.bounds() == (0.5, 1.5)


@pytest.mark.parametrize("shape", ["sine", "triangle", "square"])
def test_lfo_shapes_are_continuous_and_bounded(shape):
    mod = parse_modulation({"value": 0.0, "lfo": {"rate_hz": 3.0, "depth": 1.0, "shape": shape}}, "x")
    t = torch.arange(0, 2 * SR, dtype=torch.float64) / SR
    v = mod.at(t)
    assert float(v.abs().max()) <= 1.0 + 1e-9 and float(v.max()) > 0.99
    # continuity: steepest slope 2 pi f * 4 / tanh(4) (rounded square), not a jump of 2
    assert float(v.diff().abs().max()) < 2 * math.pi * 3.0 * 4.01 / SR


def test_modulation_validation_names_the_field():
    with pytest.raises(ConfigError, match=r"amount\.lfo\.rate_hz"):
        parse_modulation({"value": 0.5, "lfo": {"rate_hz": -1, "depth": 0.1}}, "amount", low=0, high=1)
    with pytest.raises(ConfigError, match=r"amount: with its LFO"):
        parse_modulation({"value": 0.9, "lfo": {"rate_hz": 1, "depth": 0.5}}, "amount", low=0, high=1)
    with pytest.raises(ConfigError, match=r"amount\.points\[1\]: times must not decrease"):
        parse_modulation({"points": [[1.0, 0.0], [0.5, 1.0]]}, "amount")
    with pytest.raises(ConfigError, match="cannot vary over time"):
        parse_modulation({"value": 1.0}, "gain", allow_time=False)


# --------------------------------------------------------------------------- oscillators


@pytest.mark.parametrize("freq", [55.0, 440.0, 3520.0])
def test_oscillator_is_band_limited_and_in_tune(freq):
    slot = parse_slot({"signal": "saw", "level_db": -6.0, "fade_ms": 0.0}, "s")
    x = generate(slot, SR, SR, freq, seed=0)
    assert abs(float(x.abs().max()) - 10 ** (-6 / 20)) < 1e-5
    spec = np.abs(np.fft.rfft(x.double().numpy()))  # 1 s at SR: bin k is k Hz
    harmonics = np.arange(int(freq), SR // 2, int(freq))
    off = np.ones_like(spec, dtype=bool)
    for h in harmonics:
        off[max(0, h - 2) : h + 3] = False
    # no aliasing or interpolation images: everything between harmonics is > 45 dB down
    assert spec[off].max() < spec.max() * 10 ** (-45 / 20)
    assert abs(cents(estimate_f0(x, SR, fmax=5000.0), freq)) < 0.05


def test_saw_matches_the_core_band_limited_saw():
    from neuromix.core.signals import saw

    ours = harmonic_oscillator(
        SR // 4, SR, 220.0, torch.tensor([2 / math.pi * (-1) ** (k + 1) / k for k in range(1, 200)])
    )
    ref = saw(0.25, SR, 220.0)
    assert float((ours - ref).abs().max()) < 2e-3


def test_slots_follow_pitch_and_are_seeded():
    noise = parse_slot({"signal": "noise", "params": {"color": "pink"}}, "s")
    a, b = generate(noise, 1000, SR, 440.0, seed=1), generate(noise, 1000, SR, 440.0, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, generate(noise, 1000, SR, 440.0, seed=2))
    tone = Slot("sine", pitch_ratio=2.0, detune_cents=100.0, fade_ms=0.0)
    x = generate(tone, SR, SR, midi_to_hz(57), seed=0)
    assert abs(cents(estimate_f0(x, SR), 440.0 * 2 ** (1 / 12))) < 0.05
    with pytest.raises(ConfigError, match=r"slots\[0\]\.signal"):
        parse_slot({"signal": "kazoo"}, "slots[0]")
    with pytest.raises(ConfigError, match="outside"):
        generate(Slot("sine", pitch_ratio=16.0), 100, 8000, 440.0, seed=0)


# --------------------------------------------------------------------------- analysis


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 30).astype(float)
    b = a + rng.normal(0, 1, 30)
    assert spearman(a, b) == pytest.approx(scipy.stats.spearmanr(a, b).statistic, abs=1e-12)
    assert spearman([1, 2, 3], [5, 5, 5]) == 0.0


def test_decay_time_of_an_exponential_decay():
    t = torch.arange(2 * SR) / SR
    tau = 0.2  # amplitude time constant: energy falls 20 dB in tau * ln(10) seconds
    x = (torch.exp(-t / tau) * torch.sin(2 * math.pi * 300 * t))[None].float()
    assert float(decay_time(x, SR)[0]) == pytest.approx(tau * math.log(10.0), abs=0.02)


def test_describe_reports_loudness_and_centroid_of_a_sine():
    t = torch.arange(SR) / SR
    x = (0.5 * torch.sin(2 * math.pi * 1000 * t)).repeat(2, 1)
    d = describe(x, SR)
    assert float(d["centroid_hz"][0]) == pytest.approx(1000.0, rel=0.02)
    assert float(d["rms_db"][0]) == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.05)


# --------------------------------------------------------------------------- safety


def test_true_peak_meter_agrees_with_scipy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 20000, generator=g) * 0.1
    assert true_peak_db(x) == pytest.approx(_scipy_true_peak_db(x), abs=0.05)
    t = torch.arange(20000) / SR
    inter = 0.5 * torch.sin(2 * math.pi * (SR / 4) * t + math.pi / 4)[None]  # samples at 0.354, true peak 0.5
    assert float(inter.abs().max()) < 0.36
    assert true_peak_db(inter) == pytest.approx(20 * math.log10(0.5), abs=0.12)


@pytest.mark.parametrize("case", ["nan", "dc", "huge", "silence", "short", "square"])
def test_make_safe_enforces_the_contract(case):
    g = torch.Generator().manual_seed(1)
    n = SR
    x = torch.randn(2, n, generator=g) * 0.3
    if case == "nan":
        x[0, 100:200] = float("nan")
        x[1, 5] = float("inf")
    elif case == "dc":
        x = x + 0.7
    elif case == "huge":
        x = x * 1e9
    elif case == "silence":
        x = torch.zeros(2, n)
    elif case == "short":
        x = x[:, :300]
    elif case == "square":
        x = torch.sign(torch.sin(2 * math.pi * 50 * torch.arange(n) / SR)).repeat(2, 1) * 3.0
    y, report = make_safe(x, SR, ceiling_db=-1.0, loudness_lufs=-14.0)
    assert report is not None and report.ok, report
    assert torch.isfinite(y).all() and y.shape == x.shape
    assert float(y.double().mean(dim=-1).abs().max()) <= DC_LIMIT
    assert _scipy_true_peak_db(y) <= -1.0 + 0.02  # an independent 4x meter agrees
    if case == "nan":
        assert report.nonfinite_replaced == 101
    assert not torch.isfinite(x).all() or torch.equal(x, x)  # input untouched


def test_dc_block_is_a_4th_order_butterworth():
    b, a = scipy.signal.butter(4, 20.0, "highpass", fs=SR)
    x = torch.zeros(1, 8192, dtype=torch.float64)
    x[0, 0] = 1.0
    ours = np.abs(np.fft.rfft(dc_block(x, SR, 20.0)[0].numpy(), 1 << 16))
    _, ref = scipy.signal.freqz(b, a, worN=(1 << 15) + 1, fs=SR)
    freqs = np.linspace(0, SR / 2, (1 << 15) + 1)
    band = (freqs > 5) & (freqs < 200)
    assert np.abs(20 * np.log10(ours[band] / np.abs(ref[band]))).max() < 0.3


def test_loudness_target_is_met():
    t = torch.arange(2 * SR) / SR
    x = (0.05 * torch.sin(2 * math.pi * 440 * t)).repeat(2, 1)
    y, report = make_safe(x, SR, loudness_lufs=-20.0)
    import pyloudnorm

    assert pyloudnorm.Meter(SR).integrated_loudness(y.T.double().numpy()) == pytest.approx(-20.0, abs=0.2)


# --------------------------------------------------------------------------- feedback maths


@pytest.mark.parametrize("period,taps", [(100.3, 31), (168.56, 15), (40.7, 31), (9.2, 31)])
def test_loop_delay_puts_the_fundamental_exactly_on_the_period(period, taps):
    d, a, m = loop_delay(period, taps)
    assert d >= 2 and 0.0 <= a < 1.0 and m % 2 == 1 and m <= taps
    omega = 2 * math.pi / period
    z1 = cmath.exp(-1j * omega)
    loop = z1**d * ((1 - a) + a * z1) * cmath.exp(-1j * omega * (m - 1) / 2)
    # the loop's total phase at the fundamental is a whole number of turns
    assert abs(cmath.phase(loop)) < 1e-9
    with pytest.raises(ConfigError, match="too short"):
        loop_delay(1.5, 31)


@pytest.mark.parametrize("period", [37.3, 100.0, 250.6])
def test_period_mean_blocker_removes_dc_and_keeps_the_harmonics(period):
    n = 40000
    t = np.arange(n)
    x = 0.3 + np.sin(2 * np.pi * t / period) + 0.5 * np.cos(2 * np.pi * 3 * t / period + 0.4)
    hist = np.concatenate([np.zeros(400), x])
    length = int(np.floor(period))
    y = x[2000:] - _period_mean(hist, 400 + n, n - 2000, length, period - length, period)
    expected = x[2000:] - 0.3
    assert np.abs(y - expected).max() < 0.02  # harmonics pass with unit gain and no phase shift


# --------------------------------------------------------------------------- documents


def test_documents_are_bounded_before_parsing():
    deep = "[" * (LIMITS.max_depth + 5) + "]" * (LIMITS.max_depth + 5)
    with pytest.raises(ConfigError, match="nested deeper"):
        parse_document('{"a": ' + deep + "}", "patch")
    with pytest.raises(ConfigError, match="bytes"):
        parse_document(b" " * (LIMITS.max_json_bytes + 1), "patch")
    with pytest.raises(ConfigError, match="NaN"):
        parse_document('{"a": NaN}', "patch")
    with pytest.raises(ConfigError, match="invalid JSON"):
        parse_document('{"a": ', "patch")
    with pytest.raises(ConfigError, match="top level"):
        parse_document(json.dumps([1, 2]), "patch")
    assert parse_document('name = "x"\n[[events]]\ntime = 0\n', "score", toml=True)["events"] == [{"time": 0}]
