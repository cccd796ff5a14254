"""Goal-oriented mixing: targets, features, locks and re-solving, references, automation, CLI."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from neuromix.core.dsp.console import Console
from neuromix.core.errors import ConfigError, NeuromixError
from neuromix.core.features import integrated_loudness
from neuromix.mixing.automation import Automation, automate_mix, smooth_rides, window_starts
from neuromix.mixing.generator import generate_song
from neuromix.mixing.goals import (
    FEATURE_TOLERANCE,
    REFERENCE_GOAL_FEATURES,
    REFERENCE_TRUST,
    SEMANTIC_WORDS,
    Targets,
    measure,
    parse_locks,
    parse_targets,
    read_targets,
    signal_features,
)
from neuromix.mixing.inference import mix_multitrack, resolve_mix
from neuromix.ui import cli

SR = 22050
CLASSES = ["kick", "snare", "bass", "keys", "vocal"]


@pytest.fixture(scope="module")
def song():
    s = generate_song(11, seconds=5.0, sample_rate=SR, classes=CLASSES)
    x = torch.stack([t.expand(2, -1) if t.shape[0] == 1 else t for t in s.stems])
    return x, list(s.names), list(s.classes)


@pytest.fixture(scope="module")
def rules_mix(song):
    x, names, classes = song
    return mix_multitrack(x, SR, model="rules", names=names, classes=classes)


def _track_features(x, doc, names):
    """Features of a settings document measured at the session rate on the whole song."""
    console = Console(SR)
    params, _ = console.settings_from_dict(doc, names)
    with torch.no_grad():
        return measure(console, x[None], params)


# --------------------------------------------------------------------------- targets


def test_semantic_words_map_to_documented_changes():
    t = parse_targets("vocals: louder, brighter; drums: punchier; master: much wider")
    got = {(x.where, x.feature): x.change for x in t.items}
    assert got == {
        ("vocals", "loudness"): 3.0,
        ("vocals", "brightness"): 0.25,
        ("vocals", "presence"): 1.5,
        ("drums", "punch"): 1.5,
        ("master", "width"): 6.0,
    }
    assert {x.change for x in parse_targets("bass: slightly softer").items} == {-1.5}
    # opposite words add up
    assert parse_targets("pad: brighter, darker").items[0].change == 0.0
    for word, changes in SEMANTIC_WORDS.items():
        parsed = parse_targets(f"keys: {word}")
        assert {x.feature: x.change for x in parsed.items} == changes


def test_target_documents_json_toml_and_round_trip(tmp_path):
    doc = {"format": "neuromix-targets", "version": 1,
           "tracks": {"vocal": {"loudness": 2, "brightness": {"value": 0.5}}}, "master": {"width": -2}}
    t = parse_targets(doc)
    assert parse_targets(t.to_dict()) == t
    assert parse_targets(json.dumps(doc)) == t
    toml = "[tracks.vocal]\nloudness = 2\nbrightness = { value = 0.5 }\n[master]\nwidth = -2\n"
    assert parse_targets(toml) == t
    path = tmp_path / "t.toml"
    path.write_text(toml)
    assert read_targets(path) == t


@pytest.mark.parametrize(
    "spec, message",
    [
        ("vocals: lauder", "unknown word"),
        ("vocals louder", "should read"),
        ({"tracks": {"vocal": {"sparkle": 1}}}, "unknown feature"),
        ({"tracks": {"vocal": {"loudness": float("nan")}}}, "finite"),
        ({"tracks": {"vocal": {"loudness": 1e9}}}, "within"),
        ({"tracks": {"vocal": {"loudness": "3"}}}, "must be a number"),
        ({"tracks": {"vocal": {"loudness": {"to": 3}}}}, "'value'"),
        ({"format": "other"}, "format"),
        ({"version": 99}, "version"),
        ({"tracks": {}}, "no targets"),
        ({"extra": 1}, "unknown field"),
        ("vocal: louder; Vocal: softer", "given twice"),  # places differing only in case collide
        ("[tracks\n", "TOML"),
        ("{not json", "JSON"),
        ("[" * 5000 + "]" * 5000, "TOML"),
    ],
)
def test_bad_targets_give_clear_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_targets(spec)


def test_read_targets_missing_and_huge(tmp_path):
    with pytest.raises(ConfigError, match="targets file not found"):
        read_targets(tmp_path / "nope.json")
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="regular file"):
        read_targets(fifo)
    big = tmp_path / "big.txt"
    big.write_text("vocal: louder\n" * 10000)
    with pytest.raises(ConfigError, match="KiB"):
        read_targets(big)


# --------------------------------------------------------------------------- features


def _stereo(left, right):
    return torch.stack([left, right])[None]


def test_signal_features_closed_forms():
    n = SR * 2
    t = torch.arange(n) / SR
    sine = lambda f: 0.5 * torch.sin(2 * math.pi * f * t)  # noqa: E731
    centred = signal_features(_stereo(sine(1000), sine(1000)), SR)
    assert float(centred["width"]) == pytest.approx(-40.0, abs=0.01)  # the floor: mono
    assert float(centred["brightness"]) == pytest.approx(0.0, abs=0.01)  # log2(1 kHz / 1 kHz)
    assert float(centred["presence"]) < -30.0 and float(centred["low_end"]) < -30.0
    assert float(centred["loudness"]) == pytest.approx(float(integrated_loudness(_stereo(sine(1000), sine(1000)), SR)))
    hard_left = signal_features(_stereo(sine(1000), torch.zeros(n)), SR)
    assert float(hard_left["width"]) == pytest.approx(0.0, abs=0.01)  # S == M
    assert float(signal_features(_stereo(sine(2000), sine(2000)), SR)["brightness"]) == pytest.approx(1.0, abs=0.02)
    assert float(signal_features(_stereo(sine(3000), sine(3000)), SR)["presence"]) == pytest.approx(0.0, abs=0.01)
    assert float(signal_features(_stereo(sine(80), sine(80)), SR)["low_end"]) == pytest.approx(0.0, abs=0.05)
    # punch: a steady tone ~0 dB; 10 % duty bursts: the loud frames sit 10 dB over the mean power
    steady = float(centred["punch"])
    assert abs(steady) < 0.1
    gate = ((t * 4) % 1.0 < 0.1).float()
    bursts = float(signal_features(_stereo(sine(1000) * gate, sine(1000) * gate), SR)["punch"])
    assert bursts == pytest.approx(10.0, abs=0.3)


def test_track_loudness_is_relative_to_the_rest(song):
    x, names, _ = song
    console = Console(SR)
    params = console.default_params(1, len(names))
    with torch.no_grad():
        base = measure(console, x[None], params).track["loudness"].clone()
        params.track["gain_db"][0, 4] += 6.0  # no compression at the defaults: exactly +6 dB
        louder = measure(console, x[None], params).track["loudness"]
    assert float(louder[4] - base[4]) == pytest.approx(6.0, abs=0.05)
    assert all(float(louder[i] - base[i]) < -0.5 for i in range(4))  # the others now sit lower


# --------------------------------------------------------------------------- meeting targets


@pytest.mark.parametrize(
    "text, where, feature",
    [
        ("vocal: louder", "vocal", "loudness"),
        ("bass: softer", "bass", "loudness"),
        ("master: wider", "master", "width"),
        ("keys: brighter", "keys", "brightness"),
        ("vocal: wetter", "vocal", "reverb"),
    ],
)
def test_targets_move_the_measured_feature_by_the_asked_amount(song, rules_mix, text, where, feature):
    x, names, classes = song
    out = mix_multitrack(x, SR, names=names, classes=classes, settings=rules_mix.settings, targets=text, steps=20)
    target = parse_targets(text).items[0]
    row = next(r for r in out.report.rows if r["where"] == where and r["feature"] == feature)
    assert row["met"], out.report.to_markdown()
    # independent check at the session rate on the whole song, from the written settings
    before, after = _track_features(x, rules_mix.settings, names), _track_features(x, out.settings, names)
    pick = (lambda m: m.master[feature]) if where == "master" else (lambda m: m.track[feature][names.index(where)])
    moved = float(pick(after) - pick(before)) * math.copysign(1.0, target.change)
    assert moved >= abs(target.change) - 2 * FEATURE_TOLERANCE[feature], (moved, target)
    assert out.report.distance_after < out.report.distance_before


def test_unreachable_target_is_reported_not_met(song, rules_mix):
    x, names, classes = song
    # the width of a track cannot exceed hard panning (0 dB): +60 dB is unreachable
    out = mix_multitrack(x, SR, names=names, classes=classes, settings=rules_mix.settings,
                         targets={"tracks": {"kick": {"width": {"value": 30.0}}}}, steps=8)
    row = out.report.rows[0]
    assert not row["met"] and row["after"] < 1.0
    assert "| kick | width |" in out.report.to_markdown()


def test_settings_round_trip_of_a_guided_mix(song, rules_mix, tmp_path):
    x, names, classes = song
    out = mix_multitrack(x, SR, names=names, classes=classes, settings=rules_mix.settings,
                         targets="vocal: louder", steps=6)
    doc = json.loads(json.dumps(out.settings))
    again = mix_multitrack(x, SR, names=names, settings=doc)
    assert torch.equal(again.mix, out.mix)


def test_black_box_refuses_goals(song):
    x, names, classes = song
    with pytest.raises(ConfigError, match="black-box"):
        mix_multitrack(x, SR, names=names, classes=classes, model="blackbox", targets="vocal: louder")
    with pytest.raises(ConfigError, match="neither a track name"):
        mix_multitrack(x, SR, names=names, classes=classes, model="rules", targets="tuba: louder")


# --------------------------------------------------------------------------- locks and re-solving


def test_parse_locks():
    console = Console(SR)
    names = ["kick", "vocal"]
    track_free, master_free, keys = parse_locks(["vocal.gain_db", "kick.*", "master.width"], names, console)
    assert not bool(track_free[0, 1, list(console.track_ranges).index("gain_db")])
    assert int(track_free[0, 1].sum()) == len(console.track_ranges) - 1
    assert not bool(track_free[0, 0].any())
    assert int(master_free.sum()) == len(console.master_ranges) - 1
    assert "master.width" in keys and "kick.pan" in keys
    for bad, msg in (("vocal", "TRACK.PARAMETER"), ("tuba.gain_db", "no track"), ("vocal.volume", "unknown track"),
                     ("master.volume", "unknown master")):
        with pytest.raises(ConfigError, match=msg):
            parse_locks([bad], names, console)


def test_resolve_keeps_locked_values_bit_identical_and_reduces_the_goal_distance(song, rules_mix):
    x, names, classes = song
    edited = json.loads(json.dumps(rules_mix.settings))
    vocal = next(t for t in edited["tracks"] if t["name"] == "vocal")
    vocal["gain_db"] = 3.14159265358979  # an edit with more digits than the document keeps
    vocal["pan"] = -0.123456789
    edited["master"]["width"] = 1.23456789
    locks = ["vocal.gain_db", "vocal.pan", "master.width", "bass.*"]
    out = resolve_mix(x, SR, edited, locks=locks, anchor=rules_mix.settings, names=names, classes=classes, steps=12)
    new_vocal = next(t for t in out.settings["tracks"] if t["name"] == "vocal")
    assert new_vocal["gain_db"] == 3.14159265358979
    assert new_vocal["pan"] == -0.123456789
    assert out.settings["master"]["width"] == 1.23456789
    old_bass = next(t for t in edited["tracks"] if t["name"] == "bass")
    new_bass = next(t for t in out.settings["tracks"] if t["name"] == "bass")
    assert new_bass == old_bass
    assert out.report.distance_after < out.report.distance_before
    assert sorted(out.report.locked)[:2] == ["bass.comp_attack_ms", "bass.comp_knee_db"]
    # something unlocked did move
    assert any(t != u for t, u in zip(edited["tracks"], out.settings["tracks"]))


def test_resolve_with_a_target_and_locks(song, rules_mix):
    x, names, classes = song
    out = resolve_mix(x, SR, rules_mix.settings, locks=["vocal.*"], targets="vocal: louder",
                      names=names, classes=classes, steps=15)
    old = next(t for t in rules_mix.settings["tracks"] if t["name"] == "vocal")
    new = next(t for t in out.settings["tracks"] if t["name"] == "vocal")
    assert new == old  # the vocal strip is locked: the others must make room
    row = out.report.rows[0]
    assert row["after"] > row["before"] + 1.0, out.report.to_markdown()


def test_resolve_default_anchor_is_the_model_prediction(song, rules_mix):
    x, names, classes = song
    edited = json.loads(json.dumps(rules_mix.settings))
    for t in edited["tracks"]:
        t["gain_db"] = max(-36.0, t["gain_db"] - 8.0) if t["name"] == "keys" else t["gain_db"]
    out = resolve_mix(x, SR, edited, model="rules", names=names, classes=classes, steps=10)
    assert out.report.goal == "anchor"
    assert out.report.distance_after < out.report.distance_before


def test_resolve_needs_settings():
    with pytest.raises(ConfigError, match="settings document"):
        resolve_mix(torch.zeros(1, 1, SR), SR, None)


# --------------------------------------------------------------------------- reference


def test_reference_guidance_moves_toward_the_reference(song, rules_mix):
    x, names, classes = song
    # a reference 4 dB louder and with twice the side signal (+6 dB width) of the rules mix
    mid, side = rules_mix.mix.mean(0), (rules_mix.mix[0] - rules_mix.mix[1]) / 2
    ref = 10 ** (4 / 20) * torch.stack([mid + 2 * side, mid - 2 * side])
    out = mix_multitrack(x, SR, names=names, classes=classes, settings=rules_mix.settings, reference=ref, steps=15)
    assert out.report.goal == "reference"
    assert out.report.distance_after < 0.7 * out.report.distance_before, out.report.to_markdown()
    rows = {r["feature"]: r for r in out.report.rows}
    assert set(rows) == set(REFERENCE_GOAL_FEATURES)
    # loudness is trusted fully, the width by its style share (REFERENCE_TRUST)
    assert rows["loudness"]["after"] > rows["loudness"]["before"] + 3.0, out.report.to_markdown()
    assert rows["width_mid"]["after"] > rows["width_mid"]["before"] + 0.5 * 6.0 * REFERENCE_TRUST["width_mid"]
    # a reference sets the master bus: every track setting stays the mixer's own
    assert out.settings["tracks"] == rules_mix.settings["tracks"]
    assert out.settings["master"] != rules_mix.settings["master"]


@pytest.mark.slow
def test_correct_reference_beats_wrong_reference_on_held_out_pairs():
    """Target: song A mixed in an engineer style; correct reference: song B in that style;
    wrong: song B in another style. On the style features the guidance moves (those of
    REFERENCE_TRUST, scaled by their trust), the correct reference lands closer to the target
    than the wrong one (benchmarks/guidance.py has the full study with the console network)."""
    from neuromix.mixing.engineer import engineer_mix
    from neuromix.mixing.goals import _reference_scale, reference_features

    def style_distance(mix, target):
        a, b = reference_features(mix[None], SR), reference_features(target[None], SR)
        return float(sum(REFERENCE_TRUST[k] * ((a[k] - b[k]) / _reference_scale(k)).square() for k in REFERENCE_TRUST))

    right_d, wrong_d, loud = [], [], []
    for i in range(3):
        a = generate_song(93_000_000 + i, seconds=4.0, sample_rate=SR)
        b = generate_song(94_000_000 + i, seconds=6.0, sample_rate=SR)
        ta, tb = a.as_multitrack(), b.as_multitrack()
        target = engineer_mix(ta, a.classes, SR, 95_000_000 + i)[0][0]
        right_ref = engineer_mix(tb, b.classes, SR, 95_000_000 + i)[0][0]
        wrong_ref = engineer_mix(tb, b.classes, SR, 96_000_000 + i)[0][0]
        kw = {"model": "rules", "names": list(a.names), "classes": list(a.classes), "steps": 10}
        right = mix_multitrack(ta, SR, reference=right_ref, **kw).mix
        wrong = mix_multitrack(ta, SR, reference=wrong_ref, **kw).mix
        right_d.append(style_distance(right, target))
        wrong_d.append(style_distance(wrong, target))
        loud.append(abs(float(integrated_loudness(right[None], SR) - integrated_loudness(target[None], SR))))
    assert sum(r < w for r, w in zip(right_d, wrong_d)) >= 2 and sum(right_d) < sum(wrong_d), (right_d, wrong_d)
    assert max(loud) < 1.0, loud  # the style's loudness transfers from another song


# --------------------------------------------------------------------------- automation


def test_smooth_rides_limits_and_centres():
    raw = torch.tensor([[0.0, 20.0, -20.0, 3.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    rides = smooth_rides(raw)
    assert float(rides.abs().max()) <= 6.0
    assert torch.allclose(rides.mean(-1), torch.zeros(2), atol=1e-5) or float(rides.abs().max()) == 6.0
    assert torch.allclose(rides[1], torch.zeros(5))
    assert window_starts(100, 40, 20) == [0, 20, 40, 60]
    assert window_starts(30, 40, 20) == [0]
    assert window_starts(105, 40, 20) == [0, 20, 40, 60, 65]


def test_ride_gains_are_continuous_and_hold_at_the_ends():
    auto = Automation([1.0, 2.0, 4.0], {"a": [0.0, 6.0, -6.0], "b": [0.0, 0.0, 0.0]})
    gains = auto.gains_function(1000, ["b", "a", "c"])
    g = gains(0, 5000)
    assert g.shape == (1, 3, 5000)
    db = 20 * torch.log10(g[0, 1].double())
    assert float(db[0]) == pytest.approx(0.0, abs=1e-4) and float(db[4999]) == pytest.approx(-6.0, abs=1e-4)
    assert float(db[2000]) == pytest.approx(6.0, abs=1e-4) and float(db[1500]) == pytest.approx(3.0, abs=1e-3)
    assert float(db.diff().abs().max()) <= 6.0 / 1000 + 1e-6  # at most 6 dB per second: no steps
    assert torch.equal(g[0, 0], torch.ones(5000)) and torch.equal(g[0, 2], torch.ones(5000))
    # block evaluation == whole evaluation
    assert torch.allclose(torch.cat([gains(0, 1234), gains(1234, 5000)], -1), g)


def test_automation_document_validation():
    names = ["a", "b"]
    good = {"parameter": "gain_db", "times_s": [1.0, 2.0], "tracks": {"a": [0.0, 1.0]}}
    assert Automation.from_dict(good, names).rides_db == {"a": [0.0, 1.0]}
    for bad, msg in (
        ({**good, "times_s": [2.0, 1.0]}, "increasing"),
        ({**good, "tracks": {"z": [0.0, 1.0]}}, "unknown track"),
        ({**good, "tracks": {"a": [0.0]}}, "must list 2"),
        ({**good, "tracks": {"a": [0.0, 60.0]}}, "within"),
        ({**good, "tracks": {"a": [0.0, float("nan")]}}, "finite"),
        ({**good, "parameter": "pan"}, "gain_db"),
        ([], "object"),
    ):
        with pytest.raises(ConfigError, match=msg):
            Automation.from_dict(bad, names)


def test_automated_mix_round_trips_and_renders_in_blocks_exactly(song):
    x, names, classes = song
    long = torch.cat([x, 0.5 * x, x], dim=-1)  # 15 s with a quiet middle
    out, auto = automate_mix(long, SR, model="rules", names=names, classes=classes, window_seconds=4.0)
    assert len(auto.times_s) >= 5 and out.settings["automation"]["times_s"] == [round(t, 4) for t in auto.times_s]
    assert any(abs(v) > 0.05 for values in auto.rides_db.values() for v in values)
    again = mix_multitrack(long, SR, names=names, settings=json.loads(json.dumps(out.settings)), block_seconds=1.3)
    assert float((again.mix - out.mix).abs().max()) < 1e-4
    csv = auto.to_csv().splitlines()
    assert csv[0] == "time_s,track,gain_db" and len(csv) == 1 + len(names) * len(auto.times_s)
    # rides are applied: zeroing them changes the mix
    flat = json.loads(json.dumps(out.settings))
    flat.pop("automation")
    assert float((mix_multitrack(long, SR, names=names, settings=flat).mix - out.mix).abs().max()) > 1e-3
    with pytest.raises(ConfigError, match="black-box"):
        automate_mix(long, SR, model="blackbox", names=names, classes=classes)


# --------------------------------------------------------------------------- CLI


def _write_stems(folder, song):
    x, names, _ = song
    folder.mkdir()
    for name, stem in zip(names, x):
        sf.write(folder / f"{name}.wav", stem.T.numpy(), SR, subtype="FLOAT")
    return folder


def test_cli_targets_report_lock_and_resolve(tmp_path, song, capsys):
    stems = _write_stems(tmp_path / "stems", song)
    out, params, report = tmp_path / "mix.wav", tmp_path / "p.json", tmp_path / "r.md"
    code = cli.main(["mix", str(stems), "-o", str(out), "--model", "rules", "--target", "vocal: louder",
                     "--params", str(params), "--report", str(report), "--steps", "8", "--no-progress"])
    assert code == 0
    assert "| vocal | loudness |" in report.read_text()
    assert "goal (targets)" in capsys.readouterr().out
    doc = json.loads(params.read_text())
    doc["tracks"][0]["gain_db"] = -7.777777
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    out2, params2 = tmp_path / "mix2.wav", tmp_path / "p2.json"
    code = cli.main(["mix", str(stems), "-o", str(out2), "--settings", str(edited), "--resolve", "--model", "rules",
                     "--lock", f"{doc['tracks'][0]['name']}.gain_db", "--params", str(params2), "--steps", "6",
                     "--report", str(tmp_path / "r2.json")])
    assert code == 0
    assert json.loads(params2.read_text())["tracks"][0]["gain_db"] == -7.777777
    assert json.loads((tmp_path / "r2.json").read_text())["goal"] == "anchor"
    data, rate = sf.read(out2)
    assert rate == SR and data.shape[1] == 2 and np.isfinite(data).all()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lock", "vocal.gain_db"], "--lock keeps settings"),
        (["--resolve"], "--resolve re-optimises"),
        (["--target", "vocal: lauder"], "unknown word"),
        (["--target", "vocal: louder", "--targets", "x.json"], "not both"),
        (["--report", "r.md"], "--report describes"),
        (["--automation-out", "a.csv"], "needs --automation"),
        (["--steps", "-1"], "--steps"),
    ],
)
def test_cli_goal_option_errors(tmp_path, song, capsys, extra, message):
    stems = _write_stems(tmp_path / "stems", song)
    code = cli.main(["mix", str(stems), "-o", str(tmp_path / "m.wav"), "--model", "rules", *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "m.wav").exists()


def test_cli_automation_writes_curves(tmp_path, song):
    x, names, classes = song
    long = torch.cat([x, 0.5 * x], dim=-1)
    folder = tmp_path / "stems"
    folder.mkdir()
    for name, stem in zip(names, long):
        sf.write(folder / f"{name}.wav", stem.T.numpy(), SR, subtype="FLOAT")
    code = cli.main(["mix", str(folder), "-o", str(tmp_path / "m.wav"), "--model", "rules", "--automation",
                     "--automation-window", "3", "--automation-out", str(tmp_path / "a.csv"),
                     "--params", str(tmp_path / "p.json")])
    assert code == 0
    assert (tmp_path / "a.csv").read_text().startswith("time_s,track,gain_db\n")
    assert "automation" in json.loads((tmp_path / "p.json").read_text())


def test_targets_type_is_falsy_when_empty():
    assert not Targets(())
    with pytest.raises(NeuromixError):
        parse_targets("")


def test_track_stage_reuse_measures_the_same(song):
    """Master-only solves run the track strips once; the measurement must not change."""
    from neuromix.mixing.goals import track_stage

    x, names, _ = song
    console = Console(SR)
    params = console.default_params(1, len(names))
    params.track["reverb_send_db"][:] = -12.0
    params.master["width"][:] = 1.3
    with torch.no_grad():
        full = measure(console, x[None], params)
        reused = measure(console, x[None], params, track_stage(console, x[None], params))
    for a, b in ((full.track, reused.track), (full.master, reused.master), (full.reference, reused.reference)):
        assert all(torch.equal(a[k], b[k]) for k in a)
