"""A generated corpus of hostile and odd inputs (issue #9): audio, folders, documents, checkpoints.

Nothing here is stored as a binary: :func:`build_corpus` writes every file from code
(numpy + soundfile for audio, hand-crafted RIFF headers, ``mido`` for MIDI, the
project's own checkpoint writer for safetensors files), into a folder of your choice::

    python tests/corpus.py OUTDIR          # writes the corpus and prints its table

Each :class:`CorpusEntry` records its kind, what it exercises and the expected outcome:
``"ok"`` (a correct output) or ``"error"`` (a clear, specific message; ``message`` is a
substring the message must contain, case-insensitively). A few entries expect a
different outcome from one interface than from the others (a 6-channel file is
readable with a higher channel limit, a folder of 65 files is fine file by file, ...);
those differences live in :attr:`CorpusEntry.overrides`, keyed by interface name.

Kinds and the inputs they describe:

* ``audio``: one audio file (or something pretending to be one);
* ``folder``: a multitrack folder;
* ``settings``: a console settings document for the corpus's base song (``base_song/``);
* ``patch``: a synthesis patch file; ``score``: a score file; ``midi``: a MIDI file;
* ``checkpoint``: a model checkpoint; ``train_config``: a training config.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["CorpusEntry", "build_corpus", "BASE_SONG", "SHORT_RATE", "PICKLE_MARKER"]

SHORT_RATE = 22050
"""Rate of the corpus's ordinary audio (Hz): short files at 22.05 kHz keep the tests fast."""

BASE_SONG = "base_song"
"""Folder (under the corpus root) of a two-stem song that settings entries are rendered on."""

PICKLE_MARKER = "UNPICKLED_MARKER"
"""File name (in the corpus root) that the pickle entries create if anything ever unpickles them."""

OK = "ok"
ERROR = "error"


@dataclass(frozen=True)
class CorpusEntry:
    """One hostile or odd input.

    Attributes:
        name: unique identifier (used in test ids and the results table).
        kind: ``audio``, ``folder``, ``settings``, ``patch``, ``score``, ``midi``,
            ``checkpoint`` or ``train_config``.
        path: the file or folder.
        exercises: what the entry tests, in a few words.
        expect: ``"ok"`` (a correct output) or ``"error"`` (a clear message).
        message: for errors, a substring the message must contain (case-insensitive).
        overrides: interface name -> ``(expect, message)`` where that interface should
            behave differently from ``expect`` / ``message``.
    """

    name: str
    kind: str
    path: Path
    exercises: str
    expect: str
    message: str | None = None
    overrides: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)

    def expectation(self, interface: str) -> tuple[str, str | None]:
        """The ``(expect, message)`` pair for ``interface``."""
        return self.overrides.get(interface, (self.expect, self.message))


# --------------------------------------------------------------------------- audio helpers


def _tone(
    seconds: float, rate: int = SHORT_RATE, channels: int = 1, freq: float = 220.0, level: float = 0.3
) -> np.ndarray:
    """A sine of ``seconds`` at ``rate``, shaped ``(samples, channels)`` float32 (soundfile's layout)."""
    t = np.arange(int(round(seconds * rate))) / rate
    x = level * np.sin(2 * np.pi * freq * t)
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def _write(path: Path, data: np.ndarray, rate: int = SHORT_RATE, subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, rate, subtype=subtype)
    return path


def _riff_wav(channels: int, rate: int, bits: int, data_size: int, payload: bytes, fmt_code: int = 1) -> bytes:
    """A hand-made RIFF/WAVE file whose data chunk *announces* ``data_size`` bytes but holds ``payload``."""
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_code, channels, rate, rate * block_align, block_align, bits)
    riff_size = min(4 + (8 + len(fmt)) + 8 + data_size, 0xFFFFFFFF)
    return (
        b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", data_size) + payload
    )


def _flac_claiming(flac: bytes, total_samples: int) -> bytes:
    """``flac`` with its STREAMINFO total-samples field (36 bits) set to ``total_samples``."""
    data = bytearray(flac)
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO is the first metadata block
    field = 8 + 13  # after 'fLaC', the block header, min/max block and frame sizes, rate/channels/bits
    data[field] = (data[field] & 0xF0) | ((total_samples >> 32) & 0x0F)
    data[field + 1 : field + 5] = (total_samples & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(data)


def _png_bytes() -> bytes:
    """A valid 1x1 PNG image (signature, IHDR, IDAT, IEND)."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class _MarkerPayload:
    """Unpickling this object opens (creates) a marker file: proof that something unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def _json(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def _text(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _document(path: Path, doc: object) -> Path:
    """Write ``doc`` as JSON, or as it is when it is already text or bytes (malformed documents)."""
    return _text(path, doc) if isinstance(doc, (str, bytes)) else _json(path, doc)


def _deep_json(levels: int) -> str:
    """``{"a": [[[ ... ]]]}`` nested ``levels`` deep (a recursion bomb for naive parsers)."""
    return '{"a": ' + "[" * levels + "]" * levels + "}"


# --------------------------------------------------------------------------- the sections


def _audio_entries(root: Path) -> list[CorpusEntry]:
    d = root / "audio"
    d.mkdir(parents=True, exist_ok=True)
    entries: list[CorpusEntry] = []

    def add(name: str, path: Path, exercises: str, expect: str, message: str | None = None,
            overrides: Mapping[str, tuple[str, str | None]] | None = None) -> None:
        entries.append(CorpusEntry(name, "audio", path, exercises, expect, message, dict(overrides or {})))

    good = _tone(0.5, channels=2)
    pcm16 = (good * 32767).astype("<i2").tobytes()

    add("zero_byte", _text(d / "zero.wav", b""), "a 0-byte .wav", ERROR, "empty (0 bytes)")
    whole = io.BytesIO()
    sf.write(whole, good, SHORT_RATE, format="WAV", subtype="PCM_16")
    add("truncated_wav_header", _text(d / "cut_header.wav", whole.getvalue()[:22]),
        "a WAV cut inside its fmt chunk", ERROR, "not a readable audio file")
    add("truncated_wav_data", _text(d / "cut_data.wav", whole.getvalue()[: len(whole.getvalue()) // 2]),
        "a WAV cut in its data chunk (header announces more frames)", ERROR, "truncated")
    flac = io.BytesIO()
    sf.write(flac, (0.1 * np.random.default_rng(0).standard_normal((SHORT_RATE, 2))).astype(np.float32),
             SHORT_RATE, format="FLAC")
    add("truncated_flac", _text(d / "cut.flac", flac.getvalue()[: len(flac.getvalue()) // 2]),
        "a FLAC cut in half", ERROR, "truncated")
    add("flac_claims_days", _text(d / "days.flac", _flac_claiming(flac.getvalue(), 30_000_000_000)),
        "a FLAC whose STREAMINFO claims 3e10 samples (7.9 days; 240 GB as float32)", ERROR, "too long")
    add("wav_claims_hours", _text(d / "hours.wav", _riff_wav(2, 44100, 16, 0x7FFF0000, pcm16[:4000])),
        "RIFF header announcing 3.4 hours, 1000 frames present", ERROR, "truncated")
    add("wav_unknown_length", _text(d / "streamed.wav", _riff_wav(2, SHORT_RATE, 16, 0xFFFFFFFF, pcm16)),
        "streamed WAV whose sizes say 0xFFFFFFFF (length unknown): read what is there", OK)
    add("wav_rate_1hz", _text(d / "rate1.wav", _riff_wav(1, 1, 16, 2000, pcm16[:2000])),
        "a WAV header with a sample rate of 1 Hz (1000 s of 'audio')", ERROR, "sample rate")
    add("wav_rate_100mhz", _text(d / "rate100M.wav", _riff_wav(1, 100_000_000, 16, 2000, pcm16[:2000])),
        "a WAV header claiming 100 MHz (a mix at that rate would need gigabytes)", ERROR, "sample rate")
    add("png_as_wav", _text(d / "picture.wav", _png_bytes()), "a PNG image named .wav", ERROR,
        "not a readable audio file")
    add("text_as_wav", _text(d / "notes.wav", "mixing notes, not audio\n" * 20), "a text file named .wav",
        ERROR, "not a readable audio file")
    add("one_sample", _write(d / "one_sample.wav", np.full((1, 1), 0.5, np.float32)), "a file of 1 sample", OK)
    add("silent", _write(d / "silent.wav", np.zeros((SHORT_RATE // 2, 2), np.float32)), "digital silence", OK)
    add("dc_only", _write(d / "dc.wav", np.full((SHORT_RATE // 2, 1), 0.5, np.float32)),
        "a constant (DC-only) signal", OK)
    nan = _tone(0.5)
    nan[100] = np.nan
    add("nan_float", _write(d / "nan.wav", nan, subtype="FLOAT"), "a float WAV with a NaN sample", ERROR, "non-finite")
    inf = _tone(0.5, channels=2)
    inf[200, 1] = np.inf
    inf[300, 0] = -np.inf
    add("inf_float", _write(d / "inf.wav", inf, subtype="FLOAT"), "a float WAV with +-Inf samples", ERROR, "non-finite")
    n = SHORT_RATE // 2
    square = np.where((np.arange(n) // 50) % 2 == 0, 1.0, -1.0).astype(np.float32)
    add("square_full_scale", _write(d / "square.wav", np.repeat(square[:, None], 2, 1), subtype="PCM_16"),
        "a full-scale square wave (0 dBFS, hard clipping territory)", OK)
    add("float_over_full_scale", _write(d / "hot.wav", 8.0 * _tone(0.5), subtype="FLOAT"),
        "a float WAV peaking at +18 dBFS (finite, not clipped in the file)", OK)
    add("rate_8k", _write(d / "rate8k.wav", _tone(0.5, rate=8000), rate=8000), "an 8 kHz file", OK)
    add("rate_192k", _write(d / "rate192k.wav", _tone(0.5, rate=192000, channels=2), rate=192000),
        "a 192 kHz stereo file", OK)
    add("six_channel", _write(d / "surround.wav", _tone(0.25, channels=6)), "a 6-channel (5.1) file", ERROR,
        "6 channels")
    add("pcm24", _write(d / "pcm24.wav", _tone(0.5, channels=2), subtype="PCM_24"), "a 24-bit PCM file", OK)
    add("float32", _write(d / "float32.wav", _tone(0.5, channels=2), subtype="FLOAT"), "a 32-bit float file", OK)
    add("flac24", _write(d / "f24.flac", _tone(0.5, channels=2), subtype="PCM_24"), "a 24-bit FLAC", OK)
    add("unicode_name", _write(d / "Ünïcødé ♫ 音声 — vox.wav", _tone(0.5, freq=440.0)),
        "a file name with accents, symbols, CJK and a dash", OK)
    add("spaces_name", _write(d / "  lead  vocal (final) v2 .wav", _tone(0.5, freq=330.0)),
        "a file name with leading, doubled and trailing spaces and parentheses", OK)
    loop_a, loop_b = d / "loop_a.wav", d / "loop_b.wav"
    os.symlink(loop_b.name, loop_a)
    os.symlink(loop_a.name, loop_b)
    add("symlink_loop", loop_a, "a .wav that is a symbolic link loop", ERROR, "symbolic link loop")
    os.symlink("does-not-exist.wav", d / "dangling.wav")
    add("broken_symlink", d / "dangling.wav", "a .wav that is a dangling symbolic link", ERROR, "broken symbolic link")
    os.mkfifo(d / "pipe.wav")
    add("fifo_as_wav", d / "pipe.wav", "a named pipe called .wav (opening it would block forever)", ERROR,
        "not a regular file")
    (d / "folder.wav").mkdir()
    # the CLI takes a single folder argument as a stem folder, and says it holds no audio
    add("directory_named_wav", d / "folder.wav", "a directory named like an audio file", ERROR, "directory",
        overrides={"cli mix --model rules": (ERROR, "no audio files")})
    return entries


def _folder_entries(root: Path) -> list[CorpusEntry]:
    d = root / "folders"
    entries: list[CorpusEntry] = []

    def add(name: str, path: Path, exercises: str, expect: str, message: str | None = None,
            overrides: Mapping[str, tuple[str, str | None]] | None = None) -> None:
        entries.append(CorpusEntry(name, "folder", path, exercises, expect, message, dict(overrides or {})))

    empty = d / "empty"
    empty.mkdir(parents=True)
    add("folder_empty", empty, "a folder with no files", ERROR, "no audio files")
    only_junk = d / "only_junk"
    _text(only_junk / "readme.txt", "stems will follow")
    _text(only_junk / "cover.png", _png_bytes())
    _write(only_junk / "mix.wav", _tone(0.5, channels=2))
    add("folder_no_stems", only_junk, "a folder with a text file, an image and only a mixdown", ERROR, "no audio files")
    _write(d / "one_file" / "bass.wav", _tone(1.0, freq=55.0))
    add("folder_one_file", d / "one_file", "a folder with a single stem", OK)
    many = d / "sixty_five"
    tiny = _tone(0.05, freq=440.0)
    for i in range(65):
        _write(many / f"track{i:02d}.wav", tiny)
    add("folder_65_files", many, "65 stems, one more than the 64-track limit", ERROR, "at most 64")
    lengths = d / "lengths"
    _write(lengths / "kick.wav", _tone(2.0, freq=60.0, level=0.6))
    _write(lengths / "hat.wav", _tone(0.01, freq=8000.0))
    _write(lengths / "click.wav", np.full((1, 1), 0.9, np.float32))
    add("folder_wild_lengths", lengths, "stems of 2 s, 10 ms and 1 sample", OK)
    rates = d / "rates"
    _write(rates / "low.wav", _tone(0.5, rate=8000), rate=8000)
    _write(rates / "mid.wav", _tone(0.5, rate=SHORT_RATE, channels=2))
    _write(rates / "high.wav", _tone(0.5, rate=192000), rate=192000)
    add("folder_mixed_rates", rates, "stems at 8, 22.05 and 192 kHz, mono and stereo", OK)
    bad_inside = d / "one_bad"
    _write(bad_inside / "keys.wav", _tone(0.5))
    _text(bad_inside / "vox.wav", "not audio")
    add("folder_one_bad_file", bad_inside, "a good stem beside a text file named vox.wav", ERROR, "vox.wav")
    uni = d / "Ünïcødé song ♫"
    _write(uni / "ベース.wav", _tone(0.5, freq=55.0))
    _write(uni / "voix chantée.wav", _tone(0.5, freq=440.0))
    add("folder_unicode", uni, "a folder and stems with non-ASCII names", OK)
    loop = d / "loop_folder"
    os.symlink(loop.name, loop)
    add("folder_symlink_loop", loop, "a folder that is a symbolic link to itself", ERROR, "symbolic link loop")
    inner = d / "loop_inside"
    _write(inner / "pad.wav", _tone(0.5))
    os.symlink("self.wav", inner / "self.wav")
    os.symlink(".", inner / "again")
    add("folder_with_link_loops", inner, "a stem beside a self-linked .wav and a link to its own folder", ERROR,
        "self.wav")
    hidden = d / "hidden_junk"
    _write(hidden / "guitar.wav", _tone(0.5, freq=196.0))
    _text(hidden / "._guitar.wav", b"\x00\x05\x16\x07 AppleDouble junk")
    add("folder_hidden_junk", hidden, "a stem beside a macOS '._' metadata file with the same suffix", OK)
    song = d / "song_with_mix"
    _write(song / "kick.wav", _tone(0.5, freq=60.0, level=0.6))
    _write(song / "bass.wav", _tone(0.5, freq=110.0))
    _write(song / "mix.wav", _tone(0.5, freq=110.0, channels=2))
    add("folder_song_with_mix", song, "a song folder with stems and a mixdown (evaluable)", OK)
    nan_mix = d / "nan_mixdown"
    _write(nan_mix / "keys.wav", _tone(0.5, freq=262.0))
    bad = _tone(0.5, channels=2)
    bad[10:20] = np.nan
    _write(nan_mix / "mix.wav", bad, subtype="FLOAT")
    add("folder_nan_mixdown", nan_mix, "good stems, a mixdown holding NaN (only evaluation reads it)", ERROR,
        "non-finite", overrides={"load_multitrack": (OK, None), "mix_multitrack:rules": (OK, None),
                                 "cli rules-mix": (OK, None)})
    escape = d / "metadata_escape"
    _write(escape / "vox.wav", _tone(0.5, freq=440.0))
    _json(escape / "metadata.json", {"mix": "../../" + BASE_SONG + "/kick.wav", "stems": {"vox.wav": "vocal"}})
    add("folder_metadata_escape", escape,
        "metadata.json naming a mixdown outside the song folder ('../../')", ERROR, "inside the song folder",
        overrides={"load_multitrack": (OK, None), "mix_multitrack:rules": (OK, None), "cli rules-mix": (OK, None)})
    return entries


def _base_song(root: Path) -> Path:
    song = root / BASE_SONG
    _write(song / "kick.wav", _tone(0.5, freq=60.0, level=0.6))
    _write(song / "vox.wav", _tone(0.5, freq=440.0))
    return song


def _valid_settings(song: Path) -> dict:
    """The settings document the rule-based mixer writes for the base song."""
    from neuromix.core.io import load_multitrack
    from neuromix.mixing.inference import mix_multitrack

    outcome = mix_multitrack(load_multitrack(song), model="rules")
    assert outcome.settings is not None
    return json.loads(json.dumps(outcome.settings))


def _settings_entries(root: Path, valid: dict) -> list[CorpusEntry]:
    d = root / "settings"
    entries: list[CorpusEntry] = []

    def add(name: str, doc: object | str, exercises: str, expect: str, message: str | None = None) -> None:
        path = d / f"{name}.json"
        _document(path, doc)
        # read_settings only parses (size, UTF-8, JSON, an object); the values are checked when used
        parsed = isinstance(doc, dict) or name in ("settings_nan",)
        overrides = {"read_settings": (OK, None)} if parsed and expect == ERROR else {}
        entries.append(CorpusEntry(name, "settings", path, exercises, expect, message, overrides))

    def edited(**changes: object) -> dict:
        doc = json.loads(json.dumps(valid))
        for pointer, value in changes.items():
            *parents, last = pointer.split("__")
            node = doc
            for key in parents:
                node = node[int(key)] if isinstance(node, list) else node[key]
            if value is _DELETE:
                del node[last]
            elif isinstance(node, list):
                node[int(last)] = value
            else:
                node[last] = value
        return doc

    add("settings_valid", valid, "the settings the rule-based mixer wrote for this song", OK)
    add("settings_missing_tracks", edited(tracks=_DELETE), "a settings document without 'tracks'", ERROR, "tracks")
    add("settings_wrong_type", edited(tracks__0__gain_db="loud"), "gain_db given as a string", ERROR,
        "must be a number")
    add("settings_huge_number", edited(tracks__1__comp_ratio=1e308), "a ratio of 1e308", ERROR, "outside")
    add("settings_out_of_range", edited(tracks__0__pan=5.0), "a pan of 5 (range -1..1)", ERROR, "outside")
    add("settings_nan", json.dumps(valid).replace('"pan": 0.0', '"pan": NaN', 1), "a NaN literal for a pan",
        ERROR, "finite")
    add("settings_deep", _deep_json(100_000), "JSON nested 100000 levels deep", ERROR, "settings")
    add("settings_not_object", "[1, 2, 3]", "a JSON array instead of an object", ERROR, "JSON object")
    add("settings_binary", b"\xff\xfe\x00garbage\x80", "bytes that are not UTF-8", ERROR, "cannot read the settings file")
    add("settings_unknown_track", edited(tracks__1__name="../../etc/passwd"),
        "a track name that matches no stem (and looks like a path)", ERROR, "vox")
    add("settings_too_many_tracks", edited(tracks=[dict(valid["tracks"][0], name=f"t{i}") for i in range(5000)]),
        "5000 tracks in a settings document", ERROR, "too many tracks")
    os.mkfifo(d / "settings_fifo.json")
    entries.append(CorpusEntry("settings_fifo", "settings", d / "settings_fifo.json",
                               "a named pipe given as the settings file (nobody writes to it)", ERROR, "regular file"))
    return entries


class _Delete:
    """Marker: remove the field (used by the settings editor above)."""


_DELETE = _Delete()


def _patch_doc() -> dict:
    """A short, valid patch on the shipped black-box network (a 0.3 s pluck at 22.05 kHz)."""
    from neuromix.synthesis.patch import Patch

    doc = Patch.load("glass-pluck").to_dict()
    doc.update(name="corpus-pluck", duration_s=0.3, sample_rate=SHORT_RATE)
    doc["envelope"]["release_s"] = 0.05
    return doc


def _patch_entries(root: Path, valid: dict, pickle_path: Path) -> list[CorpusEntry]:
    d = root / "patches"
    entries: list[CorpusEntry] = []

    def add(name: str, doc: object | str | bytes, exercises: str, expect: str, message: str | None = None,
            lazy: bool = False) -> None:
        path = d / f"{name}.json"
        _document(path, doc)
        # a patch names its network; loading the patch does not open it, rendering does
        overrides = {"Patch.load": (OK, None)} if lazy else {}
        entries.append(CorpusEntry(name, "patch", path, exercises, expect, message, overrides))

    def edited(**changes: object) -> dict:
        doc = json.loads(json.dumps(valid))
        for key, value in changes.items():
            if value is _DELETE:
                del doc[key]
            else:
                doc[key] = value
        return doc

    add("patch_valid", valid, "a 0.3 s pluck on the shipped black box", OK)
    add("patch_missing_fields", {"format": "neuromix-patch", "version": 1}, "a patch with no network or excitation",
        ERROR, "network")
    add("patch_wrong_type", edited(seed="seven"), "seed given as a string", ERROR, "seed")
    add("patch_huge_number", edited(duration_s=1e300), "a duration of 1e300 s", ERROR, "duration_s")
    add("patch_out_of_range", edited(sample_rate=1), "a sample rate of 1 Hz", ERROR, "sample_rate")
    add("patch_deep", _deep_json(100_000), "JSON nested 100000 levels deep", ERROR, "nested")
    add("patch_unknown_technique", edited(techniques=[{"type": "explode"}]), "a technique type that does not exist",
        ERROR, "techniques[0]")
    add("patch_traversal_network", edited(network={"path": "../../../../../../etc/passwd"}),
        "a network path climbing out to /etc/passwd", ERROR, "not a safetensors file", lazy=True)
    add("patch_pickle_network", edited(network={"path": str(pickle_path)}),
        "a network path naming a pickle that would run code", ERROR, "pickle", lazy=True)
    return entries


def _score_entries(root: Path, patch_path: Path) -> list[CorpusEntry]:
    d = root / "scores"
    entries: list[CorpusEntry] = []
    valid = {
        "format": "neuromix-score",
        "version": 1,
        "sample_rate": SHORT_RATE,
        "tail_s": 0.1,
        "patches": {"lead": os.path.relpath(patch_path, d)},
        "events": [{"time": 0.0, "duration": 0.2, "patch": "lead", "note": 64}],
    }

    def add(name: str, doc: object | str, exercises: str, expect: str, message: str | None = None,
            suffix: str = ".json") -> None:
        path = d / f"{name}{suffix}"
        _document(path, doc)
        entries.append(CorpusEntry(name, "score", path, exercises, expect, message))

    def with_event(**changes: object) -> dict:
        doc = json.loads(json.dumps(valid))
        doc["events"][0].update(changes)
        return doc

    add("score_valid", valid, "one 0.2 s note of the corpus patch (referenced relative to the score)", OK)
    add("score_missing_events", {k: v for k, v in valid.items() if k != "events"}, "a score without events",
        ERROR, "events")
    add("score_wrong_type", with_event(time="soon"), "an event time given as a word", ERROR, "events[0].time")
    add("score_huge_number", with_event(time=1e12), "an event at 10^12 s", ERROR, "events[0]")
    add("score_out_of_range", with_event(velocity=5.0), "a velocity of 5 (range 0..1)", ERROR, "velocity")
    add("score_deep", _deep_json(100_000), "JSON nested 100000 levels deep", ERROR, "nested")
    add("score_traversal_patch", dict(valid, patches={"lead": "../../../../../../../../etc/passwd.json"}),
        "a patch reference climbing out of the corpus", ERROR, "patches.lead")
    add("score_bad_toml", "format = 'neuromix-score'\n[[events]\ntime = ", "a TOML file with a syntax error",
        ERROR, "invalid TOML", suffix=".toml")
    return entries


def _midi_bytes(events: list[tuple[int, object]], ticks: int = 480) -> bytes:
    """A type-0 Standard MIDI File from ``[(delta ticks, mido message), ...]``."""
    import mido

    track = mido.MidiTrack()
    for delta, msg in events:
        track.append(msg.copy(time=delta))  # type: ignore[attr-defined]
    midi = mido.MidiFile(type=0, ticks_per_beat=ticks)
    midi.tracks.append(track)
    buf = io.BytesIO()
    midi.save(file=buf)
    return buf.getvalue()


def _midi_entries(root: Path) -> list[CorpusEntry]:
    import mido

    d = root / "midi"
    entries: list[CorpusEntry] = []

    def add(name: str, data: bytes, exercises: str, expect: str, message: str | None = None) -> None:
        entries.append(CorpusEntry(name, "midi", _text(d / f"{name}.mid", data), exercises, expect, message))

    on, off = mido.Message("note_on", note=64, velocity=100), mido.Message("note_off", note=64, velocity=0)
    valid = _midi_bytes([(0, on), (96, off)])  # 0.1 s at 120 bpm
    add("midi_valid", valid, "one 0.1 s note", OK)
    add("midi_zero_byte", b"", "an empty .mid", ERROR, "not a valid MIDI file")
    add("midi_truncated", valid[: len(valid) - 6], "a MIDI file cut inside its track", ERROR, "not a valid MIDI file")
    add("midi_no_notes", _midi_bytes([(0, mido.Message("control_change", control=1, value=64))]),
        "a MIDI file with a controller change and no notes", ERROR, "no notes")
    slow = mido.MetaMessage("set_tempo", tempo=16_000_000)  # 16 s per beat
    add("midi_huge_time", _midi_bytes([(0, slow), (0x0FFFFFFF, on), (480, off)]),
        "a note starting after the longest delta time at 16 s per beat (~100 days)", ERROR, "limit")
    many: list[tuple[int, object]] = []
    for i in range(5000):
        note = 40 + i % 40
        many += [(0, mido.Message("note_on", note=note, velocity=90)), (1, mido.Message("note_off", note=note))]
    os.mkfifo(d / "midi_fifo.mid")
    entries.append(CorpusEntry("midi_fifo", "midi", d / "midi_fifo.mid", "a named pipe given as the MIDI file", ERROR,
                               "not a regular file"))
    add("midi_too_many_notes", _midi_bytes(many), "5000 notes (limit 4096)", ERROR, "more than 4096 notes")
    return entries


def _checkpoint_entries(root: Path) -> tuple[list[CorpusEntry], Path]:
    from neuromix.core import checkpoint
    from neuromix.mixing.shipped import shipped_checkpoint
    from neuromix.synthesis.testing import save_tiny_network

    d = root / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    entries: list[CorpusEntry] = []

    def add(name: str, path: Path, exercises: str, expect: str, message: str | None = None) -> None:
        entries.append(CorpusEntry(name, "checkpoint", path, exercises, expect, message))

    marker = root / PICKLE_MARKER
    tiny = save_tiny_network(d / "tiny_blackbox.safetensors", "blackbox", seed=1)
    add("checkpoint_valid", tiny, "a tiny untrained black box saved by the project", OK)
    evil = _text(d / "evil.safetensors", pickle.dumps(_MarkerPayload(marker), protocol=2))
    add("checkpoint_pickle", evil, "a pickle whose __reduce__ would create a marker file", ERROR, "pickle")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(_MarkerPayload(marker), protocol=2))
        zf.writestr("archive/version", "3\n")
    add("checkpoint_torch_zip", _text(d / "model.pt", archive.getvalue()),
        "a torch.save-style zip archive holding a malicious pickle", ERROR, "zip archive")
    data = tiny.read_bytes()
    add("checkpoint_truncated", _text(d / "truncated.safetensors", data[: len(data) // 2]),
        "the tiny checkpoint cut in half", ERROR, "truncated")
    info = checkpoint.read_info(tiny)

    def with_metadata(name: str, **meta: str) -> Path:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        header["__metadata__"].update(meta)
        raw = json.dumps(header).encode()
        return _text(d / name, struct.pack("<Q", len(raw)) + raw + data[8 + n :])

    add("checkpoint_wrong_config",
        with_metadata("wrong_config.safetensors",
                      config=json.dumps({**info.config, "tcn_channels": "wide", "bogus": 1})),
        "a config with an unknown field and a wrong type", ERROR, "config does not match")
    add("checkpoint_config_mismatch",
        with_metadata("mismatch.safetensors", config=json.dumps({**info.config, "tcn_channels": 32})),
        "a valid config whose layer widths disagree with the stored weights", ERROR, "shape mismatch")
    add("checkpoint_unknown_type", with_metadata("unknown_type.safetensors", model_type="quantum_mixer"),
        "an unknown model type", ERROR, "unknown model type")
    huge = struct.pack("<Q", 2**62) + b"{}"
    add("checkpoint_huge_header", _text(d / "huge_header.safetensors", huge),
        "a header length of 2^62 bytes", ERROR, "not a safetensors file")
    shipped = shipped_checkpoint("console")
    tampered = bytearray(shipped.read_bytes())
    tampered[-1] ^= 0x01
    add("checkpoint_tampered_shipped", _text(d / shipped.name, bytes(tampered)),
        "a copy of the shipped console network with one bit flipped (name keeps the hash)", ERROR,
        "content hash mismatch")
    return entries, evil


def _train_entries(root: Path) -> list[CorpusEntry]:
    d = root / "train"
    entries: list[CorpusEntry] = []

    def add(name: str, doc: object | str, exercises: str, expect: str, message: str | None = None) -> None:
        path = d / f"{name}.json"
        _document(path, doc)
        entries.append(CorpusEntry(name, "train_config", path, exercises, expect, message))

    add("train_wrong_type", {"steps": "many"}, "steps given as a word", ERROR, "wrong type")
    add("train_out_of_range", {"batch_size": 0}, "a batch size of 0", ERROR, "batch_size")
    add("train_deep", _deep_json(100_000), "JSON nested 100000 levels deep", ERROR, "not valid JSON")
    os.mkfifo(d / "train_fifo.json")
    entries.append(CorpusEntry("train_fifo", "train_config", d / "train_fifo.json", "a named pipe given as the config",
                               ERROR, "not a regular file"))
    return entries


# --------------------------------------------------------------------------- entry point


def build_corpus(root: Path) -> list[CorpusEntry]:
    """Write the whole corpus under ``root`` (created; must be empty or absent) and describe it.

    Needs the project installed (valid settings, patches and checkpoints are made with
    its own writers). Takes about a second.

    Returns:
        The entries, in a stable order; names are unique.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    song = _base_song(root)
    entries = _audio_entries(root) + _folder_entries(root)
    entries += _settings_entries(root, _valid_settings(song))
    checkpoints, pickle_path = _checkpoint_entries(root)
    patches = _patch_entries(root, _patch_doc(), pickle_path)
    entries += patches
    entries += _score_entries(root, next(e.path for e in patches if e.name == "patch_valid"))
    entries += _midi_entries(root)
    entries += checkpoints
    entries += _train_entries(root)
    names = [e.name for e in entries]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:  # pragma: no cover - a corpus authoring mistake
        raise AssertionError(f"duplicate corpus entry names: {sorted(duplicates)}")
    return entries


def main(argv: list[str] | None = None) -> int:
    """``python tests/corpus.py OUTDIR``: write the corpus and print one line per entry."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python tests/corpus.py OUTDIR", file=sys.stderr)
        return 2
    entries = build_corpus(Path(args[0]))
    for e in entries:
        expect = e.expect + (f" ({e.message!r})" if e.message else "")
        print(f"{e.kind:<12} {e.name:<28} {expect:<40} {e.exercises}")
    print(f"{len(entries)} entries in {args[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
