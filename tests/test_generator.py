"""Tests of the procedural multitrack generator (neuromix.mixing.generator / instruments).

The class-range tables below were measured with ``spectral_centroid_hz`` and ``active_crest_db``
(defined here) on 40 songs (seeds 0-9 x the four genres, 6 s, 44.1 kHz, every class once), then
widened by a margin; each range is also checked against what the class should sound like:

* centroid: the median over active STFT frames (2048-point Hann, hop 1024, frames within 30 dB of
  the loudest) of the magnitude-weighted mean frequency, the usual frame-wise definition.
* crest: peak / RMS in dB, the RMS taken over the active frames only, so that a track that rests
  for a section is not mistaken for a more impulsive one.

Measured (min..max over the 40 songs) -> asserted range, with the reason:

============ =============== ============== ============================================================
class        centroid (Hz)   crest (dB)     why the asserted range is plausible
============ =============== ============== ============================================================
kick         49..66          9.5..13.9      a pitched 40-60 Hz body dominates; centroid < 400 Hz.
                                            Crest ~10-14 dB like real kick tracks (long decays).
snare        4923..7840      17.1..22.0     noisy wires 1-9 kHz over a 170-230 Hz body; very
                                            impulsive, so crest > 15 dB.
hihat        11995..14155    14.4..21.3     high-passed metallic noise; centroid > 5 kHz.
percussion   86..11093       12.8..24.3     per variant: shaker > 5 kHz, clap 1.5-6 kHz, toms and
                                            congas < 600 Hz (membranes), all impulsive (> 11 dB).
bass         92..451         3.4..14.9      fundamentals 40-150 Hz; centroid < 600 Hz. Sustained
                                            synth/sub basses have pad-like crest, plucked more.
keys         318..992        10.9..23.8     middle register chords (C3-E5) with decaying partials.
pad          443..934        9.3..12.4      sustained, low-passed chords: lowest crest of the
                                            harmonic instruments, below every drum's.
lead         2055..6279      5.1..13.2      bright saw/square/flute-like lines at C4-G6.
vocal        904..2469       6.1..11.9      glottal source through formants F1-F3 (0.3-3 kHz):
                                            inside 400 Hz..3 kHz, sustained (crest < 14 dB).
guitar       269..976        5.0..17.1      plucked E2-E4 strings; overdrive is brighter and
                                            more compressed (lower crest).
strings      1377..2337      10.7..13.7     saw-like bowed/brass spectra with body resonances.
============ =============== ============== ============================================================
"""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import torch

from neuromix.core.errors import AudioInputError, ConfigError
from neuromix.mixing.classes import INSTRUMENT_CLASSES
from neuromix.mixing.generator import (
    DEMO_SONGS,
    GENERATED_CLASSES,
    GENRES,
    Note,
    Song,
    demo_song,
    generate_song,
    write_song,
)
from neuromix.mixing.instruments import (
    LEVEL_RANGES_DBFS,
    STEREO_CLASSES,
    VARIANTS,
    harmonic_tables,
    midi_to_hz,
    modal,
    oscillator,
)

ALL = list(GENERATED_CLASSES)

# (low, high) asserted ranges; see the module docstring for the measurements behind them.
CENTROID_HZ = {
    "kick": (30.0, 400.0),
    "snare": (2000.0, 10000.0),
    "hihat": (5000.0, 17000.0),
    "bass": (40.0, 600.0),
    "keys": (200.0, 1500.0),
    "pad": (200.0, 1500.0),
    "lead": (800.0, 8000.0),
    "vocal": (400.0, 3000.0),
    "guitar": (150.0, 1500.0),
    "strings": (700.0, 3500.0),
}
PERCUSSION_CENTROID_HZ = {
    "shaker": (5000.0, 13000.0), "clap": (1500.0, 6000.0), "toms": (40.0, 600.0), "congas": (150.0, 600.0),
}
CREST_DB = {
    "kick": (8.0, 17.0),
    "snare": (15.0, 26.0),
    "hihat": (12.0, 25.0),
    "percussion": (11.0, 26.0),
    "bass": (2.0, 18.0),
    "keys": (8.0, 27.0),
    "pad": (7.0, 14.5),
    "lead": (3.0, 16.0),
    "vocal": (4.0, 14.0),
    "guitar": (3.0, 20.0),
    "strings": (8.0, 16.0),
}


def spectral_centroid_hz(stem: torch.Tensor, sample_rate: int, n_fft: int = 2048) -> float:
    """Median frame-wise magnitude spectral centroid (Hz) over frames within 30 dB of the loudest."""
    x = stem.numpy().astype(np.float64).mean(axis=0)
    hop = n_fft // 2
    frames = (len(x) - n_fft) // hop + 1
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    mag = np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft), axis=1))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    energy = (mag**2).sum(axis=1)
    active = energy > energy.max() * 1e-3
    return float(np.median((mag[active] * freqs).sum(axis=1) / mag[active].sum(axis=1)))


def active_crest_db(stem: torch.Tensor, frame: int = 2048) -> float:
    """Peak over RMS (dB) with the RMS taken over frames within 30 dB of the loudest frame."""
    x = stem.numpy().astype(np.float64).mean(axis=0)
    n = len(x) // frame
    fr = x[: n * frame].reshape(n, frame)
    energy = np.mean(fr**2, axis=1)
    active = energy > energy.max() * 1e-3
    return float(20.0 * np.log10(np.abs(x).max() / np.sqrt(np.mean(fr[active] ** 2))))


def estimate_f0_hz(x: np.ndarray, sample_rate: int, fmin: float = 25.0, fmax: float = 2500.0) -> float:
    """Autocorrelation pitch estimate: the shortest-lag peak within 10 % of the best, refined by a parabola."""
    x = x - x.mean()
    n = len(x)
    spec = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(np.abs(spec) ** 2)[:n]
    lo, hi = int(sample_rate / fmax), min(n - 2, int(sample_rate / fmin))
    lags = np.arange(lo, hi)
    seg = ac[lo:hi] / ac[0] * n / (n - lags)  # unbiased normalisation
    best = seg.max()
    peaks = [i for i in range(1, len(seg) - 1) if seg[i] >= seg[i - 1] and seg[i] >= seg[i + 1] and seg[i] >= 0.9 * best]
    k = peaks[0] if peaks else int(np.argmax(seg))
    a, b, c = seg[k - 1], seg[k], seg[k + 1]
    den = a - 2 * b + c
    offset = 0.5 * (a - c) / den if den != 0 else 0.0
    return sample_rate / (lo + k + offset)


@pytest.fixture(scope="module")
def class_songs() -> list[Song]:
    """Six 5-s songs at 44.1 kHz with one track of every class, across all genres."""
    plan = [(0, "pop"), (1, "electronic"), (2, "rock"), (3, "ballad"), (4, "pop"), (5, "electronic")]
    return [generate_song(seed, seconds=5.0, classes=ALL, genre=g) for seed, g in plan]


# ------------------------------------------------------------------------------------------------
# determinism
# ------------------------------------------------------------------------------------------------


def test_same_seed_is_bit_identical_and_ignores_global_rng() -> None:
    np.random.seed(1)
    torch.manual_seed(1)
    a = generate_song(11, seconds=3.0, num_tracks=8)
    np.random.seed(2)
    torch.manual_seed(2)
    np.random.random(100)
    b = generate_song(11, seconds=3.0, num_tracks=8)
    assert a.names == b.names and a.classes == b.classes
    assert a.notes == b.notes
    assert json.dumps(a.to_json_meta(), sort_keys=True) == json.dumps(b.to_json_meta(), sort_keys=True)
    assert all(torch.equal(x, y) for x, y in zip(a.stems, b.stems))


def test_different_seeds_differ() -> None:
    a = generate_song(11, seconds=3.0, classes=["bass", "keys", "kick"])
    b = generate_song(12, seconds=3.0, classes=["bass", "keys", "kick"])
    assert a.notes != b.notes
    assert not any(torch.equal(x, y) for x, y in zip(a.stems, b.stems))


# ------------------------------------------------------------------------------------------------
# every class, every sample rate
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sample_rate", [22050, 44100, 48000])
def test_every_class_renders_finite_nonsilent_audio(sample_rate: int) -> None:
    song = generate_song(5, seconds=2.0, sample_rate=sample_rate, classes=ALL)
    n = round(2.0 * sample_rate)
    assert song.classes == ALL and song.sample_rate == sample_rate
    for i, (cls, stem) in enumerate(zip(song.classes, song.stems)):
        assert stem.dtype == torch.float32
        assert stem.shape == (2 if cls in STEREO_CLASSES else 1, n), cls
        assert torch.isfinite(stem).all(), cls
        peak_db = 20 * math.log10(float(stem.abs().max()))
        level = song.meta["tracks"][i]["level_dbfs"]
        lo, hi = LEVEL_RANGES_DBFS[cls]
        assert -12.0 <= lo <= level <= hi <= -3.0
        assert peak_db == pytest.approx(level, abs=0.01), cls
        rms_db = 10 * math.log10(float(stem.double().pow(2).mean()))
        assert rms_db > -60.0, (cls, rms_db)
        assert song.track_notes(i), cls


def test_every_variant_is_reachable_from_seeds() -> None:
    seen: dict[str, set[str]] = {c: set() for c in ALL}
    for seed in range(40):
        song = generate_song(seed, seconds=0.3, classes=ALL)
        for cls, name in zip(song.classes, song.names):
            seen[cls].add(song.meta["variants"][name])
    for cls in ALL:
        assert len(VARIANTS[cls]) >= 2
        assert seen[cls] == set(VARIANTS[cls]), cls


# ------------------------------------------------------------------------------------------------
# timbre: spectral centroid and crest factor per class
# ------------------------------------------------------------------------------------------------


def test_class_spectral_centroid_ranges(class_songs: list[Song]) -> None:
    for song in class_songs:
        for cls, name, stem in zip(song.classes, song.names, song.stems):
            c = spectral_centroid_hz(stem, song.sample_rate)
            if cls == "percussion":
                lo, hi = PERCUSSION_CENTROID_HZ[song.meta["variants"][name]]
            else:
                lo, hi = CENTROID_HZ[cls]
            assert lo <= c <= hi, (song.meta["seed"], cls, song.meta["variants"][name], round(c))


def test_class_crest_factor_ranges(class_songs: list[Song]) -> None:
    for song in class_songs:
        crest = {cls: active_crest_db(stem) for cls, stem in zip(song.classes, song.stems)}
        for cls, value in crest.items():
            lo, hi = CREST_DB[cls]
            assert lo <= value <= hi, (song.meta["seed"], cls, round(value, 1))
        # impulsive drums against a sustained pad in the same song
        assert crest["snare"] > crest["pad"] + 3.0
        assert crest["hihat"] > crest["pad"] + 2.0


# ------------------------------------------------------------------------------------------------
# the audio follows the score
# ------------------------------------------------------------------------------------------------


def test_bass_and_lead_pitches_follow_the_score() -> None:
    errors: dict[tuple[str, str], list[float]] = {}
    for seed in range(24):
        song = generate_song(seed, seconds=4.0, classes=["bass", "lead"])
        sr = song.sample_rate
        for ti, cls in enumerate(song.classes):
            variant = song.meta["variants"][song.names[ti]]
            x = song.stems[ti][0].numpy()
            notes = song.track_notes(ti)
            for j, note in enumerate(notes):
                nxt = notes[j + 1].onset_s if j + 1 < len(notes) else math.inf
                a = note.onset_s + 0.06  # skip the attack (and the sub bass's short pitch drop)
                b = min(note.onset_s + note.duration_s, nxt, note.onset_s + 0.3, song.meta["seconds"])
                if b - a < 0.08:
                    continue
                f0 = estimate_f0_hz(x[int(a * sr) : int(b * sr)], sr)
                cents = 1200.0 * math.log2(f0 / float(midi_to_hz(note.midi_pitch)))
                errors.setdefault((cls, variant), []).append(cents)
    for cls in ("bass", "lead"):
        for variant in VARIANTS[cls]:
            errs = np.abs(errors.get((cls, variant), []))
            assert len(errs) >= 5, (cls, variant)
            assert errs.max() < 25.0, (cls, variant, errs.max())
            assert np.median(errs) < 5.0, (cls, variant)


def test_sections_differ_in_density() -> None:
    chorus_rates, verse_rates, intro_rates = [], [], []
    for seed, genre in ((0, "pop"), (1, "electronic"), (2, "rock"), (3, "ballad"), (4, "pop")):
        song = generate_song(seed, seconds=16.0, genre=genre, num_tracks=8)
        bar_s = song.meta["bar_s"]
        rate: dict[str, list[float]] = {}
        for sec in song.meta["sections"]:
            t0, t1 = sec["start_s"], min(sec["start_s"] + sec["bars"] * bar_s, song.meta["seconds"])
            count = sum(1 for n in song.notes if t0 <= n.onset_s < t1)
            rate.setdefault(sec["name"], []).append(count / ((t1 - t0) / bar_s))
        assert {"intro", "verse", "chorus"} <= set(rate), song.meta["sections"]
        assert max(rate["chorus"]) > 1.3 * max(rate["intro"]), rate
        chorus_rates.append(np.mean(rate["chorus"]))
        verse_rates.append(np.mean(rate["verse"]))
        intro_rates.append(np.mean(rate["intro"]))
    assert np.mean(chorus_rates) > np.mean(verse_rates) > np.mean(intro_rates)


def test_song_structure_metadata() -> None:
    scales = {
        "major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "dorian": (0, 2, 3, 5, 7, 9, 10),
        "mixolydian": (0, 2, 4, 5, 7, 9, 10), "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    }
    signatures = Counter()
    for seed in range(12):
        song = generate_song(seed, seconds=8.0, classes=["bass"])
        m = song.meta
        g = GENRES[m["genre"]]
        signatures[m["time_signature"]] += 1
        assert m["time_signature"] in g.time_signatures and m["scale"] in g.scales
        lo, hi = g.tempo_bpm
        if m["time_signature"] == "6/8":
            lo, hi = lo * 2 / 3, hi * 2 / 3
        assert lo - 1 <= m["tempo_bpm"] <= hi + 1
        beats = {"4/4": 4, "3/4": 3, "6/8": 2}[m["time_signature"]]
        beat_s = 60.0 / m["tempo_bpm"]
        assert m["bar_s"] == pytest.approx(beats * beat_s)
        assert len(m["chords"]) == len(m["chord_pitch_classes"]) == m["bars"] == math.ceil(8.0 / m["bar_s"] - 1e-9)
        in_key = {(m["key_pitch_class"] + s) % 12 for s in scales[m["scale"]]}
        assert all(set(pcs) <= in_key for pcs in m["chord_pitch_classes"])  # diatonic harmony
        starts = [s["start_bar"] for s in m["sections"]]
        assert starts[0] == 0 and sum(s["bars"] for s in m["sections"]) == m["bars"]
        assert all(s["start_s"] == pytest.approx(s["start_bar"] * m["bar_s"]) for s in m["sections"])
        assert m["sample_rate"] == 44100 and m["seed"] == seed
        # the bass plays chord tones on the bar's first beat (roots, or its fifth in root-fifth lines)
        for note in song.notes:
            bar = int(note.onset_s / m["bar_s"] + 1e-6)
            if abs(note.onset_s - bar * m["bar_s"]) < 0.03 and bar < m["bars"]:
                assert note.midi_pitch % 12 in m["chord_pitch_classes"][bar]
    assert len(signatures) >= 2  # several metres occur


def test_timing_and_velocity_are_humanised() -> None:
    song = generate_song(3, seconds=8.0, genre="pop", classes=["hihat", "bass", "keys"])
    step = song.meta["bar_s"] / (16 if song.meta["time_signature"] == "4/4" else 12)
    dev = np.array([(n.onset_s / step - round(n.onset_s / step)) * step for n in song.notes])
    assert 0.001 < np.std(dev) < 0.03
    assert len({n.velocity for n in song.notes}) > 10
    assert all(1 <= n.velocity <= 127 for n in song.notes)


# ------------------------------------------------------------------------------------------------
# track sets, containers, demos, files
# ------------------------------------------------------------------------------------------------


def test_drawn_track_sets_are_plausible() -> None:
    for seed in range(10):
        song = generate_song(seed, seconds=0.5)
        assert 4 <= len(song.stems) <= 12
        assert len(set(song.names)) == len(song.names)
        assert set(song.classes) <= set(INSTRUMENT_CLASSES) - {"other"}
        assert song.meta["genre"] in GENRES
    assert len(generate_song(3, seconds=0.5, num_tracks=3).stems) == 3
    big = generate_song(3, seconds=0.5, num_tracks=14, genre="rock")
    assert len(big.stems) == 14 and big.names.count("guitar") == 1 and "guitar_2" in big.names


def test_multitrack_and_json_views() -> None:
    song = generate_song(8, seconds=1.0, classes=["kick", "pad", "keys", "keys"])
    assert song.names == ["kick", "pad", "keys", "keys_2"]
    mt = song.as_multitrack()
    assert mt.shape == (4, 2, 44100) and mt.dtype == torch.float32
    assert torch.equal(mt[0, 0], song.stems[0][0]) and torch.equal(mt[0, 1], song.stems[0][0])
    assert torch.equal(mt[1], song.stems[1])
    doc = json.loads(json.dumps(song.to_json_meta()))
    assert doc["classes"] == song.classes and doc["names"] == song.names
    assert [Note(**n) for n in doc["notes"]] == song.notes
    assert doc["meta"]["variants"] == {n: song.meta["variants"][n] for n in song.names}


def test_demo_songs() -> None:
    assert len(DEMO_SONGS) == 3
    specs = list(DEMO_SONGS.values())
    assert len({s.genre for s in specs}) == 3
    assert sorted(len(s.classes) for s in specs) == [6, 8, 10]
    assert all(18.0 <= s.seconds <= 22.0 for s in specs)
    for name, spec in DEMO_SONGS.items():
        song = demo_song(name, sample_rate=22050, seconds=2.0)
        assert song.classes == list(spec.classes) and len(song.stems) == len(spec.classes)
        assert song.meta["genre"] == spec.genre and song.meta["seed"] == spec.seed and song.meta["demo"] == name
        assert song.num_samples == 44100
    with pytest.raises(KeyError) as err:
        demo_song("no-such-song")
    assert all(name in str(err.value) for name in DEMO_SONGS)


def test_write_song_writes_stems_and_metadata_and_refuses_overwrite(tmp_path) -> None:
    song = generate_song(4, seconds=1.0, classes=["kick", "bass", "pad"])
    folder = tmp_path / "song"
    paths = write_song(song, folder)
    assert [p.name for p in paths] == ["kick.wav", "bass.wav", "pad.wav", "metadata.json"]
    for name, stem in zip(song.names, song.stems):
        data, sr = sf.read(folder / f"{name}.wav", dtype="float32", always_2d=True)
        assert sr == 44100 and data.shape == (stem.shape[1], stem.shape[0])
        assert np.abs(data.T - stem.numpy()).max() < 2.0**-22  # 24-bit PCM
    meta = json.loads((folder / "metadata.json").read_text())
    assert [s["class"] for s in meta["stems"]] == song.classes
    assert meta["meta"]["seed"] == 4 and len(meta["notes"]) == len(song.notes)

    with pytest.raises(AudioInputError):
        write_song(song, folder)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(AudioInputError):
        write_song(song, tmp_path / "other")

    smaller = generate_song(5, seconds=0.5, classes=["snare"])
    write_song(smaller, folder, overwrite=True, subtype="FLOAT")
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json", "snare.wav"]  # old stems removed
    data, _ = sf.read(folder / "snare.wav", dtype="float32", always_2d=True)
    assert np.array_equal(data.T, smaller.stems[0].numpy())  # FLOAT is bit-exact


@pytest.mark.parametrize(
    "kwargs",
    [
        {"genre": "polka"},
        {"classes": ["other"]},
        {"classes": ["kick", "flute"]},
        {"classes": ["kick"], "num_tracks": 2},
        {"num_tracks": 0},
        {"seconds": 0.0},
        {"sample_rate": 1000},
        {"classes": []},
    ],
)
def test_invalid_settings_raise_config_error(kwargs) -> None:
    with pytest.raises(ConfigError):
        generate_song(1, **kwargs)


def test_negative_seed_raises() -> None:
    with pytest.raises(ConfigError):
        generate_song(-1)


# ------------------------------------------------------------------------------------------------
# synthesis primitives against closed forms
# ------------------------------------------------------------------------------------------------


def test_modal_matches_direct_sum_of_decaying_sines() -> None:
    sr, n = 44100, 20000
    f = np.array([110.0, 237.3, 1234.5, 30000.0])  # the last is above Nyquist: dropped
    d = np.array([2.0, 5.0, 30.0, 1.0])
    a = np.array([1.0, 0.5, 0.25, 1.0])
    ph = np.array([0.0, 0.3, 1.0, 0.0])
    t = np.arange(n) / sr
    ref = (a[:3, None] * np.exp(-d[:3, None] * t) * np.sin(2 * np.pi * f[:3, None] * t + ph[:3, None])).sum(0)
    y = modal(f, d, a, sr, n, phases=ph)
    assert y.dtype == np.float32 and y.shape == (n,)
    assert np.abs(y - ref).max() < 1e-5


def test_wavetable_oscillator_is_band_limited_and_accurate() -> None:
    sr, n = 48000, 48000
    sine = harmonic_tables(np.array([1.0]))
    y = oscillator(sine, 1000.0, sr, n)
    assert np.abs(y - np.sin(2 * np.pi * 1000.0 * np.arange(n) / sr)).max() < 2e-3
    saw = harmonic_tables(1.0 / np.arange(1, 11))  # 10 harmonics of 1 kHz, nothing above 10 kHz
    spec = np.abs(np.fft.rfft(oscillator(saw, np.full(n, 1000.0), sr, n)))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    assert spec[freqs > 10500].max() < 1e-3 * spec.max()
    assert spec[np.argmin(np.abs(freqs - 3000))] == pytest.approx(spec.max() / 3, rel=0.02)
