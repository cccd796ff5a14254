"""Tests of neuromix.mixing.data: folder layouts, class inference, segment and synthetic datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from neuromix.core.errors import AudioInputError, ConfigError
from neuromix.core.io import read_audio, resample
from neuromix.mixing.classes import CLASS_INDEX
from neuromix.mixing.data import (
    LAYOUTS,
    TEST_SEED_OFFSET,
    VALIDATION_SEED_OFFSET,
    SegmentDataset,
    SongFolder,
    SyntheticSongDataset,
    collate_multitrack,
    detect_layout,
    find_songs,
    infer_class_from_name,
    load_song_folder,
    worker_init_fn,
)

REPO = Path(__file__).resolve().parents[1]
MULTITRACKS = REPO / ".." / "shared" / "data" / "multitracks"
SR = 16000


def _write(path: Path, seconds: float = 0.5, sr: int = SR, channels: int = 2, *, freq: float = 220.0,
           amp: float = 0.3, seed: int = 0, silent_until_s: float = 0.0) -> Path:
    """A short test file: a sine plus a little noise (channels differ), optional silent start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    x = amp * np.sin(2 * np.pi * freq * t)[:, None] + 0.05 * rng.standard_normal((n, channels))
    x[: int(round(silent_until_s * sr))] = 0.0
    sf.write(str(path), x.astype(np.float32), sr, subtype="FLOAT" if path.suffix == ".wav" else "PCM_24")
    return path


# --------------------------------------------------------------------------- class inference


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("01_Kick.wav", "kick"),
        ("KickIn.flac", "kick"),
        ("BD_sample", "kick"),
        ("Bass Drum", "kick"),
        ("02_SnareTop.wav", "snare"),
        ("sn_2", "snare"),
        ("HiHat", "hihat"),
        ("hh_open", "hihat"),
        ("alt_hats", "hihat"),
        ("Ride", "hihat"),
        ("crash.wav", "hihat"),
        ("07_OH_L.wav", "hihat"),
        ("Tom1", "percussion"),
        ("FloorTom", "percussion"),
        ("Shaker", "percussion"),
        ("claps", "percussion"),
        ("Congas", "percussion"),
        ("main_drums", "percussion"),
        ("05_BassDI.wav", "bass"),
        ("bs_amp", "bass"),
        ("SubBass", "bass"),
        ("SynthBass", "bass"),
        ("pad_bass", "bass"),
        ("Piano_L", "keys"),
        ("Rhodes", "keys"),
        ("Organ", "keys"),
        ("mallet", "keys"),
        ("minilogue_synth", "keys"),
        ("Pad", "pad"),
        ("SynthPad", "pad"),
        ("LeadSynth", "lead"),
        ("ld_saw", "lead"),
        ("12_LeadVox.wav", "vocal"),
        ("vox_lead", "vocal"),
        ("BGV1", "vocal"),
        ("bgvox_harmony", "vocal"),
        ("Choir", "vocal"),
        ("LeadVocal", "vocal"),
        ("ElecGtr1", "guitar"),
        ("AcousticGuitar", "guitar"),
        ("Strings", "strings"),
        ("Violin", "strings"),
        ("Cello", "strings"),
        ("Brass", "strings"),
        ("Horns", "strings"),
        ("Trumpet", "strings"),
        ("Bassoon", "strings"),
        ("reverse_sweep", "other"),
        ("FX_riser", "other"),
        ("DrumRoom", "percussion"),
        ("PianoRoom", "keys"),
        ("slide", None),
        ("take_3", None),
    ],
)
def test_infer_class_from_name(name: str, expected: str | None) -> None:
    assert infer_class_from_name(name) == expected


# --------------------------------------------------------------------------- layouts


def test_generic_layout_with_json_metadata_and_override(tmp_path: Path) -> None:
    song = tmp_path / "song"
    _write(song / "kick.wav")
    _write(song / "thing.wav", freq=330)
    _write(song / "gtr.wav", freq=440)
    _write(song / "mix.wav", freq=100)
    (song / "metadata.json").write_text(json.dumps(
        {"stems": {"thing.wav": {"class": "pad", "name": "Thing"}, "gtr.wav": "strings"}}))
    assert detect_layout(song) == "generic"
    s = load_song_folder(song)
    assert s.layout == "generic" and s.name == "song" and s.has_mix and s.mix_path == song / "mix.wav"
    # listed stems first (metadata order), the rest sorted with inferred classes; the mix is not a stem
    assert [p.name for p in s.stem_paths] == ["thing.wav", "gtr.wav", "kick.wav"]
    assert s.stem_names == ("Thing", "gtr", "kick")
    assert s.stem_classes == ("pad", "strings", "kick")
    assert s.class_indices() == [CLASS_INDEX["pad"], CLASS_INDEX["strings"], CLASS_INDEX["kick"]]

    t = s.with_classes({"kick.wav": "percussion", "Thing": None})
    assert t.stem_classes == (None, "strings", "percussion")
    assert s.stem_classes == ("pad", "strings", "kick")  # unchanged
    assert s.with_classes(["bass", "bass", None]).stem_classes == ("bass", "bass", None)
    with pytest.raises(ConfigError, match="unknown instrument class"):
        s.with_classes({"kick": "drums"})
    with pytest.raises(ConfigError, match="no stem named"):
        s.with_classes({"snare": "snare"})
    with pytest.raises(ConfigError, match="3 stems"):
        s.with_classes(["kick"])
    multitrack = s.load(SR)
    assert multitrack.audio.shape == (3, 2, SR // 2) and multitrack.names == ["Thing", "gtr", "kick"]


def test_generic_layout_yaml_list_metadata_and_errors(tmp_path: Path) -> None:
    song = tmp_path / "yaml_song"
    _write(song / "a.wav")
    _write(song / "b.wav")
    (song / "metadata.yaml").write_text("mix: null\nstems:\n  - {file: b.wav, class: Vocal}\n  - {file: a.wav, class: null}\n")
    s = load_song_folder(song)
    assert [p.name for p in s.stem_paths] == ["b.wav", "a.wav"]
    assert s.stem_classes == ("vocal", None) and not s.has_mix

    (song / "metadata.yaml").write_text("stems:\n  a.wav: {class: trombone}\n")
    with pytest.raises(ConfigError, match="trombone"):
        load_song_folder(song)
    (song / "metadata.yaml").write_text("stems:\n  c.wav: {class: bass}\n")
    with pytest.raises(AudioInputError, match="c.wav"):
        load_song_folder(song)
    (song / "metadata.yaml").write_text("stems: [unclosed\n")
    with pytest.raises(ConfigError, match="metadata.yaml"):
        load_song_folder(song)


def test_generic_layout_without_metadata(tmp_path: Path) -> None:
    song = tmp_path / "plain"
    for name in ("bass.flac", "Mixture.wav", "vocals_take2.wav"):
        _write(song / name)
    (song / ".hidden.wav").write_bytes(b"junk")
    (song / "notes.txt").write_text("not audio")
    s = load_song_folder(song)
    assert s.layout == "generic" and s.mix_path == song / "Mixture.wav"
    assert s.stem_names == ("bass", "vocals_take2") and s.stem_classes == ("bass", "vocal")


def test_medleydb_layout(tmp_path: Path) -> None:
    song = tmp_path / "Artist_Title"
    _write(song / "Artist_Title_MIX.wav")
    _write(song / "Artist_Title_STEMS" / "Artist_Title_STEM_01.wav")
    _write(song / "Artist_Title_STEMS" / "Artist_Title_STEM_02.wav")
    _write(song / "Artist_Title_STEMS" / "Artist_Title_STEM_03.wav")
    _write(song / "Artist_Title_RAW" / "Artist_Title_RAW_01_01.wav")
    _write(song / "Artist_Title_RAW" / "Artist_Title_RAW_02_01.wav")
    _write(song / "Artist_Title_RAW" / "Artist_Title_RAW_02_02.wav")
    (song / "Artist_Title_METADATA.yaml").write_text(
        "artist: Artist\ntitle: Title\nmix_filename: Artist_Title_MIX.wav\n"
        "stem_dir: Artist_Title_STEMS\nraw_dir: Artist_Title_RAW\nstems:\n"
        "  S01:\n    filename: Artist_Title_STEM_01.wav\n    instrument: electric bass\n"
        "    raw:\n      R01: {filename: Artist_Title_RAW_01_01.wav, instrument: electric bass}\n"
        "  S02:\n    filename: Artist_Title_STEM_02.wav\n    instrument: drum set\n"
        "    raw:\n      R01: {filename: Artist_Title_RAW_02_01.wav, instrument: kick drum}\n"
        "      R02: {filename: Artist_Title_RAW_02_02.wav, instrument: snare drum}\n"
        "  S03:\n    filename: Artist_Title_STEM_03.wav\n    instrument: [female singer]\n"
    )
    assert detect_layout(song) == "medleydb"
    s = load_song_folder(song)
    assert s.layout == "medleydb" and s.mix_path == song / "Artist_Title_MIX.wav"
    assert [p.name for p in s.stem_paths] == [f"Artist_Title_STEM_0{i}.wav" for i in (1, 2, 3)]
    assert s.stem_classes == ("bass", "percussion", "vocal")
    assert s.stem_names[0] == "S01 electric bass"
    assert s.metadata["title"] == "Title" and len(s.metadata["raw_tracks"]) == 3
    raw = load_song_folder(song, medleydb_tracks="raw")
    assert [p.parent.name for p in raw.stem_paths] == ["Artist_Title_RAW"] * 3
    assert raw.stem_classes == ("bass", "kick", "snare")

    # without metadata: stems from the _STEMS folder, mixdown from *_MIX
    (song / "Artist_Title_METADATA.yaml").unlink()
    bare = load_song_folder(song)
    assert bare.layout == "medleydb" and bare.num_stems == 3 and bare.has_mix


def test_testbed_layout(tmp_path: Path) -> None:
    song = tmp_path / "Cambridge Song"
    for name in ("01_Kick.wav", "02_SnareTop.wav", "05_BassDI.wav", "12_LeadVox.wav", "13_Thing.wav"):
        _write(song / name)
    _write(song / "mixes" / "Song_Mix_B.wav")
    _write(song / "mixes" / "Song_Mix_A.wav")
    assert detect_layout(song) == "testbed"
    s = load_song_folder(song)
    assert s.layout == "testbed" and s.name == "Cambridge Song"
    assert s.stem_classes == ("kick", "snare", "bass", "vocal", None)
    assert s.stem_names[0] == "01_Kick"
    assert s.mix_path == song / "mixes" / "Song_Mix_A.wav" and len(s.metadata["mixes"]) == 2

    other = tmp_path / "other"
    for name in ("Kick.wav", "Piano.wav", "OtherSong_mix.wav"):
        _write(other / name)
    assert detect_layout(other) == "testbed"
    t = load_song_folder(other)
    assert t.stem_names == ("Kick", "Piano") and t.mix_path == other / "OtherSong_mix.wav"

    tracks_only = tmp_path / "third"
    _write(tracks_only / "Tracks" / "Gtr.wav")
    _write(tracks_only / "Mix" / "final.wav")
    u = load_song_folder(tracks_only)
    assert u.layout == "testbed" and u.stem_classes == ("guitar",) and u.mix_path == tracks_only / "Mix" / "final.wav"


def test_musdb_layout(tmp_path: Path) -> None:
    song = tmp_path / "A Band - A Song"
    for name in ("mixture", "drums", "bass", "other", "vocals", "accompaniment"):
        _write(song / f"{name}.wav")
    assert detect_layout(song) == "musdb"
    s = load_song_folder(song)
    assert s.stem_names == ("drums", "bass", "other", "vocals")
    assert s.stem_classes == ("percussion", "bass", "other", "vocal")
    assert s.mix_path == song / "mixture.wav"
    with pytest.raises(AudioInputError, match="MUSDB"):
        load_song_folder(tmp_path, layout="musdb")


def test_layout_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioInputError, match="no audio"):
        detect_layout(tmp_path / "empty")
    with pytest.raises(AudioInputError, match="not found"):
        detect_layout(tmp_path / "missing")
    _write(tmp_path / "only_mix" / "mix.wav")
    with pytest.raises(AudioInputError, match="only a mixdown"):
        load_song_folder(tmp_path / "only_mix")
    _write(tmp_path / "x" / "a.wav")
    with pytest.raises(ConfigError, match="unknown layout"):
        load_song_folder(tmp_path / "x", layout="stems")
    assert set(LAYOUTS) == {"generic", "medleydb", "testbed", "musdb"}


def test_find_songs_walks_tree(tmp_path: Path) -> None:
    _write(tmp_path / "a" / "kick.wav")
    for name in ("mixture", "drums", "bass", "other", "vocals"):
        _write(tmp_path / "b" / "train" / "s1" / f"{name}.wav", seconds=0.1)
    _write(tmp_path / "b" / "train" / ".hidden_song" / "kick.wav", seconds=0.1)
    _write(tmp_path / "deep" / "1" / "2" / "3" / "4" / "5" / "kick.wav", seconds=0.1)
    os.symlink(tmp_path, tmp_path / "b" / "loop")  # a symbolic link loop must not hang the walk
    songs = find_songs(tmp_path)
    assert [(s.name, s.layout) for s in songs] == [("a", "generic"), ("s1", "musdb")]
    assert [s.name for s in find_songs(tmp_path, max_depth=10)] == ["a", "s1", "5"]
    assert [s.name for s in find_songs(tmp_path / "a")] == ["a"]
    # a bad song folder raises unless strict=False
    (tmp_path / "a" / "metadata.json").write_text("{not json")
    with pytest.raises(ConfigError):
        find_songs(tmp_path)
    assert [s.name for s in find_songs(tmp_path, strict=False)] == ["s1"]


# --------------------------------------------------------------------------- segment dataset


def _two_rate_song(root: Path) -> SongFolder:
    """Song with a 48 kHz stereo stem, a 48 kHz mono stem and a 48 kHz mixdown, 3 s long."""
    _write(root / "kick.wav", 3.0, 48000, 2, freq=60, seed=1)
    _write(root / "synth.wav", 3.0, 48000, 1, freq=523, seed=2)
    _write(root / "mix.wav", 3.0, 48000, 2, freq=300, seed=3)
    return load_song_folder(root)


def test_segment_dataset_partial_reads_match_full_reads(tmp_path: Path) -> None:
    song = _two_rate_song(tmp_path / "song")
    native = SegmentDataset([song], segment_seconds=0.5, sample_rate=48000, segments_per_song=3, seed=5)
    full = [read_audio(p)[0] for p in song.stem_paths]
    full_mix = read_audio(song.mix_path)[0]
    starts = set()
    for i in range(len(native)):
        item = native[i]
        start = int(round(item["start_s"] * 48000))
        starts.add(start)
        assert item["tracks"].shape == (2, 2, 24000) and item["tracks"].dtype == torch.float32
        torch.testing.assert_close(item["tracks"][0], full[0][:, start : start + 24000], rtol=0, atol=0)
        # mono stem duplicated to both channels
        torch.testing.assert_close(item["tracks"][1], full[1][:, start : start + 24000].expand(2, -1), rtol=0, atol=0)
        torch.testing.assert_close(item["mix"], full_mix[:, start : start + 24000], rtol=0, atol=0)
        assert item["has_mix"] is True and item["mask"].tolist() == [True, True]
        assert item["classes"].tolist() == [CLASS_INDEX["kick"], CLASS_INDEX["keys"]]
    assert len(starts) == 3  # positions differ between items

    # resampled: the segment equals the slice of the whole file resampled (margins beyond the kernel)
    resampled = SegmentDataset([song], segment_seconds=0.5, sample_rate=44100, segments_per_song=2, seed=5)
    whole = resample(full[0], 48000, 44100)
    for i in range(len(resampled)):
        item = resampled[i]
        start = item["start_s"] * 44100
        assert abs(start - round(start)) < 1e-6  # positions on the common grid of both rates
        start = int(round(start))
        assert item["tracks"].shape == (2, 2, 22050)
        torch.testing.assert_close(item["tracks"][0], whole[:, start : start + 22050], rtol=0, atol=1e-5)


def test_segment_dataset_is_deterministic_and_caps_tracks(tmp_path: Path) -> None:
    song_dir = tmp_path / "song"
    for k, name in enumerate(["kick", "snare", "bass", "keys", "pad"]):
        _write(song_dir / f"{name}.wav", 2.0, SR, freq=110 * (k + 1), seed=k)
    song = load_song_folder(song_dir)
    kwargs = dict(segment_seconds=0.5, sample_rate=SR, segments_per_song=4, seed=11, max_tracks=3)
    a = SegmentDataset([song], **kwargs)
    b = SegmentDataset([song], **kwargs)
    for i in range(len(a)):
        x, y, z = a[i], a[i], b[i]
        assert x["tracks"].shape == (3, 2, 8000)
        for key in ("tracks", "classes", "mix", "mask"):
            assert torch.equal(x[key], y[key]) and torch.equal(x[key], z[key])
        assert x["start_s"] == z["start_s"]
        assert not x["has_mix"] and torch.count_nonzero(x["mix"]) == 0
    other_seed = SegmentDataset([song], **{**kwargs, "seed": 12})
    assert [a[i]["start_s"] for i in range(4)] != [other_seed[i]["start_s"] for i in range(4)]
    # the kept stems are a subset in song order, classes follow them
    order = song.class_indices()  # bass, keys, kick, pad, snare (files sorted by name)
    kept_sets = set()
    for i in range(len(a)):
        kept = a[i]["classes"].tolist()
        assert kept == sorted(kept, key=order.index) and len(set(kept)) == 3
        kept_sets.add(tuple(kept))
    assert len(kept_sets) > 1  # the subset is drawn per item


def test_segment_dataset_skips_silent_segments(tmp_path: Path) -> None:
    song_dir = tmp_path / "late"
    _write(song_dir / "a.wav", 6.0, SR, silent_until_s=4.0, seed=1)
    _write(song_dir / "b.wav", 6.0, SR, 1, silent_until_s=4.0, seed=2)
    song = load_song_folder(song_dir)

    def levels(ds: SegmentDataset) -> list[float]:
        out = []
        for i in range(len(ds)):
            x = ds[i]["tracks"]
            out.append(float(10 * torch.log10(x.pow(2).mean(dim=(-2, -1)).max().clamp_min(1e-30))))
        return out

    no_retry = SegmentDataset([song], segment_seconds=1.0, sample_rate=SR, segments_per_song=10, max_retries=0)
    retry = SegmentDataset([song], segment_seconds=1.0, sample_rate=SR, segments_per_song=10, max_retries=20)
    assert min(levels(no_retry)) < -60.0  # without retries some segments are silent ...
    assert min(levels(retry)) > -60.0  # ... with them none is
    assert all(retry[i]["start_s"] > 3.0 for i in range(len(retry)))


def test_segment_dataset_short_song_is_padded(tmp_path: Path) -> None:
    _write(tmp_path / "short" / "a.wav", 0.5, SR)
    song = load_song_folder(tmp_path / "short")
    item = SegmentDataset([song], segment_seconds=1.0, sample_rate=SR)[0]
    assert item["start_s"] == 0.0 and item["tracks"].shape == (1, 2, SR)
    assert torch.count_nonzero(item["tracks"][..., SR // 2 :]) == 0
    assert torch.count_nonzero(item["tracks"][..., : SR // 2]) > 0
    with pytest.raises(IndexError):
        SegmentDataset([song], segment_seconds=1.0, sample_rate=SR)[1]


def test_collate_pads_and_masks(tmp_path: Path) -> None:
    songs = []
    for count, name in ((2, "two"), (3, "three")):
        for k in range(count):
            _write(tmp_path / name / f"{['kick', 'bass', 'pad'][k]}.wav", 1.0, SR, seed=k)
        songs.append(load_song_folder(tmp_path / name))
    _write(tmp_path / "two" / "mix.wav", 1.0, SR)
    songs[0] = load_song_folder(tmp_path / "two")
    ds = SegmentDataset(songs, segment_seconds=0.5, sample_rate=SR)
    items = [ds[0], ds[1]]
    batch = collate_multitrack(items)
    assert batch["tracks"].shape == (2, 3, 2, 8000)
    assert batch["mask"].tolist() == [[True, True, False], [True, True, True]]
    assert torch.count_nonzero(batch["tracks"][0, 2]) == 0
    assert torch.equal(batch["tracks"][0, :2], items[0]["tracks"])
    assert torch.equal(batch["tracks"][1], items[1]["tracks"])
    assert batch["classes"].tolist() == [
        [CLASS_INDEX["bass"], CLASS_INDEX["kick"], CLASS_INDEX["other"]],
        [CLASS_INDEX["bass"], CLASS_INDEX["kick"], CLASS_INDEX["pad"]],
    ]
    assert batch["has_mix"].tolist() == [True, False] and batch["mix"].shape == (2, 2, 8000)
    assert batch["song"] == ["two", "three"] and batch["start_s"].dtype == torch.float64
    with pytest.raises(ValueError):
        collate_multitrack([])

    # worker processes give the same batches as the main process
    serial = list(DataLoader(ds, batch_size=2, collate_fn=collate_multitrack))
    parallel = list(DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate_multitrack,
                               worker_init_fn=worker_init_fn))
    assert torch.equal(serial[0]["tracks"][1], parallel[1]["tracks"][0])
    assert torch.equal(serial[0]["tracks"][0, :2], parallel[0]["tracks"][0])


# --------------------------------------------------------------------------- real songs


@pytest.fixture(scope="module")
def real_songs() -> list[SongFolder]:
    if not MULTITRACKS.is_dir():
        pytest.skip(f"real CC0 multitracks not found at {MULTITRACKS.resolve()} (shared data absent)")
    return find_songs(MULTITRACKS)


def test_real_songs_are_found(real_songs: list[SongFolder]) -> None:
    by_name = {s.name: s for s in real_songs}
    assert sorted(by_name) == ["caesium", "hydrogen", "potassium", "rubidium", "sodium"]
    assert by_name["caesium"].has_mix and by_name["caesium"].mix_path.name == "mix.flac"
    assert not any(by_name[n].has_mix for n in ("hydrogen", "potassium", "rubidium", "sodium"))
    assert by_name["sodium"].num_stems == 15
    assert {n: by_name[n].num_stems for n in by_name} == {
        "caesium": 9, "hydrogen": 6, "potassium": 8, "rubidium": 8, "sodium": 15}
    assert all(s.layout == "generic" for s in real_songs)
    assert by_name["caesium"].stem_classes[by_name["caesium"].stem_names.index("kick")] == "kick"


def test_real_songs_segments(real_songs: list[SongFolder]) -> None:
    ds = SegmentDataset(real_songs, segment_seconds=2.0, sample_rate=44100, seed=3)
    items = [ds[i] for i in range(len(real_songs))]
    for item, song in zip(items, real_songs):
        assert item["song"] == song.name
        assert item["tracks"].shape == (song.num_stems, 2, 88200)
        assert item["classes"].shape == (song.num_stems,) and item["classes"].dtype == torch.long
        assert torch.isfinite(item["tracks"]).all()
        assert 10 * torch.log10(item["tracks"].pow(2).mean(dim=(-2, -1)).max()) > -60.0
        assert item["has_mix"] == song.has_mix
        assert (torch.count_nonzero(item["mix"]) > 0) == song.has_mix
        assert 0.0 <= item["start_s"] <= 28.0
    # a second instance reads the same segment (hydrogen: the smallest song)
    i = [s.name for s in real_songs].index("hydrogen")
    again = SegmentDataset(real_songs, segment_seconds=2.0, sample_rate=44100, seed=3)[i]
    assert again["start_s"] == items[i]["start_s"] and torch.equal(again["tracks"], items[i]["tracks"])


# --------------------------------------------------------------------------- synthetic songs


def _generator_available() -> bool:
    try:
        import neuromix.mixing.generator  # noqa: F401
    except ImportError:
        return False
    return True


needs_generator = pytest.mark.skipif(not _generator_available(), reason="neuromix.mixing.generator not available")


@needs_generator
def test_synthetic_dataset_is_deterministic() -> None:
    calls: list[int] = []

    def target(tracks: torch.Tensor, classes: torch.Tensor, seed: int) -> torch.Tensor:
        calls.append(seed)
        return tracks.sum(0)

    a = SyntheticSongDataset(3, base_seed=100, seconds=1.0, sample_rate=22050, target_fn=target)
    b = SyntheticSongDataset(3, base_seed=100, seconds=1.0, sample_rate=22050, target_fn=target)
    x, y = a[1], b[1]
    assert calls == [101, 101]
    assert x["song"] == "synthetic-101" and x["has_mix"] is True
    t = x["tracks"].shape[0]
    assert x["tracks"].shape == (t, 2, 22050) and x["mask"].shape == (t,) and x["classes"].shape == (t,)
    for key in ("tracks", "classes", "mix"):
        assert torch.equal(x[key], y[key])
    torch.testing.assert_close(x["mix"], x["tracks"].sum(0))
    z = a[2]
    assert z["tracks"].shape[0] != t or not torch.equal(z["tracks"], x["tracks"])
    plain = SyntheticSongDataset(1, seconds=1.0, sample_rate=22050, max_tracks=2)[0]
    assert plain["has_mix"] is False and torch.count_nonzero(plain["mix"]) == 0
    assert plain["tracks"].shape[0] <= 2
    batch = collate_multitrack([x, z])
    assert batch["tracks"].shape[:2] == (2, max(t, z["tracks"].shape[0]))


def test_synthetic_split_offsets() -> None:
    assert VALIDATION_SEED_OFFSET == 10_000_000 and TEST_SEED_OFFSET == 20_000_000
    val = SyntheticSongDataset.for_split("validation", 5)
    assert val.seed_of(0) == VALIDATION_SEED_OFFSET and len(val) == 5
    assert SyntheticSongDataset.for_split("test", 1).seed_of(0) == TEST_SEED_OFFSET
    with pytest.raises(ConfigError):
        SyntheticSongDataset.for_split("dev", 1)
    with pytest.raises(ConfigError):
        SyntheticSongDataset(1, classes=["drums"])


@needs_generator
def test_generator_folder_is_read_with_its_metadata(tmp_path: Path) -> None:
    from neuromix.mixing.generator import generate_song, write_song

    song = generate_song(7, seconds=0.5, sample_rate=16000, classes=["kick", "bass", "pad", "vocal"])
    write_song(song, tmp_path / "song7")
    s = load_song_folder(tmp_path / "song7")
    assert s.layout == "generic" and not s.has_mix
    assert list(s.stem_names) == song.names and list(s.stem_classes) == song.classes
    assert s.metadata["format"] == "neuromix-multitrack"
    item = SegmentDataset([s], segment_seconds=0.25, sample_rate=16000)[0]
    assert item["tracks"].shape == (4, 2, 4000)
