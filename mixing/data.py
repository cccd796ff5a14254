"""Multitrack training and evaluation data: real song folders and synthetic songs.

Two sources feed the mixing networks, both as the same item dictionary (see
:class:`SegmentDataset`):

* **real multitracks on disk**: :func:`detect_layout` / :func:`load_song_folder` /
  :func:`find_songs` turn a folder (or a tree of folders) into :class:`SongFolder`
  descriptions (stem files, names, instrument classes, optional mixdown), and
  :class:`SegmentDataset` reads fixed-length segments of them, decoding only the
  segment from disk;
* **synthetic songs**: :class:`SyntheticSongDataset` renders songs with
  :func:`neuromix.mixing.generator.generate_song` on the fly, one seed per item.

Folder layouts understood (``layout`` names in :data:`LAYOUTS`):

``"generic"``
    One audio file per stem in a folder, plus an optional mixdown named
    ``mix.*``, ``mixture.*``, ``mixdown.*`` or ``master.*`` and optional metadata in
    ``metadata.json`` / ``metadata.yaml`` / ``metadata.yml``. Metadata schema
    (every key optional)::

        {
          "mix": "mix.wav",                      # the mixdown file, if any
          "stems": {                             # per-stem labels (a dict keyed by file name ...)
            "kick.wav": {"class": "kick", "name": "Kick In"},
            "gtr.wav":  "guitar"                 # ... or just the class
          }
        }

    ``"stems"`` may also be a list ``[{"file": "kick.wav", "class": "kick"}, ...]``.
    A class must be one of :data:`~neuromix.mixing.classes.INSTRUMENT_CLASSES`
    (case-insensitive) or ``null``. Listed stems come first, in the metadata's
    order; other audio files follow, sorted by name, with classes inferred from
    their names (:func:`infer_class_from_name`). The ``metadata.json`` written by
    :func:`neuromix.mixing.generator.write_song` has this shape, with
    ``"stems"`` as a list of ``{"file", "name", "class"}`` records.

``"medleydb"``
    MedleyDB: ``<Song>/<Song>_MIX.wav``, ``<Song>_STEMS/<Song>_STEM_01.wav``,
    ``<Song>_RAW/<Song>_RAW_01_01.wav`` and ``<Song>_METADATA.yaml`` with
    ``stems: {S01: {filename: ..., instrument: "electric bass", raw: {...}}}``.
    Instrument names map to classes by :data:`MEDLEYDB_CLASSES` (names not in the
    table go through :func:`infer_class_from_name`).

``"testbed"``
    Open Multitrack Testbed / Cambridge-MT style: raw tracks with descriptive
    names (``01_Kick.wav``, ``05_BassDI.wav``, ``12_LeadVox.wav``) at the top level
    or in a ``tracks/`` / ``multitracks/`` / ``raw/`` / ``stems/`` sub-folder, and
    mixdowns in a ``mix/``, ``mixes/`` or ``mixdown/`` sub-folder (any case) or as
    top-level files whose name contains the word ``mix`` / ``mixdown``
    (``Song_Mix.wav``). Several mixdowns: the first by name is ``mix_path``; all are
    listed in ``metadata["mixes"]``. Classes come from the names.

``"musdb"``
    MUSDB18 (decoded): ``mixture.wav drums.wav bass.wav other.wav vocals.wav``
    (``accompaniment.*`` / ``linear_mixture.*`` are sub-mixes, not stems).
    Classes by :data:`MUSDB_CLASSES`: ``drums -> "percussion"`` (a whole drum kit has
    no narrower class; ``"percussion"`` is the drum family's class), ``bass -> "bass"``,
    ``vocals -> "vocal"``, ``other -> "other"``.

Detection order (:func:`detect_layout`): MedleyDB markers (a ``*_STEMS`` / ``*_RAW``
sub-folder, a ``*_METADATA.yaml`` or a ``*_MIX.<audio>`` file), then the MUSDB stem
set, then a metadata file (``"generic"``), then Testbed markers (numbered file
names, a mixdown sub-folder, a ``*_mix*`` file, or only a tracks sub-folder), else
``"generic"``.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import random
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchaudio.transforms import Resample

from neuromix.core.errors import AudioInputError, ConfigError
from neuromix.core.io import (
    DEFAULT_LIMITS,
    AudioLimits,
    Multitrack,
    audio_extensions,
    audio_info,
    load_multitrack,
    read_audio,
)
from neuromix.mixing.classes import CLASS_INDEX, INSTRUMENT_CLASSES

__all__ = [
    "LAYOUTS",
    "MEDLEYDB_CLASSES",
    "MUSDB_CLASSES",
    "NAME_CLASS_RULES",
    "TRAIN_SEED_OFFSET",
    "VALIDATION_SEED_OFFSET",
    "TEST_SEED_OFFSET",
    "SongFolder",
    "detect_layout",
    "load_song_folder",
    "find_songs",
    "infer_class_from_name",
    "SegmentDataset",
    "SyntheticSongDataset",
    "collate_multitrack",
    "worker_init_fn",
]

LAYOUTS: tuple[str, ...] = ("generic", "medleydb", "testbed", "musdb")
"""Folder layout names accepted by :func:`load_song_folder` (besides ``"auto"``)."""

TRAIN_SEED_OFFSET = 0
"""First generator seed of the synthetic training split (seeds ``0 .. 9_999_999``)."""
VALIDATION_SEED_OFFSET = 10_000_000
"""First generator seed of the synthetic validation split (``10_000_000 .. 19_999_999``)."""
TEST_SEED_OFFSET = 20_000_000
"""First generator seed of the synthetic test split (``20_000_000 ..``)."""
_SPLIT_OFFSETS = {"train": TRAIN_SEED_OFFSET, "validation": VALIDATION_SEED_OFFSET, "test": TEST_SEED_OFFSET}
_SPLIT_SIZE = 10_000_000

_MIX_NAMES = ("mix", "mixture", "mixdown", "master")
_MUSDB_SUBMIXES = ("mixture", "accompaniment", "linear_mixture")
_METADATA_NAMES = ("metadata.json", "metadata.yaml", "metadata.yml")
_TESTBED_MIX_DIRS = ("mix", "mixes", "mixdown", "mixdowns")
_TESTBED_TRACK_DIRS = ("tracks", "multitracks", "multitrack", "raw", "stems")
_OTHER = CLASS_INDEX["other"]


# --------------------------------------------------------------------------- class tables

MUSDB_CLASSES: dict[str, str] = {"drums": "percussion", "bass": "bass", "other": "other", "vocals": "vocal"}
"""MUSDB18 stem name -> instrument class."""

MEDLEYDB_CLASSES: dict[str, str] = {
    # drums
    "kick drum": "kick",
    "bass drum": "kick",
    "snare drum": "snare",
    "hi-hat": "hihat",
    "high hat": "hihat",
    "cymbal": "hihat",
    "drum set": "percussion",
    "drum machine": "percussion",
    "toms": "percussion",
    "tom-tom": "percussion",
    "auxiliary percussion": "percussion",
    "bongo": "percussion",
    "conga": "percussion",
    "tabla": "percussion",
    "timpani": "percussion",
    "darbuka": "percussion",
    "doumbek": "percussion",
    "cajon": "percussion",
    "claps": "percussion",
    "shaker": "percussion",
    "tambourine": "percussion",
    "cowbell": "percussion",
    "gong": "percussion",
    "castanet": "percussion",
    "beatboxing": "percussion",
    "snaps": "percussion",
    "sleigh bells": "percussion",
    "triangle": "percussion",
    "guiro": "percussion",
    "maracas": "percussion",
    "cabasa": "percussion",
    "woodblock": "percussion",
    "chimes": "percussion",
    # bass
    "electric bass": "bass",
    "double bass": "bass",
    "bass guitar": "bass",
    "acoustic bass": "bass",
    "bass synthesizer": "bass",
    "synth bass": "bass",
    "tuba": "bass",
    # keys and mallets
    "piano": "keys",
    "electric piano": "keys",
    "tack piano": "keys",
    "toy piano": "keys",
    "harpsichord": "keys",
    "organ": "keys",
    "pipe organ": "keys",
    "accordion": "keys",
    "melodica": "keys",
    "harmonium": "keys",
    "clavinet": "keys",
    "celesta": "keys",
    "glockenspiel": "keys",
    "vibraphone": "keys",
    "xylophone": "keys",
    "marimba": "keys",
    "tubular bells": "keys",
    "synthesizer": "keys",
    "keyboard": "keys",
    # voice
    "male singer": "vocal",
    "female singer": "vocal",
    "male rapper": "vocal",
    "female rapper": "vocal",
    "male speaker": "vocal",
    "female speaker": "vocal",
    "vocalists": "vocal",
    "choir": "vocal",
    "crowd": "other",
    # guitars and plucked strings
    "acoustic guitar": "guitar",
    "electric guitar": "guitar",
    "clean electric guitar": "guitar",
    "distorted electric guitar": "guitar",
    "lap steel guitar": "guitar",
    "slide guitar": "guitar",
    "banjo": "guitar",
    "mandolin": "guitar",
    "ukulele": "guitar",
    "oud": "guitar",
    "sitar": "guitar",
    "zhongruan": "guitar",
    "liuqin": "guitar",
    "pipa": "guitar",
    "guzheng": "guitar",
    "gu zheng": "guitar",
    "yangqin": "guitar",
    # bowed strings, brass and woodwinds (sustained ensembles)
    "violin": "strings",
    "viola": "strings",
    "cello": "strings",
    "fiddle": "strings",
    "erhu": "strings",
    "harp": "strings",
    "violin section": "strings",
    "viola section": "strings",
    "cello section": "strings",
    "string section": "strings",
    "trumpet": "strings",
    "cornet": "strings",
    "flugelhorn": "strings",
    "trombone": "strings",
    "bass trombone": "strings",
    "euphonium": "strings",
    "french horn": "strings",
    "horn section": "strings",
    "brass section": "strings",
    "trumpet section": "strings",
    "trombone section": "strings",
    "french horn section": "strings",
    "saxophone": "strings",
    "alto saxophone": "strings",
    "tenor saxophone": "strings",
    "baritone saxophone": "strings",
    "soprano saxophone": "strings",
    "flute": "strings",
    "piccolo": "strings",
    "clarinet": "strings",
    "bass clarinet": "strings",
    "clarinet section": "strings",
    "flute section": "strings",
    "oboe": "strings",
    "bassoon": "strings",
    "english horn": "strings",
    "dizi": "strings",
    "bamboo flute": "strings",
    "woodwind section": "strings",
    # lead-like solo instruments
    "harmonica": "lead",
    "theremin": "lead",
    "whistle": "lead",
    # effects
    "fx/processed sound": "other",
    "scratches": "other",
    "sampler": "other",
    "main system": "other",
}
"""MedleyDB instrument label (lower case) -> instrument class. Brass and woodwinds go to
``"strings"`` (the class of sustained, orchestral ensembles); a drum kit to ``"percussion"``;
a bare ``"synthesizer"`` to ``"keys"`` (as in :func:`infer_class_from_name`)."""


@dataclass(frozen=True)
class _NameRule:
    cls: str
    exact: frozenset[str] = frozenset()
    prefix: tuple[str, ...] = ()
    contains: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()
    not_prefix: tuple[str, ...] = ()

    def matches(self, tokens: Sequence[str]) -> bool:
        joined = " " + " ".join(tokens) + " "
        if any(f" {p} " in joined for p in self.phrases):
            return True
        for tok in tokens:
            if any(tok.startswith(b) for b in self.not_prefix):
                continue
            if tok in self.exact or tok.startswith(self.prefix) or any(c in tok for c in self.contains):
                return True
        return False


def _rule(cls: str, exact: str = "", prefix: str = "", contains: str = "", phrases: Sequence[str] = (),
          not_prefix: str = "") -> _NameRule:
    return _NameRule(cls, frozenset(exact.split()), tuple(prefix.split()), tuple(contains.split()),
                     tuple(phrases), tuple(not_prefix.split()))


NAME_CLASS_RULES: tuple[_NameRule, ...] = (
    _rule("vocal", exact="voc vx bv bvs bgv bgvs rap", prefix="voice choir sing adlib speech spoken",
          contains="vox vocal"),
    _rule("kick", exact="bd kck", contains="kick kik bassdrum", phrases=("bass drum",)),
    _rule("snare", exact="sn snr sd", prefix="rim", contains="snare"),
    _rule("hihat", exact="hh ride rides china splash", prefix="hat hh crash cym",
          contains="hihat openhat closedhat", phrases=("hi hat",)),
    _rule("percussion", exact="prc kit drm tom toms", prefix="perc drum tom shaker clap conga bongo tamb "
          "cowbell timbal cajon djembe tabla triangle guiro cabasa clave woodblock snap timpani"),
    _rule("bass", exact="bs bss", prefix="sub", contains="bass", not_prefix="bassoon"),
    _rule("guitar", exact="steel uke", prefix="banjo mandolin ukulele dobro sitar", contains="guitar gtr"),
    _rule("pad", prefix="pad drone atmos texture"),
    _rule("strings", exact="str strs vln vla tpt tbn harp harps", prefix="orch brass horn trumpet trombone tuba "
          "sax flute clarinet oboe bassoon piccolo cornet flugel euphon woodwind",
          contains="string violin viola cello fiddle"),
    _rule("keys", exact="pno ep", prefix="key piano rhodes wurli organ hammond clav mallet marimba vibe vibra "
          "xylo glock celest harpsi epiano accordion melodica harmonium stab pluck chord arp"),
    _rule("lead", exact="ld solo hook", prefix="lead melod theremin harmonica whistl"),
    _rule("keys", exact="syn syns", contains="synth"),
    _rule("other", exact="sfx", prefix="effect sweep riser uplift downlift impact whoosh noise transi",
          contains="fx"),
    # microphone positions, checked last so that "Piano Room" or "Vocal OH" keep their instrument
    _rule("hihat", exact="oh ohs ovh", prefix="overhead"),
    _rule("percussion", exact="room rooms tops"),
)
"""Ordered name rules of :func:`infer_class_from_name`; the first rule that matches wins.

A rule matches when a token equals one of its ``exact`` words, starts with one of its
``prefix`` words, contains one of its ``contains`` strings, or the token sequence contains
one of its ``phrases``. In order (abridged; see the source for every word):

=============  ==========================================================================
class          words (``^`` prefix, ``*`` anywhere in a token, else the whole token)
=============  ==========================================================================
vocal          ``*vox *vocal voc vx bv bgv rap ^voice ^choir ^sing ^adlib``
kick           ``*kick *kik bd kck "bass drum"``
snare          ``*snare sn snr sd ^rim``
hihat          ``^hat ^hh *hihat ride ^crash ^cym china splash "hi hat"``
percussion     ``^perc ^drum ^tom prc kit drm ^shaker ^clap ^conga ^bongo ^tamb ^cowbell ...``
bass           ``*bass`` (not ``bassoon``) ``^sub bs``
guitar         ``*gtr *guitar ^banjo ^mandolin ^ukulele uke steel ^dobro ^sitar``
pad            ``^pad ^drone ^atmos ^texture``
strings        ``*string *violin *viola *cello ^brass ^horn ^trumpet ^sax ^flute ... str harp``
keys           ``^key ^piano pno ^rhodes ^wurli ^organ ^clav ^mallet ^marimba ^vibe ^glock ^stab
               ^pluck ^chord ^arp ep ...``
lead           ``^lead ld ^melod solo hook``
keys           ``*synth syn`` (a bare synth: the neutral choice between pad and lead)
other          ``*fx sfx ^effect ^sweep ^riser ^impact ^whoosh ^noise ^transi``
hihat          ``oh ovh ^overhead`` (mic positions, last)
percussion     ``room rooms tops`` (mic positions / top loops, last)
=============  ==========================================================================
"""


def _name_tokens(name: str) -> list[str]:
    """Split a file or track name into lower-case word tokens (camelCase, digits, separators)."""
    base = Path(str(name)).name
    suffix = Path(base).suffix.lower()
    if suffix in audio_extensions() or suffix in (".mp3", ".wav", ".flac"):
        base = base[: -len(suffix)]
    s = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", base)
    s = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", " ", s)
    s = re.sub(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])", " ", s)
    return [t for t in re.split(r"[\W_]+", s.lower()) if t]


def infer_class_from_name(name: str) -> str | None:
    """Guess a stem's instrument class from its file or track name.

    The name (a suffix like ``.wav`` is dropped) is split into lower-case tokens at
    separators, camelCase and letter/digit boundaries (``"05_BassDI.wav"`` ->
    ``["05", "bass", "di"]``), and the rules of :data:`NAME_CLASS_RULES` are tried in
    order; the first that matches gives the class. Voice comes first (``"LeadVox"`` is a
    vocal, not a lead), drums before bass (``"bass drum"`` is a kick), bass before the
    melodic classes (``"SynthBass"`` is a bass), and microphone positions
    (``OH``, ``Room``) last.

    Args:
        name: a file name or path, or a free-text label (``"electric bass"``).

    Returns:
        A class of :data:`~neuromix.mixing.classes.INSTRUMENT_CLASSES`, ``"other"`` for
        names that mark effects (``FX``, ``Sweep``, ``Riser`` ...), or ``None`` when no
        rule matches (unknown; datasets count it as ``"other"``).

    Examples:
        >>> infer_class_from_name("01_Kick.wav"), infer_class_from_name("12_LeadVox.wav")
        ('kick', 'vocal')
        >>> infer_class_from_name("minilogue_synth.flac"), infer_class_from_name("slide")
        ('keys', None)
    """
    tokens = _name_tokens(name)
    for rule in NAME_CLASS_RULES:
        if rule.matches(tokens):
            return rule.cls
    return None


def _check_class(value: Any, where: str) -> str | None:
    """Validate a class label from a user document: a class name (any case) or None."""
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in CLASS_INDEX:
        raise ConfigError(f"{where}: unknown instrument class {value!r}; valid: {', '.join(INSTRUMENT_CLASSES)}")
    return value.strip().lower()


def _medleydb_class(instrument: Any) -> str | None:
    if isinstance(instrument, (list, tuple)):
        instrument = instrument[0] if instrument else None
    if not isinstance(instrument, str) or not instrument.strip():
        return None
    key = instrument.strip().lower()
    if key in MEDLEYDB_CLASSES:
        return MEDLEYDB_CLASSES[key]
    return infer_class_from_name(key)


# --------------------------------------------------------------------------- song folders


@dataclass(frozen=True)
class SongFolder:
    """One multitrack song on disk: its stem files, their names and classes, and its mixdown.

    Attributes:
        name: song name (the folder name for most layouts).
        path: the song's folder.
        stem_paths: one audio file per stem.
        stem_names: display name per stem (the file name without suffix, unless the
            metadata gives one).
        stem_classes: per stem, a class of
            :data:`~neuromix.mixing.classes.INSTRUMENT_CLASSES` or ``None`` (unknown).
        mix_path: the reference mixdown, or ``None``.
        layout: the layout it was read as (one of :data:`LAYOUTS`).
        metadata: the parsed metadata document (may be empty) plus loader notes
            (e.g. ``"mixes"``: every mixdown found, ``"raw_tracks"`` for MedleyDB).
    """

    name: str
    path: Path
    stem_paths: tuple[Path, ...]
    stem_names: tuple[str, ...]
    stem_classes: tuple[str | None, ...]
    mix_path: Path | None = None
    layout: str = "generic"
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.stem_paths)
        if len(self.stem_names) != n or len(self.stem_classes) != n:
            raise ValueError(
                f"stem_paths ({n}), stem_names ({len(self.stem_names)}) and stem_classes "
                f"({len(self.stem_classes)}) must have the same length"
            )
        for c in self.stem_classes:
            if c is not None and c not in CLASS_INDEX:
                raise ValueError(f"unknown instrument class {c!r}; valid: {', '.join(INSTRUMENT_CLASSES)}")

    @property
    def num_stems(self) -> int:
        """Number of stems."""
        return len(self.stem_paths)

    @property
    def has_mix(self) -> bool:
        """Whether a reference mixdown is known."""
        return self.mix_path is not None

    def class_indices(self) -> list[int]:
        """Integer class label per stem (``None`` -> the index of ``"other"``)."""
        return [_OTHER if c is None else CLASS_INDEX[c] for c in self.stem_classes]

    def with_classes(self, mapping: Mapping[str, str | None] | Sequence[str | None]) -> SongFolder:
        """Return a copy with some or all stem classes overridden.

        Args:
            mapping: either a dict from a stem's name or its file name (e.g. ``"Kick"``,
                ``"01_Kick.wav"``) to a class (or ``None``: unknown), overriding only the
                stems named; or a sequence with one class (or ``None``) per stem.

        Returns:
            A new :class:`SongFolder` (this one is not changed).

        Raises:
            ConfigError: a class that is not in ``INSTRUMENT_CLASSES``, a name that is not
                a stem of this song, or a sequence of the wrong length.
        """
        classes = list(self.stem_classes)
        if isinstance(mapping, Mapping):
            lookup: dict[str, int] = {}
            for i, (p, n) in enumerate(zip(self.stem_paths, self.stem_names)):
                for key in (n, p.name, p.stem):
                    lookup.setdefault(key, i)
            for key, value in mapping.items():
                if key not in lookup:
                    raise ConfigError(
                        f"song {self.name!r} has no stem named {key!r}; stems: {', '.join(self.stem_names)}"
                    )
                classes[lookup[key]] = _check_class(value, f"class of stem {key!r}")
        else:
            values = list(mapping)
            if len(values) != self.num_stems:
                raise ConfigError(f"song {self.name!r} has {self.num_stems} stems but {len(values)} classes were given")
            classes = [_check_class(v, f"class of stem {i}") for i, v in enumerate(values)]
        return dataclasses.replace(self, stem_classes=tuple(classes))

    def load(
        self,
        sample_rate: int | None = None,
        *,
        start_s: float = 0.0,
        duration_s: float | None = None,
        limits: AudioLimits = DEFAULT_LIMITS,
    ) -> Multitrack:
        """Read the stems with :func:`neuromix.core.io.load_multitrack` (names = ``stem_names``).

        Returns:
            A :class:`~neuromix.core.io.Multitrack` with ``audio`` ``(stems, 2, samples)``.
        """
        multitrack = load_multitrack(
            list(self.stem_paths), sample_rate, limits=limits, start_s=start_s, duration_s=duration_s
        )
        multitrack.names = list(self.stem_names)
        return multitrack


def _folder_error(folder: Path) -> AudioInputError:
    """The error for a path that is not a usable folder: missing, a link loop, unreachable or a file."""
    try:
        os.stat(folder)
    except FileNotFoundError:
        return AudioInputError("folder not found", folder)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return AudioInputError("is a symbolic link loop, not a folder", folder)
        return AudioInputError(f"cannot be accessed ({exc.strerror or exc})", folder)
    return AudioInputError("is not a folder", folder)


def _scan(folder: Path) -> tuple[list[Path], list[Path]]:
    """Non-hidden audio files and sub-folders of ``folder``, each sorted by name."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        raise AudioInputError("folder not found", folder) from None
    except NotADirectoryError:
        raise AudioInputError("is not a folder", folder) from None
    except OSError as exc:
        raise AudioInputError(f"folder cannot be read ({exc.strerror or exc})", folder) from None
    suffixes = audio_extensions()
    files: list[Path] = []
    dirs: list[Path] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            continue
        if is_dir:
            dirs.append(Path(entry.path))
        elif Path(entry.name).suffix.lower() in suffixes:
            files.append(Path(entry.path))
    key = lambda p: (p.name.casefold(), p.name)  # noqa: E731
    return sorted(files, key=key), sorted(dirs, key=key)


def _stem_key(p: Path) -> str:
    return p.stem.casefold()


def _is_medleydb(files: Sequence[Path], dirs: Sequence[Path], folder: Path) -> bool:
    if any(d.name.endswith(("_STEMS", "_RAW")) for d in dirs):
        return True
    if any(f.stem.endswith("_MIX") for f in files):
        return True
    try:
        return any(n.endswith("_METADATA.yaml") and not n.startswith(".") for n in os.listdir(folder))
    except OSError:
        return False


def _is_musdb(files: Sequence[Path]) -> bool:
    names = {_stem_key(f) for f in files}
    return set(MUSDB_CLASSES) <= names and names <= set(MUSDB_CLASSES) | set(_MUSDB_SUBMIXES)


_NUMBERED = re.compile(r"^\d+[\s._-]")
_MIX_WORD = re.compile(r"(^|[\s._-])(mix|mixdown|master)([\s._-]|\d|$)", re.IGNORECASE)


def _testbed_mix_dirs(dirs: Sequence[Path]) -> list[Path]:
    return [d for d in dirs if d.name.casefold() in _TESTBED_MIX_DIRS]


def _testbed_track_dir(dirs: Sequence[Path]) -> Path | None:
    for d in dirs:
        if d.name.casefold() in _TESTBED_TRACK_DIRS and _scan(d)[0]:
            return d
    return None


def _is_testbed(files: Sequence[Path], dirs: Sequence[Path]) -> bool:
    if any(_scan(d)[0] for d in _testbed_mix_dirs(dirs)):
        return True
    if not files:
        return _testbed_track_dir(dirs) is not None
    stems = [f for f in files if _stem_key(f) not in _MIX_NAMES]
    if any(_MIX_WORD.search(f.stem) for f in stems):
        return True
    numbered = sum(1 for f in stems if _NUMBERED.match(f.name))
    return numbered > 0 and numbered >= len(stems) / 2


def detect_layout(path: str | os.PathLike[str]) -> str:
    """Detect the layout of one song folder (see the module docstring for the rules).

    Args:
        path: the song folder.

    Returns:
        One of :data:`LAYOUTS`.

    Raises:
        AudioInputError: not a folder, unreadable, or no audio found in it (nor in the
            sub-folders its layout would use).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise _folder_error(folder)
    files, dirs = _scan(folder)
    if _is_medleydb(files, dirs, folder):
        return "medleydb"
    if files and _is_musdb(files):
        return "musdb"
    if any((folder / n).is_file() for n in _METADATA_NAMES):
        if not files:
            raise AudioInputError("has a metadata file but no audio files", folder)
        return "generic"
    if _is_testbed(files, dirs):
        return "testbed"
    if not files:
        kinds = " ".join(audio_extensions())
        raise AudioInputError(f"no audio files in this folder (looked for {kinds})", folder)
    return "generic"


def _read_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from exc
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        import yaml  # only needed for YAML metadata

        return yaml.safe_load(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.').upper()} ({exc})") from exc


def _confined(folder: Path, name: str, where: str) -> Path:
    """``folder / name`` for a file or folder name taken from metadata, refusing paths that leave ``folder``.

    Metadata names files *inside* the song folder; an absolute path or one that climbs out
    with ``..`` (after normalisation) would let a document point the loaders at any file.

    Raises:
        ConfigError: ``name`` is absolute or escapes ``folder``.
    """
    if os.path.isabs(name) or name.startswith(("/", "\\")) or ".." in Path(os.path.normpath(name)).parts:
        raise ConfigError(f"{where}: {name!r} must name a file inside the song folder (no absolute path, no '..')")
    return folder / name


def _stem_entries(doc: Mapping[str, Any], meta_path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Normalise a generic metadata ``"stems"`` value to ``[(file name, record), ...]``."""
    stems = doc.get("stems", {})
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(stems, Mapping):
        for file, rec in stems.items():
            if isinstance(rec, str) or rec is None:
                rec = {"class": rec}
            if not isinstance(rec, Mapping):
                raise ConfigError(f"{meta_path}: stems.{file} must be a class name or an object")
            out.append((str(file), dict(rec)))
    elif isinstance(stems, list):
        for i, rec in enumerate(stems):
            if not isinstance(rec, Mapping) or not isinstance(rec.get("file"), str):
                raise ConfigError(f"{meta_path}: stems[{i}] must be an object with a \"file\" name")
            out.append((rec["file"], dict(rec)))
    else:
        raise ConfigError(f"{meta_path}: \"stems\" must be an object or a list")
    return out


def _load_generic(folder: Path, files: list[Path]) -> SongFolder:
    meta_path = next((folder / n for n in _METADATA_NAMES if (folder / n).is_file()), None)
    doc: dict[str, Any] = {}
    if meta_path is not None:
        loaded = _read_document(meta_path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{meta_path}: the document must be an object (mapping)")
        doc = dict(loaded)
    mix_path: Path | None = None
    mix_name = doc.get("mix")
    if mix_name is not None:
        if not isinstance(mix_name, str):
            raise ConfigError(f"{meta_path}: \"mix\" must be a file name")
        mix_path = _confined(folder, mix_name, f"{meta_path}: mix")
        if not mix_path.is_file():
            raise AudioInputError(f"metadata names mixdown {mix_name!r}, which does not exist", folder)
    else:
        mixes = [f for f in files if _stem_key(f) in _MIX_NAMES]
        mix_path = mixes[0] if mixes else None
    by_name = {f.name: f for f in files}
    paths: list[Path] = []
    names: list[str] = []
    classes: list[str | None] = []
    listed: set[str] = set()
    if meta_path is not None:
        for file, rec in _stem_entries(doc, meta_path):
            p = by_name.get(file) or _confined(folder, file, f"{meta_path}: stems")
            if not p.is_file():
                raise AudioInputError(f"{meta_path.name} lists stem {file!r}, which does not exist", folder)
            if file in listed:
                raise ConfigError(f"{meta_path}: stem {file!r} is listed twice")
            listed.add(file)
            paths.append(p)
            names.append(str(rec.get("name") or p.stem))
            cls = rec.get("class", rec.get("instrument_class", ...))
            classes.append(infer_class_from_name(p.name) if cls is ... else _check_class(cls, f"{meta_path}: stems.{file}.class"))
    for f in files:
        if f.name in listed or (mix_path is not None and f.name == mix_path.name):
            continue
        if _stem_key(f) in _MIX_NAMES:
            continue
        paths.append(f)
        names.append(f.stem)
        classes.append(infer_class_from_name(f.name))
    if not paths:
        raise AudioInputError("has no stem files (only a mixdown)", folder)
    return SongFolder(folder.name, folder, tuple(paths), tuple(names), tuple(classes), mix_path, "generic", doc)


def _load_musdb(folder: Path, files: list[Path]) -> SongFolder:
    by_key = {_stem_key(f): f for f in files}
    order = ("drums", "bass", "other", "vocals")
    paths = tuple(by_key[k] for k in order)
    meta = {"submixes": [str(by_key[k]) for k in _MUSDB_SUBMIXES if k in by_key]}
    return SongFolder(
        folder.name,
        folder,
        paths,
        tuple(p.stem for p in paths),
        tuple(MUSDB_CLASSES[k] for k in order),
        by_key.get("mixture"),
        "musdb",
        meta,
    )


def _load_medleydb(folder: Path, files: list[Path], dirs: list[Path], tracks: str) -> SongFolder:
    meta_files = sorted(p for p in folder.glob("*_METADATA.yaml") if not p.name.startswith("."))
    doc: dict[str, Any] = {}
    if meta_files:
        loaded = _read_document(meta_files[0]) or {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{meta_files[0]}: the document must be an object (mapping)")
        doc = dict(loaded)
    song = folder.name
    for candidate in [*(d.name[: -len("_STEMS")] for d in dirs if d.name.endswith("_STEMS")),
                      *(p.name[: -len("_METADATA.yaml")] for p in meta_files)]:
        song = candidate
        break
    where = str(meta_files[0]) if meta_files else str(folder)
    stem_dir = _confined(folder, str(doc.get("stem_dir") or f"{song}_STEMS"), f"{where}: stem_dir")
    raw_dir = _confined(folder, str(doc.get("raw_dir") or f"{song}_RAW"), f"{where}: raw_dir")
    mix_path = None
    named_mix = doc.get("mix_filename")
    if isinstance(named_mix, str) and _confined(folder, named_mix, f"{where}: mix_filename").is_file():
        mix_path = folder / named_mix
    else:
        mixes = [f for f in files if f.stem.endswith("_MIX")]
        mix_path = mixes[0] if mixes else None

    stems_doc = doc.get("stems") if isinstance(doc.get("stems"), Mapping) else {}
    stem_records: list[tuple[Path, str, str | None]] = []
    raw_records: list[tuple[Path, str, str | None]] = []
    for sid in sorted(stems_doc, key=str):
        rec = stems_doc[sid] if isinstance(stems_doc[sid], Mapping) else {}
        instrument = rec.get("instrument")
        label = instrument[0] if isinstance(instrument, list) and instrument else instrument
        if isinstance(rec.get("filename"), str):
            stem_path = _confined(stem_dir, rec["filename"], f"{where}: stems.{sid}.filename")
            stem_records.append((stem_path, f"{sid} {label}" if label else str(sid),
                                 _medleydb_class(instrument)))
        raws = rec.get("raw") if isinstance(rec.get("raw"), Mapping) else {}
        for rid in sorted(raws, key=str):
            raw = raws[rid] if isinstance(raws[rid], Mapping) else {}
            if isinstance(raw.get("filename"), str):
                r_inst = raw.get("instrument", instrument)
                r_label = r_inst[0] if isinstance(r_inst, list) and r_inst else r_inst
                raw_path = _confined(raw_dir, raw["filename"], f"{where}: stems.{sid}.raw.{rid}.filename")
                raw_records.append((raw_path, f"{rid} {r_label}" if r_label else str(rid),
                                    _medleydb_class(r_inst)))
    if not stem_records and stem_dir.is_dir():
        stem_records = [(p, p.stem, infer_class_from_name(p.name)) for p in _scan(stem_dir)[0]]
    if not raw_records and raw_dir.is_dir():
        raw_records = [(p, p.stem, infer_class_from_name(p.name)) for p in _scan(raw_dir)[0]]
    missing = [str(p) for p, _, _ in stem_records + raw_records if not p.is_file()]
    # metadata may describe files a partial download lacks: keep only files that exist
    stem_records = [r for r in stem_records if r[0].is_file()]
    raw_records = [r for r in raw_records if r[0].is_file()]
    chosen = raw_records if (tracks == "raw" or not stem_records) else stem_records
    if not chosen:
        raise AudioInputError(f"MedleyDB folder without stem or raw files ({stem_dir.name}, {raw_dir.name})", folder)
    doc["raw_tracks"] = [{"path": str(p), "name": n, "class": c} for p, n, c in raw_records]
    doc["tracks_used"] = "raw" if chosen is raw_records else "stems"
    if missing:
        doc["missing_files"] = missing
    return SongFolder(
        song,
        folder,
        tuple(r[0] for r in chosen),
        tuple(r[1] for r in chosen),
        tuple(r[2] for r in chosen),
        mix_path,
        "medleydb",
        doc,
    )


def _load_testbed(folder: Path, files: list[Path], dirs: list[Path]) -> SongFolder:
    mixes: list[Path] = []
    for d in _testbed_mix_dirs(dirs):
        mixes.extend(_scan(d)[0])
    stems: list[Path] = []
    for f in files:
        if _stem_key(f) in _MIX_NAMES or _MIX_WORD.search(f.stem):
            mixes.append(f)
        else:
            stems.append(f)
    if not stems:
        track_dir = _testbed_track_dir(dirs)
        if track_dir is not None:
            stems = _scan(track_dir)[0]
    if not stems:
        raise AudioInputError("has no track files (only mixdowns)", folder)
    mixes = sorted(mixes, key=lambda p: (p.name.casefold(), str(p)))
    return SongFolder(
        folder.name,
        folder,
        tuple(stems),
        tuple(p.stem for p in stems),
        tuple(infer_class_from_name(p.name) for p in stems),
        mixes[0] if mixes else None,
        "testbed",
        {"mixes": [str(p) for p in mixes]},
    )


def load_song_folder(path: str | os.PathLike[str], layout: str = "auto", *, medleydb_tracks: str = "stems") -> SongFolder:
    """Describe one song folder: stems, names, classes and mixdown (no audio is decoded).

    Args:
        path: the song folder.
        layout: ``"auto"`` (:func:`detect_layout`) or one of :data:`LAYOUTS`.
        medleydb_tracks: for MedleyDB, ``"stems"`` (the ``_STEMS`` files; the raw tracks
            when there are no stems) or ``"raw"`` (the ``_RAW`` files). The other set is
            listed in ``metadata["raw_tracks"]``.

    Returns:
        A :class:`SongFolder`.

    Raises:
        AudioInputError: not a folder, no stems, or a file named by the metadata missing.
        ConfigError: unknown layout, or invalid metadata (the message names the field).
    """
    folder = Path(path)
    if layout == "auto":
        layout = detect_layout(folder)
    elif layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; use 'auto' or one of {', '.join(LAYOUTS)}")
    if medleydb_tracks not in ("stems", "raw"):
        raise ConfigError(f"medleydb_tracks must be 'stems' or 'raw', got {medleydb_tracks!r}")
    if not folder.is_dir():
        raise _folder_error(folder)
    files, dirs = _scan(folder)
    if layout == "medleydb":
        return _load_medleydb(folder, files, dirs, medleydb_tracks)
    if layout == "musdb":
        if not _is_musdb(files):
            raise AudioInputError(
                "is not a MUSDB-style folder (needs drums, bass, other and vocals audio files)", folder
            )
        return _load_musdb(folder, files)
    if layout == "testbed":
        return _load_testbed(folder, files, dirs)
    if not files:
        raise AudioInputError("no audio files in this folder", folder)
    return _load_generic(folder, files)


def _could_be_song(folder: Path, files: Sequence[Path], dirs: Sequence[Path]) -> bool:
    return bool(files) or _is_medleydb(files, dirs, folder) or (
        _testbed_track_dir(dirs) is not None
    )


def find_songs(root: str | os.PathLike[str], *, max_depth: int = 4, strict: bool = True) -> list[SongFolder]:
    """Find every song folder under ``root`` (``root`` itself included).

    A folder is a song when it holds audio files, MedleyDB markers or a Testbed tracks
    sub-folder; its sub-folders are then part of it and not searched further. Hidden
    entries (names starting with ``.``) are skipped; symbolic links to folders are
    followed once (a folder reached twice, e.g. through a link loop, is skipped).

    Args:
        root: the folder to search.
        max_depth: how many folder levels below ``root`` are searched (0: ``root`` only).
        strict: raise on a song folder that cannot be loaded; with False such folders
            are skipped.

    Returns:
        The songs, sorted by path.

    Raises:
        AudioInputError: ``root`` is not a folder (or, if ``strict``, a song folder is bad).
        ConfigError: (if ``strict``) a song folder's metadata is invalid.
    """
    top = Path(root)
    if not top.is_dir():
        raise _folder_error(top)
    songs: list[SongFolder] = []
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[Path, int]] = [(top, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            st = os.stat(folder)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            files, dirs = _scan(folder)
        except AudioInputError:
            if strict and folder == top:
                raise
            continue
        if _could_be_song(folder, files, dirs):
            try:
                songs.append(load_song_folder(folder))
            except (AudioInputError, ConfigError):
                if strict:
                    raise
            continue
        if depth < max_depth:
            stack.extend((d, depth + 1) for d in reversed(dirs))
    return sorted(songs, key=lambda s: str(s.path))


# --------------------------------------------------------------------------- segment dataset


@dataclass(frozen=True)
class _FileInfo:
    rate: int
    frames: int
    channels: int


class SegmentDataset(Dataset):
    """Fixed-length segments of real multitracks, read from disk segment by segment.

    Item ``i`` is a segment of song ``songs[i % len(songs)]`` at a position drawn from a
    random generator (numpy PCG64) seeded with ``(seed, i)`` only, so ``dataset[i]`` is
    identical across calls, dataset instances and worker processes, and its position is
    the same on every machine. Only the segment (plus a few
    milliseconds of margin for the resampler) is decoded from each file
    (:func:`neuromix.core.io.read_audio` with ``start_s`` / ``duration_s``).

    Positions lie on a grid of ``1 / gcd(rates)`` seconds (the target rate and every
    file's rate), so a segment resampled on its own equals the matching slice of the
    whole file resampled (windowed sinc, the kernel of :func:`neuromix.core.io.resample`,
    computed once per rate) up to rounding: the read window carries margins wider than
    the resampling kernel, and all stems at one rate are resampled in one batched call.

    A segment where every stem is below ``silence_db`` (RMS over the segment at the file's
    own rate, before resampling, dBFS) is
    drawn again, up to ``max_retries`` times (deterministically, from the same generator);
    if all draws are silent, the loudest draw is kept. A song shorter than a segment is
    read from its start and padded with silence at the end; stems and mixdown shorter
    than the song are padded too. The song's length is its shortest stem's.

    Args:
        songs: the songs.
        segment_seconds: segment length in seconds.
        sample_rate: output rate in Hz (files at other rates are resampled).
        segments_per_song: items per song (``len(dataset) = len(songs) * segments_per_song``).
        seed: base seed of the positions (change it, e.g. per epoch, for fresh positions).
        max_tracks: at most this many tracks per item. A song with more stems keeps the
            stems that are active in the segment first (in an order drawn from the item's
            generator), then silent ones; kept stems stay in song order.
        silence_db: RMS threshold of the silence test, dBFS.
        max_retries: extra draws for a silent segment.
        limits: file limits for :func:`~neuromix.core.io.read_audio`.

    Items (dict):
        ``"tracks"``: ``(T, 2, N)`` float32, mono files duplicated to both channels;
        ``"mask"``: ``(T,)`` bool, all True; ``"classes"``: ``(T,)`` long class indices
        (unknown -> ``"other"``); ``"mix"``: ``(2, N)`` float32 (zeros without a mixdown);
        ``"has_mix"``: bool; ``"song"``: str; ``"start_s"``: float (segment start, s).
    """

    def __init__(
        self,
        songs: Sequence[SongFolder],
        *,
        segment_seconds: float = 5.0,
        sample_rate: int = 44100,
        segments_per_song: int = 1,
        seed: int = 0,
        max_tracks: int | None = None,
        silence_db: float = -60.0,
        max_retries: int = 8,
        limits: AudioLimits = DEFAULT_LIMITS,
    ) -> None:
        self.songs = list(songs)
        if not self.songs:
            raise ConfigError("SegmentDataset needs at least one song")
        if not (segment_seconds > 0 and math.isfinite(segment_seconds)):
            raise ConfigError(f"segment_seconds must be positive, got {segment_seconds!r}")
        if int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ConfigError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        if segments_per_song < 1:
            raise ConfigError(f"segments_per_song must be >= 1, got {segments_per_song!r}")
        if max_tracks is not None and max_tracks < 1:
            raise ConfigError(f"max_tracks must be >= 1 or None, got {max_tracks!r}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries!r}")
        self.segment_seconds = float(segment_seconds)
        self.sample_rate = int(sample_rate)
        self.num_samples = int(round(self.segment_seconds * self.sample_rate))
        self.segments_per_song = int(segments_per_song)
        self.seed = int(seed)
        self.max_tracks = max_tracks
        self.silence_db = float(silence_db)
        self.max_retries = int(max_retries)
        self.limits = limits
        self._info: dict[int, tuple[list[_FileInfo], _FileInfo | None]] = {}
        self._resamplers: dict[int, Resample] = {}

    def __len__(self) -> int:
        return len(self.songs) * self.segments_per_song

    def _song_info(self, song_index: int) -> tuple[list[_FileInfo], _FileInfo | None]:
        if song_index not in self._info:
            song = self.songs[song_index]

            def info(p: Path) -> _FileInfo:
                i = audio_info(p)
                return _FileInfo(int(i.samplerate), int(i.frames), int(i.channels))

            stems = [info(p) for p in song.stem_paths]
            mix = info(song.mix_path) if song.mix_path is not None else None
            self._info[song_index] = (stems, mix)
        return self._info[song_index]

    def _plan(self, rate: int) -> tuple[int, int, int, int]:
        """How to read ``num_samples`` at the target rate from a file at ``rate``.

        Returns ``(margin, length, out_margin, core)``: read ``length`` frames starting
        ``margin`` frames before the segment start, resample, drop ``out_margin`` output
        samples; the segment itself is ``core`` frames of the window after ``margin``.
        """
        n, sr = self.num_samples, self.sample_rate
        if rate == sr:
            return 0, n, 0, n
        g = math.gcd(rate, sr)
        orig, new = rate // g, sr // g
        # torchaudio's sinc kernel spans ceil(6 * orig / (0.99 * min(orig, new))) input frames
        width = math.ceil(6 * orig / (0.99 * min(orig, new))) + 8
        margin_blocks = math.ceil(width / orig)
        blocks = 2 * margin_blocks + math.ceil(n / new)
        return margin_blocks * orig, blocks * orig, margin_blocks * new, math.ceil(n * orig / new)

    def _read_windows(
        self, paths: Sequence[Path], infos: Sequence[_FileInfo], grid_k: int, grid: int
    ) -> list[np.ndarray]:
        """Native-rate windows ``(channels, length)`` around the segment at ``grid_k / grid`` s."""
        windows = []
        for path, info in zip(paths, infos):
            margin, length, _, _ = self._plan(info.rate)
            # the segment starts on frame grid_k * rate / grid, and margin is a multiple of the
            # resampler's input period, so the window lies on the whole file's resampling phase
            windows.append(self._window(path, info, grid_k * (info.rate // grid) - margin, length))
        return windows

    def _core_rms_db(self, windows: Sequence[np.ndarray], infos: Sequence[_FileInfo]) -> np.ndarray:
        """``(len(windows),)`` RMS in dBFS of the segment part of each native-rate window."""
        levels = np.empty(len(windows))
        for i, (w, info) in enumerate(zip(windows, infos)):
            margin, _, _, core = self._plan(info.rate)
            seg = w[:, margin : margin + core]
            power = float(np.mean(np.square(seg, dtype=np.float64))) if seg.size else 0.0
            levels[i] = 10.0 * math.log10(max(power, 1e-30))
        return levels

    def _resampler(self, rate: int) -> Resample:
        if rate not in self._resamplers:
            self._resamplers[rate] = Resample(rate, self.sample_rate)  # kernel computed once
        return self._resamplers[rate]

    def _finish(self, windows: Sequence[np.ndarray], infos: Sequence[_FileInfo]) -> Tensor:
        """Resample windows (one batched call per rate), cut the margins: ``(len, 2, N)``."""
        n = self.num_samples
        out = np.empty((len(windows), 2, n), dtype=np.float32)
        by_rate: dict[int, list[int]] = {}
        for i, info in enumerate(infos):
            by_rate.setdefault(info.rate, []).append(i)
        for rate, idx in by_rate.items():
            _, _, out_margin, _ = self._plan(rate)
            rows = np.concatenate([windows[i] for i in idx], axis=0)
            if rate != self.sample_rate:
                with torch.no_grad():
                    rows = self._resampler(rate)(torch.from_numpy(rows)).numpy()
            rows = rows[:, out_margin : out_margin + n]
            start = 0
            for i in idx:
                c = windows[i].shape[0]
                out[i] = rows[start : start + c]  # a mono row broadcasts to both channels
                start += c
        return torch.from_numpy(out)

    def _window(self, path: Path, info: _FileInfo, start: int, length: int) -> np.ndarray:
        """Frames ``[start, start + length)`` of a file at its own rate; zeros outside the file."""
        out = np.zeros((info.channels, length), dtype=np.float32)
        lo, hi = max(start, 0), min(start + length, info.frames)
        if hi > lo:
            audio, rate = read_audio(path, None, limits=self.limits, start_s=lo / info.rate,
                                     duration_s=(hi - lo) / info.rate)
            if rate != info.rate or audio.shape[0] != info.channels:
                raise AudioInputError("changed while reading (rate or channel count differs)", path)
            got = min(audio.shape[-1], hi - lo)
            out[:, lo - start : lo - start + got] = audio[:, :got].numpy()
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index = index % len(self)
        song_index = index % len(self.songs)
        song = self.songs[song_index]
        stems, mix_info = self._song_info(song_index)
        rates = [s.rate for s in stems] + ([mix_info.rate] if mix_info else []) + [self.sample_rate]
        grid = reduce(math.gcd, rates)
        duration = min(s.frames / s.rate for s in stems)
        max_k = max(int(math.floor((duration - self.segment_seconds) * grid)), 0)
        seed = self.seed % 2**64
        rng = np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32, index]))

        # silence is judged on the native-rate windows, so rejected draws cost no resampling
        best: tuple[float, int, list[np.ndarray], np.ndarray] | None = None
        for _ in range(self.max_retries + 1):
            k = int(rng.integers(0, max_k + 1))
            windows = self._read_windows(song.stem_paths, stems, k, grid)
            levels = self._core_rms_db(windows, stems)
            level = float(np.max(levels))
            if best is None or level > best[0]:
                best = (level, k, windows, levels)
            if level >= self.silence_db:
                break
        assert best is not None
        _, k, windows, levels = best
        classes = torch.tensor(song.class_indices(), dtype=torch.long)
        infos = list(stems)
        if self.max_tracks is not None and len(windows) > self.max_tracks:
            active = levels >= self.silence_db
            order = rng.permutation(len(windows))
            ranked = sorted(order, key=lambda t: not active[t])  # stable: active first, drawn order
            keep = sorted(int(t) for t in ranked[: self.max_tracks])
            windows, infos = [windows[t] for t in keep], [infos[t] for t in keep]
            classes = classes[torch.tensor(keep, dtype=torch.long)]
        has_mix = song.mix_path is not None and mix_info is not None
        if has_mix:
            windows = [*windows, *self._read_windows([song.mix_path], [mix_info], k, grid)]
            infos.append(mix_info)
        audio = self._finish(windows, infos)
        if has_mix:
            tracks, mix = audio[:-1], audio[-1]
        else:
            tracks, mix = audio, torch.zeros(2, self.num_samples, dtype=torch.float32)
        return {
            "tracks": tracks.contiguous(),
            "mask": torch.ones(tracks.shape[0], dtype=torch.bool),
            "classes": classes,
            "mix": mix.contiguous(),
            "has_mix": song.mix_path is not None,
            "song": song.name,
            "start_s": k / grid,
        }


# --------------------------------------------------------------------------- synthetic songs


class SyntheticSongDataset(Dataset):
    """Procedural songs from :func:`neuromix.mixing.generator.generate_song`, one seed per item.

    Item ``i`` is the song of seed ``base_seed + i``: deterministic, independent of worker
    processes and of the order items are asked for. Keep splits apart with the seed
    ranges :data:`TRAIN_SEED_OFFSET` (0), :data:`VALIDATION_SEED_OFFSET` (10 000 000)
    and :data:`TEST_SEED_OFFSET` (20 000 000), e.g. with :meth:`for_split`.

    Args:
        length: number of items.
        base_seed: seed of item 0.
        seconds: song length in seconds.
        sample_rate: Hz.
        num_tracks: passed to the generator (``None``: its default, a random count).
        classes: passed to the generator (``None``: its default choice of instruments).
        genre: passed to the generator (``None``: its default).
        max_tracks: keep at most this many tracks (the first ones, in generator order).
        target_fn: optional ``target_fn(tracks (T, 2, N), classes (T,), seed) -> (2, N)``
            that renders a target mix (e.g. the rule-based mixer); without it ``"mix"`` is
            zeros and ``"has_mix"`` False.

    Items: the same dict as :class:`SegmentDataset` (``"song"`` is ``"synthetic-<seed>"``,
    ``"start_s"`` is 0.0).
    """

    def __init__(
        self,
        length: int,
        *,
        base_seed: int = TRAIN_SEED_OFFSET,
        seconds: float = 5.0,
        sample_rate: int = 44100,
        num_tracks: int | None = None,
        classes: Sequence[str] | None = None,
        genre: str | None = None,
        max_tracks: int | None = None,
        target_fn: Callable[[Tensor, Tensor, int], Tensor] | None = None,
    ) -> None:
        if length < 0:
            raise ConfigError(f"length must be >= 0, got {length!r}")
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ConfigError(f"seconds must be positive, got {seconds!r}")
        if int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ConfigError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        if max_tracks is not None and max_tracks < 1:
            raise ConfigError(f"max_tracks must be >= 1 or None, got {max_tracks!r}")
        if classes is not None:
            for c in classes:
                _check_class(c, "SyntheticSongDataset classes")
        self.length = int(length)
        self.base_seed = int(base_seed)
        self.seconds = float(seconds)
        self.sample_rate = int(sample_rate)
        self.num_tracks = num_tracks
        self.classes = None if classes is None else list(classes)
        self.genre = genre
        self.max_tracks = max_tracks
        self.target_fn = target_fn

    @classmethod
    def for_split(cls, split: str, length: int, **kwargs: Any) -> SyntheticSongDataset:
        """A dataset over the seed range of ``split`` (``"train"``, ``"validation"``, ``"test"``).

        Raises:
            ConfigError: unknown split, or ``length`` larger than a split's 10 000 000 seeds.
        """
        if split not in _SPLIT_OFFSETS:
            raise ConfigError(f"unknown split {split!r}; use one of {', '.join(_SPLIT_OFFSETS)}")
        if length > _SPLIT_SIZE:
            raise ConfigError(f"a split holds at most {_SPLIT_SIZE} seeds, got length {length}")
        return cls(length, base_seed=_SPLIT_OFFSETS[split], **kwargs)

    def __len__(self) -> int:
        return self.length

    def seed_of(self, index: int) -> int:
        """Generator seed of item ``index``."""
        return self.base_seed + index

    def __getitem__(self, index: int) -> dict[str, Any]:
        from neuromix.mixing.generator import generate_song  # the generator is heavy; import on use

        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        index = index % self.length
        seed = self.seed_of(index)
        kwargs: dict[str, Any] = {"seconds": self.seconds, "sample_rate": self.sample_rate}
        if self.num_tracks is not None:
            kwargs["num_tracks"] = self.num_tracks
        if self.classes is not None:
            kwargs["classes"] = self.classes
        if self.genre is not None:
            kwargs["genre"] = self.genre
        song = generate_song(seed, **kwargs)
        tracks = song.as_multitrack().to(torch.float32)
        classes = torch.tensor(
            [_OTHER if c is None else CLASS_INDEX[c] for c in song.classes], dtype=torch.long
        )
        if self.max_tracks is not None:
            tracks, classes = tracks[: self.max_tracks], classes[: self.max_tracks]
        n = int(round(self.seconds * self.sample_rate))
        if tracks.shape[-1] != n:  # guard against off-by-one lengths
            tracks = torch.nn.functional.pad(tracks, (0, max(n - tracks.shape[-1], 0)))[..., :n]
        if self.target_fn is not None:
            mix = self.target_fn(tracks, classes, seed)
            if tuple(mix.shape) != (2, n):
                raise ValueError(f"target_fn must return a (2, {n}) mix, got {tuple(mix.shape)}")
            mix = mix.to(torch.float32)
        else:
            mix = torch.zeros(2, n, dtype=torch.float32)
        return {
            "tracks": tracks.contiguous(),
            "mask": torch.ones(tracks.shape[0], dtype=torch.bool),
            "classes": classes,
            "mix": mix.contiguous(),
            "has_mix": self.target_fn is not None,
            "song": f"synthetic-{seed}",
            "start_s": 0.0,
        }


# --------------------------------------------------------------------------- batching


def collate_multitrack(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch items of :class:`SegmentDataset` / :class:`SyntheticSongDataset`.

    Tracks are padded with silence to the largest track count in the batch; padded
    slots have ``mask`` False and class ``"other"`` (meaningless: always mask them).

    Args:
        items: item dicts with equal segment lengths.

    Returns:
        ``{"tracks": (B, T, 2, N) float32, "mask": (B, T) bool, "classes": (B, T) long,
        "mix": (B, 2, N) float32, "has_mix": (B,) bool, "song": list[str],
        "start_s": (B,) float64}`` with ``T`` the largest track count.

    Raises:
        ValueError: no items, or items with different segment lengths / channel counts.
    """
    if not items:
        raise ValueError("collate_multitrack needs at least one item")
    shapes = {tuple(it["tracks"].shape[1:]) for it in items}
    if len(shapes) != 1:
        raise ValueError(f"items have different (channels, samples): {sorted(shapes)}")
    channels, n = shapes.pop()
    b = len(items)
    t_max = max(1, max(int(it["tracks"].shape[0]) for it in items))
    tracks = torch.zeros(b, t_max, channels, n, dtype=torch.float32)
    mask = torch.zeros(b, t_max, dtype=torch.bool)
    classes = torch.full((b, t_max), _OTHER, dtype=torch.long)
    for i, it in enumerate(items):
        t = int(it["tracks"].shape[0])
        tracks[i, :t] = it["tracks"]
        mask[i, :t] = it["mask"]
        classes[i, :t] = it["classes"]
    return {
        "tracks": tracks,
        "mask": mask,
        "classes": classes,
        "mix": torch.stack([it["mix"] for it in items]).to(torch.float32),
        "has_mix": torch.tensor([bool(it["has_mix"]) for it in items], dtype=torch.bool),
        "song": [str(it["song"]) for it in items],
        "start_s": torch.tensor([float(it["start_s"]) for it in items], dtype=torch.float64),
    }


def worker_init_fn(worker_id: int) -> None:
    """Seed python's, numpy's and torch's global generators in a DataLoader worker.

    The seed is ``torch.initial_seed()`` (which the DataLoader sets to its base seed +
    ``worker_id`` in each worker), so code that uses the global generators (e.g. random
    augmentation inside a ``collate_fn``) differs between workers and is reproducible for
    a seeded DataLoader. The datasets of this module do not depend on it: their items
    depend only on their own seeds and the index.

    Args:
        worker_id: the worker's index (part of ``torch.initial_seed()`` already).
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

