"""The Listen tab: a multi-stimulus listening test in the browser (and through ``gradio_client``).

:func:`build_listen_tab` adds the components to the current ``gr.Blocks`` context (the app
calls it inside ``gr.Tab("Listen")``). Two views:

* **Participant**: pick a test (or type its code), enter a name, press *Start*. Each trial
  shows up to :data:`UI_MAX_STIMULI` players labelled A, B, C ... in the participant's own
  random order and a 0..100 slider per stimulus and criterion; *Submit* stores the ratings
  (durably, see :mod:`neuromix.ui.listening`) and shows the next trial. The session code
  shown after *Start* reopens the session later (*Continue*). Nothing of other participants
  is ever returned.
* **Organiser** (needs the token given at launch; compared with :func:`hmac.compare_digest`):
  create a test from demo songs, systems, criteria, excerpt length and an optional hidden
  reference; see the results (mean and 95 % confidence interval per system and criterion,
  a table and a plot); download every rating as CSV. Without the right token these events
  raise ``gr.Error`` and return nothing. With no token (or an empty one) at launch the view
  is disabled. Token guessing is rate limited: :attr:`ListenLimits.token_attempts` wrong
  tokens within :attr:`ListenLimits.token_window_s` (5 in 60 s; all clients together) lock
  the organiser view for :attr:`ListenLimits.token_lockout_s` (60 s), the right token
  included; participants are never affected.

The Listen tab's limits (:class:`ListenLimits`) are its own: the app passes its
``AppLimits``, which carries none of them, so the app's tab runs with the defaults (stimuli
at 44.1 kHz, demo songs rendered for 12 s, excerpts of 2 to 20 s).

Components carry ``elem_id``s for browser tests: ``#listen-test`` (test code),
``#listen-name``, ``#listen-start``, ``#listen-code``, ``#listen-resume``, ``#listen-status``,
``#listen-player-I`` and ``#listen-slider-I-J`` (stimulus ``I`` = 0, 1, ... in the shown
order, criterion ``J``), ``#listen-submit``; organiser: ``#listen-organiser`` (the
accordion), ``#listen-token``, ``#listen-create``, ``#listen-create-status``,
``#listen-org-test``, ``#listen-results-button``, ``#listen-export-button``,
``#listen-summary``, ``#listen-table``, ``#listen-plot``, ``#listen-csv``.

API (every event has an ``api_name``; call with ``gradio_client.Client.predict``):

==================  ============================================  ===================================
api_name            inputs                                        outputs
==================  ============================================  ===================================
``/listen_tests``   --                                            test dropdown (choices refreshed)
``/listen_start``   test code, name                               trial outputs (below)
``/listen_resume``  session code                                  trial outputs
``/listen_submit``  session code, trial index, 25 slider values   trial outputs of the next trial
``/listen_create``  token, name, songs, systems, criteria          status, 2 test dropdowns
                    (comma separated), seconds, hidden reference
``/listen_results`` token, test code                              table, plot, summary
``/listen_export``  token, test code                              CSV file
==================  ============================================  ===================================

Trial outputs: session code, status text, trial index (the test's index of the shown trial,
``None`` when done), trial info (JSON: ``trial_index``, ``position``, ``of``, ``song``,
``labels``, ``criteria``; ``{"done": true, ...}`` at the end), :data:`UI_MAX_STIMULI` audio
files (WAV paths; ``None`` for unused players), ``UI_MAX_STIMULI x UI_MAX_CRITERIA`` slider
values and the submit button. Slider values are stimulus-major: the rating of the stimulus
labelled ``labels[i]`` on ``criteria[j]`` is input ``i * UI_MAX_CRITERIA + j`` of the sliders;
unused sliders are ignored.
"""

from __future__ import annotations

import hmac
import logging
import math
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from neuromix.ui.state import user_errors
from neuromix.ui.listening import (
    DEFAULT_CRITERIA,
    SYSTEMS,
    ListeningError,
    ListeningStore,
    Session,
    make_trials,
)

__all__ = ["UI_MAX_CRITERIA", "UI_MAX_STIMULI", "ListenLimits", "build_listen_tab"]

log = logging.getLogger("neuromix.ui.listen")

UI_MAX_STIMULI: int = 5
"""Players per trial in the app (4 systems + the hidden reference)."""

UI_MAX_CRITERIA: int = 5
"""Criteria a test made or shown in the app may have."""

_EXPORT_MAX_AGE_S = 3600.0


@dataclass(frozen=True)
class ListenLimits:
    """What the Listen tab lets an organiser ask for, and how it guards the organiser token.

    These limits are the Listen tab's own: the app's :class:`~neuromix.ui.state.AppLimits`
    has no listening-test fields (its ``demo_rate`` and ``demo_seconds`` are chosen for a
    fast first mix, not for listening quality), so the workbench runs its Listen tab with
    these defaults unless the object it passes carries a ``listen`` attribute holding a
    :class:`ListenLimits` (see :meth:`coerce`).

    Attributes:
        sample_rate: rate of the stimuli in Hz.
        song_seconds: length at which demo songs are rendered before the excerpt is cut
            (at least the excerpt's length; ``None``: each demo's own length, about 20 s).
            Rendering and mixing time grow with it: about 30 s per song with all four
            systems for a whole 20 s demo at 44.1 kHz on 2 busy cores.
        max_excerpt_seconds: longest excerpt.
        min_excerpt_seconds: shortest excerpt.
        default_excerpt_seconds: the excerpt slider's start value.
        create_concurrency: test creations running at once (they render mixes).
        submit_concurrency: submissions / session starts handled at once.
        token_attempts: wrong organiser tokens, from all clients together, within
            ``token_window_s`` that lock the organiser view (the last of them starts the
            lock-out).
        token_window_s: the window in which wrong tokens are counted, in seconds.
        token_lockout_s: how long every organiser request is refused after too many wrong
            tokens, in seconds (the right token too: a guesser learns nothing meanwhile).
    """

    sample_rate: int = 44100
    song_seconds: float | None = 12.0
    max_excerpt_seconds: float = 20.0
    min_excerpt_seconds: float = 2.0
    default_excerpt_seconds: float = 8.0
    create_concurrency: int = 1
    submit_concurrency: int = 16
    token_attempts: int = 5
    token_window_s: float = 60.0
    token_lockout_s: float = 60.0

    def __post_init__(self) -> None:
        if not (0 < self.min_excerpt_seconds <= self.default_excerpt_seconds <= self.max_excerpt_seconds) \
                or self.create_concurrency < 1 or self.submit_concurrency < 1 or self.token_attempts < 1 \
                or not self.token_window_s > 0 or not self.token_lockout_s > 0:
            raise ValueError(f"invalid listening-test limits: {self}")

    @classmethod
    def coerce(cls, limits: Any) -> ListenLimits:
        """The Listen tab's limits from what a caller passes.

        * ``None``: the defaults;
        * a :class:`ListenLimits`: itself;
        * an object with a ``listen`` attribute holding a :class:`ListenLimits`: that;
        * any other object: the attributes that share a name with a field of this class
          (e.g. ``sample_rate``) replace the defaults; all other attributes are ignored. The
          app's :class:`~neuromix.ui.state.AppLimits` shares none, so it gives the defaults.
        """
        if limits is None:
            return cls()
        if isinstance(limits, cls):
            return limits
        if isinstance(getattr(limits, "listen", None), cls):
            return limits.listen
        values = {f.name: getattr(limits, f.name) for f in fields(cls) if hasattr(limits, f.name)}
        return cls(**values)


class _TokenGuard:
    """Rate limit on organiser-token guesses, shared by all clients of one Listen tab.

    ``attempts`` wrong tokens within ``window_s`` seconds lock the organiser view for
    ``lockout_s`` seconds: every request is refused meanwhile, the right token included,
    and refused requests do not extend the lock-out. Empty tokens are not guesses and are not
    counted. (Anyone can thus lock the organiser out for ``lockout_s`` at a time; the token
    itself stays safe.)

    Args:
        attempts: wrong tokens within the window that start a lock-out.
        window_s: the counting window in seconds.
        lockout_s: the lock-out in seconds.
        clock: monotonic time source in seconds (tests pass a fake one).
    """

    def __init__(self, attempts: int, window_s: float, lockout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self.lockout_s = lockout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: deque[float] = deque()
        self._locked_until = -math.inf

    def wait_s(self) -> float:
        """Seconds until organiser requests are accepted again (0 when they are now)."""
        with self._lock:
            return max(0.0, self._locked_until - self._clock())

    def failed(self) -> bool:
        """Record a wrong token; returns whether it started a lock-out."""
        with self._lock:
            now = self._clock()
            self._failures.append(now)
            while self._failures and self._failures[0] <= now - self.window_s:
                self._failures.popleft()
            if len(self._failures) >= self.attempts:
                self._failures.clear()
                self._locked_until = now + self.lockout_s
                return True
            return False


def _test_choices(store: ListeningStore) -> list[tuple[str, str]]:
    return [(f"{t.name} ({t.test_id})", t.test_id) for t in store.list_tests()]


def _parse_criteria(text: Any) -> list[str]:
    if not isinstance(text, str) or not text.strip():
        return list(DEFAULT_CRITERIA)
    items = [c.strip() for c in text.replace("\n", ",").split(",")]
    items = [c for c in items if c]
    if len(items) > UI_MAX_CRITERIA:
        raise ListeningError(f"the app shows at most {UI_MAX_CRITERIA} criteria per test, got {len(items)}")
    return items


def _as_choices(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


class _ExportFolder:
    """A private temp folder for CSV downloads; files older than an hour are removed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folder: Path | None = None

    def path(self, test_id: str) -> Path:
        with self._lock:
            if self._folder is None or not self._folder.is_dir():
                self._folder = Path(tempfile.mkdtemp(prefix="neuromix-listen-export-"))
            now = time.time()
            for old in self._folder.glob("*.csv"):
                try:
                    if now - old.stat().st_mtime > _EXPORT_MAX_AGE_S:
                        old.unlink()
                except OSError:
                    pass
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
            return self._folder / f"listening-{test_id}-{stamp}-{time.monotonic_ns() % 10**9:09d}.csv"


def _results_figure(rows: Sequence[Any], title: str) -> Any:
    """Grouped bars: mean per system and criterion with 95 % confidence intervals."""
    from matplotlib.figure import (
        Figure,  # no pyplot: no global state, safe in worker threads
    )

    fig = Figure(figsize=(8.0, 3.6), layout="constrained")
    ax = fig.add_subplot()
    systems = list(dict.fromkeys(r.system for r in rows))
    criteria = list(dict.fromkeys(r.criterion for r in rows))
    width = 0.8 / max(1, len(criteria))
    by_key = {(r.system, r.criterion): r for r in rows}
    for j, criterion in enumerate(criteria):
        xs, means, errs = [], [], []
        for i, system in enumerate(systems):
            r = by_key.get((system, criterion))
            if r is None:
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            means.append(r.mean)
            errs.append(0.0 if r.half_width is None else r.half_width)
        ax.bar(xs, means, width=width * 0.95, yerr=errs, capsize=3, label=criterion)
    ax.set_xticks(range(len(systems)), systems)
    ax.set_ylim(0, 100)
    ax.set_ylabel("rating (mean, 95 % CI)")
    ax.set_title(title)
    if criteria:
        ax.legend(loc="upper left", fontsize="small", ncols=min(3, len(criteria)))
    ax.grid(axis="y", alpha=0.3)
    return fig


def build_listen_tab(store: ListeningStore, organiser_token: str | None, limits: Any = None) -> None:
    """Build the Listen tab's components and events in the current ``gr.Blocks`` context.

    Registers ``store.media_dir`` as a Gradio static path (``gr.set_static_paths``), so the
    stored stimuli are served as they are (the folder holds only anonymised stimulus WAVs,
    never the database).

    Args:
        store: where tests and ratings live.
        organiser_token: the secret that unlocks creating tests, results and export;
            ``None`` or an empty (or blank) string disables the organiser view: it shows a
            note, and its events raise ``gr.Error``.
        limits: :class:`ListenLimits`, ``None`` for defaults, or the app's limits object
            (see :meth:`ListenLimits.coerce`: the app's ``AppLimits`` gives the defaults).

    Raises:
        ValueError: ``organiser_token`` is neither a string nor ``None``.
    """
    import gradio as gr

    from neuromix.mixing.generator import DEMO_SONGS

    lim = ListenLimits.coerce(limits)
    if organiser_token is not None and not isinstance(organiser_token, str):
        raise ValueError(f"organiser_token must be a string or None, got {type(organiser_token).__name__}")
    if organiser_token is not None and not organiser_token.strip():
        log.warning("empty organiser token: the Listen tab's organiser view is disabled")
        organiser_token = None
    guard = _TokenGuard(lim.token_attempts, lim.token_window_s, lim.token_lockout_s)
    gr.set_static_paths([store.media_dir])
    exports = _ExportFolder()
    n_sliders = UI_MAX_STIMULI * UI_MAX_CRITERIA

    # ------------------------------------------------------------------ participant view
    gr.Markdown(
        "### Listening test\n"
        "Listen to every version of the excerpt (A, B, C ...), in any order and as often as you "
        "like, then rate each one from 0 (bad) to 100 (excellent) on every criterion. The versions "
        "are loudness-matched and shuffled for you."
    )
    with gr.Row():
        test_pick = gr.Dropdown(choices=_test_choices(store), value=None, label="Test (or type its code)",
                                allow_custom_value=True, scale=3, elem_id="listen-test")
        refresh = gr.Button("Refresh list", scale=1, elem_id="listen-refresh")
    with gr.Row():
        participant = gr.Textbox(label="Your name", max_lines=1, scale=3, elem_id="listen-name")
        start = gr.Button("Start", variant="primary", scale=1, elem_id="listen-start")
    with gr.Row():
        code = gr.Textbox(label="Your session code (keep it to continue later)", max_lines=1, scale=3,
                          elem_id="listen-code")
        resume = gr.Button("Continue", scale=1, elem_id="listen-resume")
    status = gr.Markdown(elem_id="listen-status")
    trial_index = gr.Number(value=None, precision=0, visible=False, label="trial index")
    trial_info = gr.JSON(value=None, visible=False, label="trial info")
    players: list[Any] = []
    sliders: list[Any] = []
    for i in range(UI_MAX_STIMULI):
        with gr.Row():
            players.append(gr.Audio(label=chr(ord("A") + i), type="filepath", interactive=False, visible=False,
                                    scale=2, elem_id=f"listen-player-{i}"))
            with gr.Column(scale=3):
                for j in range(UI_MAX_CRITERIA):
                    sliders.append(gr.Slider(0, 100, value=50, step=1, label=f"criterion {j + 1}", visible=False,
                                              elem_id=f"listen-slider-{i}-{j}"))
    submit = gr.Button("Submit ratings", variant="primary", visible=False, elem_id="listen-submit")
    trial_outputs = [code, status, trial_index, trial_info, *players, *sliders, submit]

    def show(session: Session, note: str = "") -> list[Any]:
        """Outputs for the session's next trial (or the end)."""
        trial = session.next_trial()
        total = len(session.trials)
        if trial is None:
            text = f"{note}**Thank you, {session.participant}!** All {total} trials are submitted."
            info = {"done": True, "of": total, "test_id": session.test_id}
            return [session.session_id, text, None, info,
                    *[gr.update(value=None, visible=False) for _ in players],
                    *[gr.update(visible=False) for _ in sliders], gr.update(visible=False)]
        if len(trial.stimuli) > UI_MAX_STIMULI or len(session.criteria) > UI_MAX_CRITERIA:
            raise ListeningError(
                f"this test has {len(trial.stimuli)} stimuli and {len(session.criteria)} criteria per trial; "
                f"the app shows at most {UI_MAX_STIMULI} and {UI_MAX_CRITERIA}"
            )
        position = session.position(trial.trial_index)
        text = (f"{note}**{session.test_name}**, trial {position} of {total} ({trial.song}). "
                f"Rate every version on: {', '.join(session.criteria)}.")
        info = {"trial_index": trial.trial_index, "position": position, "of": total, "song": trial.song,
                "labels": [s.label for s in trial.stimuli], "criteria": list(session.criteria),
                "test_id": session.test_id}
        audio = []
        for i in range(UI_MAX_STIMULI):
            if i < len(trial.stimuli):
                s = trial.stimuli[i]
                audio.append(gr.update(value=str(s.path), label=s.label, visible=True))
            else:
                audio.append(gr.update(value=None, visible=False))
        knobs = []
        for i in range(UI_MAX_STIMULI):
            for j in range(UI_MAX_CRITERIA):
                if i < len(trial.stimuli) and j < len(session.criteria):
                    knobs.append(gr.update(value=50, label=f"{trial.stimuli[i].label}: {session.criteria[j]}",
                                           visible=True))
                else:
                    knobs.append(gr.update(value=50, visible=False))
        return [session.session_id, text, trial.trial_index, info, *audio, *knobs, gr.update(visible=True)]

    @user_errors
    def list_tests() -> Any:
        return gr.update(choices=_test_choices(store))

    @user_errors
    def start_session(test_id: Any, name: Any) -> list[Any]:
        if not isinstance(test_id, str) or not test_id.strip():
            raise ListeningError("pick a test or type its code first")
        return show(store.start_session(test_id.strip(), name if isinstance(name, str) else ""))

    @user_errors
    def resume_session(session_code: Any) -> list[Any]:
        return show(store.get_session(session_code))

    @user_errors
    def submit_ratings(session_code: Any, index: Any, *values: Any) -> list[Any]:
        if len(values) != n_sliders:
            raise ListeningError(f"expected {n_sliders} slider values, got {len(values)}")
        if index is None or isinstance(index, bool) or not isinstance(index, (int, float)) \
                or not math.isfinite(index) or index != int(index):
            raise ListeningError("no trial to submit; start or continue the test first")
        session = store.get_session(session_code)
        trial = next((t for t in session.trials if t.trial_index == int(index)), None)
        if trial is None:
            raise ListeningError(f"this test has no trial {index}")
        if len(trial.stimuli) > UI_MAX_STIMULI or len(session.criteria) > UI_MAX_CRITERIA:
            raise ListeningError("this test has more stimuli or criteria than the app can show")
        ratings = {}
        for i, s in enumerate(trial.stimuli):
            ratings[s.stimulus_id] = {c: values[i * UI_MAX_CRITERIA + j] for j, c in enumerate(session.criteria)}
        store.submit(session.session_id, trial.trial_index, ratings)
        position = session.position(trial.trial_index)
        return show(store.get_session(session.session_id), note=f"Trial {position} saved. ")

    refresh.click(list_tests, None, test_pick, api_name="listen_tests")
    start.click(start_session, [test_pick, participant], trial_outputs, api_name="listen_start",
                concurrency_limit=lim.submit_concurrency, concurrency_id="listen_session")
    resume.click(resume_session, [code], trial_outputs, api_name="listen_resume",
                 concurrency_limit=lim.submit_concurrency, concurrency_id="listen_session")
    submit.click(submit_ratings, [code, trial_index, *sliders], trial_outputs, api_name="listen_submit",
                 concurrency_limit=lim.submit_concurrency, concurrency_id="listen_session")

    # ------------------------------------------------------------------ organiser view
    enabled = organiser_token is not None
    secret = organiser_token.encode("utf-8") if enabled else b""

    def authorise(token: Any) -> None:
        """Raise ``gr.Error`` unless ``token`` is the organiser token and no lock-out is on."""
        if not enabled:
            raise gr.Error("The organiser view is disabled: start the app with an organiser token "
                           "(e.g. `neuromix ui --organiser-token ...`).", print_exception=False)
        wait = guard.wait_s()
        if wait > 0:
            raise gr.Error(f"Too many wrong organiser tokens: the organiser view is locked for another "
                           f"{math.ceil(wait)} s. Try again then.", print_exception=False)
        if not isinstance(token, str) or not token:
            raise gr.Error("Enter the organiser token first.", print_exception=False)
        if not hmac.compare_digest(token.encode("utf-8"), secret):
            if guard.failed():
                log.warning("%d wrong organiser tokens within %g s: organiser view locked for %g s",
                            guard.attempts, guard.window_s, guard.lockout_s)
                raise gr.Error(f"Wrong organiser token. Too many wrong tokens: the organiser view is locked "
                               f"for {math.ceil(guard.lockout_s)} s.", print_exception=False)
            raise gr.Error("Wrong organiser token.", print_exception=False)

    with gr.Accordion("Organiser", open=False, elem_id="listen-organiser"):
        if not enabled:
            gr.Markdown("The organiser view is disabled: this app was started without an organiser token.")
        with gr.Column(visible=enabled):
            token = gr.Textbox(label="Organiser token", type="password", max_lines=1, elem_id="listen-token")
            gr.Markdown("#### Create a test")
            with gr.Row():
                new_name = gr.Textbox(label="Test name", value="mix comparison", max_lines=1)
                new_criteria = gr.Textbox(label=f"Criteria (comma separated, up to {UI_MAX_CRITERIA})",
                                          value=", ".join(DEFAULT_CRITERIA), max_lines=1)
            with gr.Row():
                new_songs = gr.CheckboxGroup(list(DEMO_SONGS), value=[next(iter(DEMO_SONGS))], label="Demo songs")
                new_systems = gr.CheckboxGroup(list(SYSTEMS), value=["sum", "rules", "console"], label="Systems")
            with gr.Row():
                new_seconds = gr.Slider(lim.min_excerpt_seconds, lim.max_excerpt_seconds,
                                        value=lim.default_excerpt_seconds, step=0.5, label="Excerpt (s)")
                new_hidden = gr.Checkbox(value=True, label="Hidden reference (the engineer's target mix)")
            create = gr.Button("Create test", variant="primary", elem_id="listen-create")
            create_status = gr.Markdown(elem_id="listen-create-status")
            gr.Markdown("#### Results")
            with gr.Row():
                org_test = gr.Dropdown(choices=_test_choices(store), value=None, label="Test",
                                       allow_custom_value=True, scale=3, elem_id="listen-org-test")
                show_results = gr.Button("Show results", scale=1, elem_id="listen-results-button")
                export = gr.Button("Export CSV", scale=1, elem_id="listen-export-button")
            summary = gr.Markdown(elem_id="listen-summary")
            table = gr.Dataframe(headers=["system", "criterion", "n", "mean", "CI low", "CI high"],
                                 interactive=False, label="Mean rating and 95 % confidence interval",
                                 elem_id="listen-table")
            plot = gr.Plot(label="Ratings", elem_id="listen-plot")
            csv_file = gr.File(label="CSV", interactive=False, elem_id="listen-csv")

    @user_errors
    def create_test(tok: Any, name: Any, songs: Any, systems: Any, criteria: Any, seconds: Any, hidden: Any,
                    progress: gr.Progress = gr.Progress()) -> list[Any]:
        authorise(tok)
        crit = _parse_criteria(criteria)
        song_list = _as_choices(songs)
        unknown = [s for s in song_list if s not in DEMO_SONGS]
        if unknown or not song_list:
            raise ListeningError(f"choose demo songs from {', '.join(DEMO_SONGS)}")
        system_list = _as_choices(systems)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not lim.min_excerpt_seconds <= seconds <= lim.max_excerpt_seconds:
            raise ListeningError(f"the excerpt must be {lim.min_excerpt_seconds} to {lim.max_excerpt_seconds} s long")
        song_seconds = None if lim.song_seconds is None else max(float(lim.song_seconds), float(seconds))
        with tempfile.TemporaryDirectory(prefix="neuromix-listen-") as tmp:
            trials = make_trials(song_list, system_list, seconds=float(seconds), sample_rate=lim.sample_rate,
                                 out_dir=tmp, song_seconds=song_seconds,
                                 progress=lambda f, desc: progress(f, desc=desc))
            test_id = store.create_test(name if isinstance(name, str) else "", crit, trials,
                                        hidden_reference=bool(hidden))
        choices = _test_choices(store)
        text = (f"Created test **{test_id}** with {len(trials)} trial(s). Participants pick it from the list "
                f"or type the code `{test_id}`.")
        return [text, gr.update(choices=choices, value=test_id), gr.update(choices=choices, value=test_id)]

    @user_errors
    def results(tok: Any, test_id: Any) -> list[Any]:
        import pandas as pd

        authorise(tok)
        info = store.test_info(test_id)
        rows = store.results(info.test_id)
        frame = pd.DataFrame(
            [[r.system, r.criterion, r.n, round(r.mean, 2),
              None if r.ci_low is None else round(r.ci_low, 2), None if r.ci_high is None else round(r.ci_high, 2)]
             for r in rows],
            columns=["system", "criterion", "n", "mean", "CI low", "CI high"],
        )
        text = (f"**{info.name}** ({info.test_id}): {info.num_sessions} session(s), {info.num_submissions} "
                f"trial submission(s) of {info.num_trials} trial(s) each. Systems: {', '.join(info.systems)}.")
        return [frame, _results_figure(rows, info.name), text]

    @user_errors
    def export_csv(tok: Any, test_id: Any) -> str:
        authorise(tok)
        info = store.test_info(test_id)
        path = exports.path(info.test_id)  # the stored id, never the raw input
        path.write_text(store.export_csv(info.test_id), encoding="utf-8")
        return str(path)

    create.click(create_test, [token, new_name, new_songs, new_systems, new_criteria, new_seconds, new_hidden],
                 [create_status, test_pick, org_test], api_name="listen_create",
                 concurrency_limit=lim.create_concurrency, concurrency_id="listen_create")
    show_results.click(results, [token, org_test], [table, plot, summary], api_name="listen_results")
    export.click(export_csv, [token, org_test], csv_file, api_name="listen_export")
