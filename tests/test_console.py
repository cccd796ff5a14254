"""The mixing console: neutral settings, permutation equivariance, batching, gradients, settings JSON."""

from __future__ import annotations

import json
import math

import pytest
import torch

from neuromix.core.dsp import functional as F
from neuromix.core.dsp.console import Console, ConsoleConfig, ConsoleParams
from neuromix.core.errors import ConfigError

SR = 22050


def _tracks(batch=2, tracks=3, channels=2, seconds=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, tracks, channels, int(SR * seconds), generator=g)


def _random_params(console: Console, batch: int, tracks: int, seed: int = 0) -> ConsoleParams:
    g = torch.Generator().manual_seed(seed)
    track_u = torch.rand(batch, tracks, len(console.track_ranges), generator=g)
    master_u = torch.rand(batch, len(console.master_ranges), generator=g)
    return console.denormalise(track_u, master_u)


def test_neutral_settings_are_a_panned_sum():
    """With every stage neutral and the limiter off, the console is the pan-law sum."""
    cfg = ConsoleConfig(reverb=False, limiter=False)
    console = Console(SR, cfg)
    x = _tracks()
    params = console.default_params(2, 3)
    mix = console(x, None, params)
    # stereo tracks at pan 0 pass with unity gain; EQ default is a 20 Hz high-pass only
    ref = x.sum(dim=1)
    hp_only = F.parametric_eq(ref, SR, ["highpass"], torch.full((2, 1), 20.0), torch.zeros(2, 1), torch.full((2, 1), 1 / math.sqrt(2)))
    torch.testing.assert_close(mix, hp_only, atol=2e-5, rtol=1e-4)


def test_mask_removes_tracks():
    console = Console(SR, ConsoleConfig(limiter=False))
    x = _tracks(batch=1, tracks=3)
    params = _random_params(console, 1, 3)
    mask = torch.tensor([[True, False, True]])
    full = console(x, mask, params)
    zeroed = x.clone()
    zeroed[:, 1] = 0
    torch.testing.assert_close(full, console(zeroed, None, params), atol=1e-5, rtol=1e-4)


def test_permutation_equivariance():
    """Permuting tracks together with their settings gives the same mix within 1e-5."""
    console = Console(SR)
    x = _tracks(batch=1, tracks=4)
    params = _random_params(console, 1, 4, seed=3)
    perm = torch.tensor([2, 0, 3, 1])
    a = console(x, None, params)
    b = console(x[:, perm], None, params.select(perm))
    assert (a - b).abs().max() < 1e-5


def test_batched_equals_item_by_item():
    console = Console(SR)
    x = _tracks(batch=3, tracks=2)
    params = _random_params(console, 3, 2, seed=5)
    batched = console(x, None, params)
    for i in range(3):
        single = ConsoleParams({k: v[i : i + 1] for k, v in params.track.items()}, {k: v[i : i + 1] for k, v in params.master.items()})
        torch.testing.assert_close(batched[i : i + 1], console(x[i : i + 1], None, single), atol=1e-5, rtol=1e-4)


def test_mono_tracks_are_panned_with_constant_power():
    console = Console(SR, ConsoleConfig(track_eq=False, track_compressor=False, reverb=False, master_eq=False,
                                        master_width=False, bus_compressor=False, limiter=False))
    x = torch.ones(1, 1, 1, 100)
    params = console.default_params(1, 1)
    params.track["pan"] = torch.tensor([[0.5]])
    mix = console(x, None, params)
    left, right = F.pan_gains(torch.tensor(0.5))
    torch.testing.assert_close(mix[0, :, 50], torch.stack([left, right]))


def test_gradients_reach_every_active_parameter():
    console = Console(SR)
    x = _tracks(batch=1, tracks=2, seconds=0.25)
    # a level ramp from -50 to +10 dB, so every level passes through every compressor knee
    x = x * torch.logspace(-2.5, 0.5, x.shape[-1])
    g = torch.Generator().manual_seed(0)
    # away from neutral values (a 0 dB peaking band does not depend on its frequency)
    track_u = (0.2 + 0.6 * torch.rand(1, 2, len(console.track_ranges), generator=g)).requires_grad_(True)
    master_u = 0.2 + 0.6 * torch.rand(1, len(console.master_ranges), generator=g)
    master_u[0, list(console.master_ranges).index("limiter_gain_db")] = 0.95  # drive the limiter
    master_u.requires_grad_(True)
    mix = console(x, None, console.denormalise(track_u, master_u))
    (mix**2).mean().backward()
    assert torch.isfinite(track_u.grad).all() and torch.isfinite(master_u.grad).all()
    dead_track = [k for i, k in enumerate(console.track_ranges) if track_u.grad[0, :, i].abs().max() == 0]
    dead_master = [k for i, k in enumerate(console.master_ranges) if master_u.grad[0, i].abs() == 0]
    assert not dead_track, dead_track
    assert not dead_master, dead_master


def test_gradcheck_console_tiny():
    cfg = ConsoleConfig(eq_fft_size=64, reverb_seconds=0.01)
    console = Console(8000, cfg).double()
    x = 0.3 * torch.randn(1, 2, 2, 128, dtype=torch.float64)
    track_u = torch.rand(1, 2, len(console.track_ranges), dtype=torch.float64) * 0.8 + 0.1
    master_u = torch.rand(1, len(console.master_ranges), dtype=torch.float64) * 0.8 + 0.1
    track_u.requires_grad_(True)

    def render(tu):
        return console(x, None, console.denormalise(tu, master_u.to(tu)))

    assert torch.autograd.gradcheck(render, (track_u,), eps=1e-6, atol=1e-4, rtol=1e-3, nondet_tol=1e-7)


def test_settings_json_round_trip():
    console = Console(SR)
    params = _random_params(console, 1, 3, seed=9)
    names = ["kick", "bass", "vox"]
    doc = json.loads(console.settings_to_json(params, names))
    back, order = console.settings_from_dict(doc)
    assert order == names
    for k, v in params.track.items():
        torch.testing.assert_close(back.track[k], v, atol=1e-3, rtol=1e-4)
    x = _tracks(batch=1, tracks=3)
    torch.testing.assert_close(console(x, None, back), console(x, None, params), atol=1e-3, rtol=1e-2)


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda d: d["tracks"][0].__setitem__("gain_db", "loud"), "must be a number"),
        (lambda d: d["tracks"][0].__setitem__("gain_db", 1e9), "outside"),
        (lambda d: d["tracks"][0].__setitem__("warp", 1.0), "unknown track parameter"),
        (lambda d: d["master"].__setitem__("comp_ratio", float("nan")), "finite"),
        (lambda d: d.__setitem__("tracks", []), "non-empty"),
        (lambda d: d.__setitem__("version", 99), "version"),
    ],
)
def test_settings_validation(mutate, needle):
    console = Console(SR)
    doc = console.settings_to_dict(console.default_params(1, 2), ["a", "b"])
    mutate(doc)
    with pytest.raises(ConfigError, match=needle):
        console.settings_from_dict(doc)


def test_sample_rate_is_stored():
    assert Console(48000).sample_rate == 48000
