"""Scores (JSON/TOML timelines) and MIDI files rendered to stereo; the `neuromix synth` CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import mido
import numpy as np
import pytest
import soundfile as sf
import torch

from neuromix.core.errors import ConfigError
from neuromix.synthesis.instrument import available_networks
from neuromix.synthesis.analysis import cents, estimate_f0
from neuromix.synthesis.patch import Patch
from neuromix.synthesis.schema import LIMITS
from neuromix.synthesis.score import load_score, midi_to_score, parse_pitch, render_midi, render_score
from neuromix.synthesis.testing import save_tiny_network

SR = 22050


@pytest.fixture(scope="module")
def patch_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("score")
    net = save_tiny_network(folder / "bb.safetensors", "blackbox", seed=5)
    doc = {
        "name": "score-lead",
        "network": {"path": str(net)},
        "pitched": True,
        "sample_rate": SR,
        "duration_s": 0.5,
        "note": 60,
        "excitation": {"slots": [{"signal": "saw", "level_db": -6, "class": "lead"}]},
        "techniques": [{"type": "bend", "layer": "tcn.blocks.2.conv", "op": "scale", "amount": 1.2}],
        "controls": {"bend": {"target": "/techniques/0/amount", "min": 0.0, "max": 3.0, "descriptor": "centroid_hz"}},
        "main_control": "bend",
        "envelope": {"attack_s": 0.005, "decay_s": 0.0, "sustain": 1.0, "release_s": 0.05},
        "output": {"loudness_lufs": None},
    }
    return Patch.from_dict(doc).save(folder / "lead.json")


def _onsets(audio: torch.Tensor, threshold_db: float = -40.0) -> list[float]:
    env = audio.abs().amax(dim=0)
    frames = env[: env.shape[0] // 220 * 220].reshape(-1, 220).amax(dim=1)
    loud = (20 * torch.log10(frames + 1e-9) > threshold_db).int()
    starts = torch.nonzero(torch.cat([torch.zeros(1, dtype=torch.int32), loud]).diff() == 1).flatten()
    return [float(s) * 220 / SR for s in starts]


def test_pitch_parsing():
    assert parse_pitch(69, "p") == pytest.approx(440.0)
    assert parse_pitch("A4", "p") == pytest.approx(440.0) and parse_pitch("C4", "p") == pytest.approx(
        261.6256, abs=1e-3
    )
    assert parse_pitch("C#4", "p") == pytest.approx(277.1826, abs=1e-3) and parse_pitch("330hz", "p") == 330.0
    with pytest.raises(ConfigError, match=r"events\[0\]\.pitch"):
        parse_pitch("la", "events[0].pitch")


def test_toml_score_places_pans_and_tunes_events(tmp_path, patch_file):
    score = tmp_path / "piece.toml"
    score.write_text(f"""
format = "neuromix-score"
sample_rate = {SR}
tail_s = 0.2
[patches]
lead = "{patch_file}"
[[events]]
time = 0.0
duration = 0.4
patch = "lead"
note = 57
pan = -1.0
[[events]]
time = 0.6
duration = 0.4
patch = "lead"
pitch = "E5"
pan = 1.0
velocity = 0.5
controls = {{ bend = 2.0 }}
[[events]]
time = 1.2
duration = 0.4
patch = "lead"
note = 57
pan = -1.0
""")
    rendered = render_score(score)
    audio = rendered.audio
    assert rendered.report.ok and audio.shape[0] == 2
    assert rendered.info == {"events": 3, "renders": 2, "name": "score"}  # events 1 and 3 are identical
    onsets = _onsets(audio)
    assert [round(o, 1) for o in onsets] == [0.0, 0.6, 1.2]
    first, second = audio[:, : int(0.4 * SR)], audio[:, int(0.65 * SR) : int(1.0 * SR)]
    assert float(first[1].abs().max()) < 1e-4 < float(first[0].abs().max())  # hard left (-80 dB)
    assert float(second[0].abs().max()) < 1e-4 < float(second[1].abs().max())  # hard right
    # tuned: the partials sit on the harmonics of the requested pitch (the tiny network's
    # fundamental can be 25 dB under its octave, so the octave an estimator picks is not the test)
    assert abs(_harmonic_detune_cents(first[:, int(0.1 * SR) : int(0.35 * SR)], 220.0)) < 10
    assert abs(_harmonic_detune_cents(second[:, int(0.05 * SR) : int(0.3 * SR)], 659.2551)) < 10


def _harmonic_detune_cents(x, f0: float) -> float:
    """Detune, in cents, of the strongest partial from the nearest harmonic of ``f0``."""
    mono = x.double().mean(0).numpy()
    n_fft = 8 * len(mono)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono)), n_fft))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-30)
    peak_hz = (k + 0.5 * (a - c) / (a - 2 * b + c)) * SR / n_fft
    harmonic = max(1, round(peak_hz / f0))
    return cents(peak_hz / harmonic, f0)


def test_json_score_with_automation_and_beats(tmp_path, patch_file):
    doc = {
        "sample_rate": SR,
        "time_unit": "beats",
        "tempo_bpm": 120,
        "tail_s": 0.1,
        "events": [
            {
                "time": 0,
                "duration": 0.5,
                "patch": str(patch_file),
                "note": 60,
                "automation": {"bend": [[0.0, 0.0], [0.25, 3.0]]},
            },
            {"time": 1, "duration": 0.5, "patch": str(patch_file), "hz": 300},
        ],
    }
    rendered = render_score(doc)
    assert rendered.report.ok and [round(o, 1) for o in _onsets(rendered.audio)] == [0.0, 0.5]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc))
    assert torch.equal(render_score(path).audio, rendered.audio)


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d["events"][0].update(time=-1), r"events\[0\]\.time"),
        (lambda d: d["events"][0].update(note=200), r"events\[0\]\.note"),
        (lambda d: d["events"][0].update(note=60, hz=200), r"events\[0\]: give one of"),
        (lambda d: d["events"][0].update(pan=3), r"events\[0\]\.pan"),
        (lambda d: d["events"][0].update(velocity="loud"), r"events\[0\]\.velocity"),
        (lambda d: d["events"][0].update(colour="red"), r"events\[0\]: unknown field"),
        (lambda d: d["events"][0].update(time=LIMITS.max_score_s), r"events\[0\]: ends at"),
        (lambda d: d.update(events=[d["events"][0]] * (LIMITS.max_events + 1)), "more than the limit"),
        (lambda d: d.update(sample_rate=10), "sample_rate"),
        (lambda d: d.update(events="all of them"), "events"),
    ],
)
def test_invalid_scores_name_the_field(patch_file, mutate, field):
    doc = {"events": [{"time": 0, "duration": 1, "patch": str(patch_file), "note": 60}]}
    mutate(doc)
    with pytest.raises(ConfigError, match=field):
        load_score(doc)


def test_score_errors_at_render_name_the_event(patch_file):
    doc = {
        "events": [
            {"time": 0, "duration": 0.3, "patch": str(patch_file)},
            {"time": 0, "duration": 0.3, "patch": str(patch_file), "controls": {"bend": 9.0}},
        ]
    }
    with pytest.raises(ConfigError, match=r"events\[1\]: control bend"):
        render_score(doc)
    with pytest.raises(ConfigError, match="presets"):
        render_score({"events": [{"time": 0, "duration": 0.3, "patch": "no-such-preset"}]})


def _write_midi(path, notes, cc=()):
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))  # 120 bpm: 960 ticks per second
    events = []
    for start, end, note, vel in notes:
        events.append((start, mido.Message("note_on", note=note, velocity=vel)))
        events.append((end, mido.Message("note_off", note=note, velocity=0)))
    for when, value in cc:
        events.append((when, mido.Message("control_change", control=1, value=value)))
    now = 0
    for when, msg in sorted(events, key=lambda e: (e[0], e[1].type != "note_off")):
        ticks = int(round(when * 960))
        track.append(msg.copy(time=ticks - now))
        now = ticks
    mid.save(str(path))
    return path


def test_midi_notes_velocity_and_cc(tmp_path, patch_file):
    midi = _write_midi(tmp_path / "song.mid", [(0.0, 0.4, 57, 127), (0.5, 0.9, 64, 32)], cc=[(0.0, 0), (0.6, 127)])
    score = midi_to_score(midi, str(patch_file), cc={1: "bend"}, sample_rate=SR)
    assert [round(e.time_s, 3) for e in score.events] == [0.0, 0.5]
    assert [round(e.duration_s, 3) for e in score.events] == [0.4, 0.4]
    assert score.events[0].velocity == 1.0 and score.events[1].velocity == pytest.approx(32 / 127)
    ((name, points),) = score.events[1].automation
    assert name == "bend" and np.allclose(points, [(0.0, 0.0), (0.1, 3.0)])
    rendered = render_midi(midi, str(patch_file), cc={1: "bend"}, sample_rate=SR)
    audio = rendered.audio
    assert rendered.report.ok
    loud = float(audio[:, : int(0.4 * SR)].abs().max())
    soft = float(audio[:, int(0.5 * SR) : int(0.9 * SR)].abs().max())
    assert soft < loud * 0.6  # velocity 32 is much softer
    assert abs(cents(estimate_f0(audio[:, : int(0.4 * SR)], SR, start_s=0.1, seconds=0.25), 220.0)) < 10
    with pytest.raises(ConfigError, match="has no control 'nope'"):
        midi_to_score(midi, str(patch_file), cc={1: "nope"})


def test_bad_midi_files(tmp_path, patch_file):
    junk = tmp_path / "junk.mid"
    junk.write_bytes(b"MThd\x00\x00\x00\x06garbage")
    with pytest.raises(ConfigError, match="not a valid MIDI file"):
        midi_to_score(junk, str(patch_file))
    empty = _write_midi(tmp_path / "empty.mid", [])
    with pytest.raises(ConfigError, match="no notes"):
        midi_to_score(empty, str(patch_file))
    with pytest.raises(ConfigError, match="not found"):
        midi_to_score(tmp_path / "missing.mid", str(patch_file))
    with pytest.raises(ConfigError, match="needs a patch"):
        load_score(tmp_path / "song.mid")


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "neuromix", "synth", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_cli_synth_commands(tmp_path, patch_file):
    listing = _cli("list", "--json")
    assert listing.returncode == 0, listing.stderr
    presets = json.loads(listing.stdout)["presets"]
    assert len(presets) >= 16 and all(p["description"] for p in presets)
    out = tmp_path / "x.wav"
    done = _cli(
        "render",
        str(patch_file),
        "-o",
        str(out),
        "--note",
        "64",
        "--control",
        "bend=2.5",
        "--save-patch",
        str(tmp_path / "used.json"),
    )
    assert done.returncode == 0, done.stderr
    audio, sr = sf.read(out)
    assert sr == SR and audio.shape[1] == 2 and np.isfinite(audio).all()
    used = Patch.load(tmp_path / "used.json")
    assert used.control_value("bend") == 2.5 and used.network.hash is not None
    assert _cli("render", str(patch_file), "-o", str(out)).returncode == 3  # exists without --force
    bad = _cli("render", "no-such-preset", "-o", str(tmp_path / "y.wav"))
    assert bad.returncode == 2 and "presets:" in bad.stderr
    preset = _cli("render", "wobble-saw-lead", "-o", str(tmp_path / "z.wav"), "--seconds", "0.5")
    if "blackbox" in available_networks():  # a preset plays the shipped network
        assert preset.returncode == 0 and (tmp_path / "z.wav").exists(), preset.stderr
    else:  # or says clearly that none is installed
        assert preset.returncode == 2 and "no shipped blackbox checkpoint" in preset.stderr
    net = json.loads(patch_file.read_text())["network"]["path"]
    layers = _cli("layers", net)
    assert layers.returncode == 0 and "tcn.blocks.3.conv" in layers.stdout
    swapped = _cli("render", "wobble-saw-lead", "--network", net, "-o", str(tmp_path / "w.wav"), "--seconds", "0.5")
    assert swapped.returncode == 0, swapped.stderr
    score = tmp_path / "s.json"
    score.write_text(
        json.dumps(
            {
                "sample_rate": SR,
                "events": [
                    {"time": 0, "duration": 0.3, "patch": str(patch_file), "note": 60},
                    {"time": 0.3, "duration": 0.3, "patch": str(patch_file), "note": 64},
                ],
            }
        )
    )
    assert _cli("score", str(score), "-o", str(tmp_path / "s.wav")).returncode == 0
    midi = _write_midi(tmp_path / "m.mid", [(0.0, 0.3, 60, 100)])
    ran = _cli(
        "midi",
        str(midi),
        "--patch",
        str(patch_file),
        "--cc",
        "1=bend",
        "--sample-rate",
        str(SR),
        "-o",
        str(tmp_path / "m.wav"),
    )
    assert ran.returncode == 0, ran.stderr
    assert (
        _cli(
            "midi", str(midi), "--patch", str(patch_file), "--cc", "one=bend", "-o", str(tmp_path / "n.wav")
        ).returncode
        == 2
    )
