"""Tests of neuromix.core.io: clear errors for bad files, round trips, resampling, multitracks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from neuromix.core.errors import AudioInputError, ConfigError, NeuromixError
from neuromix.core.io import (
    DEFAULT_LIMITS,
    AudioLimits,
    AudioOutputError,
    Multitrack,
    audio_info,
    load_multitrack,
    read_audio,
    resample,
    to_mono,
    to_stereo,
    write_audio,
)

REPO = Path(__file__).resolve().parents[1]
HYDROGEN = REPO.parent / "shared" / "data" / "multitracks" / "hydrogen"


def _tone(seconds: float, sr: int, channels: int = 2, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    """(samples, channels) float32 sine, channel k scaled by 1/(k+1) so channels differ."""
    t = np.arange(int(round(seconds * sr))) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    return np.stack([x / (k + 1) for k in range(channels)], axis=1).astype(np.float32)


def _write(path: Path, seconds: float = 0.25, sr: int = 16000, channels: int = 2, **kw) -> Path:
    sf.write(str(path), _tone(seconds, sr, channels), sr, **kw)
    return path


def _expect(path: Path, fragment: str, **kw) -> AudioInputError:
    with pytest.raises(AudioInputError) as info:
        read_audio(path, **kw)
    message = str(info.value)
    assert path.name in message, message
    assert fragment in message, message
    assert info.value.path == path
    return info.value


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.wav", "not found")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    _expect(folder, "is a directory")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")
    _expect(path, "empty (0 bytes)")


def test_text_file_named_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are my mixing notes, not audio\n" * 10)
    _expect(path, "not a readable audio file (")
    with pytest.raises(AudioInputError, match="not a readable audio file"):
        audio_info(path)


def test_truncated_wav(tmp_path: Path) -> None:
    path = _write(tmp_path / "cut.wav", seconds=0.5, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    err = _expect(path, "truncated")
    # 8000 frames announced, roughly half present
    assert "8000 frames" in str(err)


def test_truncated_aiff(tmp_path: Path) -> None:
    path = _write(tmp_path / "cut.aiff", seconds=0.5, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    _expect(path, "truncated")


def test_truncated_flac(tmp_path: Path) -> None:
    path = tmp_path / "cut.flac"
    rng = np.random.default_rng(0)
    sf.write(str(path), (0.1 * rng.standard_normal((16000, 2))).astype(np.float32), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _expect(path, "truncated")


def test_zero_length_audio(tmp_path: Path) -> None:
    path = tmp_path / "silent.wav"
    sf.write(str(path), np.zeros((0, 2), np.float32), 16000)
    _expect(path, "contains no audio")


def test_nan_float_wav(tmp_path: Path) -> None:
    x = _tone(0.1, 16000)
    x[100, 1] = np.nan
    x[200, 0] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(str(path), x, 16000, subtype="FLOAT")
    _expect(path, "non-finite samples (NaN or Inf): 2 of")


def test_too_many_channels(tmp_path: Path) -> None:
    path = _write(tmp_path / "surround.wav", seconds=0.05, channels=6)
    _expect(path, "has 6 channels; at most 2 are supported")
    # a limit of 6 accepts it
    audio, _ = read_audio(path, limits=AudioLimits(max_channels=6))
    assert audio.shape == (6, 800)


def test_oversized_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.wav", seconds=0.25)
    _expect(path, "too large", limits=AudioLimits(max_bytes=1000))


def test_too_long(tmp_path: Path) -> None:
    path = _write(tmp_path / "long.wav", seconds=1.0)
    limits = AudioLimits(max_seconds=0.5)
    _expect(path, "too long", limits=limits)
    # a short enough segment of the same file is fine
    audio, sr = read_audio(path, limits=limits, start_s=0.25, duration_s=0.5)
    assert audio.shape == (2, 8000) and sr == 16000


def test_segment_past_the_end(tmp_path: Path) -> None:
    path = _write(tmp_path / "short.wav", seconds=0.25)
    _expect(path, "past the end", start_s=1.0)


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.wav")
    with pytest.raises(ConfigError, match="start_s"):
        read_audio(path, start_s=-1.0)
    with pytest.raises(ConfigError, match="duration_s"):
        read_audio(path, duration_s=0.0)
    with pytest.raises(ConfigError, match="sample_rate"):
        read_audio(path, sample_rate=0)


def test_symlink_loop_file(tmp_path: Path) -> None:
    loop = tmp_path / "loop.wav"
    os.symlink(loop, loop)
    _expect(loop, "symbolic link loop")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "locked.wav")
    if os.geteuid() == 0:  # root reads anything: simulate what a user without permission sees
        monkeypatch.setattr(os, "access", lambda p, mode: False)
    path.chmod(0)
    try:
        _expect(path, "permission denied")
    finally:
        path.chmod(0o644)


def test_errors_are_neuromix_errors(tmp_path: Path) -> None:
    assert issubclass(AudioInputError, NeuromixError)
    assert issubclass(AudioOutputError, NeuromixError)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("suffix", "subtype", "tol"),
    [(".wav", "PCM_24", 1e-6), (".flac", "PCM_24", 1e-6), (".wav", "FLOAT", 0.0), (".wav", "PCM_16", 4e-5)],
)
def test_round_trip(tmp_path: Path, suffix: str, subtype: str, tol: float) -> None:
    rng = np.random.default_rng(1)
    x = torch.from_numpy((0.3 * rng.standard_normal((2, 4000))).astype(np.float32)).clamp(-0.99, 0.99)
    before = x.clone()
    path = write_audio(tmp_path / f"out{suffix}", x, 22050, subtype=subtype)
    assert torch.equal(x, before)  # the caller's tensor is untouched
    y, sr = read_audio(path)
    assert sr == 22050 and y.dtype == torch.float32 and y.shape == x.shape
    assert (y - x).abs().max().item() <= tol
    info = audio_info(path)
    assert info.subtype == subtype and info.samplerate == 22050 and info.channels == 2


def test_write_numpy_mono_and_ogg(tmp_path: Path) -> None:
    x = _tone(0.2, 16000, channels=1)[:, 0]  # (samples,) numpy mono
    path = write_audio(tmp_path / "mono.ogg", x, 16000)  # PCM_24 default -> Vorbis for OGG
    assert audio_info(path).subtype == "VORBIS"
    y, _ = read_audio(path)
    assert y.shape[0] == 1
    # lossy, but the level survives
    assert abs(float(y.pow(2).mean().sqrt()) - float(np.sqrt(np.mean(x**2)))) < 0.02


def test_partial_reads_equal_slices(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    data = (0.2 * rng.standard_normal((8000, 2))).astype(np.float32)
    for suffix, subtype in ((".wav", "PCM_24"), (".flac", "PCM_16")):
        path = tmp_path / f"noise{suffix}"
        sf.write(str(path), data, 8000, subtype=subtype)
        whole, _ = read_audio(path)
        part, _ = read_audio(path, start_s=0.25, duration_s=0.5)
        assert torch.equal(part, whole[:, 2000:6000])
        tail, _ = read_audio(path, start_s=0.75)
        assert torch.equal(tail, whole[:, 6000:])
        clipped, _ = read_audio(path, start_s=0.9, duration_s=5.0)  # runs past the end
        assert torch.equal(clipped, whole[:, 7200:])


def test_resample_sine_keeps_frequency_and_level(tmp_path: Path) -> None:
    freq, amp = 1000.0, 0.5
    path = write_audio(tmp_path / "sine48k.wav", torch.from_numpy(_tone(0.5, 48000, 1, freq, amp).T), 48000)
    y, sr = read_audio(path, sample_rate=44100)
    assert sr == 44100 and y.shape == (1, 22050)
    # least-squares fit of a 1 kHz sine at 44.1 kHz away from the edges
    seg = y[0, 500:-500].double().numpy()
    t = (np.arange(seg.size) + 500) / 44100.0
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, seg, rcond=None)
    level = float(np.hypot(*coef))
    residual = seg - basis @ coef
    assert abs(level - amp) < 1e-3
    assert np.sqrt(np.mean(residual**2)) < 1e-3 * amp
    # and the functional form agrees with torchaudio's length rule
    assert resample(torch.zeros(1, 480), 48000, 44100).shape == (1, 441)


def test_resample_identity_and_bad_rates() -> None:
    x = torch.randn(2, 100)
    assert resample(x, 44100, 44100) is x
    with pytest.raises(ConfigError):
        resample(x, 0, 44100)


def test_mono_stereo() -> None:
    x = torch.randn(3, 2, 50)
    m = to_mono(x)
    assert m.shape == (3, 1, 50)
    torch.testing.assert_close(m[:, 0], 0.5 * (x[:, 0] + x[:, 1]))
    s = to_stereo(m)
    assert s.shape == (3, 2, 50) and torch.equal(s[:, 0], s[:, 1]) and torch.equal(s[:, 0], m[:, 0])
    assert to_stereo(x) is x
    with pytest.raises(AudioInputError, match="3 channels"):
        to_stereo(torch.zeros(3, 10))


# --------------------------------------------------------------------------- writing safely


def test_write_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "take.wav"
    write_audio(path, torch.full((1, 100), 0.25), 8000)
    with pytest.raises(AudioOutputError, match="already exists") as info:
        write_audio(path, torch.full((1, 100), -0.5), 8000)
    assert isinstance(info.value, NeuromixError) and "take.wav" in str(info.value)
    assert read_audio(path)[0][0, 0].item() == pytest.approx(0.25)  # unchanged
    write_audio(path, torch.full((1, 100), -0.5), 8000, overwrite=True)
    assert read_audio(path)[0][0, 0].item() == pytest.approx(-0.5)
    assert sorted(os.listdir(tmp_path)) == ["take.wav"]  # no temp file left behind


def test_write_rejects_bad_audio_and_leaves_nothing(tmp_path: Path) -> None:
    bad = torch.zeros(2, 100)
    bad[0, 5] = float("nan")
    with pytest.raises(AudioOutputError, match="non-finite"):
        write_audio(tmp_path / "nan.wav", bad, 8000)
    with pytest.raises(AudioOutputError, match="unknown audio suffix"):
        write_audio(tmp_path / "x.mp4", torch.zeros(1, 10), 8000)
    with pytest.raises(AudioOutputError, match="cannot be written as FLAC"):
        write_audio(tmp_path / "x.flac", torch.zeros(1, 10), 8000, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"\(channels, samples\)"):
        write_audio(tmp_path / "x.wav", np.zeros((1000, 2), np.float32), 8000)
    assert os.listdir(tmp_path) == []


def test_failed_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keep.wav"
    write_audio(path, torch.full((1, 100), 0.25), 8000)

    def boom(self: sf.SoundFile, data: np.ndarray) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(sf.SoundFile, "write", boom)
    with pytest.raises(AudioOutputError, match="disk full"):
        write_audio(path, torch.full((1, 100), -0.5), 8000, overwrite=True)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["keep.wav"]
    assert read_audio(path)[0][0, 0].item() == pytest.approx(0.25)


# --------------------------------------------------------------------------- multitracks


def test_multitrack_mixed_rates_lengths_channels(tmp_path: Path) -> None:
    _write(tmp_path / "b_keys.flac", seconds=0.5, sr=44100, channels=1)
    _write(tmp_path / "A_drums.wav", seconds=1.0, sr=48000, channels=2)
    _write(tmp_path / "c_vox.wav", seconds=0.8, sr=48000, channels=1)
    _write(tmp_path / "Mix.wav", seconds=1.0, sr=48000)  # a mixdown: skipped
    _write(tmp_path / ".hidden.wav", seconds=1.0, sr=48000)  # hidden: skipped
    (tmp_path / "readme.txt").write_text("not audio")
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "deep.wav")  # sub-folders are not tracks

    mt = load_multitrack(tmp_path)
    assert isinstance(mt, Multitrack)
    assert mt.names == ["A_drums", "b_keys", "c_vox"]
    assert mt.sample_rate == 48000  # the most common rate
    assert mt.audio.shape == (3, 2, 48000) and mt.audio.dtype == torch.float32
    assert mt.num_tracks == 3 and mt.mask.dtype == torch.bool and mt.mask.all() and mt.mask.shape == (3,)
    assert mt.source_channels == [2, 1, 1]
    assert [p.name for p in mt.paths] == ["A_drums.wav", "b_keys.flac", "c_vox.wav"]
    # mono -> dual mono; padding is silence
    assert torch.equal(mt.audio[1, 0], mt.audio[1, 1]) and torch.equal(mt.audio[2, 0], mt.audio[2, 1])
    assert mt.audio[1, :, 24000:].abs().max() == 0 and mt.audio[1, :, :23900].abs().max() > 0.4
    assert mt.audio[2, :, 38400:].abs().max() == 0
    notes = "\n".join(mt.notes)
    assert "resampled b_keys.flac from 44100 Hz to 48000 Hz" in notes
    assert "padded b_keys.flac" in notes and "padded c_vox.wav" in notes
    assert "skipped Mix.wav" in notes
    batch, mask = mt.as_batch()
    assert batch.shape == (1, 3, 2, 48000) and mask.shape == (1, 3)


def test_multitrack_from_list_with_rate_and_segment(tmp_path: Path) -> None:
    a = _write(tmp_path / "z.wav", seconds=1.0, sr=16000)
    b = _write(tmp_path / "a.wav", seconds=1.0, sr=16000, channels=1)
    mt = load_multitrack([a, b], sample_rate=8000, start_s=0.25, duration_s=0.5)
    assert mt.names == ["z", "a"]  # a list keeps its order
    assert mt.sample_rate == 8000 and mt.audio.shape == (2, 2, 4000)
    assert len([n for n in mt.notes if n.startswith("resampled")]) == 2


def test_multitrack_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no stems here")
    with pytest.raises(AudioInputError, match="no audio files in") as info:
        load_multitrack(tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(AudioInputError, match="no audio files"):
        load_multitrack([])


def test_multitrack_too_many_tracks(tmp_path: Path) -> None:
    for i in range(4):
        _write(tmp_path / f"t{i}.wav", seconds=0.05)
    with pytest.raises(AudioInputError, match="has 4 audio files; at most 3 tracks"):
        load_multitrack(tmp_path, limits=AudioLimits(max_tracks=3))
    assert load_multitrack(tmp_path, limits=AudioLimits(max_tracks=4)).num_tracks == 4


def test_multitrack_bad_file_is_named(tmp_path: Path) -> None:
    _write(tmp_path / "good.wav", seconds=0.05)
    (tmp_path / "broken.wav").write_text("garbage")
    with pytest.raises(AudioInputError, match="not a readable audio file") as info:
        load_multitrack(tmp_path)
    assert info.value.path == tmp_path / "broken.wav"


def test_multitrack_symlink_loop_folder(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    with pytest.raises(AudioInputError, match="symbolic link loop") as info:
        load_multitrack(loop)
    assert "loop" in str(info.value)
    with pytest.raises(AudioInputError, match="folder not found"):
        load_multitrack(tmp_path / "missing")
    not_a_folder = _write(tmp_path / "x.wav")
    with pytest.raises(AudioInputError, match="not a folder"):
        load_multitrack(str(not_a_folder))


def test_multitrack_symlink_loop_inside_folder(tmp_path: Path) -> None:
    _write(tmp_path / "good.wav", seconds=0.05)
    os.symlink(tmp_path / "bad.wav", tmp_path / "bad.wav")
    with pytest.raises(AudioInputError, match="symbolic link loop") as info:
        load_multitrack(tmp_path)
    assert "bad.wav" in str(info.value)


def test_multitrack_unreadable_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()

    def denied(path: object) -> None:  # what a folder without read permission gives (also as root)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(AudioInputError, match="permission denied") as info:
        load_multitrack(folder)
    assert info.value.path == folder


# --------------------------------------------------------------------------- real data


def _need_hydrogen() -> None:
    if not HYDROGEN.is_dir():
        pytest.skip(f"real multitrack data not available at {HYDROGEN}")


def test_read_real_file() -> None:
    _need_hydrogen()
    audio, sr = read_audio(HYDROGEN / "vox_lead.flac", duration_s=5.0)
    assert sr == 48000 and audio.shape == (2, 240000) and audio.dtype == torch.float32
    assert torch.isfinite(audio).all() and 0 < audio.abs().max() <= 1.0


def test_load_real_multitrack() -> None:
    _need_hydrogen()
    mt = load_multitrack(HYDROGEN, duration_s=5.0)
    assert mt.sample_rate == 48000 and mt.num_tracks == 6
    assert mt.audio.shape == (6, 2, 240000)
    assert mt.names == sorted(mt.names) and "vox_lead" in mt.names
    assert mt.source_channels == [2] * 6 and mt.notes == []
    assert DEFAULT_LIMITS.max_tracks >= 6
