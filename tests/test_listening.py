"""Listening tests: stimuli, the SQLite store, statistics and the Listen tab through gradio_client."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import csv
import io
import json
import math
import re
import socket
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from neuromix.core.features import integrated_loudness
from neuromix.ui.listening import (
    REFERENCE_SYSTEM,
    SCHEMA_VERSION,
    ListeningError,
    ListeningStore,
    Stimulus,
    Trial,
    make_trials,
    student_t_quantile,
)

RATE = 22050
CRITERIA = ("clarity", "excitement")


# --------------------------------------------------------------------------- helpers


def fake_trials(folder: Path, n_trials: int = 2, systems: tuple[str, ...] = ("sum", "rules", "console"),
                reference: bool = True) -> list[Trial]:
    """Trials of short sine stimuli written with soundfile (no mixing: fast)."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(8000) / 8000.0
    trials = []

    def tone(k: int, name: str, hz: float) -> Stimulus:
        path = folder / f"t{k}-{name}.wav"
        sf.write(path, 0.1 * np.sin(2 * np.pi * hz * t).astype(np.float32), 8000)
        return Stimulus(name, path)

    for k in range(n_trials):
        stimuli = tuple(tone(k, s, 200.0 + 100.0 * i) for i, s in enumerate(systems))
        trials.append(Trial(f"song {k + 1}", stimuli, tone(k, REFERENCE_SYSTEM, 150.0) if reference else None))
    return trials


def rate_all(session, trial, value: float | dict[str, float] = 50.0) -> dict[str, dict[str, float]]:
    """Ratings for every stimulus of a trial: one value, or {system-independent label: value}."""
    out = {}
    for s in trial.stimuli:
        v = value[s.label] if isinstance(value, dict) else value
        out[s.stimulus_id] = {c: v for c in session.criteria}
    return out


def system_of(store: ListeningStore, stimulus_id: str) -> str:
    with sqlite3.connect(store.path) as conn:
        return conn.execute("SELECT system FROM stimuli WHERE stimulus_id = ?", (stimulus_id,)).fetchone()[0]


@pytest.fixture
def store(tmp_path: Path) -> ListeningStore:
    return ListeningStore(tmp_path / "db" / "ratings.sqlite")


@pytest.fixture
def test_id(store: ListeningStore, tmp_path: Path) -> str:
    return store.create_test("pilot", CRITERIA, fake_trials(tmp_path / "src"), hidden_reference=True)


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        (0.975, 4, 2.776),  # the classic table value
        (0.975, 1, 12.706),
        (0.975, 2, 4.303),
        (0.975, 9, 2.262),
        (0.975, 30, 2.042),
        (0.975, 120, 1.980),
        (0.95, 5, 2.015),
        (0.995, 10, 3.169),
        (0.9, 3, 1.638),
    ],
)
def test_t_quantile_matches_tables(p: float, df: int, expected: float) -> None:
    assert student_t_quantile(p, df) == pytest.approx(expected, abs=6e-4)


def test_t_quantile_symmetry_limits_and_errors() -> None:
    assert student_t_quantile(0.5, 7) == 0.0
    assert student_t_quantile(0.025, 4) == pytest.approx(-student_t_quantile(0.975, 4), abs=1e-12)
    assert student_t_quantile(0.975, 1e6) == pytest.approx(1.959964, abs=1e-5)  # -> normal
    for p, df in [(0.0, 3), (1.0, 3), (0.5, 0), (float("nan"), 3)]:
        with pytest.raises(ValueError):
            student_t_quantile(p, df)


# --------------------------------------------------------------------------- stimuli


@pytest.fixture(scope="module")
def demo_trials(tmp_path_factory: pytest.TempPathFactory) -> list[Trial]:
    """The one rendering with the console network: a demo song, 2 s excerpt at 22.05 kHz."""
    out = tmp_path_factory.mktemp("stimuli")
    return make_trials(["neon-drive"], ["sum", "rules", "console"], seconds=2.0, sample_rate=RATE,
                       out_dir=out, song_seconds=3.0)


def test_make_trials_renders_loudness_matched_wavs(demo_trials: list[Trial]) -> None:
    (trial,) = demo_trials
    assert trial.song == "neon-drive"
    assert [s.system for s in trial.stimuli] == ["sum", "rules", "console"]
    assert trial.reference is not None and trial.reference.system == REFERENCE_SYSTEM
    loudness = []
    for s in [*trial.stimuli, trial.reference]:
        assert re.fullmatch(r"song01-(sum|rules|console|reference)\.wav", s.path.name)
        info = sf.info(str(s.path))
        assert (info.format, info.samplerate, info.channels, info.frames) == ("WAV", RATE, 2, 2 * RATE)
        audio, _ = sf.read(str(s.path), dtype="float32", always_2d=True)
        assert np.isfinite(audio).all()
        assert 20 * np.log10(np.abs(audio).max()) <= -0.99  # peak ceiling after matching
        assert abs(audio[0]).max() < 1e-3 and abs(audio[-1]).max() < 1e-3  # faded in and out
        loudness.append(float(integrated_loudness(torch.from_numpy(audio.T.copy())[None], RATE)[0]))
    assert max(loudness) - min(loudness) < 0.1  # one common integrated loudness
    assert loudness[0] <= -20.0 + 0.05


def test_sum_system_is_the_plain_sum(demo_trials: list[Trial]) -> None:
    from neuromix.mixing.generator import demo_song
    from neuromix.mixing.inference import safety_limit

    song = demo_song("neon-drive", sample_rate=RATE, seconds=3.0)
    limited = safety_limit(song.as_multitrack().sum(dim=0)[None], RATE)[0].double().numpy().T
    stim, _ = sf.read(str(demo_trials[0].stimuli[0].path), dtype="float64", always_2d=True)
    inner = slice(RATE // 10, -RATE // 10)  # away from the fades
    errors = []
    for start in range(0, limited.shape[0] - stim.shape[0] + 1, RATE // 4):  # the excerpt grid
        seg = limited[start:start + stim.shape[0]][inner]
        gain = float(np.sum(seg * stim[inner]) / np.sum(seg * seg))
        errors.append(np.abs(gain * seg - stim[inner]).max())
    assert min(errors) < 1e-5  # a scaled copy of the limited sum (24-bit rounding aside)


def test_make_trials_from_a_folder_with_a_mixdown(tmp_path: Path) -> None:
    folder = tmp_path / "my song"
    folder.mkdir()
    rng = np.random.default_rng(0)
    n = 3 * RATE
    t = np.arange(n) / RATE
    sf.write(folder / "bass.wav", (0.3 * np.sin(2 * np.pi * 55 * t)).astype(np.float32), RATE)
    sf.write(folder / "keys.wav", (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE)
    sf.write(folder / "hats.wav", (0.05 * rng.standard_normal(n)).astype(np.float32), RATE)
    sf.write(folder / "mix.wav", (0.2 * rng.standard_normal((n, 2))).astype(np.float32), RATE)
    trials = make_trials([folder], ["sum", "rules"], seconds=2.0, sample_rate=RATE, out_dir=tmp_path / "out",
                         start_s=0.5)
    (trial,) = trials
    assert trial.song == "my song"
    assert trial.reference is not None  # the mixdown next to the stems
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "song01-reference.wav", "song01-rules.wav", "song01-sum.wav"]


def test_make_trials_rejects_bad_requests(tmp_path: Path) -> None:
    cases = [
        (dict(songs=["no-such-song"], systems=["sum"]), "unknown demo song"),
        (dict(songs=["neon-drive"], systems=["magic"]), "unknown system"),
        (dict(songs=["neon-drive"], systems=["sum", "sum"]), "once"),
        (dict(songs=[], systems=["sum"]), "at least one song"),
        (dict(songs=["neon-drive"], systems=["sum"], seconds=0.1), "0.5 to 120"),
        (dict(songs=["neon-drive"], systems=["sum"], song_seconds=1.0), "song_seconds"),
    ]
    for kwargs, message in cases:
        args = dict(seconds=2.0, sample_rate=RATE, out_dir=tmp_path / "x") | kwargs
        with pytest.raises(ListeningError, match=message):
            make_trials(**args)


def test_progress_is_reported(tmp_path: Path) -> None:
    seen: list[tuple[float, str]] = []
    make_trials(["brick-lane"], ["sum"], seconds=1.0, sample_rate=RATE, out_dir=tmp_path, song_seconds=1.5,
                progress=lambda f, d: seen.append((f, d)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) >= 3


# --------------------------------------------------------------------------- the store


def test_store_schema_and_durability_settings(store: ListeningStore) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    with store._transaction(write=False) as c:
        assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.integrity_check() == "ok"
    assert not store.media_dir.samefile(store.path.parent)


def test_store_refuses_foreign_and_newer_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ListeningError, match="not a listening-test database"):
        ListeningStore(junk)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE x (y)")
    with pytest.raises(ListeningError, match="not a listening-test database"):
        ListeningStore(other)
    newer = tmp_path / "newer.sqlite"
    ListeningStore(newer)
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ListeningError, match="newer"):
        ListeningStore(newer)


def test_create_test_copies_stimuli_under_ids(store: ListeningStore, test_id: str) -> None:
    (info,) = store.list_tests()
    assert info.test_id == test_id and re.fullmatch(r"[0-9a-f]{8}", test_id)
    assert info.name == "pilot" and info.criteria == CRITERIA and info.hidden_reference
    assert info.num_trials == 2 and info.systems == ("sum", "rules", "console", "reference")
    files = sorted((store.media_dir / test_id).iterdir())
    assert len(files) == 8
    assert all(re.fullmatch(r"[0-9a-f]{16}\.wav", f.name) for f in files)  # no caller-given names
    assert store.test_info(test_id) == info


def test_create_test_validation(store: ListeningStore, tmp_path: Path) -> None:
    trials = fake_trials(tmp_path / "a")
    bad = [
        (dict(name="  "), "test name is empty"),
        (dict(criteria=[]), "1 to 10 criteria"),
        (dict(criteria=["clarity", "Clarity"]), "distinct"),
        (dict(criteria="clarity"), "list of names"),
        (dict(criteria=[f"c{i}" for i in range(11)]), "1 to 10 criteria"),
        (dict(trials=[]), "1 to 100 trials"),
        (dict(trials=fake_trials(tmp_path / "b", reference=False)), "no target mix"),
        (dict(trials=fake_trials(tmp_path / "c", systems=("sum",), reference=False), hidden_reference=False),
         "2 to 26"),
        (dict(trials=[Trial("s", (Stimulus("sum", tmp_path / "missing.wav"), Stimulus("rules", tmp_path / "m2.wav")))],
              hidden_reference=False), "unreadable stimulus"),
        (dict(trials=[Trial("s", (trials[0].stimuli[0], trials[0].stimuli[0]))], hidden_reference=False),
         "each system may appear once"),
    ]
    for change, message in bad:
        args = dict(name="t", criteria=CRITERIA, trials=trials, hidden_reference=True) | change
        with pytest.raises(ListeningError, match=message):
            store.create_test(args.pop("name"), args.pop("criteria"), args.pop("trials"), **args)
    assert store.list_tests() == []
    assert list(store.media_dir.iterdir()) == []  # nothing left behind


def test_sessions_are_randomised_per_participant_and_stable(store: ListeningStore, test_id: str) -> None:
    sessions = [store.start_session(test_id, f"p{i}") for i in range(20)]
    orders = {tuple((t.trial_index, tuple(s.stimulus_id for s in t.stimuli)) for t in se.trials) for se in sessions}
    assert len(orders) > 10  # 4! x 4! x 2 orders: collisions are rare
    first_positions = {se.trials[0].stimuli[0].stimulus_id for se in sessions}
    assert len(first_positions) > 1
    reopened = ListeningStore(store.path)
    for se in sessions:
        again = reopened.get_session(se.session_id)
        assert again == se  # same trial order, same stimulus order, same labels
        assert [s.label for s in se.trials[0].stimuli] == ["A", "B", "C", "D"]
        assert se.next_trial() == se.trials[0]
    assert len({se.session_id for se in sessions}) == 20
    with sqlite3.connect(store.path) as conn:
        seeds = [r[0] for r in conn.execute("SELECT seed FROM sessions")]
    assert len(set(seeds)) == 20 and all(len(s) == 32 for s in seeds)


def test_session_errors(store: ListeningStore, test_id: str) -> None:
    with pytest.raises(ListeningError, match="no test with the code"):
        store.start_session("deadbeef", "ana")
    with pytest.raises(ListeningError, match="your name is empty"):
        store.start_session(test_id, " \t ")
    with pytest.raises(ListeningError, match="too long"):
        store.start_session(test_id, "x" * 81)
    with pytest.raises(ListeningError, match="unknown session code"):
        store.get_session("nope")


def test_submit_validation_is_clear_and_writes_nothing(store: ListeningStore, test_id: str) -> None:
    se = store.start_session(test_id, "ana")
    trial = se.next_trial()
    good = rate_all(se, trial)
    first, second = trial.stimuli[0].stimulus_id, trial.stimuli[1].stimulus_id

    def without(d: dict, key: str) -> dict:
        return {k: v for k, v in d.items() if k != key}

    cases = [
        (without(good, first), "please rate every stimulus; missing: A"),
        (good | {"ffffffffffffffff": {c: 1.0 for c in CRITERIA}}, "not in this trial"),
        (good | {first: {"clarity": 50.0}}, "stimulus A: please rate excitement"),
        (good | {first: {**good[first], "loudness": 3.0}}, "unknown criteria loudness"),
        (good | {second: {"clarity": float("nan"), "excitement": 1.0}}, "stimulus B, clarity: a rating must be"),
        (good | {second: {"clarity": float("inf"), "excitement": 1.0}}, "from 0 to 100"),
        (good | {second: {"clarity": -0.5, "excitement": 1.0}}, "from 0 to 100"),
        (good | {second: {"clarity": 100.5, "excitement": 1.0}}, "from 0 to 100"),
        (good | {second: {"clarity": True, "excitement": 1.0}}, "from 0 to 100"),
        (good | {second: {"clarity": "50", "excitement": 1.0}}, "from 0 to 100"),
        (good | {second: 50.0}, "stimulus B: ratings must map"),
        ([1, 2], "ratings must map"),
    ]
    for ratings, message in cases:
        with pytest.raises(ListeningError, match=re.escape(message)):
            store.submit(se.session_id, trial.trial_index, ratings)
    with pytest.raises(ListeningError, match="unknown session code"):
        store.submit("not-a-session", trial.trial_index, good)
    with pytest.raises(ListeningError, match="no trial 7"):
        store.submit(se.session_id, 7, good)
    with pytest.raises(ListeningError, match="must be an integer"):
        store.submit(se.session_id, "0", good)  # type: ignore[arg-type]
    with pytest.raises(ListeningError, match="another test"):
        store.submit(se.session_id, trial.trial_index, good, test_id="deadbeef")
    assert store.session_ratings(se.session_id) == {}
    assert store.get_session(se.session_id).completed == frozenset()
    store.submit(se.session_id, trial.trial_index, good, test_id=test_id)
    assert store.get_session(se.session_id).completed == {trial.trial_index}
    # integers are fine, and 0 and 100 are inside the scale
    store.submit(se.session_id, trial.trial_index, rate_all(se, trial, {"A": 0, "B": 100, "C": 7, "D": 99.5}))


def test_resubmission_replaces_the_trial(store: ListeningStore, test_id: str) -> None:
    se = store.start_session(test_id, "ana")
    trial = se.next_trial()
    store.submit(se.session_id, trial.trial_index, rate_all(se, trial, 10.0))
    store.submit(se.session_id, trial.trial_index, rate_all(se, trial, 90.0))
    mine = store.session_ratings(se.session_id)
    assert list(mine) == [trial.trial_index]
    assert {v for per in mine[trial.trial_index].values() for v in per.values()} == {90.0}
    assert all(r.n == 1 and r.mean == 90.0 for r in store.results(test_id))
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT revision FROM responses").fetchall() == [(2,)]
        assert conn.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 4 * len(CRITERIA)


def test_results_mean_and_confidence_interval_by_hand(store: ListeningStore, test_id: str) -> None:
    values = {"sum": [60.0, 70.0, 80.0, 90.0, 100.0], "rules": [10.0, 20.0, 20.0, 30.0, 45.5]}
    for i in range(5):
        se = store.start_session(test_id, f"listener {i}")
        trial = next(t for t in se.trials if t.trial_index == 0)
        ratings = {}
        for s in trial.stimuli:
            system = system_of(store, s.stimulus_id)
            v = values.get(system, [50.0] * 5)[i]
            ratings[s.stimulus_id] = {"clarity": v, "excitement": 100.0 - v}
        store.submit(se.session_id, 0, ratings)
    rows = {(r.system, r.criterion): r for r in store.results(test_id)}
    assert [k for k in rows][:2] == [("sum", "clarity"), ("sum", "excitement")]
    assert list(rows)[-1][0] == "reference"
    for system, vals in values.items():
        n = len(vals)
        mean = sum(vals) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
        half = 2.7764451051977987 * sd / math.sqrt(n)  # t(0.975, 4)
        r = rows[(system, "clarity")]
        assert (r.n, r.mean) == (5, pytest.approx(mean))
        assert r.sd == pytest.approx(sd)
        assert (r.ci_low, r.ci_high) == (pytest.approx(mean - half), pytest.approx(mean + half))
        assert r.half_width == pytest.approx(half)
        assert rows[(system, "excitement")].mean == pytest.approx(100.0 - mean)
    # the sum stimuli: 60..100 -> mean 80, sd 15.81, CI 80 +- 19.63
    assert rows[("sum", "clarity")].ci_low == pytest.approx(60.368, abs=1e-3)
    assert rows[("console", "clarity")].sd == 0.0
    assert rows[("sum", "clarity")].as_dict()["half_width"] == pytest.approx(19.632, abs=1e-3)


def test_results_with_one_rating_have_no_interval(store: ListeningStore, test_id: str) -> None:
    assert store.results(test_id) == []
    se = store.start_session(test_id, "solo")
    trial = se.next_trial()
    store.submit(se.session_id, trial.trial_index, rate_all(se, trial, 42.0))
    rows = store.results(test_id)
    assert len(rows) == 4 * len(CRITERIA)
    assert all(r.n == 1 and r.mean == 42.0 and r.ci_low is None and r.sd is None for r in rows)
    with pytest.raises(ListeningError, match="no test with the code"):
        store.results("00000000")


def test_export_csv(store: ListeningStore, test_id: str) -> None:
    names = ["ana", "=HYPERLINK(\"http://x\")", "bo, the \"second\""]
    for name in names:
        se = store.start_session(test_id, name)
        for trial in se.trials:
            store.submit(se.session_id, trial.trial_index, rate_all(se, trial, {"A": 1.5, "B": 2, "C": 3, "D": 4}))
    text = store.export_csv(test_id)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["test_id", "test_name", "session_id", "participant", "trial", "song", "system",
                             "stimulus_id", "criterion", "rating", "submitted_at"]
    assert len(rows) == 3 * 2 * 4 * len(CRITERIA)
    assert {r["participant"] for r in rows} == {"ana", "'=HYPERLINK(\"http://x\")", "bo, the \"second\""}
    assert {r["system"] for r in rows} == {"sum", "rules", "console", "reference"}
    assert {r["trial"] for r in rows} == {"1", "2"} and {r["song"] for r in rows} == {"song 1", "song 2"}
    assert {float(r["rating"]) for r in rows} == {1.5, 2.0, 3.0, 4.0}
    assert all(r["test_id"] == test_id and r["criterion"] in CRITERIA for r in rows)
    # the CSV agrees with results()
    clar = [float(r["rating"]) for r in rows if r["system"] == "sum" and r["criterion"] == "clarity"]
    row = next(r for r in store.results(test_id) if (r.system, r.criterion) == ("sum", "clarity"))
    assert row.n == len(clar) == 6 and row.mean == pytest.approx(sum(clar) / 6)


def test_export_csv_keeps_the_tests_criteria_order(store: ListeningStore, tmp_path: Path) -> None:
    criteria = ("punch", "clarity", "air")  # not alphabetical
    test_id = store.create_test("order", criteria, fake_trials(tmp_path / "src"), hidden_reference=False)
    for name in ("ana", "bo"):
        se = store.start_session(test_id, name)
        for trial in se.trials:
            store.submit(se.session_id, trial.trial_index, rate_all(se, trial, 10.0))
    rows = list(csv.DictReader(io.StringIO(store.export_csv(test_id))))
    assert len(rows) == 2 * 2 * 3 * len(criteria)
    groups = [rows[k:k + len(criteria)] for k in range(0, len(rows), len(criteria))]
    for group in groups:  # each stimulus's ratings together, criteria as the test lists them
        assert tuple(r["criterion"] for r in group) == criteria
        assert len({(r["session_id"], r["trial"], r["stimulus_id"]) for r in group}) == 1
    assert len({(g[0]["session_id"], g[0]["trial"], g[0]["stimulus_id"]) for g in groups}) == len(groups)
    assert [g[0]["participant"] for g in groups] == ["ana"] * 6 + ["bo"] * 6  # sessions oldest first
    assert [r.criterion for r in store.results(test_id)][:3] == list(criteria)


def test_participants_only_see_their_own_data(store: ListeningStore, test_id: str) -> None:
    a = store.start_session(test_id, "ana")
    b = store.start_session(test_id, "bo")
    ta = a.next_trial()
    store.submit(a.session_id, ta.trial_index, rate_all(a, ta, 11.0))
    assert store.session_ratings(b.session_id) == {}
    assert store.get_session(b.session_id).completed == frozenset()
    assert set(store.session_ratings(a.session_id)) == {ta.trial_index}
    # what a participant gets names no system: ids are random, files are named by id
    for trial in a.trials:
        for s in trial.stimuli:
            assert not hasattr(s, "system")
            assert s.path.stem == s.stimulus_id and s.path.is_file()
            assert s.path.is_relative_to(store.media_dir)


def test_concurrent_store_submissions_are_all_stored(store: ListeningStore, test_id: str) -> None:
    sessions = [store.start_session(test_id, f"p{i}") for i in range(20)]
    barrier = threading.Barrier(20)

    def work(i: int) -> None:
        se = sessions[i]
        trial = se.next_trial()
        ratings = rate_all(se, trial, float(i))
        barrier.wait()
        store.submit(se.session_id, trial.trial_index, ratings)

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(work, range(20)))
    assert store.integrity_check() == "ok"
    for i, se in enumerate(sessions):
        mine = store.session_ratings(se.session_id)
        assert len(mine) == 1
        assert {v for per in next(iter(mine.values())).values() for v in per.values()} == {float(i)}
    assert store.test_info(test_id).num_submissions == 20


# --------------------------------------------------------------------------- the Gradio tab


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(store: ListeningStore, token: str | None, **limit_changes):
    """The Listen tab alone in a launched app; ``limit_changes`` override its test limits
    (which allow many wrong tokens, so that the tests that try some never lock the app)."""
    import dataclasses

    import gradio as gr

    from neuromix.ui.listen_tab import ListenLimits, build_listen_tab

    limits = ListenLimits(sample_rate=RATE, song_seconds=2.5, min_excerpt_seconds=1.0, default_excerpt_seconds=2.0,
                          max_excerpt_seconds=2.5, token_attempts=1000)
    limits = dataclasses.replace(limits, **limit_changes)
    with gr.Blocks() as demo:
        with gr.Tab("Listen"):
            build_listen_tab(store, token, limits)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    from gradio_client import Client

    store = ListeningStore(tmp_path_factory.mktemp("app") / "ratings.sqlite")
    demo, url = _launch(store, "s3cret-token")
    try:
        yield store, Client(url, verbose=False), url
    finally:
        demo.close()


def _values(info: dict, ratings: dict[str, float]) -> list[float]:
    """Slider inputs of /listen_submit: stimulus-major, UI_MAX_CRITERIA per stimulus."""
    from neuromix.ui.listen_tab import UI_MAX_CRITERIA, UI_MAX_STIMULI

    values = [50.0] * (UI_MAX_STIMULI * UI_MAX_CRITERIA)
    for i, label in enumerate(info["labels"]):
        for j, _criterion in enumerate(info["criteria"]):
            values[i * UI_MAX_CRITERIA + j] = ratings[label] + j
    return values


def _create(client, token: str | None, **kw):
    args = dict(name="app test", songs=["quiet-harbour"], systems=["sum", "rules"], criteria="clarity, punch",
                seconds=1.5, hidden=True) | kw
    return client.predict(token, args["name"], args["songs"], args["systems"], args["criteria"], args["seconds"],
                          args["hidden"], api_name="/listen_create")


def test_app_api_names(app) -> None:
    _, client, _ = app
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/listen_tests", "/listen_start", "/listen_resume", "/listen_submit", "/listen_create",
            "/listen_results", "/listen_export"} <= names


def test_app_full_flow_with_and_without_token(app) -> None:
    from gradio_client.exceptions import AppError

    store, client, _ = app
    for token in (None, ""):
        with pytest.raises(AppError, match="Enter the organiser token first"):
            _create(client, token)
    for token in ("wrong", "s3cret-token ", "S3CRET-TOKEN"):
        with pytest.raises(AppError, match="Wrong organiser token"):
            _create(client, token)
    before = len(store.list_tests())
    status, choices, _ = _create(client, "s3cret-token")
    assert len(store.list_tests()) == before + 1
    test_id = store.list_tests()[0].test_id
    assert test_id in status and [f"app test ({test_id})", test_id] in choices["choices"]
    assert store.test_info(test_id).systems == ("sum", "rules", "reference")

    listed = client.predict(api_name="/listen_tests")
    assert [f"app test ({test_id})", test_id] in listed["choices"]

    out = client.predict(test_id, "ana", api_name="/listen_start")
    code, text, index, info = out[:4]
    assert "trial 1 of 1" in text and index == 0
    assert info["labels"] == ["A", "B", "C"] and info["criteria"] == ["clarity", "punch"]
    players = out[4:9]
    for label, player in zip("ABC", players):
        assert player["visible"] and player["label"] == label
        data, rate = sf.read(player["value"], always_2d=True)
        assert rate == RATE and data.shape == (int(1.5 * RATE), 2)
    assert all(not p["visible"] for p in players[3:])
    session = store.get_session(code)
    assert [s.label for s in session.trials[0].stimuli] == ["A", "B", "C"]

    # nothing about results without the right token
    for api in ("/listen_results", "/listen_export"):
        with pytest.raises(AppError, match="Wrong organiser token"):
            client.predict("nope", test_id, api_name=api)

    done = client.predict(code, index, *_values(info, {"A": 20.0, "B": 40.0, "C": 60.0}), api_name="/listen_submit")
    assert "Thank you, ana" in done[1] and done[2] is None and done[3]["done"] is True
    mine = store.session_ratings(code)[0]
    by_label = {s.label: s.stimulus_id for s in session.trials[0].stimuli}
    assert mine[by_label["B"]] == {"clarity": 40.0, "punch": 41.0}

    # a second participant, resumed from the session code
    second = client.predict(test_id, "bo", api_name="/listen_start")
    resumed = client.predict(second[0], api_name="/listen_resume")
    assert resumed[3] == second[3]
    client.predict(second[0], second[2], *_values(second[3], {"A": 30.0, "B": 50.0, "C": 70.0}),
                   api_name="/listen_submit")

    table, plot, summary = client.predict("s3cret-token", test_id, api_name="/listen_results")
    assert table["headers"] == ["system", "criterion", "n", "mean", "CI low", "CI high"]
    expected = {(r.system, r.criterion): r for r in store.results(test_id)}
    assert len(table["data"]) == len(expected) == 6
    for system, criterion, n, mean, low, high in table["data"]:
        r = expected[(system, criterion)]
        assert n == r.n == 2 and mean == pytest.approx(r.mean, abs=0.01)
        assert low == pytest.approx(r.ci_low, abs=0.01) and high == pytest.approx(r.ci_high, abs=0.01)
    assert plot is not None and "2 session(s)" in summary

    path = client.predict("s3cret-token", test_id, api_name="/listen_export")
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 3 * 2 and {r["participant"] for r in rows} == {"ana", "bo"}
    assert store.integrity_check() == "ok"


def test_app_participant_errors(app) -> None:
    from gradio_client.exceptions import AppError

    _, client, _ = app
    with pytest.raises(AppError, match="no test with the code"):
        client.predict("feedface", "ana", api_name="/listen_start")
    with pytest.raises(AppError, match="pick a test"):
        client.predict("", "ana", api_name="/listen_start")
    with pytest.raises(AppError, match="unknown session code"):
        client.predict("made-up", api_name="/listen_resume")
    with pytest.raises(AppError, match="unknown session code"):
        client.predict("made-up", 0, *([50] * 25), api_name="/listen_submit")
    with pytest.raises(AppError, match="no trial to submit"):
        client.predict("made-up", None, *([50] * 25), api_name="/listen_submit")
    with pytest.raises(AppError, match="choose at least one system"):
        _create(client, "s3cret-token", systems=[])
    with pytest.raises(AppError, match="at most 5 criteria"):
        _create(client, "s3cret-token", criteria="a, b, c, d, e, f")
    with pytest.raises(AppError, match="greater than maximum"):  # gradio checks the slider's range
        _create(client, "s3cret-token", seconds=60)


def test_app_concurrent_submissions_are_all_stored(app, tmp_path: Path) -> None:
    store, client, _ = app
    test_id = store.create_test("load", ["clarity"], fake_trials(tmp_path / "src", n_trials=1), hidden_reference=True)
    sessions = [store.start_session(test_id, f"p{i}") for i in range(20)]
    jobs = []
    for i, se in enumerate(sessions):
        trial = se.next_trial()
        info = {"labels": [s.label for s in trial.stimuli], "criteria": ["clarity"]}
        values = _values(info, {s.label: float(i) for s in trial.stimuli})
        jobs.append(client.submit(se.session_id, trial.trial_index, *values, api_name="/listen_submit"))
    results = [job.result(timeout=120) for job in jobs]
    assert all("Thank you" in r[1] for r in results)
    for i, se in enumerate(sessions):
        (per,) = store.session_ratings(se.session_id).values()
        assert {v["clarity"] for v in per.values()} == {float(i)}
    assert store.test_info(test_id).num_submissions == 20
    assert store.integrity_check() == "ok"


@pytest.mark.parametrize("token", [None, "", " \t "], ids=["none", "empty", "blank"])
def test_app_without_organiser_token(tmp_path: Path, token: str | None) -> None:
    """No token, or an empty one, at launch: the organiser view is disabled (not an error)."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    store = ListeningStore(tmp_path / "ratings.sqlite")
    test_id = store.create_test("t", ["clarity"], fake_trials(tmp_path / "src", n_trials=1), hidden_reference=False)
    demo, url = _launch(store, token)
    try:
        client = Client(url, verbose=False)
        for api, args in [("/listen_results", ("", test_id)), ("/listen_export", ("anything", test_id))]:
            with pytest.raises(AppError, match="organiser view is disabled"):
                client.predict(*args, api_name=api)
        with pytest.raises(AppError, match="organiser view is disabled"):
            _create(client, "anything")
        out = client.predict(test_id, "ana", api_name="/listen_start")  # participants still work
        assert out[3]["labels"] == ["A", "B", "C"]
    finally:
        demo.close()
    assert json.loads(json.dumps(out[3]))["criteria"] == ["clarity"]


def test_listen_limits_coerce() -> None:
    from dataclasses import dataclass

    from neuromix.ui.app import AppLimits
    from neuromix.ui.listen_tab import ListenLimits

    assert ListenLimits.coerce(None) == ListenLimits()

    @dataclass(frozen=True)
    class AppLike:
        max_tracks: int = 16
        sample_rate: int = 22050

    assert ListenLimits.coerce(AppLike()) == ListenLimits(sample_rate=22050)
    # the app's limits carry nothing for the Listen tab: it runs with its own defaults ...
    assert ListenLimits.coerce(AppLimits(demo_rate=16000, demo_seconds=3.0, concurrency=1)) == ListenLimits()

    # ... unless they hold a ListenLimits under `listen`
    class WithListen:
        demo_rate = 16000
        listen = ListenLimits(sample_rate=48000, token_attempts=3)

    assert ListenLimits.coerce(WithListen()) == ListenLimits(sample_rate=48000, token_attempts=3)
    for bad in ({"min_excerpt_seconds": 5.0, "default_excerpt_seconds": 2.0}, {"token_attempts": 0},
                {"token_window_s": 0.0}, {"token_lockout_s": -1.0}):
        with pytest.raises(ValueError, match="invalid listening-test limits"):
            ListenLimits(**bad)


def test_build_refuses_a_token_that_is_not_text(store: ListeningStore) -> None:
    import gradio as gr

    from neuromix.ui.listen_tab import build_listen_tab

    with gr.Blocks(), pytest.raises(ValueError, match="organiser_token must be a string or None"):
        build_listen_tab(store, 12345)  # type: ignore[arg-type]


def test_token_guard_window_and_lockout() -> None:
    from neuromix.ui.listen_tab import _TokenGuard

    now = [100.0]
    guard = _TokenGuard(attempts=3, window_s=60.0, lockout_s=30.0, clock=lambda: now[0])
    assert guard.wait_s() == 0.0
    assert not guard.failed() and not guard.failed()  # 2 wrong tokens: still open
    now[0] += 61.0  # they leave the window
    assert not guard.failed() and not guard.failed()
    now[0] += 10.0
    assert guard.failed()  # the 3rd within a minute locks
    assert guard.wait_s() == pytest.approx(30.0)
    now[0] += 29.0
    assert guard.wait_s() == pytest.approx(1.0)
    now[0] += 1.0
    assert guard.wait_s() == 0.0  # the lock-out ends on time, with a fresh count
    assert not guard.failed() and not guard.failed() and guard.failed()


def test_app_rate_limits_organiser_token_guesses(tmp_path: Path) -> None:
    """3 wrong tokens (from any client) lock the organiser view; then even the right token is
    refused with a clear message, until the lock-out ends."""
    import time

    from gradio_client import Client
    from gradio_client.exceptions import AppError

    store = ListeningStore(tmp_path / "ratings.sqlite")
    test_id = store.create_test("t", ["clarity"], fake_trials(tmp_path / "src", n_trials=1), hidden_reference=False)
    demo, url = _launch(store, "right-token", token_attempts=3, token_lockout_s=3.0)
    try:
        first, second = Client(url, verbose=False), Client(url, verbose=False)
        for _ in range(3):  # empty tokens are no guesses
            with pytest.raises(AppError, match="Enter the organiser token first"):
                first.predict("", test_id, api_name="/listen_results")
        for client, guess in [(first, "guess-1"), (second, "guess-2")]:
            with pytest.raises(AppError, match=r"^Wrong organiser token\.$"):
                client.predict(guess, test_id, api_name="/listen_results")
        locked_at = time.monotonic()
        with pytest.raises(AppError, match="Wrong organiser token. Too many wrong tokens: .* locked for 3 s"):
            first.predict("guess-3", test_id, api_name="/listen_export")
        for client, token in [(second, "right-token"), (first, "guess-4"), (second, "")]:
            with pytest.raises(AppError, match=r"Too many wrong organiser tokens: .* locked for another [1-3] s"):
                client.predict(token, test_id, api_name="/listen_results")
        with pytest.raises(AppError, match="Too many wrong organiser tokens"):
            _create(second, "right-token")
        out = first.predict(test_id, "ana", api_name="/listen_start")  # participants are never locked out
        assert "trial 1 of 1" in out[1]
        time.sleep(max(0.0, locked_at + 3.2 - time.monotonic()))
        _, _, summary = second.predict("right-token", test_id, api_name="/listen_results")
        assert "1 session(s)" in summary
    finally:
        demo.close()
