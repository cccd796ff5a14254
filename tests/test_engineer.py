"""The mixing-engineer target model: seeded styles, content-dependent decisions, rendering."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from neuromix.core import features
from neuromix.mixing.engineer import (
    EngineerMixer,
    EngineerStyle,
    engineer_mix,
    engineer_plan,
    engineer_settings,
)
from neuromix.mixing.generator import generate_song

SR = 22050
CLASSES = ["kick", "snare", "bass", "vocal", "keys"]


@pytest.fixture(scope="module")
def song() -> torch.Tensor:
    return generate_song(11, seconds=2.0, sample_rate=SR, classes=CLASSES).as_multitrack()


@pytest.fixture(scope="module")
def plans(song):
    return {seed: engineer_plan(song, CLASSES, SR, seed) for seed in (0, 1)}


def _assert_in_ranges(plan, mixer) -> None:
    for params, ranges in ((plan.params.track, mixer.console.track_ranges), (plan.params.master, mixer.console.master_ranges)):
        assert set(params) == set(ranges)
        for k, r in ranges.items():
            v = params[k]
            assert torch.isfinite(v).all() and (v >= r.low).all() and (v <= r.high).all(), (k, v)


def test_style_sampling_is_seeded_and_varied():
    assert EngineerStyle.sample(5) == EngineerStyle.sample(5)
    assert EngineerStyle.sample(5) != EngineerStyle.sample(6)
    styles = [EngineerStyle.sample(s) for s in range(60)]
    lead = [s.lead_offset_db for s in styles]
    assert min(lead) < -1.0 and max(lead) > 2.0  # band-forward and vocal-forward engineers
    assert min(s.width for s in styles) < 0.7 and max(s.width for s in styles) > 1.1
    assert min(s.compression for s in styles) < 0.1 and max(s.compression for s in styles) > 0.9
    assert all(0.8 <= s.reverb_decay_s <= 2.8 and -16.0 <= s.target_lufs <= -11.0 for s in styles)
    descriptions = {s.describe().split(",")[0] for s in styles}
    assert {"vocal-forward", "band-forward"} <= descriptions


def test_same_seed_same_settings_and_mix_renders_with_the_console(song, plans):
    mix, params = engineer_mix(song, CLASSES, SR, 0)
    for group, ref in ((params.track, plans[0].params.track), (params.master, plans[0].params.master)):
        for k in ref:
            assert torch.equal(group[k], ref[k]), k
    assert torch.equal(mix, plans[0].mix)
    mixer = EngineerMixer(SR, EngineerStyle.sample(0))
    rendered = mixer.console(song[None], None, params)
    torch.testing.assert_close(rendered, mix, atol=1e-5, rtol=0)
    # the style's loudness target is met
    assert abs(float(features.integrated_loudness(rendered, SR)[0]) - EngineerStyle.sample(0).target_lufs) < 1.0


def test_different_seeds_give_different_styles(plans):
    a, b = plans[0].params, plans[1].params
    s0, s1 = EngineerStyle.sample(0), EngineerStyle.sample(1)
    for p, s in ((a, s0), (b, s1)):
        assert float(p.master["width"][0]) == pytest.approx(s.master_width, abs=1e-5)
        assert float(p.master["reverb_decay_s"][0]) == pytest.approx(s.reverb_decay_s, abs=1e-5)
    differing = [k for k in a.track if not torch.allclose(a.track[k], b.track[k], atol=1e-3)]
    assert {"gain_db", "reverb_send_db", "comp_ratio", "eq_high_gain_db"} <= set(differing), differing
    # the balance follows the style: the vocal-minus-drums offset differs as the styles say
    vocal, kick = CLASSES.index("vocal"), CLASSES.index("kick")
    gap = {seed: float(plans[seed].target_lufs[vocal] - plans[seed].target_lufs[kick]) for seed in (0, 1)}
    expected = (s0.lead_offset_db - s0.drums_offset_db) - (s1.lead_offset_db - s1.drums_offset_db)
    assert gap[0] - gap[1] == pytest.approx(expected, abs=1e-3)


def test_settings_inside_console_ranges(plans):
    mixer = EngineerMixer(SR)
    for plan in plans.values():
        _assert_in_ranges(plan, mixer)
        assert plan.notes[0].startswith("engineer style")


def _chord(env: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    tone = sum(torch.sin(2 * math.pi * f * t) / (k + 1) for k, f in enumerate((220.0, 277.2, 329.6, 440.0, 554.4)))
    return (0.1 * env * tone)[None].expand(2, -1).clone()


def _noise(lo_hz: float, hi_hz: float, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    spec = torch.fft.rfft(torch.randn(n, generator=g))
    f = torch.fft.rfftfreq(n, 1 / SR)
    spec[(f < lo_hz) | (f > hi_hz)] = 0
    x = torch.fft.irfft(spec, n=n)
    return (0.05 * x / x.square().mean().sqrt())[None].expand(2, -1).clone()


@pytest.fixture(scope="module")
def content_case():
    """Same class, different content: sustained vs plucked keys, bright vs dull guitar."""
    n = int(1.5 * SR)
    t = torch.arange(n) / SR
    sustained = _chord(torch.clamp(t / 0.05, max=1.0), t)
    plucked = _chord(torch.exp(-((t % 0.25) / 0.06)), t)  # 4 sharp plucks per second
    bright = _noise(1500, 9000, n, seed=1)
    dull = _noise(100, 600, n, seed=2)
    x = torch.stack([sustained, plucked, bright, dull])
    classes = ["keys", "keys", "guitar", "guitar"]
    mixer = EngineerMixer(SR, EngineerStyle.neutral())
    return x, classes, mixer, mixer.plan(x, classes)


def test_peakier_track_gets_more_compression(content_case):
    x, _, mixer, plan = content_case
    tr = plan.params.track
    crest = features.crest_factor_db(x[:2])
    assert float(crest[1]) > float(crest[0]) + 3.0  # the plucked track is the peakier one
    assert float(tr["comp_ratio"][0, 1]) > float(tr["comp_ratio"][0, 0]) + 0.2
    # threshold relative to the level at the compressor's input is lower for the peakier track
    rel = tr["comp_threshold_db"][0, :2] - plan.loudness_lufs[:2] - tr["gain_db"][0, :2]
    assert float(rel[1]) < float(rel[0]) - 0.5
    # and it really is compressed more: level reduction against the same chain without compression
    uncompressed = dataclasses.replace(plan.params)
    uncompressed.track = {**tr, "comp_ratio": torch.ones_like(tr["comp_ratio"]), "comp_makeup_db": torch.zeros_like(tr["comp_makeup_db"])}
    plain = mixer.console.process_tracks(x[None], uncompressed)[0, :2]
    squeezed = mixer.console.process_tracks(x[None], plan.params)[0, :2] / torch.pow(10.0, tr["comp_makeup_db"][0, :2] / 20)[:, None, None]
    reduction = features.rms_db(plain) - features.rms_db(squeezed)
    assert float(reduction[1]) > float(reduction[0]) + 0.4, reduction


def test_dull_track_gets_brighter_eq_and_sparse_track_more_reverb(content_case):
    _, _, _, plan = content_case
    tr = plan.params.track
    assert float(tr["eq_high_gain_db"][0, 3]) > float(tr["eq_high_gain_db"][0, 2]) + 2.0
    assert float(tr["reverb_send_db"][0, 0]) > float(tr["reverb_send_db"][0, 1]) + 2.0  # sustained vs 4 plucks/s


def test_engineer_settings_validates_input(song):
    with pytest.raises(ValueError, match="classes"):
        engineer_settings(song, CLASSES[:2], SR, 0)
