"""Gain, pan, width and FFT convolution against closed forms and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from neuromix.core.dsp import functional as F
from neuromix.core.dsp.utils import fast_fft_size


def test_gain_closed_form():
    x = torch.randn(3, 2, 100)
    y = F.gain(x, torch.tensor([0.0, -6.0, 20.0]))
    expected = torch.tensor([1.0, 10 ** (-6 / 20), 10.0])[:, None, None] * x
    torch.testing.assert_close(y, expected)


def test_pan_law_constant_power():
    """Summed power of a panned mono source stays constant (within 0.1 dB) across the range."""
    x = torch.ones(1, 1, 8)
    powers = []
    for p in np.linspace(-1, 1, 41):
        y = F.pan(x, float(p))
        powers.append(float((y[0, :, 0] ** 2).sum()))
    db = 10 * np.log10(powers)
    assert np.ptp(db) < 0.1
    assert abs(db[0]) < 1e-6  # unity total power


def test_pan_extremes_and_centre():
    x = torch.ones(1, 1, 4)
    left = F.pan(x, -1.0)[0, :, 0]
    right = F.pan(x, 1.0)[0, :, 0]
    centre = F.pan(x, 0.0)[0, :, 0]
    torch.testing.assert_close(left, torch.tensor([1.0, 0.0]), atol=1e-7, rtol=0)
    torch.testing.assert_close(right, torch.tensor([0.0, 1.0]), atol=1e-7, rtol=0)
    torch.testing.assert_close(centre, torch.full((2,), 1 / math.sqrt(2)))
    stereo = torch.ones(1, 2, 4)
    torch.testing.assert_close(F.pan(stereo, 0.0), stereo)  # unity balance at the centre


def test_width_mid_side():
    x = torch.randn(2, 2, 64)
    torch.testing.assert_close(F.stereo_width(x, 1.0), x)
    mono = F.stereo_width(x, 0.0)
    torch.testing.assert_close(mono[:, 0], mono[:, 1])
    torch.testing.assert_close(mono[:, 0], x.mean(dim=1))
    wide = F.stereo_width(x, 2.0)
    torch.testing.assert_close(wide[:, 0] - wide[:, 1], 2 * (x[:, 0] - x[:, 1]))


def test_fft_convolve_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 1000))
    ir = rng.standard_normal((2, 1, 77))
    y = F.fft_convolve(torch.from_numpy(x), torch.from_numpy(ir)).numpy()
    for b in range(2):
        ref = scipy.signal.fftconvolve(x[b, 0], ir[b, 0])[:1000]
        np.testing.assert_allclose(y[b, 0], ref, atol=1e-9)


@pytest.mark.parametrize("fn,arg", [(F.gain, "gain_db"), (F.pan, "pan"), (F.stereo_width, "width")])
def test_gradcheck_simple(fn, arg):
    x = torch.randn(2, 2, 16, dtype=torch.float64, requires_grad=True)
    p = torch.tensor([0.3, -0.4], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x_, p_: fn(x_, p_), (x, p))


def test_fast_fft_size_is_5_smooth():
    for n in [1, 2, 7, 1000, 65537, 1323000]:
        m = fast_fft_size(n)
        assert m >= n
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        assert k == 1
