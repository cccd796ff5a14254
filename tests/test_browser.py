"""The workbench in a real browser: Playwright driving Debian's chromium (headless).

Recipe (DEVELOPERS.md, "The browser workbench"): ``apt-get install -y chromium``; never
``playwright install``. Screenshots go to pytest's ``tmp_path``. Skipped when chromium or
Playwright is missing.

The app runs with an organiser token and a listening-test database in the module's temp
folder, so the Listen tab's test can prepare a test through the store and then drive the
participant and organiser views through the page.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

sync_api = pytest.importorskip("playwright.sync_api")

from neuromix.mixing import inference
from neuromix.mixing.generator import generate_song, write_song
from neuromix.ui.app import AppLimits, build_app, launch_app
from neuromix.ui.listening import ListeningStore
from test_listening import fake_trials  # short sine stimuli: no mixing needed

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 90_000
TOKEN = "browser-organiser-token"

pytestmark = [pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
              pytest.mark.browser]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def listening_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app's listening-test database (tests open their own store on it)."""
    return tmp_path_factory.mktemp("listening") / "ratings.sqlite"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory, listening_db: Path) -> Iterator[str]:
    app = build_app(limits=AppLimits(demo_seconds=4.0), work_dir=tmp_path_factory.mktemp("work"),
                    organiser_token=TOKEN, db_path=listening_db)
    url = launch_app(app, host="127.0.0.1", port=_free_port(), prevent_thread_lock=True, quiet=True)
    yield url
    app.close()
    app.neuromix_context.cleanup()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, app_url: str):
    """A fresh page (a new session) with the demo song mixed, as a first-time user sees it."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url)
    _wait_status(page, "#mix-status", "Mixed demo song")
    yield page
    context.close()


def _wait_status(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([sel, text]) => { const e = document.querySelector(sel); return e && e.innerText.includes(text); }",
        arg=[selector, text],
    )


def _audio_duration(page, selector: str) -> float:
    """Load the audio that a gr.Audio offers (its download link) into an <audio> element and
    return its duration: the browser can decode and play it."""
    page.wait_for_selector(f"{selector} a.download-link[href]")
    return page.evaluate(
        """(sel) => new Promise((resolve, reject) => {
            const href = document.querySelector(sel + ' a.download-link').href;
            const audio = new Audio();
            audio.addEventListener('loadedmetadata', () => resolve(audio.duration));
            audio.addEventListener('error', () => reject(new Error('cannot decode ' + href)));
            audio.src = href;
        })""",
        selector,
    )


def _cell(page, row: int, col: int):
    return page.locator(f"#settings [data-testid='cell-{row}-{col}']")


def _set_cell(page, row: int, col: int, value: str) -> None:
    cell = _cell(page, row, col)
    cell.dblclick()
    editor = cell.locator("input, textarea").first
    editor.fill(value)
    editor.press("Enter")


def test_upload_stems_and_play_the_mix(page, tmp_path: Path) -> None:
    song = generate_song(5, seconds=4.0, sample_rate=22050, num_tracks=4)
    stems = [str(f) for f in write_song(song, tmp_path / "song") if f.suffix == ".wav"]
    assert _audio_duration(page, "#mix-audio") > 3.9  # the demo mix, ready on opening
    page.locator("#stems input[type=file]").set_input_files(stems)
    _wait_status(page, "#mix-status", "Loaded 4 uploaded stems")
    page.click("#mix-button")
    _wait_status(page, "#mix-status", "Mixed 4 uploaded stems")
    page.screenshot(path=str(tmp_path / "mix.png"), full_page=True)
    assert _audio_duration(page, "#mix-audio") == pytest.approx(4.0, abs=0.05)
    assert page.locator("#tracks").inner_text().count("\n") >= 4


def test_edit_render_lock_resolve(page, tmp_path: Path) -> None:
    assert _cell(page, 0, 1).inner_text().strip() == "gain_db"
    _set_cell(page, 0, 2, "-3.5")
    page.click("#render-button")
    _wait_status(page, "#mix-status", "Rendered the edited settings")
    assert _cell(page, 0, 2).inner_text().strip() == "-3.5"
    if not hasattr(inference, "resolve_mix"):
        pytest.skip("resolve_mix not in this build")
    _cell(page, 0, 4).locator("input[type=checkbox]").check()
    page.click("#resolve-button")
    _wait_status(page, "#mix-status", "Re-solved")
    page.screenshot(path=str(tmp_path / "resolved.png"), full_page=True)
    assert _cell(page, 0, 2).inner_text().strip() == "-3.5"
    assert _cell(page, 0, 4).locator("input[type=checkbox]").is_checked()


def test_synthesize_a_preset(page, tmp_path: Path) -> None:
    page.get_by_role("tab", name="Synthesize").click()
    page.click("#synth-render")
    _wait_status(page, "#synth-info", "true peak")
    page.screenshot(path=str(tmp_path / "synth.png"), full_page=True)
    assert _audio_duration(page, "#synth-audio") > 1.0


def test_learn_a_datasheet(page, tmp_path: Path) -> None:
    page.get_by_role("tab", name="Learn").click()
    page.locator("#learn-mixer").get_by_label("rules").check()
    page.locator("#learn-context").get_by_label("silent").check()
    page.click("#datasheet-button")
    _wait_status(page, "#datasheet-summary", "threshold")
    page.screenshot(path=str(tmp_path / "learn.png"), full_page=True)
    assert "track 7" in page.locator("#datasheet-summary").inner_text()


# --------------------------------------------------------------------------- Listen tab


def _slider(page, stimulus: int, criterion: int):
    return page.locator(f"#listen-slider-{stimulus}-{criterion}")


def _error_toast(page, text: str) -> None:
    """Wait for Gradio's error toast that contains ``text``."""
    page.locator("[data-testid='toast-body']", has_text=text).first.wait_for(state="visible")


def _table_rows(page, selector: str, columns: int) -> list[list[str]]:
    rows = []
    while page.locator(f"{selector} [data-testid='cell-{len(rows)}-0']").count():
        rows.append([page.locator(f"{selector} [data-testid='cell-{len(rows)}-{c}']").inner_text().strip()
                     for c in range(columns)])
    return rows


def _open_listen_tab(browser, app_url: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url)
    page.get_by_role("tab", name="Listen").click()
    return context, page


def _organiser_results(page, test_id: str, token: str | None) -> None:
    """Open the organiser view, enter the token (if any) and the test code, press *Show results*."""
    page.locator("#listen-organiser").get_by_text("Organiser").first.click()
    if token is not None:
        page.locator("#listen-token input").fill(token)
    code = page.locator("#listen-org-test input")
    code.fill(test_id)
    code.press("Enter")
    page.click("#listen-results-button")


def test_listening_test_participant_and_organiser(browser, app_url: str, listening_db: Path,
                                                  tmp_path: Path) -> None:
    """A participant takes a whole test in the page; the organiser sees their ratings; without
    the token the organiser view refuses with a clear error."""
    criteria = ("clarity", "punch")
    store = ListeningStore(listening_db)
    test_id = store.create_test("browser check", criteria, fake_trials(tmp_path / "stimuli", n_trials=2),
                                hidden_reference=True)
    n_stimuli = 4  # sum, rules, console + the hidden reference

    context, page = _open_listen_tab(browser, app_url)
    try:
        # the test was made after the page was built: the participant types its code
        picker = page.locator("#listen-test input")
        picker.fill(test_id)
        picker.press("Enter")
        page.locator("#listen-name input, #listen-name textarea").first.fill("Bea")
        page.click("#listen-start")
        given: dict[tuple[int, str], dict[str, float]] = {}  # (trial, label) -> {criterion: rating}
        for position in (1, 2):
            _wait_status(page, "#listen-status", f"trial {position} of 2")
            code = page.locator("#listen-code input, #listen-code textarea").first.input_value()
            session = store.get_session(code)
            trial = session.trials[position - 1]
            assert [s.label for s in trial.stimuli] == ["A", "B", "C", "D"]
            for i in range(n_stimuli):  # N players, each offering audio that the browser decodes
                assert page.locator(f"#listen-player-{i}").is_visible()
                assert _audio_duration(page, f"#listen-player-{i}") == pytest.approx(1.0, abs=0.01)
            assert page.locator(f"#listen-player-{n_stimuli}").count() == 0 \
                or not page.locator(f"#listen-player-{n_stimuli}").is_visible()
            for i, stimulus in enumerate(trial.stimuli):
                for j, criterion in enumerate(criteria):
                    value = 10 + 20 * i + 7 * j + position
                    slider = _slider(page, i, j)
                    assert f"{stimulus.label}: {criterion}" in slider.inner_text()
                    slider.locator("input[type=range]").fill(str(value))
                    assert slider.locator("input[type=number]").input_value() == str(value)
                    given.setdefault((trial.trial_index, stimulus.label), {})[criterion] = float(value)
            assert not _slider(page, 0, len(criteria)).is_visible()
            if position == 1:
                page.screenshot(path=str(tmp_path / "listen-trial.png"), full_page=True)
            page.click("#listen-submit")
        _wait_status(page, "#listen-status", "Thank you, Bea")
        page.screenshot(path=str(tmp_path / "listen-done.png"), full_page=True)
        assert not page.locator("#listen-submit").is_visible()
    finally:
        context.close()

    # what the page sent is what the store holds, stimulus by stimulus
    session = store.get_session(code)
    stored = store.session_ratings(code)
    expected: dict[tuple[str, str], list[float]] = {}
    with sqlite3.connect(listening_db) as conn:
        for trial in session.trials:
            for s in trial.stimuli:
                assert stored[trial.trial_index][s.stimulus_id] == given[(trial.trial_index, s.label)]
                system = conn.execute("SELECT system FROM stimuli WHERE stimulus_id = ?",
                                      (s.stimulus_id,)).fetchone()[0]
                for criterion, value in given[(trial.trial_index, s.label)].items():
                    expected.setdefault((system, criterion), []).append(value)

    # the organiser sees the means per system, made of this participant's ratings
    context, page = _open_listen_tab(browser, app_url)
    try:
        _organiser_results(page, test_id, TOKEN)
        _wait_status(page, "#listen-summary", "1 session(s), 2 trial submission(s)")
        page.locator("#listen-plot img, #listen-plot canvas, #listen-plot svg").first.wait_for()
        rows = _table_rows(page, "#listen-table", 4)
        page.screenshot(path=str(tmp_path / "listen-organiser.png"), full_page=True)
        assert len(rows) == len(expected) == n_stimuli * len(criteria)
        for system, criterion, n, mean in rows:
            values = expected[(system, criterion)]
            assert int(n) == len(values) == 2
            assert float(mean) == pytest.approx(sum(values) / len(values), abs=0.01)
    finally:
        context.close()

    # without the token (and with a wrong one) the organiser view refuses and shows nothing
    context, page = _open_listen_tab(browser, app_url)
    try:
        _organiser_results(page, test_id, None)
        _error_toast(page, "Enter the organiser token")
        page.locator("#listen-token input").fill("not-the-token")
        page.click("#listen-results-button")
        _error_toast(page, "Wrong organiser token")
        page.screenshot(path=str(tmp_path / "listen-no-token.png"), full_page=True)
        assert "session(s)" not in page.locator("#listen-summary").inner_text()
        assert _table_rows(page, "#listen-table", 4) == []
    finally:
        context.close()
