"""Multi-stimulus listening tests: stimuli from songs and systems, and a durable ratings store.

A listening test (APE / MUSHRA style) plays several mixes of the same excerpt, loudness
matched and in a random order per participant, and asks for a 0..100 rating of each on
named criteria ("production value", "clarity", "excitement"). This module holds the two
halves that do not depend on Gradio:

* :func:`make_trials` renders the stimuli: for each song (a bundled demo song or a
  multitrack folder) the mixes of the chosen systems (``"sum"``, ``"rules"``, ``"console"``,
  ``"blackbox"``) and, when one exists, the song's target mix (the hidden reference), cut to
  one common excerpt, faded, loudness-matched (ITU-R BS.1770 integrated loudness) and written
  as WAV files;
* :class:`ListeningStore` keeps tests, participant sessions and ratings in SQLite and
  computes per-system means with 95 % confidence intervals (Student's t).

Durability
----------
The database runs in WAL mode with ``synchronous=FULL``. Every submission is one
``BEGIN IMMEDIATE ... COMMIT`` transaction, and :meth:`ListeningStore.submit` returns only
after the commit. In WAL mode a commit appends the transaction's pages and a commit frame to
the ``-wal`` file; with ``FULL`` the WAL is fsynced on every commit. A commit that has
returned has therefore reached the operating system (which is all that ``kill -9`` of the
process needs; ``NORMAL`` would already survive that) *and* the disk, so an acknowledged
submission also survives a power cut or an OS crash. A transaction interrupted before its
commit frame is written is ignored by the next reader (its frames fail the WAL checksum or
lack a commit marker), so the database is never left half-updated. The cost is one fsync per
submission (milliseconds), far below a participant's pace.

Concurrency: one short-lived connection per call (connections are never shared between
threads), a busy timeout so concurrent writers queue on SQLite's write lock instead of
failing, and write transactions that take the lock up front (``BEGIN IMMEDIATE``) so a
read-then-write transaction can never be refused half-way.

Privacy: sessions are addressed by an unguessable id (the participant's "session code");
:meth:`ListeningStore.get_session` returns one session's stimuli and progress, never another
participant's ratings. Results and CSV export are for the organiser (the app guards them with
a token).

Example::

    from neuromix.ui.listening import ListeningStore, make_trials

    store = ListeningStore("listening/ratings.sqlite")
    trials = make_trials(["neon-drive"], ["sum", "rules"], seconds=8.0, sample_rate=44100,
                         out_dir="work/stimuli")
    test_id = store.create_test("pilot", ["clarity"], trials, hidden_reference=True)
    session = store.start_session(test_id, "ana")
    trial = session.next_trial()
    store.submit(session.session_id, trial.trial_index,
                 {s.stimulus_id: {"clarity": 70.0} for s in trial.stimuli})
    for row in store.results(test_id):
        print(row.system, row.criterion, row.n, row.mean, row.ci_low, row.ci_high)
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import math
import os
import random
import secrets
import shutil
import sqlite3
import string
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import soundfile as sf

from neuromix.core.errors import NeuromixError

if TYPE_CHECKING:  # torch is imported where stimuli are rendered: the store alone starts fast
    from torch import Tensor

__all__ = [
    "DEFAULT_CRITERIA",
    "REFERENCE_SYSTEM",
    "SCHEMA_VERSION",
    "SYSTEMS",
    "ListeningError",
    "ListeningStore",
    "ResultRow",
    "Session",
    "SessionStimulus",
    "SessionTrial",
    "Stimulus",
    "TestInfo",
    "Trial",
    "make_trials",
    "student_t_quantile",
]

SCHEMA_VERSION: int = 1
"""Version of the database schema (``PRAGMA user_version``)."""

SYSTEMS: tuple[str, ...] = ("sum", "rules", "console", "blackbox")
"""Systems a test can compare: plain sum, rule-based mixer, console network, black-box network."""

REFERENCE_SYSTEM: str = "reference"
"""System name of the hidden reference (the song's target mix)."""

DEFAULT_CRITERIA: tuple[str, ...] = ("production value", "clarity", "excitement")
"""Criteria a new test rates on unless others are given."""

MAX_CRITERIA: int = 10
MAX_STIMULI_PER_TRIAL: int = 26  # labels A..Z
MAX_TRIALS: int = 100
MAX_NAME_CHARS: int = 120
MAX_CRITERION_CHARS: int = 60
MAX_PARTICIPANT_CHARS: int = 80

_DEFAULT_TARGET_LUFS = -20.0
_PEAK_CEILING_DB = -1.0
_FADE_S = 0.02
_SILENT_LUFS = -70.0
_BUSY_TIMEOUT_S = 30.0
_LABELS = string.ascii_uppercase


class ListeningError(NeuromixError, ValueError):
    """A listening-test request is invalid (unknown test or session, bad ratings, bad spec).

    The message says what is wrong in words a participant or organiser can act on.
    """


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class Stimulus:
    """One rendered stimulus of a trial (before it is stored).

    Attributes:
        system: what made it: one of :data:`SYSTEMS` or :data:`REFERENCE_SYSTEM`.
        path: the WAV file.
    """

    system: str
    path: Path


@dataclass(frozen=True)
class Trial:
    """One trial: the mixes of one song excerpt by several systems.

    Attributes:
        song: label of the song (demo name or folder name; shown to participants).
        stimuli: one stimulus per system, in the order the systems were asked for.
        reference: the song's target mix (same excerpt, loudness-matched), or ``None`` when
            the song has none; :meth:`ListeningStore.create_test` adds it as one more
            anonymous stimulus when ``hidden_reference`` is set.
    """

    song: str
    stimuli: tuple[Stimulus, ...]
    reference: Stimulus | None = None


@dataclass(frozen=True)
class SessionStimulus:
    """A stimulus as one participant sees it.

    Attributes:
        label: ``"A"``, ``"B"``, ... in this participant's random order.
        stimulus_id: opaque id (reveals nothing about the system); key of the ratings.
        path: the stored WAV file.
    """

    label: str
    stimulus_id: str
    path: Path


@dataclass(frozen=True)
class SessionTrial:
    """One trial as one participant sees it.

    Attributes:
        trial_index: the trial's index in the test (what :meth:`ListeningStore.submit` takes).
        song: the song label.
        stimuli: the stimuli in this participant's order, labelled A, B, C, ...
    """

    trial_index: int
    song: str
    stimuli: tuple[SessionStimulus, ...]


@dataclass(frozen=True)
class Session:
    """A participant's session: their trial and stimulus order and their progress.

    Attributes:
        session_id: the unguessable session code (a participant's key to their session).
        test_id: the test.
        test_name: the test's name.
        participant: the name the participant entered.
        criteria: the criteria every stimulus is rated on.
        trials: the trials in this participant's order.
        completed: indices (``trial_index``) of the trials already submitted.
    """

    session_id: str
    test_id: str
    test_name: str
    participant: str
    criteria: tuple[str, ...]
    trials: tuple[SessionTrial, ...]
    completed: frozenset[int] = field(default_factory=frozenset)

    def next_trial(self) -> SessionTrial | None:
        """The first trial (in this session's order) not yet submitted, or ``None`` when done."""
        for trial in self.trials:
            if trial.trial_index not in self.completed:
                return trial
        return None

    def position(self, trial_index: int) -> int:
        """1-based position of a trial in this session's order."""
        for i, trial in enumerate(self.trials):
            if trial.trial_index == trial_index:
                return i + 1
        raise ListeningError(f"this test has no trial {trial_index}")


@dataclass(frozen=True)
class TestInfo:
    """Summary of a stored test (what :meth:`ListeningStore.list_tests` returns).

    Attributes:
        test_id: the test code.
        name: its name.
        criteria: the rating criteria.
        hidden_reference: whether a hidden reference is among the stimuli.
        num_trials: number of trials.
        systems: the systems compared (including ``"reference"`` when hidden).
        created_at: creation time, ISO 8601 UTC.
        num_sessions: sessions started.
        num_submissions: trials submitted, over all sessions.
    """

    __test__ = False  # not a pytest test class

    test_id: str
    name: str
    criteria: tuple[str, ...]
    hidden_reference: bool
    num_trials: int
    systems: tuple[str, ...]
    created_at: str
    num_sessions: int
    num_submissions: int


@dataclass(frozen=True)
class ResultRow:
    """Summary of the ratings of one system on one criterion.

    Attributes:
        system: the system (``"reference"`` for the hidden reference).
        criterion: the criterion.
        n: number of ratings (one per submitted trial and session).
        mean: mean rating (0..100).
        sd: sample standard deviation (``None`` for n < 2).
        ci_low: lower end of the 95 % confidence interval of the mean (``None`` for n < 2).
        ci_high: upper end (``None`` for n < 2).
    """

    system: str
    criterion: str
    n: int
    mean: float
    sd: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def half_width(self) -> float | None:
        """Half-width of the confidence interval, ``t(0.975, n-1) * sd / sqrt(n)``."""
        return None if self.ci_high is None else self.ci_high - self.mean

    def as_dict(self) -> dict[str, object]:
        """The row as a JSON-serialisable dict (``half_width`` included)."""
        return {**asdict(self), "half_width": self.half_width}


# --------------------------------------------------------------------------- statistics


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
                    -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function ``I_x(a, b)`` for ``0 <= x <= 1``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _student_t_cdf(t: float, df: float) -> float:
    """CDF of Student's t distribution with ``df`` degrees of freedom."""
    tail = 0.5 * _incomplete_beta(0.5 * df, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


@functools.lru_cache(maxsize=1024)
def student_t_quantile(p: float, df: float) -> float:
    """Quantile (inverse CDF) of Student's t distribution.

    The CDF is ``1 - I_{df/(df+t^2)}(df/2, 1/2) / 2`` for ``t >= 0`` (regularised incomplete
    beta by its continued fraction, Numerical Recipes 6.4), inverted by bisection to about
    1e-12; e.g. ``student_t_quantile(0.975, 4) = 2.7764``, ``(0.975, 1) = 12.706``.

    Args:
        p: probability in (0, 1).
        df: degrees of freedom, > 0.

    Returns:
        ``t`` with ``P(T <= t) = p``.

    Raises:
        ValueError: ``p`` outside (0, 1) or ``df`` not positive.
    """
    if not 0.0 < p < 1.0 or not math.isfinite(p):
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if not df > 0 or not math.isfinite(df):
        raise ValueError(f"degrees of freedom must be positive, got {df!r}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    hi = 1.0
    while _student_t_cdf(hi, df) < p:
        hi *= 2.0
        if hi > 1e12:  # p indistinguishable from 1 in double precision
            return hi
    lo = 0.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def _summarise(system: str, criterion: str, values: Sequence[float]) -> ResultRow:
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return ResultRow(system, criterion, n, mean, None, None, None)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = student_t_quantile(0.975, n - 1) * sd / math.sqrt(n)
    return ResultRow(system, criterion, n, mean, sd, mean - half, mean + half)


# --------------------------------------------------------------------------- validation


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _clean_text(value: object, what: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise ListeningError(f"{what} must be text, got {type(value).__name__}")
    text = " ".join(value.split())  # collapse whitespace, drop control characters like \n \t
    if not text:
        raise ListeningError(f"{what} is empty")
    if len(text) > max_chars:
        raise ListeningError(f"{what} is too long ({len(text)} characters, at most {max_chars})")
    if not text.isprintable():
        raise ListeningError(f"{what} contains characters that cannot be printed")
    return text


def _check_criteria(criteria: Sequence[str]) -> tuple[str, ...]:
    if isinstance(criteria, str) or not isinstance(criteria, Sequence):
        raise ListeningError("criteria must be a list of names, e.g. ['clarity', 'excitement']")
    cleaned = tuple(_clean_text(c, "a criterion", MAX_CRITERION_CHARS) for c in criteria)
    if not 1 <= len(cleaned) <= MAX_CRITERIA:
        raise ListeningError(f"a test needs 1 to {MAX_CRITERIA} criteria, got {len(cleaned)}")
    lowered = [c.lower() for c in cleaned]
    dupes = sorted({c for c in lowered if lowered.count(c) > 1})
    if dupes:
        raise ListeningError(f"criteria must be distinct; repeated: {', '.join(dupes)}")
    return cleaned


def _check_rating(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ListeningError(f"{where}: a rating must be a number from 0 to 100, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or not 0.0 <= v <= 100.0:
        raise ListeningError(f"{where}: a rating must be a number from 0 to 100, got {value!r}")
    return v


def _csv_cell(value: object) -> object:
    """Neutralise spreadsheet formulas in free text (participant names, test names)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


# --------------------------------------------------------------------------- the store

_SCHEMA = """
CREATE TABLE tests (
    test_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    criteria_json TEXT NOT NULL,
    hidden_reference INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE trials (
    test_id TEXT NOT NULL REFERENCES tests(test_id),
    trial_index INTEGER NOT NULL,
    song TEXT NOT NULL,
    PRIMARY KEY (test_id, trial_index)
);
CREATE TABLE stimuli (
    stimulus_id TEXT PRIMARY KEY,
    test_id TEXT NOT NULL,
    trial_index INTEGER NOT NULL,
    position INTEGER NOT NULL,
    system TEXT NOT NULL,
    file TEXT NOT NULL,
    FOREIGN KEY (test_id, trial_index) REFERENCES trials(test_id, trial_index),
    UNIQUE (test_id, trial_index, position)
);
CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY,
    test_id TEXT NOT NULL REFERENCES tests(test_id),
    participant TEXT NOT NULL,
    seed TEXT NOT NULL,
    order_json TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX sessions_by_test ON sessions(test_id);
CREATE TABLE responses (
    session_id TEXT NOT NULL REFERENCES sessions(session_id),
    trial_index INTEGER NOT NULL,
    submitted_at TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (session_id, trial_index)
);
CREATE TABLE ratings (
    session_id TEXT NOT NULL,
    trial_index INTEGER NOT NULL,
    stimulus_id TEXT NOT NULL REFERENCES stimuli(stimulus_id),
    criterion TEXT NOT NULL,
    value REAL NOT NULL CHECK (value >= 0.0 AND value <= 100.0),
    PRIMARY KEY (session_id, trial_index, stimulus_id, criterion),
    FOREIGN KEY (session_id, trial_index) REFERENCES responses(session_id, trial_index)
);
"""


class ListeningStore:
    """Durable store of listening tests, sessions and ratings (SQLite, WAL, ``synchronous=FULL``).

    Thread-safe: every call opens its own connection. Several processes may share the file.
    See the module docstring for the durability and privacy guarantees.

    Args:
        path: the database file (created with its folder if missing).
        media_dir: folder for the stimulus files the store owns (default: ``<path
            without suffix>-stimuli`` next to the database). It never holds the database,
            so it can be served to browsers as a whole.
        busy_timeout_s: how long a writer waits for another writer's lock.

    Raises:
        ListeningError: the file is not a listening-test database, comes from a newer
            version, or the file system does not support WAL.
    """

    def __init__(self, path: str | os.PathLike[str], *, media_dir: str | os.PathLike[str] | None = None,
                 busy_timeout_s: float = _BUSY_TIMEOUT_S) -> None:
        self.path = Path(path).expanduser().resolve()
        default_media = self.path.with_name(self.path.stem + "-stimuli")
        self.media_dir = Path(media_dir).expanduser().resolve() if media_dir is not None else default_media
        if self.path.is_relative_to(self.media_dir):
            raise ListeningError(f"media_dir {self.media_dir} must not contain the database {self.path}")
        self.busy_timeout_s = float(busy_timeout_s)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self._create_lock = threading.Lock()
        self._initialise()

    # ---------------------------------------------------------------- connections

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ListeningError(f"{self.path}: not a listening-test database ({exc})") from None
        return conn

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One connection and one transaction; committed on success, rolled back on any error."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def _initialise(self) -> None:
        conn = self._connect()
        try:  # WAL is a property of the file, set outside any transaction
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                raise ListeningError(f"{self.path}: not a listening-test database ({exc})") from None
        finally:
            conn.close()
        if str(mode).lower() != "wal":
            raise ListeningError(
                f"{self.path}: the file system does not support SQLite's WAL mode (got {mode!r}); "
                "put the database on a local disk"
            )
        with self._transaction(write=True) as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if version == 0 and not tables:
                for statement in _SCHEMA.split(";"):  # not executescript: it would commit first
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version == 0 or not {"tests", "sessions", "ratings"} <= tables:
                raise ListeningError(f"{self.path}: this SQLite file is not a listening-test database")
            elif version > SCHEMA_VERSION:
                raise ListeningError(
                    f"{self.path}: database schema version {version} is newer than this neuromix "
                    f"understands ({SCHEMA_VERSION}); upgrade neuromix"
                )
            # version < SCHEMA_VERSION: migrations go here when the schema changes

    def integrity_check(self) -> str:
        """Run ``PRAGMA integrity_check`` and ``foreign_key_check``; ``"ok"`` when both pass."""
        with self._transaction(write=False) as conn:
            result = "\n".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
            fk = conn.execute("PRAGMA foreign_key_check").fetchall()
        if result == "ok" and fk:
            return f"{len(fk)} foreign-key violations"
        return result

    # ---------------------------------------------------------------- tests

    def create_test(self, name: str, criteria: Sequence[str], trials: Sequence[Trial], *,
                    hidden_reference: bool) -> str:
        """Store a new test: copy its stimulus files into the store and record it.

        Stimuli get fresh random ids, and their files are stored as ``<media_dir>/<test_id>/
        <stimulus_id>.wav``: no file name comes from the caller.

        Args:
            name: the test's name (shown to participants).
            criteria: 1 to 10 distinct criterion names.
            trials: 1 to 100 trials (e.g. from :func:`make_trials`); each with 2 or more
                stimuli of distinct systems (26 at most, counting the reference).
            hidden_reference: add each trial's ``reference`` as one more anonymous stimulus
                (every trial must then have one).

        Returns:
            The new test's id (an 8-character code participants can type).

        Raises:
            ListeningError: invalid name, criteria or trials, or a stimulus file that is
                missing or not readable audio.
        """
        name = _clean_text(name, "the test name", MAX_NAME_CHARS)
        crit = _check_criteria(criteria)
        if isinstance(trials, Trial) or not isinstance(trials, Sequence) or not 1 <= len(trials) <= MAX_TRIALS:
            raise ListeningError(f"a test needs 1 to {MAX_TRIALS} trials")
        planned: list[tuple[str, list[Stimulus]]] = []
        for t, trial in enumerate(trials):
            if not isinstance(trial, Trial):
                raise ListeningError(f"trial {t + 1}: expected a Trial, got {type(trial).__name__}")
            song = _clean_text(trial.song, f"trial {t + 1}: the song label", MAX_NAME_CHARS)
            stimuli = list(trial.stimuli)
            if hidden_reference:
                if trial.reference is None:
                    raise ListeningError(
                        f"trial {t + 1} ({song}): no target mix to use as hidden reference; "
                        "turn the hidden reference off or use songs that have a target mix"
                    )
                stimuli.append(Stimulus(REFERENCE_SYSTEM, trial.reference.path))
            systems = [s.system for s in stimuli]
            if len(set(systems)) != len(systems):
                raise ListeningError(f"trial {t + 1} ({song}): each system may appear once, got {systems}")
            if not 2 <= len(stimuli) <= MAX_STIMULI_PER_TRIAL:
                raise ListeningError(
                    f"trial {t + 1} ({song}): a trial compares 2 to {MAX_STIMULI_PER_TRIAL} stimuli, got {len(stimuli)}"
                )
            for s in stimuli:
                _clean_text(s.system, f"trial {t + 1}: a system name", MAX_CRITERION_CHARS)
                try:
                    info = sf.info(str(s.path))
                except (RuntimeError, OSError, TypeError) as exc:
                    raise ListeningError(f"trial {t + 1} ({song}), {s.system}: unreadable stimulus file ({exc})") from None
                if info.frames == 0:
                    raise ListeningError(f"trial {t + 1} ({song}), {s.system}: the stimulus file is empty")
            planned.append((song, stimuli))

        with self._create_lock:
            test_id = self._new_test_id()
            folder = self.media_dir / test_id
            folder.mkdir(parents=True, exist_ok=False)
        try:
            rows = []
            for t, (_song, stimuli) in enumerate(planned):
                for pos, s in enumerate(stimuli):
                    sid = secrets.token_hex(8)
                    target = folder / f"{sid}.wav"
                    shutil.copyfile(s.path, target)
                    rows.append((sid, test_id, t, pos, s.system, target.name))
            _fsync_files(folder)
            with self._transaction(write=True) as conn:
                conn.execute(
                    "INSERT INTO tests (test_id, name, criteria_json, hidden_reference, created_at) VALUES (?, ?, ?, ?, ?)",
                    (test_id, name, json.dumps(list(crit)), int(bool(hidden_reference)), _now()),
                )
                conn.executemany("INSERT INTO trials (test_id, trial_index, song) VALUES (?, ?, ?)",
                                 [(test_id, t, song) for t, (song, _) in enumerate(planned)])
                conn.executemany(
                    "INSERT INTO stimuli (stimulus_id, test_id, trial_index, position, system, file) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return test_id

    def _new_test_id(self) -> str:
        with self._transaction(write=False) as conn:
            for _ in range(100):
                test_id = secrets.token_hex(4)
                taken = conn.execute("SELECT 1 FROM tests WHERE test_id = ?", (test_id,)).fetchone()
                if not taken and not (self.media_dir / test_id).exists():
                    return test_id
        raise ListeningError("could not find a free test id")  # pragma: no cover - 2^32 ids

    def list_tests(self) -> list[TestInfo]:
        """All tests, newest first."""
        with self._transaction(write=False) as conn:
            tests = conn.execute(
                "SELECT test_id, name, criteria_json, hidden_reference, created_at FROM tests "
                "ORDER BY created_at DESC, test_id"
            ).fetchall()
            out = []
            for test_id, name, crit_json, hidden, created in tests:
                out.append(self._info(conn, test_id, name, crit_json, hidden, created))
        return out

    def test_info(self, test_id: str) -> TestInfo:
        """Summary of one test.

        Raises:
            ListeningError: no such test.
        """
        with self._transaction(write=False) as conn:
            row = self._test_row(conn, test_id)
            return self._info(conn, test_id, *row)

    def _test_row(self, conn: sqlite3.Connection, test_id: object) -> tuple[str, str, int, str]:
        if not isinstance(test_id, str) or not test_id.strip():
            raise ListeningError("no test given; pick a test or enter its code")
        row = conn.execute(
            "SELECT name, criteria_json, hidden_reference, created_at FROM tests WHERE test_id = ?",
            (test_id.strip(),),
        ).fetchone()
        if row is None:
            raise ListeningError(f"there is no test with the code {test_id.strip()!r}; check the code")
        return row

    @staticmethod
    def _info(conn: sqlite3.Connection, test_id: str, name: str, crit_json: str, hidden: int, created: str) -> TestInfo:
        num_trials = conn.execute("SELECT COUNT(*) FROM trials WHERE test_id = ?", (test_id,)).fetchone()[0]
        systems = [r[0] for r in conn.execute(
            "SELECT system FROM stimuli WHERE test_id = ? GROUP BY system ORDER BY MIN(trial_index), MIN(position)",
            (test_id,),
        )]
        num_sessions = conn.execute("SELECT COUNT(*) FROM sessions WHERE test_id = ?", (test_id,)).fetchone()[0]
        num_subs = conn.execute(
            "SELECT COUNT(*) FROM responses r JOIN sessions s ON s.session_id = r.session_id WHERE s.test_id = ?",
            (test_id,),
        ).fetchone()[0]
        return TestInfo(test_id, name, tuple(json.loads(crit_json)), bool(hidden), int(num_trials),
                        tuple(systems), created, int(num_sessions), int(num_subs))

    # ---------------------------------------------------------------- sessions

    def start_session(self, test_id: str, participant: str) -> Session:
        """Start a session for a participant: a random trial order and stimulus order per trial.

        The orders are drawn from a fresh random token (the session's seed), stored with the
        session, so the session shows the same order every time it is opened; two sessions
        (even of the same participant) get independent orders.

        Args:
            test_id: the test code.
            participant: the participant's name (1..80 printable characters).

        Returns:
            The new :class:`Session` (``session_id`` is the participant's session code).

        Raises:
            ListeningError: unknown test or invalid name.
        """
        who = _clean_text(participant, "your name", MAX_PARTICIPANT_CHARS)
        seed = secrets.token_hex(16)
        session_id = secrets.token_urlsafe(12)
        with self._transaction(write=True) as conn:
            self._test_row(conn, test_id)
            test_id = test_id.strip()
            layout = self._layout(conn, test_id)
            order = _draw_order(seed, layout)
            conn.execute(
                "INSERT INTO sessions (session_id, test_id, participant, seed, order_json, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, test_id, who, seed, json.dumps(order), _now()),
            )
            return self._session(conn, session_id)

    def get_session(self, session_id: str) -> Session:
        """Reopen a session by its code: its orders and which trials are done (no ratings).

        Raises:
            ListeningError: no session with this code.
        """
        with self._transaction(write=False) as conn:
            return self._session(conn, session_id)

    @staticmethod
    def _layout(conn: sqlite3.Connection, test_id: str) -> dict[int, list[str]]:
        """Stimulus ids of every trial in stored (position) order."""
        layout: dict[int, list[str]] = {}
        for trial_index, sid in conn.execute(
            "SELECT trial_index, stimulus_id FROM stimuli WHERE test_id = ? ORDER BY trial_index, position", (test_id,)
        ):
            layout.setdefault(int(trial_index), []).append(sid)
        return layout

    def _session(self, conn: sqlite3.Connection, session_id: object) -> Session:
        if not isinstance(session_id, str) or not session_id.strip():
            raise ListeningError("no session code given; start the test first")
        row = conn.execute(
            "SELECT s.test_id, t.name, t.criteria_json, s.participant, s.order_json FROM sessions s "
            "JOIN tests t ON t.test_id = s.test_id WHERE s.session_id = ?",
            (session_id.strip(),),
        ).fetchone()
        if row is None:
            raise ListeningError("unknown session code; start the test again or check the code")
        test_id, test_name, crit_json, participant, order_json = row
        songs = dict(conn.execute("SELECT trial_index, song FROM trials WHERE test_id = ?", (test_id,)).fetchall())
        files = dict(conn.execute("SELECT stimulus_id, file FROM stimuli WHERE test_id = ?", (test_id,)).fetchall())
        folder = self.media_dir / test_id
        trials = []
        for entry in json.loads(order_json):
            t = int(entry["trial"])
            stimuli = tuple(SessionStimulus(_LABELS[i], sid, folder / files[sid]) for i, sid in enumerate(entry["stimuli"]))
            trials.append(SessionTrial(t, songs[t], stimuli))
        done = frozenset(int(r[0]) for r in conn.execute(
            "SELECT trial_index FROM responses WHERE session_id = ?", (session_id.strip(),)
        ))
        return Session(session_id.strip(), test_id, test_name, participant, tuple(json.loads(crit_json)),
                       tuple(trials), done)

    # ---------------------------------------------------------------- ratings

    def submit(self, session_id: str, trial_index: int, ratings: Mapping[str, Mapping[str, float]], *,
               test_id: str | None = None) -> None:
        """Store a participant's ratings of one trial, in one transaction.

        Validation happens before anything is written: the session must exist (and belong to
        ``test_id`` when given), the trial must be one of its test, every stimulus of the trial
        must be rated on every criterion of the test (no more, no less), and every rating must
        be a finite number from 0 to 100.

        A **resubmission** of the same trial *replaces* the earlier ratings (delete and insert
        in the same transaction, the response's ``revision`` counts up): a participant may
        correct a trial, and a client that retries after a lost reply stores the same answer
        once. When this method returns, the submission is committed and durable.

        Args:
            session_id: the session code from :meth:`start_session`.
            trial_index: the trial's index in the test (:attr:`SessionTrial.trial_index`).
            ratings: ``{stimulus_id: {criterion: rating 0..100}}``.
            test_id: if given, the session must belong to this test.

        Raises:
            ListeningError: any of the checks above fails (the message says which).
        """
        if isinstance(trial_index, bool) or not isinstance(trial_index, int):
            raise ListeningError(f"the trial number must be an integer, got {trial_index!r}")
        if not isinstance(ratings, Mapping):
            raise ListeningError("ratings must map each stimulus to {criterion: rating}")
        with self._transaction(write=True) as conn:
            session = self._session(conn, session_id)
            if test_id is not None and session.test_id != str(test_id).strip():
                raise ListeningError("this session belongs to another test")
            trial = next((t for t in session.trials if t.trial_index == trial_index), None)
            if trial is None:
                raise ListeningError(f"this test has no trial {trial_index} (it has {len(session.trials)})")
            rows = self._validated_rows(session, trial, ratings)
            previous = conn.execute(
                "SELECT revision FROM responses WHERE session_id = ? AND trial_index = ?",
                (session.session_id, trial_index),
            ).fetchone()
            conn.execute("DELETE FROM ratings WHERE session_id = ? AND trial_index = ?", (session.session_id, trial_index))
            conn.execute("DELETE FROM responses WHERE session_id = ? AND trial_index = ?", (session.session_id, trial_index))
            conn.execute(
                "INSERT INTO responses (session_id, trial_index, submitted_at, revision) VALUES (?, ?, ?, ?)",
                (session.session_id, trial_index, _now(), 1 if previous is None else int(previous[0]) + 1),
            )
            self._insert_ratings(conn, rows)

    @staticmethod
    def _validated_rows(session: Session, trial: SessionTrial,
                        ratings: Mapping[str, Mapping[str, float]]) -> list[tuple[str, int, str, str, float]]:
        by_id = {s.stimulus_id: s.label for s in trial.stimuli}
        given = {str(k) for k in ratings}
        unknown = sorted(given - by_id.keys())
        if unknown:
            raise ListeningError(f"trial {session.position(trial.trial_index)}: {len(unknown)} rated stimuli are not in this trial")
        missing = [by_id[sid] for sid in by_id if sid not in given]
        if missing:
            raise ListeningError(f"please rate every stimulus; missing: {', '.join(missing)}")
        rows = []
        for sid, label in by_id.items():
            per = ratings[sid]
            if not isinstance(per, Mapping):
                raise ListeningError(f"stimulus {label}: ratings must map each criterion to a number")
            extra = sorted(set(map(str, per)) - set(session.criteria))
            if extra:
                raise ListeningError(f"stimulus {label}: unknown criteria {', '.join(extra)}; this test rates "
                                     f"{', '.join(session.criteria)}")
            lacking = [c for c in session.criteria if c not in per]
            if lacking:
                raise ListeningError(f"stimulus {label}: please rate {', '.join(lacking)}")
            for c in session.criteria:
                rows.append((session.session_id, trial.trial_index, sid, c, _check_rating(per[c], f"stimulus {label}, {c}")))
        return rows

    @staticmethod
    def _insert_ratings(conn: sqlite3.Connection, rows: Sequence[tuple[str, int, str, str, float]]) -> None:
        conn.executemany(
            "INSERT INTO ratings (session_id, trial_index, stimulus_id, criterion, value) VALUES (?, ?, ?, ?, ?)", rows
        )

    def session_ratings(self, session_id: str) -> dict[int, dict[str, dict[str, float]]]:
        """One session's own ratings ``{trial_index: {stimulus_id: {criterion: value}}}``.

        Raises:
            ListeningError: unknown session code.
        """
        with self._transaction(write=False) as conn:
            session = self._session(conn, session_id)
            out: dict[int, dict[str, dict[str, float]]] = {}
            for t, sid, c, v in conn.execute(
                "SELECT trial_index, stimulus_id, criterion, value FROM ratings WHERE session_id = ?",
                (session.session_id,),
            ):
                out.setdefault(int(t), {}).setdefault(sid, {})[c] = float(v)
        return out

    # ---------------------------------------------------------------- results

    def _ratings_table(self, conn: sqlite3.Connection, test_id: str, criteria: Sequence[str]) -> list[tuple]:
        """Every rating of a test joined with its session, trial, system and submission time.

        Rows ``(session_id, participant, trial_index, song, system, stimulus_id, criterion,
        value, submitted_at)`` by session (oldest first), trial, stimulus position (the stored
        order, not a participant's), then criterion in the test's order.
        """
        rank = {c: i for i, c in enumerate(criteria)}
        rows = conn.execute(
            "SELECT s.session_id, s.participant, r.trial_index, t.song, st.system, st.stimulus_id, r.criterion, "
            "r.value, p.submitted_at FROM ratings r "
            "JOIN sessions s ON s.session_id = r.session_id "
            "JOIN stimuli st ON st.stimulus_id = r.stimulus_id "
            "JOIN trials t ON t.test_id = st.test_id AND t.trial_index = st.trial_index "
            "JOIN responses p ON p.session_id = r.session_id AND p.trial_index = r.trial_index "
            "WHERE s.test_id = ? ORDER BY s.created_at, s.session_id, r.trial_index, st.position",
            (test_id,),
        ).fetchall()
        # one (session, trial, stimulus) group is contiguous; order criteria inside each group
        group = {key: g for g, key in enumerate(dict.fromkeys((r[0], r[2], r[5]) for r in rows))}
        return sorted(rows, key=lambda r: (group[(r[0], r[2], r[5])], rank.get(r[6], len(rank)), r[6]))

    def results(self, test_id: str) -> list[ResultRow]:
        """Mean rating and 95 % confidence interval per (system, criterion).

        Every submitted rating counts once (n = sessions x trials that rated the system).
        The interval is ``mean +- t(0.975, n-1) * sd / sqrt(n)`` with the sample standard
        deviation and Student's t quantile (:func:`student_t_quantile`). Rows come in the
        order of :data:`SYSTEMS` (other systems after them, the reference last), then the
        test's criteria order. Systems nobody has rated yet are left out.

        Raises:
            ListeningError: unknown test.
        """
        with self._transaction(write=False) as conn:
            _, crit_json, _, _ = self._test_row(conn, test_id)
            criteria = json.loads(crit_json)
            rows = self._ratings_table(conn, test_id.strip(), criteria)
        values: dict[tuple[str, str], list[float]] = {}
        for *_, system, _sid, criterion, value, _at in rows:
            values.setdefault((system, criterion), []).append(float(value))

        def system_key(system: str) -> tuple[int, str]:
            if system in SYSTEMS:
                return (SYSTEMS.index(system), system)
            return (len(SYSTEMS) + (1 if system == REFERENCE_SYSTEM else 0), system)

        keys = sorted(values, key=lambda k: (system_key(k[0]), criteria.index(k[1]) if k[1] in criteria else 99))
        return [_summarise(system, criterion, values[(system, criterion)]) for system, criterion in keys]

    def export_csv(self, test_id: str) -> str:
        """Every rating of a test as CSV text (one row per rating, with a header).

        Columns: ``test_id, test_name, session_id, participant, trial, song, system,
        stimulus_id, criterion, rating, submitted_at``. Rows go by session (oldest first),
        trial, stimulus (stored order), then criterion in the test's order. Free text that a spreadsheet would
        run as a formula (starting with ``= + - @``) is prefixed with ``'``.

        Raises:
            ListeningError: unknown test.
        """
        with self._transaction(write=False) as conn:
            name, crit_json, _, _ = self._test_row(conn, test_id)
            rows = self._ratings_table(conn, test_id.strip(), json.loads(crit_json))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["test_id", "test_name", "session_id", "participant", "trial", "song", "system",
                         "stimulus_id", "criterion", "rating", "submitted_at"])
        for session_id, participant, trial, song, system, sid, criterion, value, at in rows:
            writer.writerow([test_id.strip(), _csv_cell(name), session_id, _csv_cell(participant), int(trial) + 1,
                             _csv_cell(song), system, sid, _csv_cell(criterion), repr(float(value)), at])
        return buf.getvalue()


def _draw_order(seed: str, layout: Mapping[int, Sequence[str]]) -> list[dict[str, object]]:
    """Trial order and stimulus order per trial, drawn deterministically from ``seed``."""
    rng = random.Random(seed)
    trial_order = sorted(layout)
    rng.shuffle(trial_order)
    order = []
    for t in trial_order:
        stimuli = list(layout[t])
        rng.shuffle(stimuli)
        order.append({"trial": t, "stimuli": stimuli})
    return order


def _fsync_files(folder: Path) -> None:
    """Flush copied stimulus files and their folder to disk before the test is committed."""
    for p in folder.iterdir():
        with open(p, "rb") as f:
            os.fsync(f.fileno())
    with contextlib.suppress(OSError):  # some platforms cannot fsync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- stimuli


@dataclass
class _SongMixes:
    label: str
    sample_rate: int
    mixes: dict[str, Tensor]  # system -> (2, samples)
    reference: Tensor | None
    dry_sum: Tensor


def _load_song(song: str | os.PathLike[str], sample_rate: int, song_seconds: float | None) -> tuple[str, Tensor, list[str] | None, list[str], Tensor | None]:
    """``(label, tracks (T, 2, n), classes or None, names, target mix (2, n) or None)``."""
    import torch

    from neuromix.mixing.generator import DEMO_SONGS, demo_song

    if isinstance(song, str) and not isinstance(song, os.PathLike):
        if song not in DEMO_SONGS:
            raise ListeningError(
                f"unknown demo song {song!r}; choose from {', '.join(DEMO_SONGS)} (pass a pathlib.Path for a folder)"
            )
        from neuromix.mixing.engineer import engineer_mix

        s = demo_song(song, sample_rate=sample_rate, seconds=song_seconds)
        tracks = s.as_multitrack()
        target, _ = engineer_mix(tracks, s.classes, sample_rate, DEMO_SONGS[song].seed)
        return song, tracks, list(s.classes), list(s.names), target[0]

    from neuromix.core.io import audio_extensions, load_multitrack, read_audio

    folder = Path(song)
    excluded = ("mix", "mixture", "mixdown", "master")
    mt = load_multitrack(folder, sample_rate, exclude_stems=excluded, duration_s=song_seconds)
    reference = None
    if folder.is_dir():
        candidates = sorted(p for p in folder.iterdir()
                            if p.is_file() and p.stem.lower() in excluded and p.suffix.lower() in audio_extensions())
        if candidates:
            ref, _ = read_audio(candidates[0], sample_rate, duration_s=song_seconds)
            ref = ref.expand(2, -1) if ref.shape[0] == 1 else ref
            n = mt.audio.shape[-1]
            reference = torch.nn.functional.pad(ref, (0, max(0, n - ref.shape[-1])))[:, :n].contiguous()
    return folder.name or str(folder), mt.audio, None, list(mt.names), reference


def _plain_sum(tracks: Tensor, sample_rate: int) -> Tensor:
    """Sum of the tracks, ``(2, n)``, through the project's true-peak safety limiter."""
    from neuromix.mixing.inference import safety_limit

    return safety_limit(tracks.sum(dim=0, keepdim=True), sample_rate)[0]


def _excerpt_start(signal: Tensor, sample_rate: int, seconds: float) -> int:
    """Start sample of the ``seconds`` window with the most energy (0.25 s grid)."""
    import torch

    n = signal.shape[-1]
    length = int(round(seconds * sample_rate))
    if length >= n:
        return 0
    power = signal.double().pow(2).sum(dim=0)
    cumulative = torch.cat([power.new_zeros(1), power.cumsum(0)])
    hop = max(1, int(0.25 * sample_rate))
    starts = torch.arange(0, n - length + 1, hop)
    energy = cumulative[starts + length] - cumulative[starts]
    return int(starts[int(torch.argmax(energy))])


def _cut(x: Tensor, start: int, length: int, sample_rate: int) -> Tensor:
    """``x[:, start:start + length]`` with raised-cosine fades in and out."""
    import torch

    seg = x[:, start:start + length].clone()
    fade = min(int(_FADE_S * sample_rate), seg.shape[-1] // 2)
    if fade > 0:
        ramp = 0.5 - 0.5 * torch.cos(torch.linspace(0.0, math.pi, fade, dtype=seg.dtype))
        seg[:, :fade] *= ramp
        seg[:, -fade:] *= ramp.flip(0)
    return seg


def make_trials(
    songs: Sequence[str | os.PathLike[str]],
    systems: Sequence[str],
    *,
    seconds: float,
    sample_rate: int,
    out_dir: str | os.PathLike[str],
    progress: Callable[[float, str], None] | None = None,
    song_seconds: float | None = None,
    start_s: float | None = None,
    target_lufs: float = _DEFAULT_TARGET_LUFS,
) -> list[Trial]:
    """Render the stimuli of a listening test: per song, the mixes of the chosen systems.

    For each song the multitrack is mixed whole by every system (``"sum"``: the plain sum of
    the tracks through the true-peak safety limiter; ``"rules"``, ``"console"``,
    ``"blackbox"``: :func:`~neuromix.mixing.inference.mix_multitrack` with that model), then
    one excerpt of ``seconds`` is cut from every mix at the same place (by default the
    window where the plain sum has the most energy), with 20 ms raised-cosine fades. The
    song's target mix, when it has one, is cut the same way and becomes the trial's
    ``reference``: for a demo song the seeded mixing engineer's mix
    (:func:`~neuromix.mixing.engineer.engineer_mix` with the demo's seed), for a folder a
    mixdown file next to the stems (``mix``, ``mixture``, ``mixdown`` or ``master``).

    All stimuli of all songs are loudness-matched to one integrated loudness (ITU-R BS.1770,
    :func:`~neuromix.core.features.integrated_loudness`): ``target_lufs``, or lower when a
    stimulus would otherwise peak above -1 dBFS (every stimulus is moved by the same rule, so
    they stay matched). Files are 24-bit WAV written atomically with soundfile
    (:func:`~neuromix.core.io.write_audio`), named ``song<k>-<system>.wav`` in ``out_dir``.

    Args:
        songs: demo song names (keys of :data:`~neuromix.mixing.generator.DEMO_SONGS`) as
            ``str``, or multitrack folders as ``pathlib.Path`` / other path objects.
        systems: 1 to 4 distinct names of :data:`SYSTEMS`.
        seconds: excerpt length in seconds (0.5 .. 120; at least one BS.1770 gating block).
        sample_rate: rate of the stimuli in Hz (songs are rendered or resampled to it).
        out_dir: folder for the WAV files (created if missing; existing files of the same
            name are replaced).
        progress: called as ``progress(fraction 0..1, description)`` as work proceeds.
        song_seconds: how much of each song to render / load (``None``: a demo song's own
            length, a folder's whole length); the excerpt is cut from it.
        start_s: excerpt start in seconds instead of the loudest window.
        target_lufs: loudness the stimuli are matched to (lowered if they would clip).

    Returns:
        One :class:`Trial` per song, stimuli in the order of ``systems``.

    Raises:
        ListeningError: unknown song or system, bad lengths, a silent excerpt.
        NeuromixError: a folder that cannot be loaded, a missing shipped network.
    """
    from neuromix.core.features import integrated_loudness
    from neuromix.core.io import write_audio
    from neuromix.mixing.inference import mix_multitrack

    if isinstance(songs, (str, os.PathLike)) or not isinstance(songs, Sequence) or not songs:
        raise ListeningError("choose at least one song")
    if isinstance(systems, str) or not isinstance(systems, Sequence) or not systems:
        raise ListeningError(f"choose at least one system from {', '.join(SYSTEMS)}")
    systems = [str(s) for s in systems]
    bad = [s for s in systems if s not in SYSTEMS]
    if bad:
        raise ListeningError(f"unknown system {bad[0]!r}; choose from {', '.join(SYSTEMS)}")
    if len(set(systems)) != len(systems):
        raise ListeningError("each system may be chosen once")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0.5 <= seconds <= 120.0:
        raise ListeningError(f"the excerpt must be 0.5 to 120 seconds long, got {seconds!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 192000:
        raise ListeningError(f"sample_rate must be an integer from 8000 to 192000 Hz, got {sample_rate!r}")
    if song_seconds is not None and not seconds <= song_seconds <= 900.0:
        raise ListeningError(f"song_seconds must be from the excerpt length ({seconds} s) to 900 s, got {song_seconds!r}")
    if start_s is not None and not (math.isfinite(start_s) and start_s >= 0):
        raise ListeningError(f"start_s must be a non-negative number of seconds, got {start_s!r}")
    report = progress or (lambda fraction, desc: None)
    steps = len(songs) * (len(systems) + 1) + 1
    done = 0

    rendered: list[_SongMixes] = []
    for k, song in enumerate(songs):
        report(done / steps, f"loading song {k + 1} of {len(songs)}")
        label, tracks, classes, names, target = _load_song(song, sample_rate, song_seconds)
        done += 1
        mixes: dict[str, Tensor] = {}
        dry = tracks.sum(dim=0)
        for system in systems:
            report(done / steps, f"{label}: mixing with {system}")
            if system == "sum":
                mixes[system] = _plain_sum(tracks, sample_rate)
            else:
                outcome = mix_multitrack(tracks, sample_rate, model=system, classes=classes, names=names)
                mixes[system] = outcome.mix
            done += 1
        rendered.append(_SongMixes(label, sample_rate, mixes, target, dry))

    report(done / steps, "loudness matching")
    length = int(round(seconds * sample_rate))
    cut: list[tuple[str, dict[str, Tensor], Tensor | None]] = []
    for item in rendered:
        n = item.dry_sum.shape[-1]
        if n < length:
            raise ListeningError(f"{item.label}: the song is {n / sample_rate:.2f} s long, shorter than the "
                                 f"{seconds} s excerpt")
        if start_s is None:
            start = _excerpt_start(item.dry_sum, sample_rate, seconds)
        else:
            start = int(round(start_s * sample_rate))
            if start + length > n:
                raise ListeningError(f"{item.label}: an excerpt from {start_s} s runs past the end of the song "
                                     f"({n / sample_rate:.2f} s)")
        mixes = {s: _cut(m, start, length, sample_rate) for s, m in item.mixes.items()}
        ref = None if item.reference is None else _cut(item.reference, start, length, sample_rate)
        cut.append((item.label, mixes, ref))

    loudness: dict[tuple[int, str], float] = {}
    headroom: list[float] = []  # loudness each stimulus may reach before it peaks at the ceiling
    for k, (label, mixes, ref) in enumerate(cut):
        for system, audio in [*mixes.items(), *([(REFERENCE_SYSTEM, ref)] if ref is not None else [])]:
            lufs = float(integrated_loudness(audio[None], sample_rate)[0])
            if lufs < _SILENT_LUFS:
                raise ListeningError(f"{label}: the {system} mix is silent in the excerpt; choose another excerpt")
            peak_db = 20.0 * math.log10(max(float(audio.abs().max()), 1e-12))
            loudness[(k, system)] = lufs
            headroom.append(lufs - peak_db + _PEAK_CEILING_DB)
    level = min([float(target_lufs), *headroom])

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trials: list[Trial] = []

    def write(k: int, system: str, audio: Tensor) -> Stimulus:
        gained = audio * (10.0 ** ((level - loudness[(k, system)]) / 20.0))
        path = write_audio(out / f"song{k + 1:02d}-{system}.wav", gained, sample_rate, overwrite=True)
        return Stimulus(system, Path(path))

    for k, (label, mixes, ref) in enumerate(cut):
        stimuli = tuple(write(k, s, mixes[s]) for s in systems)
        reference = write(k, REFERENCE_SYSTEM, ref) if ref is not None else None
        trials.append(Trial(label, stimuli, reference))
    report(1.0, "stimuli ready")
    return trials
