"""The workbench in a real browser: Playwright driving Debian's chromium (headless).

Recipe (DEVELOPERS.md, "The browser workbench"): ``apt-get install -y chromium``; never
``playwright install``. Screenshots go to pytest's ``tmp_path``. Skipped when chromium or
Playwright is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

sync_api = pytest.importorskip("playwright.sync_api")

from neuromix.mixing import inference
from neuromix.mixing.generator import generate_song, write_song
from neuromix.ui.app import AppLimits, build_app, launch_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 90_000

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app = build_app(limits=AppLimits(demo_seconds=4.0), work_dir=tmp_path_factory.mktemp("work"))
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
