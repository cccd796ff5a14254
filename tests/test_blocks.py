"""Tests of neuromix.core.blocks: shapes, references, symmetries, receptive fields."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio
from torch import nn

from neuromix.core.blocks import TCN, FiLM, LogMelFrontEnd, SetAggregator, TrackEncoder, masked_mean

SR = 16000


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- front end


def test_logmel_shape_and_rate_check() -> None:
    fe = LogMelFrontEnd(SR, n_fft=512, hop=128, n_mels=40)
    x = 0.1 * torch.randn(2, 3, 4000, generator=_gen(0))
    y = fe(x, SR)
    assert y.shape == (2, 3, 40, 4000 // 128 + 1) == (2, 3, 40, fe.num_frames(4000))
    assert torch.isfinite(y).all()
    with pytest.raises(ValueError, match="built for 16000 Hz but got audio at 44100 Hz"):
        fe(x, 44100)
    assert fe.state_dict() == {}  # window and filterbank are rebuilt, not stored


def test_logmel_matches_torchaudio() -> None:
    fe = LogMelFrontEnd(SR, n_fft=512, hop=128, n_mels=40, f_min=20.0)
    ref = torchaudio.transforms.MelSpectrogram(
        sample_rate=SR, n_fft=512, hop_length=128, f_min=20.0, n_mels=40, power=2.0,
        center=True, pad_mode="constant", norm=None, mel_scale="htk",
    )
    x = 0.3 * torch.randn(1, 2, 3000, generator=_gen(1))
    window_sum = torch.hann_window(512).sum()
    expected = torch.log(ref(x) / window_sum**2 + fe.floor)
    torch.testing.assert_close(fe(x, SR), expected, atol=1e-4, rtol=1e-4)


def test_logmel_sine_lands_in_its_band() -> None:
    fe = LogMelFrontEnd(SR, n_fft=1024, hop=256, n_mels=64)
    t = torch.arange(SR) / SR
    x = torch.sin(2 * math.pi * 1000.0 * t).view(1, 1, -1)
    y = fe(x, SR)[0, 0, :, 10:-10].mean(-1)  # (n_mels,)
    band = int(y.argmax())
    # the band whose filter peaks nearest 1 kHz
    peaks = fe.fbank.argmax(dim=0).float() * SR / 1024
    assert abs(float(peaks[band]) - 1000.0) < 60.0
    # window-sum normalisation: full-scale sine -> about 0.25 power in the peak region (> -3 dB)
    assert float(y.max()) > math.log(0.25) - 0.7


# --------------------------------------------------------------------------- track encoder


@pytest.fixture(scope="module")
def encoder() -> TrackEncoder:
    torch.manual_seed(0)
    return TrackEncoder(SR, channels=64, embed_dim=128).eval()


def test_encoder_shape_and_size(encoder: TrackEncoder) -> None:
    x = 0.1 * torch.randn(5, 2, 8000, generator=_gen(2))
    assert encoder(x, SR).shape == (5, 128)
    n_params = sum(p.numel() for p in encoder.parameters())
    assert 100_000 <= n_params <= 300_000
    with pytest.raises(ValueError, match="resample"):
        encoder(x, 44100)
    with pytest.raises(ValueError, match=r"\(batch\*tracks, 2, samples\)"):
        encoder(x[:, :1], SR)


def test_encoder_batched_equals_items(encoder: TrackEncoder) -> None:
    x = 0.2 * torch.randn(4, 2, 6000, generator=_gen(3))
    x[1] *= 0.01  # a quiet track
    x[2, 1] = x[2, 0]  # dual mono (side = 0)
    with torch.no_grad():
        batched = encoder(x, SR)
        items = torch.cat([encoder(x[i : i + 1], SR) for i in range(4)])
    torch.testing.assert_close(batched, items, atol=1e-5, rtol=1e-5)
    # level reaches the embedding (no normalisation layer removes it)
    assert (batched[0] - batched[1]).abs().max() > 1e-3


def test_encoder_is_differentiable_and_mirror_invariant(encoder: TrackEncoder) -> None:
    x = (0.2 * torch.randn(2, 2, 4000, generator=_gen(4))).requires_grad_()
    encoder(x, SR).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # documented property: mid/side power spectra do not tell left from right
    with torch.no_grad():
        torch.testing.assert_close(encoder(x.flip(1), SR), encoder(x, SR), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- set aggregator


@pytest.fixture(scope="module")
def aggregator() -> SetAggregator:
    torch.manual_seed(0)
    return SetAggregator(32, heads=4, layers=2, dropout=0.1).eval()


def _tokens(seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randn(3, 6, 32, generator=_gen(seed))
    mask = torch.tensor(
        [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 1, 1, 0, 1]], dtype=torch.bool
    )
    return tokens, mask


@pytest.mark.parametrize("grad", [False, True])  # no_grad may take PyTorch's fused fast path
def test_aggregator_permutation_equivariance(aggregator: SetAggregator, grad: bool) -> None:
    tokens, mask = _tokens()
    perm = torch.tensor([4, 2, 0, 5, 1, 3])
    with torch.set_grad_enabled(grad):
        out, ctx = aggregator(tokens, mask)
        out_p, ctx_p = aggregator(tokens[:, perm], mask[:, perm])
    assert out.shape == (3, 6, 32) and ctx.shape == (3, 32)
    torch.testing.assert_close(out_p, out[:, perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ctx_p, ctx, atol=1e-5, rtol=1e-5)
    assert (out[~mask] == 0).all()
    torch.testing.assert_close(ctx, masked_mean(out, mask))


@pytest.mark.parametrize("grad", [False, True])
def test_aggregator_padding_invariance(aggregator: SetAggregator, grad: bool) -> None:
    tokens, mask = _tokens()
    junk = 100.0 * torch.randn(3, 4, 32, generator=_gen(6))
    padded = torch.cat([tokens, junk], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(3, 4, dtype=torch.bool)], dim=1)
    with torch.set_grad_enabled(grad):
        out, ctx = aggregator(tokens, mask)
        out_pad, ctx_pad = aggregator(padded, padded_mask)
    torch.testing.assert_close(out_pad[:, :6], out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ctx_pad, ctx, atol=1e-5, rtol=1e-5)
    assert (out_pad[:, 6:] == 0).all()
    # and a masked token's value never matters
    changed = tokens.clone()
    changed[1, 4] = 1e3
    with torch.set_grad_enabled(grad):
        out_changed, _ = aggregator(changed, mask)
    torch.testing.assert_close(out_changed, out, atol=1e-5, rtol=1e-5)


def test_aggregator_tokens_interact_and_empty_item_refused(aggregator: SetAggregator) -> None:
    tokens, mask = _tokens()
    changed = tokens.clone()
    changed[0, 5] = torch.randn(32, generator=_gen(11))  # a valid token: the others must see it
    with torch.no_grad():
        out, _ = aggregator(tokens, mask)
        out_changed, _ = aggregator(changed, mask)
    assert (out_changed[0, 0] - out[0, 0]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="at least one valid"):
        aggregator(tokens, torch.zeros(3, 6, dtype=torch.bool))


# --------------------------------------------------------------------------- FiLM and TCN


def test_film_identity_and_closed_form() -> None:
    film = FiLM(cond_dim=5, channels=3)
    x = torch.randn(2, 3, 17, generator=_gen(7))
    cond = torch.randn(2, 5, generator=_gen(8))
    with torch.no_grad():
        film.proj.weight.zero_()
        film.proj.bias.zero_()
    gamma, beta = film.params(cond)
    assert torch.equal(gamma, torch.ones(2, 3)) and torch.equal(beta, torch.zeros(2, 3))
    assert torch.equal(film(x, cond), x)

    torch.manual_seed(1)
    film = FiLM(cond_dim=5, channels=3)
    w, b = film.proj.weight, film.proj.bias
    expected_gamma = 1.0 + cond @ w[:3].T + b[:3]
    expected_beta = cond @ w[3:].T + b[3:]
    torch.testing.assert_close(film(x, cond), x * expected_gamma[..., None] + expected_beta[..., None])


def _impulse_support(tcn: TCN, length: int, at: int, cond: torch.Tensor | None) -> tuple[int, int]:
    x = torch.zeros(1, tcn.blocks[0].conv.in_channels, length, dtype=torch.float64)
    impulse = x.clone()
    impulse[..., at] = 1.0
    with torch.no_grad():
        diff = (tcn(impulse, cond) - tcn(x, cond)).abs().sum(dim=(0, 1))
    idx = torch.nonzero(diff > 1e-12).flatten()
    return int(idx.min()), int(idx.max())


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(("kernel", "dilations"), [(13, (1, 2, 4)), (3, (1, 2, 4, 8)), (4, (1, 3))])
def test_tcn_receptive_field_matches_impulse_response(
    causal: bool, kernel: int, dilations: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    tcn = TCN(2, 1, channels=4, kernel=kernel, dilations=dilations, cond_dim=3, causal=causal).double()
    assert tcn.receptive_field == 1 + (kernel - 1) * sum(dilations)
    cond = torch.randn(1, 3, dtype=torch.float64)
    length, at = 301, 150
    first, last = _impulse_support(tcn, length, at, cond)
    assert last - first + 1 == tcn.receptive_field
    if causal:
        assert first == at  # nothing before the impulse
    elif (kernel - 1) % 2 == 0:  # every block pads symmetrically: exactly centred
        half = (tcn.receptive_field - 1) // 2
        assert (first, last) == (at - half, at + half)
    else:  # even kernel: each block puts the odd padding sample on the left
        right = sum((kernel - 1) * d // 2 for d in dilations)
        assert first == at - right


def test_tcn_shapes_conditioning_and_batching() -> None:
    torch.manual_seed(0)
    tcn = TCN(2, 3, channels=8, kernel=5, dilations=(1, 2, 4), cond_dim=6)
    x = torch.randn(4, 2, 500, generator=_gen(9))
    cond = torch.randn(4, 6, generator=_gen(10))
    with torch.no_grad():
        y = tcn(x, cond)
        items = torch.cat([tcn(x[i : i + 1], cond[i : i + 1]) for i in range(4)])
        y_other = tcn(x, cond.flip(0))
    assert y.shape == (4, 3, 500)
    torch.testing.assert_close(y, items, atol=1e-5, rtol=1e-5)
    assert (y - y_other).abs().max() > 1e-4  # the conditioning acts
    with pytest.raises(ValueError, match="pass cond"):
        tcn(x)
    plain = TCN(1, 1, channels=4, kernel=3, dilations=(1,))
    assert plain(torch.randn(2, 1, 50)).shape == (2, 1, 50)
    assert not any(isinstance(m, FiLM) for m in plain.modules())
    default = TCN(1, 1)
    assert default.receptive_field == 1 + 12 * 1023
    assert sum(p.numel() for p in default.parameters()) < 200_000
    assert isinstance(default.blocks[0].act, nn.PReLU)
