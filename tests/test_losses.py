"""STFT and feature losses against closed forms; gradients."""

from __future__ import annotations

import math

import pytest
import torch

from neuromix.core import features as F
from neuromix.core import losses as L
from neuromix.core.errors import ConfigError

SR = 16000
SMALL = {"fft_sizes": (512, 256, 128), "hop_sizes": None, "win_lengths": None}


def noise(batch: int = 2, channels: int = 2, seconds: float = 0.5, seed: int = 0, scale: float = 0.1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, channels, int(seconds * SR), generator=g)


# ------------------------------------------------------------------ MR-STFT


def test_stft_magnitudes_shape_and_values():
    x = noise(1, 2, 0.25)
    mag = L.stft_magnitudes(x, 256, 64)
    assert mag.shape == (1, 2, 1 + x.shape[-1] // 64, 129)
    ref = torch.stft(x[0], 256, 64, window=torch.hann_window(256), center=True, pad_mode="constant",
                     return_complex=True).abs().transpose(-1, -2)
    torch.testing.assert_close(mag[0], ref, atol=1e-3, rtol=1e-4)


def test_identical_inputs_give_zero():
    x = noise()
    assert float(L.multi_resolution_stft_loss(x, x)) == 0.0
    assert float(L.MultiResolutionSTFTLoss()(x, x)) == 0.0
    assert float(L.sum_difference_stft_loss(x, x, w_left_right=1.0)) == 0.0
    total, per = L.feature_loss(x, x, SR)
    assert float(total) == 0.0 and all(float(v) == 0.0 for v in per.values())


@pytest.mark.parametrize("c", [0.5, 0.8, 1.7])
def test_scaled_prediction_closed_forms(c):
    target = noise(2, 2, 0.5, seed=1)
    pred = c * target
    sc = L.multi_resolution_stft_loss(pred, target, w_sc=1.0, w_logmag=0.0)
    logmag = L.multi_resolution_stft_loss(pred, target, w_sc=0.0, w_logmag=1.0)
    both = L.MultiResolutionSTFTLoss(w_sc=1.0, w_logmag=2.0)(pred, target)
    assert abs(float(sc) - abs(1 - c)) < 1e-3
    assert abs(float(logmag) - abs(math.log(c))) < 1e-3
    assert abs(float(both) - (abs(1 - c) + 2 * abs(math.log(c)))) < 2e-3


def test_module_equals_functional_and_batch_mean():
    pred, target = noise(3, 2, 0.3, seed=2), noise(3, 2, 0.3, seed=3)
    module = L.MultiResolutionSTFTLoss(**SMALL)
    batched = module(pred, target)
    torch.testing.assert_close(batched, L.multi_resolution_stft_loss(pred, target, **SMALL))
    singles = torch.stack([module(pred[i : i + 1], target[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, singles.mean())
    assert module.state_dict() == {}


def test_sum_difference_terms_closed_forms():
    target = noise(2, 2, 0.5, seed=4)
    mid, side = target.mean(1, keepdim=True), (target[:, :1] - target[:, 1:]) / 2

    def stereo(m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return torch.cat([m + s, m - s], dim=1)

    expected = abs(1 - 0.5) + abs(math.log(0.5))
    narrow = L.sum_difference_stft_terms(stereo(mid, 0.5 * side), target)  # side halved
    assert float(narrow["sum"]) < 1e-4
    assert abs(float(narrow["difference"]) - expected) < 1e-3
    quiet_mid = L.sum_difference_stft_terms(stereo(0.5 * mid, side), target)  # mid halved
    assert float(quiet_mid["difference"]) < 1e-4
    assert abs(float(quiet_mid["sum"]) - expected) < 1e-3
    total = L.sum_difference_stft_loss(stereo(mid, 0.5 * side), target)
    torch.testing.assert_close(total, narrow["sum"] + narrow["difference"])
    module = L.SumDifferenceSTFTLoss(w_left_right=0.5)
    torch.testing.assert_close(module(stereo(mid, 0.5 * side), target),
                               narrow["sum"] + narrow["difference"] + 0.5 * narrow["left_right"])


def test_sum_difference_mirror_image():
    """Swapping L/R negates L-R: magnitudes cannot see it, only the left/right term can."""
    target = noise(1, 2, 0.5, seed=5) * torch.tensor([1.0, 0.3])[None, :, None]  # left-heavy
    mirrored = target.flip(1)
    terms = L.sum_difference_stft_terms(mirrored, target)
    assert float(terms["sum"]) < 1e-5 and float(terms["difference"]) < 1e-5
    assert float(terms["left_right"]) > 0.5
    assert float(L.sum_difference_stft_loss(mirrored, target)) < 1e-5
    assert float(L.sum_difference_stft_loss(mirrored, target, w_left_right=1.0)) > 0.5
    with pytest.raises(ValueError, match="stereo"):
        L.sum_difference_stft_loss(target[:, :1], target[:, :1])


def test_stft_losses_gradients():
    target = noise(1, 2, 0.125, seed=6)
    pred = torch.zeros(1, 2, 2000, requires_grad=True)  # exact silence: finite (here zero) thanks to eps
    L.sum_difference_stft_loss(pred, target, w_left_right=1.0).backward()
    assert torch.isfinite(pred.grad).all()
    pred = (1e-4 * noise(1, 2, 0.125, seed=7)).requires_grad_(True)  # nearly silent: finite and non-zero
    L.sum_difference_stft_loss(pred, target, w_left_right=1.0).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    g = torch.Generator().manual_seed(7)
    p = torch.randn(1, 2, 96, dtype=torch.float64, generator=g, requires_grad=True)
    t = torch.randn(1, 2, 96, dtype=torch.float64, generator=g)
    kw = {"fft_sizes": (32, 16)}
    opts = {"atol": 1e-5, "fast_mode": True}
    assert torch.autograd.gradcheck(lambda x: L.multi_resolution_stft_loss(x, t, **kw), (p,), **opts)
    assert torch.autograd.gradcheck(lambda x: L.sum_difference_stft_loss(x, t, w_left_right=1.0, **kw), (p,), **opts)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        L.multi_resolution_stft_loss(noise(1, 2, 0.1), noise(1, 1, 0.1))


# ------------------------------------------------------------------ feature loss


def test_feature_loss_gain_change_closed_form():
    target = noise(2, 2, 0.6, seed=8)
    pred = target * 2.0  # +6.02 dB
    total, per = L.feature_loss(pred, target, SR)
    six = 20 * math.log10(2.0)
    for key in ("loudness/integrated_lufs", "dynamics/rms_db", "dynamics/peak_db", "spectral/band_energy_db"):
        assert abs(float(per[key]) - six / L.FEATURE_LOSS_SCALES[key]) < 1e-3, key
    for key in ("spectral/centroid_hz", "spectral/rolloff_hz", "panning/panning_spectrum", "panning/stereo_width",
                "dynamics/crest_factor_db", "dynamics/dynamic_spread_db"):
        assert float(per[key]) < 1e-3, key  # scale-invariant features
    torch.testing.assert_close(total, sum(per.values()))


def test_feature_loss_frequency_in_octaves_and_panning():
    t = torch.arange(int(0.6 * SR)) / SR
    tone = lambda f: torch.sin(2 * math.pi * f * t)[None, None].expand(1, 2, -1).contiguous()  # noqa: E731
    _, per = L.feature_loss(tone(2000.0), tone(1000.0), SR, {"spectral/centroid_hz": 1.0})
    assert set(per) == {"spectral/centroid_hz"}
    assert abs(float(per["spectral/centroid_hz"]) - math.log2(2020 / 1020)) < 0.03  # ~1 octave
    mono = tone(500.0)
    left = mono * torch.tensor([1.0, 0.0])[None, :, None]
    _, per = L.feature_loss(left, mono, SR, {"panning": 1.0})
    assert set(per) == set(F.FEATURE_CATEGORIES["panning"])
    assert abs(float(per["panning/stereo_imbalance"]) - 1.0 / 0.8) < 1e-3


def test_feature_loss_weights_and_errors():
    pred, target = noise(1, 2, 0.6, seed=9), noise(1, 2, 0.6, seed=10)
    total, per = L.feature_loss(pred, target, SR, {"spectral": 2.0, "spectral/flatness": 0.0, "loudness": 1.0})
    assert set(per) == (set(F.FEATURE_CATEGORIES["spectral"]) - {"spectral/flatness"}) | {"loudness/integrated_lufs"}
    expected = 2.0 * sum(v for k, v in per.items() if k.startswith("spectral")) + per["loudness/integrated_lufs"]
    torch.testing.assert_close(total, expected)
    with pytest.raises(ConfigError, match="unknown feature weight"):
        L.feature_loss(pred, target, SR, {"brightness": 1.0})
    with pytest.raises(ConfigError, match=">= 0"):
        L.feature_loss(pred, target, SR, {"loudness": -1.0})
    with pytest.raises(ConfigError, match="no feature"):
        L.feature_loss(pred, target, SR, {"loudness": 0.0})
    with pytest.raises(ConfigError, match="unknown target feature"):
        L.feature_loss(pred, {"loudness": -14.0}, SR)


def test_feature_loss_goal_targets_and_gradient():
    """A loudness goal: loss |L - goal| / 10 and d loss / d gain_db = sign(L - goal) / 10."""
    x = noise(1, 2, 0.6, seed=11)
    level = float(F.integrated_loudness(x, SR)[0])
    for goal in (level - 5.0, level + 5.0):
        gain_db = torch.zeros((), requires_grad=True)
        total, per = L.feature_loss(x * 10 ** (gain_db / 20), {"loudness/integrated_lufs": goal}, SR)
        assert set(per) == {"loudness/integrated_lufs"}
        assert abs(float(total.detach()) - 0.5) < 1e-3
        total.backward()
        assert abs(float(gain_db.grad) - math.copysign(0.1, level - goal)) < 1e-3
    with pytest.raises(ConfigError, match="no target value"):
        L.feature_loss(x, {"loudness/integrated_lufs": -14.0}, SR, {"dynamics/rms_db": 1.0})


def test_feature_loss_gradients():
    """Finite at silence; gradcheck (float64) along 3 random directions of a 0.5 s, 8 kHz input."""
    pred = torch.zeros(1, 2, 8000, requires_grad=True)
    total, _ = L.feature_loss(pred, noise(1, 2, 0.5, seed=12), SR)
    total.backward()
    assert torch.isfinite(pred.grad).all()

    g = torch.Generator().manual_seed(13)
    base = 0.1 * torch.randn(1, 2, 4000, dtype=torch.float64, generator=g)
    target = 0.1 * torch.randn(1, 2, 4000, dtype=torch.float64, generator=g)
    dirs = 0.05 * torch.randn(3, 1, 2, 4000, dtype=torch.float64, generator=g)
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)

    def loss(t: torch.Tensor) -> torch.Tensor:
        return L.feature_loss(base + torch.einsum("d,dbcn->bcn", t, dirs), target, 8000)[0]

    assert torch.autograd.gradcheck(loss, (theta,), eps=1e-6, atol=1e-5, rtol=1e-3)
