"""Faults in the listening-test store: interrupted transactions and ``kill -9`` while submitting.

Whatever happens, the database stays consistent (``PRAGMA integrity_check`` is ``ok``, no
foreign-key violations, every stored trial has its full set of ratings) and every submission
that was acknowledged (``submit`` returned) is present with its values.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from neuromix.ui import listening
from neuromix.ui.listening import ListeningStore, Stimulus, Trial

CRITERIA = ("production value", "clarity", "excitement")
SYSTEMS = ("sum", "rules", "console", "blackbox")


def _trials(folder: Path, n_trials: int = 2) -> list[Trial]:
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(4000) / 8000.0
    trials = []
    for k in range(n_trials):
        stimuli = []
        for i, system in enumerate((*SYSTEMS, "reference")):
            path = folder / f"{k}-{system}.wav"
            sf.write(path, 0.1 * np.sin(2 * np.pi * (200 + 50 * i) * t), 8000)
            stimuli.append(Stimulus(system, path))
        trials.append(Trial(f"song {k}", tuple(stimuli[:-1]), stimuli[-1]))
    return trials


def _ratings(trial: listening.SessionTrial, value: float) -> dict[str, dict[str, float]]:
    return {s.stimulus_id: {c: value for c in CRITERIA} for s in trial.stimuli}


def _check_consistent(store: ListeningStore) -> None:
    """Integrity, foreign keys, and no half-stored trial (ratings complete for every response)."""
    assert store.integrity_check() == "ok"
    per_trial = len(SYSTEMS) + 1
    with sqlite3.connect(store.path) as conn:
        incomplete = conn.execute(
            "SELECT p.session_id, p.trial_index, COUNT(r.value) FROM responses p LEFT JOIN ratings r "
            "ON r.session_id = p.session_id AND r.trial_index = p.trial_index "
            "GROUP BY p.session_id, p.trial_index HAVING COUNT(r.value) != ?",
            (per_trial * len(CRITERIA),),
        ).fetchall()
        orphans = conn.execute(
            "SELECT COUNT(*) FROM ratings r LEFT JOIN responses p ON r.session_id = p.session_id "
            "AND r.trial_index = p.trial_index WHERE p.session_id IS NULL"
        ).fetchone()[0]
    assert incomplete == [] and orphans == 0


@pytest.fixture
def store(tmp_path: Path) -> ListeningStore:
    return ListeningStore(tmp_path / "db" / "ratings.sqlite")


@pytest.fixture
def test_id(store: ListeningStore, tmp_path: Path) -> str:
    return store.create_test("faults", CRITERIA, _trials(tmp_path / "src"), hidden_reference=True)


# --------------------------------------------------------------------------- in-process faults


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_exception_inside_the_transaction_rolls_back(store: ListeningStore, test_id: str,
                                                     monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    se = store.start_session(test_id, "ana")
    first, second = se.trials
    store.submit(se.session_id, first.trial_index, _ratings(first, 30.0))

    def half_then_fail(conn: sqlite3.Connection, rows) -> None:
        conn.executemany("INSERT INTO ratings (session_id, trial_index, stimulus_id, criterion, value) "
                         "VALUES (?, ?, ?, ?, ?)", rows[: len(rows) // 2])
        raise error

    monkeypatch.setattr(ListeningStore, "_insert_ratings", staticmethod(half_then_fail))
    with pytest.raises(type(error)):  # a resubmission: the old ratings were deleted in the transaction
        store.submit(se.session_id, first.trial_index, _ratings(first, 99.0))
    with pytest.raises(type(error)):  # a new trial
        store.submit(se.session_id, second.trial_index, _ratings(second, 99.0))
    monkeypatch.undo()

    _check_consistent(store)
    mine = store.session_ratings(se.session_id)
    assert list(mine) == [first.trial_index]  # the new trial left nothing behind
    assert {v for per in mine[first.trial_index].values() for v in per.values()} == {30.0}  # old answer intact
    assert store.get_session(se.session_id).completed == {first.trial_index}
    # the store is not left locked: the next submission goes through at once
    store.busy_timeout_s = 1.0
    store.submit(se.session_id, second.trial_index, _ratings(second, 55.0))
    assert set(store.session_ratings(se.session_id)) == {first.trial_index, second.trial_index}


def test_failed_test_creation_leaves_nothing(store: ListeningStore, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_clock() -> str:
        raise OSError("clock unavailable")

    monkeypatch.setattr(listening, "_now", broken_clock)
    with pytest.raises(OSError):
        store.create_test("doomed", CRITERIA, _trials(tmp_path / "src"), hidden_reference=True)
    monkeypatch.undo()
    assert store.list_tests() == []
    assert list(store.media_dir.iterdir()) == []
    assert store.integrity_check() == "ok"


# --------------------------------------------------------------------------- kill -9

_CHILD = textwrap.dedent(
    """
    import sys, time
    from neuromix.ui.listening import ListeningStore

    db, test_id, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    store = ListeningStore(db)
    if mode == "stall":  # announce, then hang inside the transaction until killed
        original = ListeningStore._insert_ratings

        def stalled(conn, rows):
            original(conn, rows)
            print("inside", flush=True)
            time.sleep(60)

        ListeningStore._insert_ratings = staticmethod(stalled)
    print("ready", flush=True)
    i = 0
    while True:
        session = store.start_session(test_id, f"child {i}")
        for trial in session.trials:
            value = float((i * 7 + trial.trial_index) % 101)
            ratings = {s.stimulus_id: {c: value for c in session.criteria} for s in trial.stimuli}
            store.submit(session.session_id, trial.trial_index, ratings)
            print(f"ack {session.session_id} {trial.trial_index} {value!r}", flush=True)
        i += 1
    """
)


def _spawn(tmp_path: Path, store: ListeningStore, test_id: str, mode: str) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, str(script), str(store.path), test_id, mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _read_lines(proc: subprocess.Popen, lines: list[str]) -> threading.Thread:
    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("child made no progress")
        time.sleep(0.002)


def _kill(proc: subprocess.Popen, reader: threading.Thread) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    reader.join(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_kill_9_while_submitting_loses_no_acknowledged_submission(store: ListeningStore, test_id: str,
                                                                  tmp_path: Path) -> None:
    rng = random.Random(1234)
    acked: dict[tuple[str, int], float] = {}
    for _round in range(3):  # kill at a different moment each round, on the same database
        lines: list[str] = []
        proc = _spawn(tmp_path, store, test_id, "loop")
        reader = _read_lines(proc, lines)
        target = rng.randint(10, 40)
        _wait_for(lambda lines=lines, target=target: sum(x.startswith("ack") for x in lines) >= target, proc)
        time.sleep(rng.uniform(0.0, 0.02))  # land anywhere in the next submission
        _kill(proc, reader)
        for line in lines:
            if line.startswith("ack"):
                _, session_id, trial, value = line.split()
                acked[(session_id, int(trial))] = float(value)
        reopened = ListeningStore(store.path)  # recovers the WAL left by the killed writer
        _check_consistent(reopened)
        for (session_id, trial), value in acked.items():
            stored = reopened.session_ratings(session_id).get(trial)
            assert stored is not None, f"acknowledged submission {session_id}/{trial} is missing"
            assert {v for per in stored.values() for v in per.values()} == {value}
    assert len(acked) >= 30


def test_kill_9_inside_the_transaction(store: ListeningStore, test_id: str, tmp_path: Path) -> None:
    lines: list[str] = []
    proc = _spawn(tmp_path, store, test_id, "stall")
    reader = _read_lines(proc, lines)
    _wait_for(lambda: "inside" in lines, proc)  # ratings inserted, commit not yet reached
    _kill(proc, reader)
    assert not any(x.startswith("ack") for x in lines)
    reopened = ListeningStore(store.path)
    _check_consistent(reopened)
    with sqlite3.connect(reopened.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 1  # its own committed transaction
    # and the database takes new submissions at once (no stale lock)
    reopened.busy_timeout_s = 2.0
    se = reopened.start_session(test_id, "after the crash")
    trial = se.next_trial()
    reopened.submit(se.session_id, trial.trial_index, _ratings(trial, 12.0))
    _check_consistent(reopened)
