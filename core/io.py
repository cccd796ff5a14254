"""Audio file input/output: reading, writing, resampling and multitrack folders.

Everything that touches audio files goes through this module, so the rest of the
project only sees float32 tensors shaped ``(channels, samples)`` (one file) or
``(tracks, 2, samples)`` (a multitrack). Files are read and written with
soundfile (libsndfile) only; resampling uses ``torchaudio.functional.resample``
(windowed-sinc band-limited interpolation).

Every problem a user can cause with a file or a folder raises
:class:`~neuromix.core.errors.AudioInputError` whose message names the file and
says what is wrong (missing, a folder, not audio, truncated, empty, non-finite,
too many channels, too large, too long). No soundfile / libsndfile exception
leaves this module.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import struct
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import Tensor

from .errors import AudioInputError, ConfigError, NeuromixError

__all__ = [
    "AudioLimits",
    "DEFAULT_LIMITS",
    "AUDIO_EXTENSIONS",
    "AudioOutputError",
    "Multitrack",
    "audio_extensions",
    "audio_info",
    "read_audio",
    "write_audio",
    "resample",
    "to_mono",
    "to_stereo",
    "load_multitrack",
]

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".aiff", ".aif")
"""File suffixes (lower case) treated as audio in a multitrack folder; ``.mp3`` is
added by :func:`audio_extensions` when the installed libsndfile can decode MP3."""

_WRITE_FORMATS: dict[str, str] = {
    ".wav": "WAV",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".aiff": "AIFF",
    ".aif": "AIFF",
}
_MAX_HEADER_CHUNKS = 4096
_DEFAULT_SUBTYPE = "PCM_24"


class AudioOutputError(NeuromixError, ValueError):
    """An audio file cannot be written (it exists, the audio is not finite, bad format).

    Attributes:
        path: the output path the error is about.
    """

    def __init__(self, message: str, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class AudioLimits:
    """Upper bounds on what the readers accept (protects memory and time).

    Attributes:
        max_seconds: longest audio read from one file, in seconds (of the part
            actually read when ``start_s`` / ``duration_s`` select a segment).
        max_bytes: largest file size accepted, in bytes.
        max_channels: most channels a file may have.
        max_tracks: most files a multitrack may have.
        min_sample_rate, max_sample_rate: range of sample rates (Hz) accepted for a file
            or a requested output rate. The mixers' loudness measurement (BS.1770
            K-weighting) needs at least telephone-band audio; memory scales with the rate
            (a reverb tail of seconds at 100 MHz is gigabytes), so a header claiming an
            absurd rate is refused instead of being mixed.
    """

    max_seconds: float = 900.0
    max_bytes: int = 2 * 1024**3
    max_channels: int = 2
    max_tracks: int = 64
    min_sample_rate: int = 8000
    max_sample_rate: int = 384000


DEFAULT_LIMITS = AudioLimits()


def audio_extensions() -> tuple[str, ...]:
    """Return the lower-case suffixes treated as audio (``.mp3`` only if libsndfile decodes it)."""
    try:
        has_mp3 = "MP3" in sf.available_formats()
    except Exception:  # pragma: no cover - very old libsndfile
        has_mp3 = False
    return AUDIO_EXTENSIONS + ((".mp3",) if has_mp3 else ())


# --------------------------------------------------------------------------- checks


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:.3f} s"


def _fmt_bytes(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024.0 or unit == "GiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024.0
    return f"{n} bytes"  # pragma: no cover


def _check_file(path: str | os.PathLike[str], max_bytes: int | None) -> tuple[Path, int]:
    """Check that ``path`` is an existing, readable regular file; return it and its size."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise AudioInputError("is a broken symbolic link (its target does not exist)", p) from None
        raise AudioInputError("file not found", p) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AudioInputError("is a symbolic link loop, not an audio file", p) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise AudioInputError("cannot be read (permission denied)", p) from None
        raise AudioInputError(f"cannot be accessed ({exc.strerror or exc})", p) from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioInputError("is a directory, not an audio file", p)
    if not stat.S_ISREG(st.st_mode):
        raise AudioInputError("is not a regular file (a device, pipe or socket), not an audio file", p)
    if not os.access(p, os.R_OK):
        raise AudioInputError("cannot be read (permission denied)", p)
    if st.st_size == 0:
        raise AudioInputError("is empty (0 bytes); not a readable audio file", p)
    if max_bytes is not None and st.st_size > max_bytes:
        raise AudioInputError(
            f"is too large ({_fmt_bytes(st.st_size)}; at most {_fmt_bytes(max_bytes)} are accepted)", p
        )
    return p, int(st.st_size)


def _libsndfile_reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # soundfile prefixes open errors with "Error opening '<path>': "; the path is already named.
    if text.startswith("Error opening") and "': " in text:
        text = text.split("': ", 1)[1]
    if text.startswith("Error : "):
        text = text[len("Error : ") :]
    return text.rstrip(".")


def _open_soundfile(p: Path) -> sf.SoundFile:
    try:
        return sf.SoundFile(str(p), mode="r")
    except MemoryError:
        raise
    except Exception as exc:
        raise AudioInputError(f"not a readable audio file ({_libsndfile_reason(exc)})", p) from exc


def audio_info(path: str | os.PathLike[str]) -> Any:
    """Return soundfile's description of an audio file without reading its samples.

    Args:
        path: the audio file.

    Returns:
        soundfile's info object (attributes ``samplerate``, ``channels``,
        ``frames``, ``duration``, ``format``, ``subtype``, ...).

    Raises:
        AudioInputError: missing file, a directory or other non-regular file,
            unreadable, empty, or not an audio file libsndfile can open.
    """
    p, _ = _check_file(path, max_bytes=None)
    try:
        return sf.info(str(p))
    except MemoryError:
        raise
    except Exception as exc:
        raise AudioInputError(f"not a readable audio file ({_libsndfile_reason(exc)})", p) from exc


def _read_exact(f: BinaryIO, n: int) -> bytes | None:
    data = f.read(n)
    return data if len(data) == n else None


def _header_truncation(p: Path, file_size: int) -> tuple[int, int] | None:
    """Compare the audio data size a WAV/AIFF header announces with the bytes present.

    libsndfile silently shortens a WAV/AIFF whose data chunk runs past the end of
    the file, so a cut-off download would otherwise load as a shorter song. This
    walks the RIFF / IFF chunk list (without reading sample data).

    Returns:
        ``(announced_frames, present_frames)`` when the file is truncated, else ``None``
        (also when the format is not WAV/AIFF or the size is marked unknown).
    """
    try:
        with open(p, "rb") as f:
            head = _read_exact(f, 12)
            if head is None:
                return None
            if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
                endian = "<" if head[:4] == b"RIFF" else ">"
                block_align = 0
                for _ in range(_MAX_HEADER_CHUNKS):
                    chunk = _read_exact(f, 8)
                    if chunk is None:
                        return None
                    cid, size = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
                    body_start = f.tell()
                    if cid == b"fmt ":
                        fmt = _read_exact(f, min(size, 16))
                        if fmt is not None and len(fmt) >= 14:
                            block_align = struct.unpack(endian + "H", fmt[12:14])[0]
                    elif cid == b"data":
                        if size in (0, 0xFFFFFFFF) or block_align <= 0:
                            return None  # streamed file of unknown length, or no fmt chunk first
                        present = file_size - body_start
                        if present < size:
                            return size // block_align, max(present, 0) // block_align
                        return None
                    f.seek(body_start + size + (size & 1))
                return None
            if head[:4] == b"FORM" and head[8:12] == b"AIFF":  # (compressed AIFC is not checked)
                frames = bytes_per_frame = 0
                for _ in range(_MAX_HEADER_CHUNKS):
                    chunk = _read_exact(f, 8)
                    if chunk is None:
                        return None
                    cid, size = chunk[:4], struct.unpack(">I", chunk[4:])[0]
                    body_start = f.tell()
                    if cid == b"COMM":
                        comm = _read_exact(f, 8)
                        if comm is not None:
                            channels, frames, bits = struct.unpack(">hIh", comm)
                            bytes_per_frame = max(channels, 0) * ((max(bits, 0) + 7) // 8)
                    elif cid == b"SSND":
                        if bytes_per_frame <= 0:
                            return None
                        present = file_size - body_start - 8  # SSND starts with offset + block size
                        if present < frames * bytes_per_frame:
                            return frames, max(present, 0) // bytes_per_frame
                        return None
                    f.seek(body_start + size + (size & 1))
                return None
    except OSError:
        return None
    return None


def _check_positive_rate(sample_rate: int | None, name: str = "sample_rate") -> None:
    if sample_rate is None:
        return
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ConfigError(f"{name} must be a positive integer number of Hz, got {sample_rate!r}")


def _rate_range(limits: AudioLimits) -> str:
    return f"{limits.min_sample_rate} to {limits.max_sample_rate} Hz are supported"


def _check_rate_limits(sample_rate: int | None, limits: AudioLimits) -> None:
    if sample_rate is not None and not limits.min_sample_rate <= sample_rate <= limits.max_sample_rate:
        raise ConfigError(f"sample_rate {sample_rate} Hz is out of range; {_rate_range(limits)}")


def _too_long(p: Path, seconds: float, limits: AudioLimits) -> AudioInputError:
    return AudioInputError(
        f"is too long ({_fmt_seconds(seconds)} to read; at most {_fmt_seconds(limits.max_seconds)} are "
        "accepted; read a segment with duration_s)",
        p,
    )


def _check_segment(start_s: float, duration_s: float | None) -> None:
    if not math.isfinite(start_s) or start_s < 0:
        raise ConfigError(f"start_s must be a finite number of seconds >= 0, got {start_s!r}")
    if duration_s is not None and (not math.isfinite(duration_s) or duration_s <= 0):
        raise ConfigError(f"duration_s must be a finite number of seconds > 0, got {duration_s!r}")


# --------------------------------------------------------------------------- reading


def read_audio(
    path: str | os.PathLike[str],
    sample_rate: int | None = None,
    *,
    limits: AudioLimits = DEFAULT_LIMITS,
    start_s: float = 0.0,
    duration_s: float | None = None,
) -> tuple[Tensor, int]:
    """Read (part of) an audio file as a float32 tensor, optionally resampled.

    Only the requested segment is decoded (soundfile ``seek`` + ``frames``), so
    a preview of a long file is cheap. Integer PCM is scaled to [-1, 1).

    Args:
        path: an audio file libsndfile can read (WAV, FLAC, OGG/Vorbis, AIFF, MP3 ...).
        sample_rate: output rate in Hz; ``None`` keeps the file's rate. A different
            rate resamples with :func:`resample` (the segment alone is resampled).
        limits: size, duration (of the segment read) and channel limits.
        start_s: where the segment starts, in seconds from the file's start.
        duration_s: segment length in seconds; ``None`` reads to the end. A segment
            running past the end is shortened to the end of the file.

    Returns:
        ``(audio, rate)``: audio ``(channels, samples)`` float32 in full-scale units,
        and its sample rate in Hz (``sample_rate`` if given, else the file's).

    Raises:
        AudioInputError: (message names the file) missing, a directory, not an audio
            file, truncated, zero-length, non-finite samples, more channels than
            ``limits.max_channels``, larger than ``limits.max_bytes``, a segment longer
            than ``limits.max_seconds``, a sample rate outside ``limits.min_sample_rate`` ..
            ``limits.max_sample_rate``, or ``start_s`` at or past the end.
        ConfigError: ``sample_rate`` (not a positive integer, or outside the limits'
            rate range), ``start_s`` or ``duration_s`` out of range.
    """
    _check_positive_rate(sample_rate)
    _check_rate_limits(sample_rate, limits)
    _check_segment(start_s, duration_s)
    p, size = _check_file(path, limits.max_bytes)
    with _open_soundfile(p) as f:
        file_sr, channels, total = int(f.samplerate), int(f.channels), int(f.frames)
        if channels > limits.max_channels:
            plural = "is" if limits.max_channels == 1 else "are"
            raise AudioInputError(
                f"has {channels} channels; at most {limits.max_channels} {plural} supported", p
            )
        truncated = _header_truncation(p, size)
        if truncated is not None:
            announced, present = truncated
            raise AudioInputError(
                f"is truncated: its header announces {announced} frames but only {present} are "
                "present (incomplete download or copy?)",
                p,
            )
        if total <= 0 or file_sr <= 0:
            raise AudioInputError("contains no audio (zero-length)", p)
        if not limits.min_sample_rate <= file_sr <= limits.max_sample_rate:
            raise AudioInputError(f"has a sample rate of {file_sr} Hz; {_rate_range(limits)}", p)
        start = int(round(start_s * file_sr))
        if start >= total:
            raise AudioInputError(
                f"start_s={start_s} is at or past the end of the audio ({_fmt_seconds(total / file_sr)})",
                p,
            )
        available = total - start
        frames = available if duration_s is None else min(max(int(round(duration_s * file_sr)), 1), available)
        if frames / file_sr > limits.max_seconds:
            raise _too_long(p, frames / file_sr, limits)
        try:
            if start:
                if f.seekable():
                    f.seek(start)
                else:  # pragma: no cover - libsndfile formats read from files are seekable
                    f.read(start, dtype="float32", always_2d=True)
            data = f.read(frames, dtype="float32", always_2d=True)
        except MemoryError:
            raise
        except Exception as exc:
            raise AudioInputError(
                f"is truncated or corrupt: decoding failed ({_libsndfile_reason(exc)})", p
            ) from exc
    if data.shape[0] < frames:
        raise AudioInputError(
            f"is truncated: expected {frames} frames from sample {start} but only {data.shape[0]} "
            "could be decoded",
            p,
        )
    if data.shape[0] == 0:
        raise AudioInputError("contains no audio (zero-length)", p)
    if not np.isfinite(data).all():
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        raise AudioInputError(f"contains non-finite samples (NaN or Inf): {bad} of {data.size}", p)
    audio = torch.from_numpy(np.ascontiguousarray(data.T))
    if sample_rate is not None and int(sample_rate) != file_sr:
        audio = resample(audio, file_sr, int(sample_rate))
        return audio, int(sample_rate)
    return audio, file_sr


# --------------------------------------------------------------------------- writing


def _as_numpy_frames(audio: Tensor | np.ndarray) -> np.ndarray:
    """Convert ``(channels, samples)`` audio to soundfile's ``(samples, channels)`` float array."""
    if isinstance(audio, Tensor):
        arr = audio.detach().to("cpu")
        arr = arr.numpy() if arr.dtype == torch.float64 else arr.to(torch.float32).numpy()
    else:
        arr = np.asarray(audio)
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"audio must be a float array, got dtype {arr.dtype}")
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"audio must be (channels, samples), got shape {tuple(arr.shape)}")
    if arr.shape[0] > 64:
        raise ValueError(
            f"audio must be (channels, samples), got shape {tuple(arr.shape)}: {arr.shape[0]} "
            "channels? (soundfile's layout is (samples, channels); transpose it)"
        )
    return np.ascontiguousarray(arr.T)


def write_audio(
    path: str | os.PathLike[str],
    audio: Tensor | np.ndarray,
    sample_rate: int,
    *,
    subtype: str = _DEFAULT_SUBTYPE,
    overwrite: bool = False,
) -> Path:
    """Write audio to a file atomically (temp file in the same folder, fsync, rename).

    A reader never sees a half-written file, and a failed write leaves no temp
    file behind. Integer PCM subtypes clip at full scale (soundfile's behaviour).

    Args:
        path: output file; its suffix picks the format: ``.wav``, ``.flac``, ``.ogg``
            (Vorbis) or ``.aiff`` / ``.aif``.
        audio: ``(channels, samples)`` (or ``(samples,)`` mono) float tensor or array,
            full scale = 1.0. Not modified.
        sample_rate: in Hz.
        subtype: libsndfile subtype (``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``, ...). For a
            format that cannot hold the default ``"PCM_24"`` (OGG), the format's default
            subtype (Vorbis) is used; any other invalid combination is an error.
        overwrite: replace an existing file; without it an existing file is an error.

    Returns:
        The path written.

    Raises:
        AudioOutputError: the file exists and ``overwrite`` is False, unknown suffix,
            invalid subtype for the format, non-finite or empty audio, or the folder
            cannot be written.
        ConfigError: ``sample_rate`` is not a positive integer.
        ValueError: ``audio`` does not have the ``(channels, samples)`` layout.
    """
    _check_positive_rate(sample_rate)
    p = Path(path)
    fmt = _WRITE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_WRITE_FORMATS))
        raise AudioOutputError(f"unknown audio suffix {p.suffix!r}; use one of {known}", p)
    sub = subtype.upper()
    if not sf.check_format(fmt, sub):
        if sub == _DEFAULT_SUBTYPE:
            sub = sf.default_subtype(fmt)
        else:
            raise AudioOutputError(f"subtype {subtype!r} cannot be written as {fmt}", p)
    frames = _as_numpy_frames(audio)
    if frames.shape[0] == 0 or frames.shape[1] == 0:
        raise AudioOutputError(f"refusing to write empty audio of shape {frames.T.shape}", p)
    if not np.isfinite(frames).all():
        raise AudioOutputError("refusing to write non-finite samples (NaN or Inf)", p)
    if not overwrite and os.path.lexists(p):
        raise AudioOutputError("already exists; pass overwrite=True (or --force) to replace it", p)
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise AudioOutputError(f"folder {folder} does not exist", p)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise AudioOutputError(f"cannot write in {folder} ({exc.strerror or exc})", p) from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as handle:
            with sf.SoundFile(
                handle,
                mode="w",
                samplerate=int(sample_rate),
                channels=frames.shape[1],
                format=fmt,
                subtype=sub,
            ) as out:
                out.write(frames)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp, p)
        else:
            _publish_no_overwrite(tmp, p)
        _fsync_dir(folder)
    except NeuromixError:
        raise
    except Exception as exc:
        raise AudioOutputError(f"could not be written ({_libsndfile_reason(exc)})", p) from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def _umask() -> int:
    # os.umask can only be read by setting it; read it from /proc when possible (no global change).
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _publish_no_overwrite(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target`` unless ``target`` exists (atomic where hard links work)."""
    try:
        os.link(tmp, target)  # fails if target exists, never replaces it
    except FileExistsError:
        raise AudioOutputError("already exists; pass overwrite=True (or --force) to replace it", target) from None
    except OSError:
        if os.path.lexists(target):  # file systems without hard links: best effort
            raise AudioOutputError(
                "already exists; pass overwrite=True (or --force) to replace it", target
            ) from None
        os.replace(tmp, target)
        return
    tmp.unlink()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- conversions


def resample(x: Tensor, orig_sr: int, new_sr: int) -> Tensor:
    """Resample along the last axis (windowed-sinc interpolation, torchaudio).

    Args:
        x: ``(..., samples)`` float tensor at ``orig_sr``.
        orig_sr: input rate in Hz.
        new_sr: output rate in Hz.

    Returns:
        ``(..., ceil(samples * new_sr / orig_sr))`` tensor at ``new_sr``; ``x`` itself
        when the rates are equal. Differentiable with respect to ``x``.

    Raises:
        ConfigError: a rate is not a positive integer.
    """
    _check_positive_rate(orig_sr, "orig_sr")
    _check_positive_rate(new_sr, "new_sr")
    if int(orig_sr) == int(new_sr):
        return x
    if not x.is_floating_point():
        raise ValueError(f"resample needs a floating point tensor, got {x.dtype}")
    return AF.resample(x, int(orig_sr), int(new_sr))


def to_mono(x: Tensor) -> Tensor:
    """Average the channels: ``(..., channels, samples) -> (..., 1, samples)``. Differentiable."""
    if x.ndim < 2:
        raise ValueError(f"expected (..., channels, samples), got shape {tuple(x.shape)}")
    return x.mean(dim=-2, keepdim=True)


def to_stereo(x: Tensor) -> Tensor:
    """Make audio stereo: ``(..., 1|2, samples) -> (..., 2, samples)``. Differentiable.

    A mono signal is copied to both channels (dual mono, same level in each); a
    stereo signal is returned as it is (the same tensor object).

    Raises:
        AudioInputError: more than two channels (no down-mix is guessed).
    """
    if x.ndim < 2:
        raise ValueError(f"expected (..., channels, samples), got shape {tuple(x.shape)}")
    channels = x.shape[-2]
    if channels == 2:
        return x
    if channels == 1:
        reps = [1] * x.ndim
        reps[-2] = 2
        return x.repeat(*reps)
    raise AudioInputError(f"audio has {channels} channels; only mono or stereo can be made stereo")


# --------------------------------------------------------------------------- multitracks


@dataclass
class Multitrack:
    """A set of stems at one rate and length, ready for a mixer.

    Attributes:
        audio: ``(tracks, 2, samples)`` float32; mono files are duplicated to dual mono.
        names: track names (file names without suffix), one per track.
        paths: the files, one per track.
        sample_rate: rate of ``audio`` in Hz.
        source_channels: channel count of each file (1 or 2).
        notes: human-readable notes on what loading changed (resampling, padding,
            skipped mixdown files).
    """

    audio: Tensor
    names: list[str]
    paths: list[Path]
    sample_rate: int
    source_channels: list[int]
    notes: list[str] = field(default_factory=list)

    @property
    def num_tracks(self) -> int:
        """Number of tracks."""
        return int(self.audio.shape[0])

    @property
    def mask(self) -> Tensor:
        """``(tracks,)`` bool, all True (every track is real); add a batch axis for models."""
        return torch.ones(self.num_tracks, dtype=torch.bool, device=self.audio.device)

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.audio.shape[-1] / self.sample_rate

    def as_batch(self) -> tuple[Tensor, Tensor]:
        """Return ``(audio (1, tracks, 2, samples), mask (1, tracks))`` for a model."""
        return self.audio.unsqueeze(0), self.mask.unsqueeze(0)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _list_folder(folder: Path, exclude_stems: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Audio files of ``folder`` sorted by name, and notes about skipped mixdown files."""
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        raise AudioInputError("folder not found", folder) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AudioInputError("is a symbolic link loop, not a folder", folder) from None
        raise AudioInputError(f"cannot be accessed ({exc.strerror or exc})", folder) from None
    if not stat.S_ISDIR(st.st_mode):
        raise AudioInputError("is not a folder", folder)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: (e.name.casefold(), e.name))
    except PermissionError:
        raise AudioInputError("folder cannot be read (permission denied)", folder) from None
    except OSError as exc:
        raise AudioInputError(f"folder cannot be read ({exc.strerror or exc})", folder) from None
    suffixes = audio_extensions()
    excluded = {s.casefold() for s in exclude_stems}
    files: list[Path] = []
    notes: list[str] = []
    for entry in entries:
        name = entry.name
        if _is_hidden(name) or Path(name).suffix.lower() not in suffixes:
            continue
        try:
            if entry.is_dir():  # a folder named like audio: not a track
                continue
        except OSError:
            pass  # symlink loops etc.: read_audio names the problem
        if Path(name).stem.casefold() in excluded:
            notes.append(f"skipped {name} (its name marks a mixdown, not a stem)")
            continue
        files.append(folder / name)
    return files, notes


def load_multitrack(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    sample_rate: int | None = None,
    *,
    limits: AudioLimits = DEFAULT_LIMITS,
    exclude_stems: Sequence[str] = ("mix", "mixture", "mixdown", "master"),
    start_s: float = 0.0,
    duration_s: float | None = None,
) -> Multitrack:
    """Load stems (a folder or a list of files) into one ``(tracks, 2, samples)`` tensor.

    A folder contributes its audio files (``.wav .flac .ogg .aiff .aif``, and ``.mp3``
    when libsndfile decodes MP3; case-insensitive), sorted by name, skipping hidden
    files, sub-folders and files whose name (without suffix, case-insensitive) is in
    ``exclude_stems`` (a mixdown next to its stems). An explicit list is used as given,
    in its order. Files at another rate are resampled, shorter files padded with
    silence at the end to the longest; both are reported in ``notes``.

    Args:
        source: a folder, or a list of audio files.
        sample_rate: rate of the result in Hz; ``None`` takes the most common rate among
            the files (ties go to the higher rate).
        limits: per-file limits and ``max_tracks``.
        exclude_stems: names of mixdown files to skip in a folder.
        start_s: segment start in seconds, applied to every file.
        duration_s: segment length in seconds (``None``: to the end).

    Returns:
        A :class:`Multitrack`.

    Raises:
        AudioInputError: folder missing / unreadable / a symlink loop, no audio files,
            more than ``limits.max_tracks`` files, or any bad file (the error names it),
            e.g. one whose rate is outside the limits' rate range.
        ConfigError: invalid ``sample_rate`` (or outside the limits' rate range),
            ``start_s`` or ``duration_s``.
    """
    _check_positive_rate(sample_rate)
    _check_rate_limits(sample_rate, limits)
    _check_segment(start_s, duration_s)
    notes: list[str] = []
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        files, notes = _list_folder(folder, exclude_stems)
        if not files:
            kinds = " ".join(audio_extensions())
            raise AudioInputError(f"no audio files in folder {folder} (looked for {kinds})", folder)
        if len(files) > limits.max_tracks:
            raise AudioInputError(
                f"has {len(files)} audio files; at most {limits.max_tracks} tracks are supported",
                folder,
            )
    else:
        files = [Path(s) for s in source]
        if not files:
            raise AudioInputError("no audio files given (empty list)")
        if len(files) > limits.max_tracks:
            raise AudioInputError(
                f"{len(files)} audio files given; at most {limits.max_tracks} tracks are supported"
            )
    infos = [audio_info(p) for p in files]
    rates = [int(i.samplerate) for i in infos]
    for p, rate in zip(files, rates):
        # name the file before a session rate is chosen from it
        if not limits.min_sample_rate <= rate <= limits.max_sample_rate:
            raise AudioInputError(f"has a sample rate of {rate} Hz; {_rate_range(limits)}", p)
    if sample_rate is None:
        counts = Counter(rates)
        target_sr = max(counts, key=lambda r: (counts[r], r))
    else:
        target_sr = int(sample_rate)

    # Preallocate the (tracks, 2, samples) tensor from the headers and fill it file by file,
    # so the peak memory is the result plus one track (not two copies of every track).
    def frames_to_read(info: Any, rate: int) -> int:
        first = min(int(info.frames), int(round(start_s * rate)))
        frames = int(info.frames) - first
        if duration_s is not None:
            frames = min(frames, int(round(duration_s * rate)))
        return frames

    for p, info, rate in zip(files, infos, rates):  # a header claiming days of audio: refuse before allocating
        if frames_to_read(info, rate) / rate > limits.max_seconds:
            raise _too_long(p, frames_to_read(info, rate) / rate, limits)

    def expected_length(info: Any, rate: int) -> int:
        frames = frames_to_read(info, rate)
        return frames if rate == target_sr else -(-frames * target_sr // rate)

    capacity = max(expected_length(i, r) for i, r in zip(infos, rates)) + 1
    out = torch.zeros(len(files), 2, capacity, dtype=torch.float32)
    lengths: list[int] = []
    channels: list[int] = []
    for i, (p, rate) in enumerate(zip(files, rates)):
        audio, _ = read_audio(p, target_sr, limits=limits, start_s=start_s, duration_s=duration_s)
        if rate != target_sr:
            notes.append(f"resampled {p.name} from {rate} Hz to {target_sr} Hz")
        n = min(int(audio.shape[-1]), capacity)
        channels.append(int(audio.shape[0]))
        out[i, :, :n] = audio[..., :n]  # a mono track broadcasts to dual mono
        lengths.append(n)
        del audio

    longest = max(lengths)
    out = out[..., :longest]
    for p, n in zip(files, lengths):
        if n < longest:
            notes.append(
                f"padded {p.name} with {_fmt_seconds((longest - n) / target_sr)} of silence "
                f"to {_fmt_seconds(longest / target_sr)} (the longest track)"
            )
    return Multitrack(
        audio=out,
        names=[p.stem for p in files],
        paths=files,
        sample_rate=target_sr,
        source_channels=channels,
        notes=notes,
    )


def write_text_atomic(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> Path:
    """Write a text file (UTF-8) atomically: a temporary file in the same folder, fsync, rename.

    A reader (or a crash at any moment) sees either the old file or the complete new one.

    Args:
        path: destination.
        text: content.
        overwrite: replace an existing file; without it an existing file is an error.

    Returns:
        The destination path.

    Raises:
        AudioOutputError: the destination exists (without ``overwrite``) or cannot be written.
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise AudioOutputError("already exists; pass overwrite=True (or --force) to replace it", p)
    folder = p.parent if str(p.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise AudioOutputError(f"cannot write here ({exc.strerror or exc})", p) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def read_text_file(path: str | os.PathLike[str], *, max_bytes: int, what: str) -> str:
    """Read a small UTF-8 document (settings, targets) a user hands in.

    Refuses what is not a regular file (a named pipe would block forever), files over
    ``max_bytes`` and undecodable text, each with a message naming the file and ``what``.

    Raises:
        ConfigError: missing, not a regular file, too large, unreadable or not UTF-8.
    """
    p = Path(path)
    try:
        info = p.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{p}: a {what} file must be a regular file")
        if info.st_size > max_bytes:
            raise ConfigError(f"{p}: the {what} file is larger than {max_bytes // 1024} KiB")
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the {what} file ({exc})") from None
