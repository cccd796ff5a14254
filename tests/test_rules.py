"""Expert rules: the rule table, the rule-based mixer and the instrument classifier."""

from __future__ import annotations

import json
import math

import pytest
import torch

from neuromix.core import features
from neuromix.core.dsp.console import Console, ConsoleParams
from neuromix.core.errors import ConfigError
from neuromix.mixing.classes import INSTRUMENT_CLASSES
from neuromix.mixing.classify import (
    HELDOUT_SEED_OFFSET,
    FeatureClassifier,
    classify_tracks,
    describe_tracks,
    fit_logistic_regression,
)
from neuromix.mixing.generator import generate_song
from neuromix.mixing.rules import RuleMixer, load_rules, validate_rules

SR = 22050
SECONDS = 2.5
CLASSES = ["kick", "bass", "vocal", "guitar", "keys"]


@pytest.fixture(scope="module")
def song() -> tuple[torch.Tensor, list[str]]:
    s = generate_song(7, seconds=SECONDS, sample_rate=SR, classes=CLASSES)
    return s.as_multitrack(), list(s.classes)


@pytest.fixture(scope="module")
def mixer() -> RuleMixer:
    return RuleMixer(SR)


@pytest.fixture(scope="module")
def plan(song, mixer):
    x, classes = song
    return mixer.plan(x, classes)


def _band_noise(lo_hz: float, hi_hz: float, seed: int, seconds: float = 1.5, rms: float = 0.1) -> torch.Tensor:
    """Stereo-duplicated noise band-limited to [lo_hz, hi_hz] by FFT masking: ``(2, samples)``."""
    n = int(seconds * SR)
    g = torch.Generator().manual_seed(seed)
    spec = torch.fft.rfft(torch.randn(n, generator=g, dtype=torch.float64))
    f = torch.fft.rfftfreq(n, 1 / SR)
    spec[(f < lo_hz) | (f > hi_hz)] = 0
    x = torch.fft.irfft(spec, n=n)
    x = rms * x / x.square().mean().sqrt()
    return x.float()[None].expand(2, -1).clone()


def _solo_loudness(console: Console, x: torch.Tensor, params: ConsoleParams) -> torch.Tensor:
    """Loudness of each track rendered alone through the whole console with the same settings."""
    num = x.shape[0]
    processed = console.process_tracks(x[None], params).expand(num, -1, -1, -1)
    batch = ConsoleParams({k: v.expand(num, -1) for k, v in params.track.items()},
                          {k: v.expand(num) for k, v in params.master.items()})
    dry, send = console.route(processed, torch.eye(num, dtype=torch.bool), batch)
    return features.integrated_loudness(console.process_master(dry, send, batch), SR)


# ------------------------------------------------------------------------------ the table


def test_rule_table_loads_and_covers_every_class():
    rules = load_rules()
    assert set(rules["classes"]) == set(INSTRUMENT_CLASSES)
    for cls in ("kick", "snare", "bass", "vocal"):
        assert rules["classes"][cls]["pan"] == {"abs_min": 0.0, "abs_max": 0.0}
    assert rules["classes"]["vocal"]["eq"]["high_mid"]["gain_db"] > 0  # presence boost
    for cls in ("keys", "guitar"):
        assert rules["classes"][cls]["eq"]["low_mid"]["gain_db"] < 0  # low-mid cut
    assert rules["master"]["bus_compressor"]["ratio"] == 2.0
    assert rules["master"]["limiter"]["ceiling_db"] == -1.0
    assert len(rules["sources"]) >= 5 and all(s["citation"] for s in rules["sources"])
    for entry in rules["masking_priorities"]:
        assert entry["winner"] in INSTRUMENT_CLASSES and entry["loser"] in INSTRUMENT_CLASSES


def test_rule_table_validation_names_the_field(tmp_path, mixer):
    doc = json.loads(json.dumps(load_rules()))
    assert validate_rules(doc) == doc  # the normalised table validates again unchanged
    missing = json.loads(json.dumps(doc))
    del missing["classes"]["pad"]
    with pytest.raises(ConfigError, match="pad"):
        validate_rules(missing)
    bad = json.loads(json.dumps(doc))
    bad["classes"]["kick"]["highpass_hz"] = [10.0, 40.0]  # below the console's 20 Hz
    with pytest.raises(ConfigError, match=r"kick\.highpass_hz"):
        validate_rules(bad)
    bad = json.loads(json.dumps(doc))
    bad["classes"]["bass"]["compression"]["ratio"] = [6.0, 3.0]
    with pytest.raises(ConfigError, match=r"bass\.compression\.ratio"):
        validate_rules(bad)
    path = tmp_path / "rules.json"
    path.write_text("{ not json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_rules(path)
    with pytest.raises(ConfigError, match="unknown instrument class"):
        mixer.settings(torch.zeros(1, 2, SR), ["didgeridoo"])


# ------------------------------------------------------------------------------ the rule mixer


def test_clear_case_panning(plan):
    pan = dict(zip(plan.classes, plan.params.track["pan"][0].tolist()))
    assert pan["kick"] == 0.0 and pan["bass"] == 0.0 and pan["vocal"] == 0.0
    assert abs(pan["guitar"]) >= 0.2 and abs(pan["keys"]) >= 0.1
    assert pan["guitar"] * pan["keys"] < 0  # on both sides


def test_lead_vocal_is_loudest_after_the_console(song, plan, mixer):
    x, classes = song
    solo = _solo_loudness(mixer.console, x, plan.params)
    vocal = classes.index("vocal")
    assert plan.lead_index == vocal
    others = torch.cat([solo[:vocal], solo[vocal + 1:]])
    assert float(solo[vocal]) > float(others.max()) + 1.0, solo
    # each track's processed loudness sits at its target
    torch.testing.assert_close(plan.processed_lufs, plan.target_lufs, atol=0.1, rtol=0)


def test_output_loudness_meets_master_target(song, plan, mixer):
    x, _ = song
    mix = mixer.console(x[None], None, plan.params)  # an independent render of the settings
    torch.testing.assert_close(mix, plan.mix, atol=1e-5, rtol=0)
    target = mixer.rules["master"]["target_lufs"]
    assert abs(float(features.integrated_loudness(mix, SR)[0]) - target) < 1.0
    assert float(plan.params.master["limiter_ceiling_db"][0]) == -1.0
    assert float(plan.params.master["comp_ratio"][0]) == 2.0


def test_settings_inside_console_ranges(plan, mixer):
    for params, ranges in ((plan.params.track, mixer.console.track_ranges), (plan.params.master, mixer.console.master_ranges)):
        assert set(params) == set(ranges)
        for k, r in ranges.items():
            v = params[k]
            assert torch.isfinite(v).all() and (v >= r.low).all() and (v <= r.high).all(), k
    assert tuple(plan.params.track["gain_db"].shape) == (1, len(CLASSES))


@pytest.fixture(scope="module")
def overlapping() -> torch.Tensor:
    """Two tracks with the same spectrum (noise in the 500 Hz octave), different noise."""
    return torch.stack([_band_noise(380, 650, seed=1), _band_noise(380, 650, seed=2)])


@pytest.fixture(scope="module")
def overlap_plan(mixer, overlapping):
    return mixer.plan(overlapping, ["guitar", "keys"])  # guitar outranks keys


def _cut_at(plan, track: int, freq: float) -> float:
    band = int((plan.band_centres_hz - freq).abs().argmin())
    return float(plan.unmasking_cut_db[track, band])


def test_unmasking_cuts_the_lower_priority_track_where_spectra_overlap(mixer, overlapping, overlap_plan):
    plan = overlap_plan
    assert _cut_at(plan, 1, 500.0) < -2.0  # the keys are cut in the shared band
    assert float(plan.unmasking_cut_db[0].min()) == 0.0  # the guitar is not
    assert abs(float(plan.params.track["eq_low_mid_cutoff_hz"][0, 1]) - 500.0) < 1.0
    assert float(plan.params.track["eq_low_mid_gain_db"][0, 1]) <= _cut_at(plan, 1, 500.0) + 1e-6
    swapped = mixer.plan(overlapping, ["keys", "guitar"])  # the priority decides who is cut
    assert _cut_at(swapped, 0, 500.0) < -2.0 and float(swapped.unmasking_cut_db[1].min()) == 0.0


def test_no_unmasking_cut_for_disjoint_spectra(mixer):
    x = torch.stack([_band_noise(190, 320, seed=1), _band_noise(3000, 5000, seed=2)])
    plan = mixer.plan(x, ["guitar", "keys"])
    assert float(plan.unmasking_cut_db.abs().max()) == 0.0
    rules = mixer.rules["classes"]
    # only the class moves remain: keys keep their rule low-mid cut, nothing else
    assert float(plan.params.track["eq_low_mid_cutoff_hz"][0, 1]) == pytest.approx(rules["keys"]["eq"]["low_mid"]["freq_hz"])
    assert float(plan.params.track["eq_low_mid_gain_db"][0, 1]) == pytest.approx(rules["keys"]["eq"]["low_mid"]["gain_db"])
    assert float(plan.params.track["eq_high_mid_gain_db"][0, 1]) == 0.0


def test_kick_bass_split_overrides_priority(mixer):
    """Around 125 Hz the bass wins against the higher-priority kick (masking_priorities)."""
    x = torch.stack([_band_noise(95, 170, seed=3), _band_noise(95, 170, seed=4)])
    plan = mixer.plan(x, ["kick", "bass"])
    assert _cut_at(plan, 0, 125.0) < -2.0
    assert float(plan.unmasking_cut_db[1].min()) == 0.0


def test_deterministic_and_mask(mixer, overlapping, overlap_plan):
    again = mixer.settings(overlapping, ["guitar", "keys"])
    for group, ref in ((again.track, overlap_plan.params.track), (again.master, overlap_plan.params.master)):
        for k in ref:
            assert torch.equal(group[k], ref[k]), k
    # a masked (padding) track is ignored: neutral settings, the others as without it
    padded = torch.cat([overlapping, 0.3 * torch.ones_like(overlapping[:1])])
    masked = mixer.settings(padded, ["guitar", "keys", "other"], mask=torch.tensor([True, True, False]))
    defaults = mixer.console.default_params(1, 1)
    for k, ref in overlap_plan.params.track.items():
        torch.testing.assert_close(masked.track[k][:, :2], ref, atol=1e-4, rtol=1e-4)
        assert float(masked.track[k][0, 2]) == float(defaults.track[k][0, 0]), k


# ------------------------------------------------------------------------------ classification


def test_name_based_classification():
    names = ["01_Kick In.wav", "BassDI.wav", "LeadVox.wav", "Gtr L.wav", "Piano.wav", "Snare Top", "HiHat"]
    expected = ["kick", "bass", "vocal", "guitar", "keys", "snare", "hihat"]
    assert classify_tracks(names, None, SR) == expected
    got = classify_tracks(names[:2], None, SR, overrides={0: "percussion", "BassDI.wav": "keys"})
    assert got == ["percussion", "keys"]  # overrides always win
    with pytest.raises(ConfigError, match="unknown class"):
        classify_tracks(names[:1], None, SR, overrides={0: "banjo"})
    with pytest.raises(ConfigError, match="unknown track name"):
        classify_tracks(names[:1], None, SR, overrides={"nope.wav": "kick"})


def test_audio_classifier_beats_chance_on_held_out_songs():
    """The shipped model classifies stems of songs it never saw (names withheld)."""
    model = FeatureClassifier.load()
    assert model.metadata["metrics"]["heldout_accuracy"] >= 0.6
    correct = total = 0
    for k in range(2):
        s = generate_song(model.metadata["seed"] + HELDOUT_SEED_OFFSET + 500 + k, seconds=2.5, sample_rate=SR)
        stems = s.as_multitrack()
        predicted = classify_tracks([None] * len(s.classes), stems, SR, model=model)
        correct += sum(p == c for p, c in zip(predicted, s.classes))
        total += len(s.classes)
    chance = 1.0 / len(model.classes)
    assert correct / total >= max(0.5, 4 * chance), (correct, total)


def test_logistic_regression_learns_separable_descriptors():
    """The fitting routine separates two synthetic classes (a tone and a noise)."""
    t = torch.arange(SR) / SR
    tones = [torch.sin(2 * math.pi * f * t)[None] for f in (110.0, 220.0, 330.0, 440.0)]
    noises = [_band_noise(200, 8000, seed=s, seconds=1.0)[:1] for s in range(4)]
    feats = describe_tracks(torch.stack(tones + noises), SR).feature_matrix()
    model = fit_logistic_regression(feats, ["keys"] * 4 + ["hihat"] * 4)
    test = describe_tracks(torch.stack([torch.sin(2 * math.pi * 275.0 * t)[None], _band_noise(300, 9000, seed=9, seconds=1.0)[:1]]), SR)
    assert model.predict(test) == ["keys", "hihat"]
    restored = FeatureClassifier.from_dict(json.loads(json.dumps(model.to_dict())))
    assert restored.predict(test) == ["keys", "hihat"]
