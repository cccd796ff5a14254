"""Mixing networks: shapes, permutation/padding invariance, batching, references, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from neuromix.core import checkpoint
from neuromix.mixing.generator import generate_song
from neuromix.mixing.models import (
    BlackBoxConfig,
    BlackBoxNet,
    ConsoleNet,
    ConsoleNetConfig,
    MODEL_REGISTRY,
    build_model,
    load_model,
)
from neuromix.mixing.rules import RuleMixer

SR = 16000
SMALL_CONSOLE = dict(sample_rate=SR, embed_dim=32, encoder_channels=16, heads=2, layers=1, window_seconds=0.5)
SMALL_BLACKBOX = dict(
    sample_rate=SR, embed_dim=32, encoder_channels=16, heads=2, layers=1, window_seconds=0.5,
    n_fft=512, hop=128, n_bands=24, max_band_hz=8000.0, tcn_channels=16, tcn_dilations=(1, 2, 4),
)


def _model(kind: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    if kind == "console":
        model = ConsoleNet(ConsoleNetConfig(**SMALL_CONSOLE))
    else:
        model = BlackBoxNet(BlackBoxConfig(**SMALL_BLACKBOX))
        # give the untrained black box a non-trivial output layer so invariance tests mean something
        torch.nn.init.normal_(model.tcn.out.weight, std=0.05)
    return model.eval()


def _tracks(batch=1, tracks=3, channels=2, seconds=0.6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, tracks, channels, int(seconds * SR), generator=g)


@pytest.mark.parametrize("kind", ["console", "blackbox"])
@pytest.mark.parametrize("tracks,channels", [(1, 1), (3, 2), (5, 1)])
def test_shapes_and_finite(kind, tracks, channels):
    model = _model(kind)
    x = _tracks(batch=2, tracks=tracks, channels=channels)
    with torch.no_grad():
        out = model(x, None, SR)
    assert out.mix.shape == (2, 2, x.shape[-1])
    assert torch.isfinite(out.mix).all()
    assert (out.params is None) == (kind == "blackbox")


@pytest.mark.parametrize("kind", ["console", "blackbox"])
def test_permutation_invariance(kind):
    model = _model(kind)
    x = _tracks(tracks=4)
    classes = torch.tensor([[0, 4, 8, 5]])
    perm = torch.tensor([3, 1, 0, 2])
    with torch.no_grad():
        a = model(x, None, SR, classes).mix
        b = model(x[:, perm], None, SR, classes[:, perm]).mix
    assert (a - b).abs().max() < 1e-4 * max(1.0, float(a.abs().max()))


@pytest.mark.parametrize("kind", ["console", "blackbox"])
def test_padding_tracks_change_nothing(kind):
    model = _model(kind)
    x = _tracks(tracks=2)
    padded = torch.cat([x, 0.3 * torch.randn_like(x[:, :1])], dim=1)
    mask = torch.tensor([[True, True, False]])
    with torch.no_grad():
        a = model(x, None, SR).mix
        b = model(padded, mask, SR).mix
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["console", "blackbox"])
def test_batched_equals_item_by_item(kind):
    model = _model(kind)
    x = _tracks(batch=2, tracks=3)
    with torch.no_grad():
        batched = model(x, None, SR).mix
        singles = torch.cat([model(x[i : i + 1], None, SR).mix for i in range(2)])
    torch.testing.assert_close(batched, singles, atol=1e-5, rtol=1e-4)


def test_console_settings_are_physical_and_serialisable():
    model = _model("console")
    x = _tracks(tracks=2)
    with torch.no_grad():
        out = model(x, None, SR)
    console = model.console(SR)
    doc = console.settings_to_dict(out.params, ["a", "b"])
    text = json.dumps(doc)
    back, _ = console.settings_from_dict(json.loads(text))
    for name, r in console.track_ranges.items():
        assert r.low <= float(back.track[name].min()) and float(back.track[name].max()) <= r.high
    # rendering the settings again reproduces the network's mix
    torch.testing.assert_close(console(x, None, out.params), out.mix)


def test_reference_tokens_steer_the_console_network():
    model = _model("console")
    x = _tracks(tracks=2)
    ref = _tracks(batch=1, tracks=1, seconds=0.8, seed=5)[:, 0]
    with torch.no_grad():
        none = model(x, None, SR).track_u
        with_ref = model(x, None, SR, reference=ref).track_u
        dropped = model(x, None, SR, reference=ref, reference_mask=torch.tensor([False])).track_u
    assert (none - with_ref).abs().max() > 1e-4
    torch.testing.assert_close(none, dropped, atol=1e-6, rtol=1e-5)


def test_any_session_rate_and_too_many_tracks():
    model = _model("console")
    x = 0.1 * torch.randn(1, 2, 2, 22050)
    with torch.no_grad():
        assert model(x, None, 44100).mix.shape == (1, 2, 22050)
    with pytest.raises(ValueError, match="between 1 and 64"):
        model(torch.zeros(1, 65, 1, 1000), None, SR)


@pytest.mark.parametrize("kind", ["console", "blackbox"])
def test_checkpoint_round_trip(kind, tmp_path):
    model = _model(kind, seed=3)
    path = checkpoint.save(tmp_path / f"{kind}.safetensors", model, model_type=model.model_type,
                           config=model.config, sample_rate=SR)
    loaded, info = load_model(path)
    assert info.model_type == model.model_type
    x = _tracks(tracks=3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, None, SR).mix, model(x, None, SR).mix, atol=0, rtol=0)


def test_build_model_rejects_unknown():
    with pytest.raises(KeyError, match="unknown model type"):
        build_model("nope")
    assert set(MODEL_REGISTRY) == {"console_net", "blackbox_net"}


def test_untrained_rule_prior_network_mixes_like_the_rules():
    """With zero-initialised heads a rule-prior console network reproduces the rule-based settings."""
    torch.manual_seed(0)
    model = ConsoleNet(ConsoleNetConfig(**{**SMALL_CONSOLE, "window_seconds": 2.0}, rule_prior=True)).eval()
    song = generate_song(4, seconds=1.5, sample_rate=SR, classes=["kick", "bass", "vocal"])
    tracks = song.as_multitrack()
    classes = torch.tensor([[0, 4, 8]])
    with torch.no_grad():
        out = model(tracks[None], None, SR, classes)
    rules = RuleMixer(SR).settings(tracks, song.classes)
    ranges = model.console(SR).track_ranges
    for name, value in rules.track.items():
        # 1 % of the range: the prior's logit is clamped to [1e-4, 1 - 1e-4]
        tolerance = 1e-2 * (ranges[name].high - ranges[name].low)
        torch.testing.assert_close(out.params.track[name], value, atol=tolerance, rtol=0)
    # and the prior follows the input: unknown classes are classified, not ignored
    with torch.no_grad():
        unknown = model(tracks[None], None, SR, None)
    assert torch.isfinite(unknown.mix).all()
