"""Tests of neuromix.mixing.augment: un-mix sampling/applying and stem loudness normalisation."""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest
import scipy.signal
import torch

from neuromix.core.dsp.filters import biquad_coefficients
from neuromix.core.features import integrated_loudness
from neuromix.mixing.augment import EQ_KINDS, UnmixParams, apply_unmix, loudness_normalise, sample_unmix

SR = 44100


def _params_like(p: UnmixParams, **changes: torch.Tensor) -> UnmixParams:
    return UnmixParams(**{**p.as_dict(), **changes})


def _select(p: UnmixParams, index: int) -> UnmixParams:
    return UnmixParams(**{k: v[index] for k, v in p.as_dict().items()})


def _tracks(num: int, seconds: float = 1.0, *, stereo_identical: bool = False, seed: int = 0) -> torch.Tensor:
    """(num, 2, samples) noise plus a sine per track, different levels per track."""
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * SR)
    t = torch.arange(n) / SR
    out = []
    for i in range(num):
        level = 0.02 * (1.5**i)
        tone = torch.sin(2 * math.pi * (110.0 * (i + 1)) * t)
        if stereo_identical:
            x = (level * torch.randn(n, generator=g) + level * tone).expand(2, n)
        else:
            x = level * torch.randn(2, n, generator=g) + level * tone
        out.append(x)
    return torch.stack(out).contiguous()


# --------------------------------------------------------------------------- sampling


def test_sample_unmix_is_seeded_and_ranged() -> None:
    a, b = sample_unmix(6, 3), sample_unmix(6, 3)
    for name, value in a.as_dict().items():
        assert torch.equal(value, b.as_dict()[name]), name
    c = sample_unmix(6, torch.Generator().manual_seed(3))
    assert torch.equal(a.gain_db, c.gain_db) and torch.equal(a.width, c.width)
    d = sample_unmix(6, 4)
    assert not torch.equal(a.gain_db, d.gain_db) and not torch.equal(a.eq_gain_db, d.eq_gain_db)

    assert a.shape == (6,) and a.eq_cutoff_hz.shape == (6, 3) and a.eq_q.shape == (6, 3)
    big = sample_unmix((4, 50), 0)
    assert big.shape == (4, 50) and big.eq_gain_db.shape == (4, 50, 3)
    assert big.gain_db.abs().max() <= 9.0 and big.gain_db.abs().max() > 8.0
    assert big.eq_gain_db.abs().max() <= 6.0
    assert (big.pan.abs() <= 0.5).all() and ((big.width >= 0.5) & (big.width <= 1.5)).all()
    assert ((big.comp_ratio >= 1.0) & (big.comp_ratio <= 4.0)).all()
    assert 0.3 < (big.comp_ratio > 1.0).float().mean() < 0.7  # compression on about half the tracks
    assert ((big.eq_cutoff_hz[..., 0] >= 60) & (big.eq_cutoff_hz[..., 2] <= 12000)).all()


def test_sample_unmix_strength_and_switches() -> None:
    full = sample_unmix(8, 5)
    half = sample_unmix(8, 5, strength=0.5)
    torch.testing.assert_close(half.gain_db, 0.5 * full.gain_db)
    torch.testing.assert_close(half.eq_gain_db, 0.5 * full.eq_gain_db)
    torch.testing.assert_close(half.width - 1.0, 0.5 * (full.width - 1.0))
    # a switched-off stage is neutral and leaves the other stages' draws unchanged
    no_eq = sample_unmix(8, 5, eq=False, dynamics=False)
    assert torch.equal(no_eq.gain_db, full.gain_db) and torch.equal(no_eq.pan, full.pan)
    assert (no_eq.eq_gain_db == 0).all() and (no_eq.comp_ratio == 1).all() and (no_eq.ride_depth_db == 0).all()
    only_eq = sample_unmix(8, 5, gain=False, dynamics=False, stereo=False)
    assert torch.equal(only_eq.eq_gain_db, full.eq_gain_db)
    assert (only_eq.gain_db == 0).all() and (only_eq.pan == 0).all() and (only_eq.width == 1).all()
    with pytest.raises(ValueError):
        sample_unmix(3, 0, strength=-1.0)


# --------------------------------------------------------------------------- applying


def test_apply_unmix_is_pure_and_reproducible() -> None:
    x = _tracks(4, 0.5)
    before = x.clone()
    p = sample_unmix(4, 11)
    y1 = apply_unmix(x, SR, p)
    y2 = apply_unmix(x, SR, p)
    assert torch.equal(x, before)  # input not mutated
    assert torch.equal(y1, y2) and y1.shape == x.shape and torch.isfinite(y1).all()
    y3 = apply_unmix(x, SR, sample_unmix(4, 12))
    assert (y3 - y1).abs().max() > 1e-3
    identity = apply_unmix(x, SR, sample_unmix(4, 11, strength=0.0))
    assert torch.equal(identity, x) and identity.data_ptr() != x.data_ptr()
    silent = apply_unmix(torch.zeros(2, 2, 4410), SR, sample_unmix(2, 1))
    assert torch.count_nonzero(silent) == 0


def test_gain_changes_loudness_by_the_sampled_gain() -> None:
    x = _tracks(6, 1.0, stereo_identical=True)
    p = sample_unmix(6, 21, eq=False, dynamics=False)  # gain, pan and width active
    assert (p.pan != 0).all() and (p.width != 1).all()
    y = apply_unmix(x, SR, p)
    change = integrated_loudness(y, SR) - integrated_loudness(x, SR)
    torch.testing.assert_close(change, p.gain_db, rtol=0, atol=0.05)  # spec: within 0.5 dB
    assert (change - p.gain_db).abs().max() < 0.5


def test_eq_matches_a_biquad_cascade() -> None:
    x = _tracks(3, 0.5)
    p = sample_unmix(3, 8, gain=False, dynamics=False, stereo=False)
    y = apply_unmix(x, SR, p)
    for t in range(3):
        sos = []
        for band, kind in enumerate(EQ_KINDS):
            b, a = biquad_coefficients(kind, SR, float(p.eq_cutoff_hz[t, band]), float(p.eq_gain_db[t, band]),
                                       float(p.eq_q[t, band]))
            sos.append(np.concatenate([b[0].double().numpy(), a[0].double().numpy()]))
        ref = scipy.signal.sosfilt(np.stack(sos), x[t].double().numpy(), axis=-1)
        np.testing.assert_allclose(y[t].numpy(), ref, atol=2e-5)


def test_gain_ride_and_compression() -> None:
    n = SR // 2
    neutral = UnmixParams.neutral(2)
    ride = _params_like(neutral, ride_depth_db=torch.tensor([3.0, 0.0]), ride_rate_hz=torch.tensor([2.0, 0.25]),
                        ride_phase=torch.tensor([0.5, 0.0]))
    x = torch.full((2, 2, n), 0.1)
    y = apply_unmix(x, SR, ride)
    t = torch.arange(n) / SR
    expected = 0.1 * 10 ** (3.0 * torch.sin(2 * math.pi * 2.0 * t + 0.5) / 20)
    torch.testing.assert_close(y[0, 0], expected, rtol=1e-5, atol=0)
    assert torch.equal(y[1], x[1])

    # a loud then a quiet 1 kHz section: in steady state the loud one is reduced by the static
    # curve (15 dB over a threshold 15 dB below the peak, ratio 4: 15 - 15 / 4 = 11.25 dB),
    # the quiet one (below threshold) is not; ratio 1 leaves the track alone
    half = n // 2
    amp = torch.cat([torch.full((half,), 0.5), torch.full((n - half,), 0.5 * 10 ** (-30 / 20))])
    steps = (amp * torch.sin(2 * math.pi * 1000.0 * t)).expand(2, n)
    steps = torch.stack([steps, steps])
    comp = _params_like(neutral, comp_ratio=torch.tensor([4.0, 1.0]), comp_threshold_rel_db=torch.tensor([-15.0, -15.0]),
                        comp_attack_ms=torch.tensor([2.0, 2.0]), comp_release_ms=torch.tensor([20.0, 20.0]))
    out = apply_unmix(steps, SR, comp)

    def level_db(v: torch.Tensor) -> float:
        return float(10 * torch.log10(v.pow(2).mean()))

    loud, quiet = slice(half - SR // 10, half), slice(n - SR // 10, n)
    assert abs(level_db(out[0, :, loud]) - level_db(steps[0, :, loud]) + 11.25) < 0.25
    assert abs(level_db(out[0, :, quiet]) - level_db(steps[0, :, quiet])) < 0.25
    torch.testing.assert_close(out[1], steps[1], rtol=1e-6, atol=1e-7)


def test_pan_and_width_closed_form() -> None:
    n = 1000
    g = torch.Generator().manual_seed(1)
    mono = torch.randn(n, generator=g)
    x = torch.stack([mono.expand(2, n), torch.randn(2, n, generator=g)])
    p = _params_like(UnmixParams.neutral(2), pan=torch.tensor([1.0, 0.0]), width=torch.tensor([1.0, 0.0]))
    y = apply_unmix(x, SR, p)
    torch.testing.assert_close(y[0, 0], torch.zeros(n), rtol=0, atol=1e-6)  # hard right
    torch.testing.assert_close(y[0, 1], math.sqrt(2) * mono, rtol=1e-6, atol=1e-6)
    mid = 0.5 * (x[1, 0] + x[1, 1])
    torch.testing.assert_close(y[1], mid.expand(2, n), rtol=1e-6, atol=1e-6)  # width 0: mono


def test_batched_equals_item_by_item_and_mono_input() -> None:
    x = _tracks(6, 0.25).reshape(2, 3, 2, -1)
    p = sample_unmix((2, 3), 9)
    y = apply_unmix(x, SR, p)
    assert y.shape == x.shape
    for b in range(2):
        torch.testing.assert_close(y[b], apply_unmix(x[b], SR, _select(p, b)), rtol=1e-5, atol=1e-6)
    mono = x[0, :, :1]
    q = _select(p, 0)
    torch.testing.assert_close(apply_unmix(mono, SR, q), apply_unmix(mono.expand(-1, 2, -1), SR, q))
    with pytest.raises(ValueError, match="leading shape"):
        apply_unmix(x, SR, sample_unmix(3, 0))
    with pytest.raises(ValueError, match="channels"):
        apply_unmix(torch.zeros(3, 3, 100), SR, sample_unmix(3, 0))


def test_apply_unmix_gradients() -> None:
    g = torch.Generator().manual_seed(2)
    x = (0.3 * torch.randn(2, 2, 48, generator=g, dtype=torch.float64)).requires_grad_()
    p = sample_unmix(2, 5, dynamics=False).to(dtype=torch.float64)
    gain = p.gain_db.clone().requires_grad_()

    def fn(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        return apply_unmix(x, 8000, _params_like(p, gain_db=gain), eq_fft_size=256)

    assert torch.autograd.gradcheck(fn, (x, gain), eps=1e-6, atol=1e-5, fast_mode=True)
    q = sample_unmix(2, 6).to(dtype=torch.float64)  # compression, gain ride: gradients flow
    y = apply_unmix(x, 8000, q, eq_fft_size=256)
    (grad,) = torch.autograd.grad(y.pow(2).sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


# --------------------------------------------------------------------------- loudness normalisation


def test_loudness_normalise_reaches_target() -> None:
    x = _tracks(4, 1.0)
    x = torch.cat([x, torch.zeros(1, 2, SR), 0.5 * x[:1]])  # a silent stem and a masked stem
    mask = torch.tensor([True, True, True, True, True, False])
    before = x.clone()
    y, gains = loudness_normalise(x, SR, target_lufs=-20.0, mask=mask)
    assert torch.equal(x, before) and y.shape == x.shape and gains.shape == (6,)
    meter = pyloudnorm.Meter(SR)
    for t in range(4):
        assert abs(meter.integrated_loudness(y[t].double().numpy().T) + 20.0) < 0.1
    measured = integrated_loudness(y[:4], SR)
    torch.testing.assert_close(measured, torch.full((4,), -20.0), rtol=0, atol=0.01)
    assert gains[4] == 0 and torch.count_nonzero(y[4]) == 0  # silence untouched
    assert gains[5] == 0 and torch.equal(y[5], x[5])  # masked untouched
    # levels differed before, so the gains differ
    assert gains[:4].unique().numel() == 4

    batched, batch_gains = loudness_normalise(x[:4].reshape(2, 2, 2, SR), SR)
    torch.testing.assert_close(integrated_loudness(batched.reshape(4, 2, SR), SR), torch.full((4,), -23.0),
                               rtol=0, atol=0.01)
    assert batch_gains.shape == (2, 2)
    with pytest.raises(ValueError, match="mask"):
        loudness_normalise(x, SR, mask=torch.ones(3, dtype=torch.bool))
