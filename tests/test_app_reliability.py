"""The browser workbench under hostile inputs, a crash, attacks and load (issue #9, the app's half).

* **Corpus** (``tests/corpus.py``): every entry a client can send goes through the app's API
  with ``gradio_client``: audio files as a stem (``/mix``) and as a reference mix, folders
  as stem uploads, settings through ``/load_settings``, patches through ``/patch_load`` and
  ``/synth_render``, scores and MIDI files through ``/score_render``. Each gives a correct
  output or a clear ``gr.Error`` (specific words, no traceback, no server path); a results
  table is written under ``tmp_path``, printed and asserted row by row, and the server
  still mixes afterwards.
* **kill -9**: ``neuromix ui`` is killed while clients submit listening-test ratings; after
  a restart on the same database it is intact and holds every acknowledged submission.
* **Security**: upload size and count limits; the file route serves only what the app
  created (not ``/etc/passwd``, the repository, the database, ``..`` escapes or guesses
  at other sessions' folders); hostile upload file names stay inside Gradio's upload
  folder; the organiser token guards results and export; a participant's session code
  returns only that participant's data.
* **Load**: ``benchmarks/load.py`` scaled down (5 clients, 40 submissions, 15 sequential
  mixes): no errors, every submission stored, server memory bounded.

One app runs in this process for the module (its own Gradio upload folder under
``tmp_path``); the kill -9 and load tests start ``python -m neuromix ui`` processes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))
import load  # benchmarks/load.py
from corpus import BASE_SONG, ERROR, OK, PICKLE_MARKER, CorpusEntry, build_corpus
from neuromix.ui.app import AppLimits, build_app, launch_app

LIMITS = AppLimits(max_tracks=8, max_seconds=30.0, max_upload_mb=1.0, demo_seconds=3.0)
"""Small limits, so that "too big" and "too many" are cheap to provoke."""
TOKEN = "organiser-secret-token"
CALL_TIMEOUT_S = 90.0
CEILING_DBTP = -1.0
PEAK_TOLERANCE_DB = 0.1


# --------------------------------------------------------------------------- the app under test


@dataclass
class RunningApp:
    """The module's app: its URL, work folder, Gradio upload folder and listening database."""

    url: str
    app: Any
    work: Path
    uploads: Path
    db: Path

    def client(self, **kwargs: Any) -> Client:
        """A new client (a new session)."""
        return Client(self.url, verbose=False, **kwargs)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The app on a free loopback port, with its own Gradio upload folder (restored after)."""
    base = tmp_path_factory.mktemp("app")
    uploads = base / "gradio-uploads"
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)  # read by Gradio when it builds, launches and checks uploads
    try:
        app = build_app(limits=LIMITS, organiser_token=TOKEN, work_dir=base / "work")
        url = launch_app(app, host="127.0.0.1", port=load.free_port(), prevent_thread_lock=True, quiet=True)
        ctx = app.neuromix_context
        yield RunningApp(url, app, ctx.root, uploads, ctx.root / "listening.sqlite")
        app.close()
        ctx.cleanup()
    finally:
        if previous is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CorpusEntry]:
    """The hostile-input corpus, written once for the module; name -> entry."""
    return {e.name: e for e in build_corpus(tmp_path_factory.mktemp("corpus"))}


def _call(client: Client, api_name: str, **kwargs: Any) -> Any:
    """``client.predict`` with a deadline (a hang fails the call instead of the run)."""
    return client.submit(**kwargs, api_name=api_name).result(timeout=CALL_TIMEOUT_S)


# --------------------------------------------------------------------------- checking outputs


class BadOutput(AssertionError):
    """The app returned something, but not a correct output."""


def _check_wav(path: str, *, rate: int | None = None, frames: int | None = None) -> str:
    """A returned WAV: stereo, finite, the expected rate / length, true peak under the ceiling."""
    try:
        audio, sr = sf.read(path, always_2d=True, dtype="float64")
    except Exception as exc:
        raise BadOutput(f"the returned file cannot be read: {exc}") from exc
    if audio.shape[1] != 2 or audio.shape[0] == 0:
        raise BadOutput(f"expected stereo audio, got {audio.shape}")
    if not np.isfinite(audio).all():
        raise BadOutput("non-finite samples")
    if rate is not None and sr != rate:
        raise BadOutput(f"{sr} Hz, expected {rate} Hz")
    if frames is not None and audio.shape[0] != frames:
        raise BadOutput(f"{audio.shape[0]} frames, expected {frames}")
    oversampled = audio if audio.shape[0] < 16 else _upsample4(audio)
    peak = 20 * np.log10(np.abs(oversampled).max() + 1e-12)
    if peak > CEILING_DBTP + PEAK_TOLERANCE_DB:
        raise BadOutput(f"true peak {peak:.2f} dBTP above {CEILING_DBTP} dBTP")
    return f"{audio.shape[0]} frames at {sr} Hz, {peak:.1f} dBTP"


def _upsample4(audio: np.ndarray) -> np.ndarray:
    import scipy.signal

    return scipy.signal.resample_poly(audio, 4, 1, axis=0)


def _stem_frames(paths: list[Path]) -> tuple[int, int]:
    """The rate and length the library gives these stems (what a correct mix must match)."""
    from neuromix.core.io import load_multitrack

    song = load_multitrack(paths)
    return song.sample_rate, int(song.audio.shape[-1])


# --------------------------------------------------------------------------- the corpus through the app

NOT_APPLICABLE: dict[str, str] = {
    "symlink_loop": "a client uploads file contents; a link cannot be sent",
    "broken_symlink": "a client uploads file contents; a link cannot be sent",
    "fifo_as_wav": "a client uploads file contents; a pipe cannot be sent",
    "directory_named_wav": "a client uploads files, not folders",
    "folder_symlink_loop": "a client uploads files, not links",
    "folder_with_link_loops": "a client uploads files, not links",
    "settings_fifo": "a client uploads file contents; a pipe cannot be sent",
    "midi_fifo": "a client uploads file contents; a pipe cannot be sent",
}
"""Entries no client can send to the app (the server only ever sees regular uploaded files)."""

NOT_APPLICABLE_KINDS: dict[str, str] = {
    "checkpoint": "the app plays shipped networks only (a patch naming a checkpoint is refused: patch_* rows)",
    "train_config": "the app does not train",
}

REFERENCE_MIN_S = 0.8
"""Shortest reference mix the goal-oriented mixer takes (``neuromix.mixing.goals``)."""

ANY = "*"
APP_EXPECTATIONS: dict[tuple[str, str], tuple[str, str | None]] = {
    # the app checks every upload's length against its own limit (from the header) first
    ("flac_claims_days", ANY): (ERROR, f"the app accepts up to {LIMITS.max_seconds:g} s"),
    ("wav_rate_1hz", ANY): (ERROR, f"the app accepts up to {LIMITS.max_seconds:g} s"),
    # no file uploaded and no demo song picked
    ("folder_empty", ANY): (ERROR, "upload stems or pick a demo song"),
    # the app mixes at most LIMITS.max_tracks stems (the library: 64)
    ("folder_65_files", ANY): (ERROR, f"at most {LIMITS.max_tracks} tracks"),
    # the upload holds only mix.wav (a browser's file picker offers audio files only): one stem
    ("folder_no_stems", ANY): (OK, None),
    # uploaded files are stems, whatever their names: the NaN mixdown is a stem here
    ("folder_nan_mixdown", ANY): (ERROR, "non-finite"),
    # uploads have no metadata.json: only vox.wav is sent
    ("folder_metadata_escape", ANY): (OK, None),
    # a macOS '._' file that is uploaded is a file like any other: refused, named
    ("folder_hidden_junk", ANY): (ERROR, "._guitar.wav"),
    # 5000 tracks of settings are over the app's upload size (Gradio's client refuses to send them)
    ("settings_too_many_tracks", ANY): (ERROR, "exceeds the maximum file size"),
    # scores in the app may name presets only, never patch files (see ui/synth_tab.py)
    ("score_valid", "/score_render"): (ERROR, "preset names"),
    ("score_missing_events", "/score_render"): (ERROR, "preset names"),
    ("score_wrong_type", "/score_render"): (ERROR, "preset names"),
    ("score_huge_number", "/score_render"): (ERROR, "preset names"),
    ("score_out_of_range", "/score_render"): (ERROR, "preset names"),
    ("score_traversal_patch", "/score_render"): (ERROR, "preset names"),
    # patches in the app may use shipped networks only
    ("patch_traversal_network", ANY): (ERROR, "shipped networks only"),
    ("patch_pickle_network", ANY): (ERROR, "shipped networks only"),
}
"""Where the app's expectation differs from the corpus's (with the reason above each)."""


@dataclass
class AppRow:
    """One line of the app's results table."""

    entry: str
    kind: str
    endpoint: str
    expected: str
    outcome: str  # ok | error | crash | bad-output | timeout | n/a
    message: str
    passed: bool
    seconds: float


@dataclass
class Sessions:
    """Clients the corpus runs through: one mixing, one holding the base song's mix, one synth view."""

    mixer: Client
    settings: Client
    synth_view: tuple


def _with_preset(entry: CorpusEntry, folder: Path) -> Path | None:
    """A copy of a JSON score whose patch references name a preset instead of a patch file
    (what the app accepts), under the same file name; None for other entries."""
    try:
        doc = json.loads(entry.path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if entry.name == "score_traversal_patch" or not isinstance(doc, dict) or not isinstance(doc.get("patches"), dict):
        return None
    doc["patches"] = {name: "glass-pluck" for name in doc["patches"]}
    copy = folder / entry.path.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(json.dumps(doc), encoding="utf-8")
    return copy


def _routes(entry: CorpusEntry, root: Path, s: Sessions, scratch: Path) -> dict[str, Callable[[], str]]:
    """Endpoint label -> a call that returns a summary of a correct output (or raises)."""
    base = sorted((root / BASE_SONG).glob("*.wav"))

    def stems(paths: list[Path], reference: Path | None = None) -> Callable[[], str]:
        def run() -> str:
            result = _call(s.mixer, "/mix", stems=[handle_file(str(p)) for p in paths], demo=None, model="rules",
                           reference=None if reference is None else handle_file(str(reference)), targets="")
            rate, frames = _stem_frames(paths)
            return _check_wav(result[0], rate=rate, frames=frames)

        return run

    def settings() -> str:
        result = _call(s.settings, "/load_settings", settings_json=handle_file(str(entry.path)))
        rate, frames = _stem_frames(base)
        return _check_wav(result[0], rate=rate, frames=frames)

    def patch() -> str:
        view = _call(s.mixer, "/patch_load", patch_json=handle_file(str(entry.path)))
        patch_text, _desc, signal, level, feedback, bends, controls, seed, note, _seconds = view
        sound, _png, _info, _patch = _call(s.mixer, "/synth_render", patch=patch_text, signal=signal, level_db=level,
                                           feedback_gain=feedback, bends=bends, controls=controls, seed=seed,
                                           note=note, seconds=0.3)
        return _check_wav(sound)

    def score(path: Path) -> Callable[[], str]:
        def run() -> str:
            patch_text, _desc, signal, level, feedback, bends, controls, seed, note, seconds = s.synth_view
            sound, _png, _info = _call(s.mixer, "/score_render", score=handle_file(str(path)), patch=patch_text,
                                       signal=signal, level_db=level, feedback_gain=feedback, bends=bends,
                                       controls=controls, seed=seed, note=note, seconds=seconds)
            return _check_wav(sound)

        return run

    if entry.kind == "audio":
        return {"/mix stems": stems([entry.path]), "/mix reference": stems(base, reference=entry.path)}
    if entry.kind == "folder":
        from neuromix.core.io import audio_extensions

        files = sorted(p for p in entry.path.iterdir() if p.is_file() and p.suffix.lower() in audio_extensions())
        return {"/mix stems": stems(files)}
    if entry.kind == "settings":
        return {"/load_settings": settings}
    if entry.kind == "patch":
        return {"/patch_load": patch}
    if entry.kind in ("score", "midi"):
        routes = {"/score_render": score(entry.path)}
        preset = _with_preset(entry, scratch / "scores")
        if preset is not None:
            routes["/score_render (preset)"] = score(preset)
        return routes
    return {}


def _expected(entry: CorpusEntry, endpoint: str) -> tuple[str, str | None]:
    for key in ((entry.name, endpoint), (entry.name, ANY)):
        if key in APP_EXPECTATIONS:
            return APP_EXPECTATIONS[key]
    expected = entry.expectation("app")
    if endpoint == "/mix reference" and expected[0] == OK and sf.info(str(entry.path)).duration < REFERENCE_MIN_S:
        return ERROR, f"at least {REFERENCE_MIN_S:g} s long"  # the corpus's clips are 0.5 s
    return expected


def _expected_text(expected: tuple[str, str | None]) -> str:
    return expected[0] + (f" ~ {expected[1]!r}" if expected[0] == ERROR and expected[1] else "")


def _message_problem(message: str, running: RunningApp) -> str | None:
    """Why an error message is not a clear one for a user (None: it is)."""
    if not message.strip():
        return "empty message"
    if "Traceback" in message or "internal error" in message:
        return "a traceback or an internal error"
    for secret in (str(running.uploads), str(running.work), str(REPO)):
        if secret in message:
            return f"the message shows a server path ({secret})"
    if re.match(r"(.+?): \1: ", message):
        return "the file name is repeated"
    return None


def _run_route(entry: CorpusEntry, endpoint: str, call: Callable[[], str], running: RunningApp) -> AppRow:
    expected = _expected(entry, endpoint)
    start = time.perf_counter()
    try:
        outcome, message = OK, call()
    except AppError as exc:
        outcome, message = ERROR, str(exc)
        problem = _message_problem(message, running)
        if problem:
            outcome, message = "unclear-error", f"{problem}: {message}"
    except BadOutput as exc:
        outcome, message = "bad-output", str(exc)
    except TimeoutError as exc:
        outcome, message = "timeout", str(exc) or f"no answer in {CALL_TIMEOUT_S:g} s"
    except Exception as exc:  # noqa: BLE001 - anything else is what this test looks for
        outcome, message = "crash", f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ValueError) and "exceeds the maximum file size" in str(exc):
            outcome, message = ERROR, f"refused by the client before upload: {exc}"  # the server refuses it too
    needle = expected[1]
    passed = outcome == expected[0] and (outcome == OK or needle is None or needle.lower() in message.lower())
    return AppRow(entry.name, entry.kind, endpoint, _expected_text(expected), outcome, message, passed,
                  time.perf_counter() - start)


def _table(rows: list[AppRow], title: str) -> str:
    lines = [f"## {title}", "", "| entry | kind | endpoint | expected | outcome | pass | s | message |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        msg = r.message.replace("|", "\\|").replace("\n", " ")
        msg = msg if len(msg) <= 160 else msg[:157] + "..."
        mark = "-" if r.outcome == "n/a" else ("yes" if r.passed else "**NO**")
        lines.append(f"| {r.entry} | {r.kind} | {r.endpoint} | {r.expected} | {r.outcome} | {mark} | "
                     f"{r.seconds:.1f} | {msg} |")
    asserted = [r for r in rows if r.outcome != "n/a"]
    counts: dict[str, int] = {}
    for r in asserted:
        counts[r.endpoint] = counts.get(r.endpoint, 0) + 1
    per_endpoint = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    lines += ["", (f"{sum(r.passed for r in asserted)}/{len(asserted)} calls as expected ({per_endpoint}); "
                   f"{len(rows) - len(asserted)} entries not applicable to the app")]
    return "\n".join(lines)


def test_corpus_through_the_app(running: RunningApp, corpus: dict[str, CorpusEntry], tmp_path: Path,
                                caplog: pytest.LogCaptureFixture) -> None:
    root = corpus["settings_valid"].path.parent.parent
    base = sorted((root / BASE_SONG).glob("*.wav"))
    settings_client = running.client()
    _call(settings_client, "/mix", stems=[handle_file(str(p)) for p in base], demo=None, model="rules",
          reference=None, targets="")
    mixer = running.client()
    sessions = Sessions(mixer, settings_client, _call(mixer, "/synth_preset", preset="glass-pluck"))
    rows: list[AppRow] = []
    with caplog.at_level("ERROR", logger="neuromix.ui"):
        for entry in corpus.values():
            reason = NOT_APPLICABLE.get(entry.name) or NOT_APPLICABLE_KINDS.get(entry.kind)
            if reason:
                rows.append(AppRow(entry.name, entry.kind, "-", "-", "n/a", reason, True, 0.0))
                continue
            for endpoint, call in _routes(entry, root, sessions, tmp_path).items():
                rows.append(_run_route(entry, endpoint, call, running))
        # the server keeps serving: a normal mix of a demo song after all of that
        final = _call(running.client(), "/mix", stems=[], demo="neon-drive", model="console", reference=None,
                      targets="")
    _check_wav(final[0], rate=LIMITS.demo_rate)
    text = _table(rows, f"the app's API: {len(corpus)} corpus entries")
    out = tmp_path / "corpus_app.md"
    out.write_text(text + "\n", encoding="utf-8")
    print("\n" + text + f"\n(table written to {out})")
    failed = [r for r in rows if not r.passed]
    assert not failed, "rows not as expected:\n" + "\n".join(
        f"  {r.entry} via {r.endpoint}: expected {r.expected}, got {r.outcome}: {r.message[:300]}" for r in failed)
    assert sum(r.outcome != "n/a" for r in rows) >= 90
    internal = [r.getMessage() for r in caplog.records if "internal error" in r.getMessage()]
    assert not internal, f"internal errors on the server: {internal}"
    assert not (root / PICKLE_MARKER).exists(), "something unpickled a corpus pickle"


def test_a_clip_shorter_than_a_loudness_block_mixes(running: RunningApp, tmp_path: Path) -> None:
    """Fixed: a mix shorter than 400 ms made the status line's loudness fail (an internal error)."""
    clip = tmp_path / "click.wav"
    sf.write(clip, np.full((2205, 1), 0.3, np.float32), 22050)  # 0.1 s
    result = _call(running.client(), "/mix", stems=[handle_file(str(clip))], demo=None, model="rules", reference=None,
                   targets="")
    assert sf.info(result[0]).frames == 2205
    assert "loudness not measured" in result[-1]


# --------------------------------------------------------------------------- security


def _fetch(url: str, timeout: float = 30.0) -> tuple[int, bytes]:
    """GET ``url``: ``(status, body)``, HTTP errors included (no redirects followed)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _file_route(running: RunningApp, path: str, *, quote: bool = False) -> str:
    """The URL of Gradio's file route for ``path`` (raw, or percent-encoded)."""
    return running.url + "gradio_api/file=" + (urllib.parse.quote(path) if quote else path)


def _raw_call(running: RunningApp, api: str, data: list[Any], timeout: float = CALL_TIMEOUT_S) -> tuple[str, Any]:
    """Call an event over Gradio's plain HTTP API (no client-side checks at all).

    Returns:
        ``("complete", outputs)`` or ``("error", message)``.
    """
    request = urllib.request.Request(running.url + f"gradio_api/call/{api}", data=json.dumps({"data": data}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        event_id = json.load(resp)["event_id"]
    with urllib.request.urlopen(running.url + f"gradio_api/call/{api}/{event_id}", timeout=timeout) as resp:
        stream = resp.read().decode("utf-8")
    event, payload = "", None
    for line in stream.splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event in ("complete", "error"):
            payload = json.loads(line.split(":", 1)[1])
    return event, payload


def _upload(running: RunningApp, files: list[tuple[str, bytes]]) -> tuple[int, Any]:
    """POST files to Gradio's upload route under the given (hostile) names: ``(status, body)``."""
    import httpx

    response = httpx.post(running.url + "gradio_api/upload",
                          files=[("files", (name, data, "audio/wav")) for name, data in files], timeout=60)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


def _file_data(path: str, name: str | None = None) -> dict[str, Any]:
    return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def _wav_bytes(seconds: float, rate: int = 22050, freq: float = 220.0) -> bytes:
    """A mono 16-bit WAV sine as bytes."""
    buf = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_upload_size_and_count_limits(running: RunningApp, tmp_path: Path) -> None:
    client = running.client()
    tiny = []
    for i in range(LIMITS.max_tracks + 1):
        tiny.append(tmp_path / f"t{i}.wav")
        tiny[-1].write_bytes(_wav_bytes(0.2, freq=200.0 + 50 * i))
    too_many = f"{len(tiny)} stem files uploaded; the app mixes at most {LIMITS.max_tracks} tracks"
    with pytest.raises(AppError, match=too_many) as caught:
        _call(client, "/mix", stems=[handle_file(str(p)) for p in tiny], demo=None, model="rules", reference=None,
              targets="")
    assert "Traceback" not in str(caught.value)
    # over the app's limit, under Gradio's (1 MiB * 1.05 + 1 MB): the app's own message
    big = tmp_path / "big.wav"
    big.write_bytes(_wav_bytes(30.0))  # 1.3 MB of 16-bit mono
    with pytest.raises(AppError, match=r"big.wav is 1.3 MiB; the app accepts files up to 1 MiB"):
        _call(client, "/mix", stems=[handle_file(str(big))], demo=None, model="rules", reference=None, targets="")
    with pytest.raises(AppError, match=r"up to 1 MiB"):  # the reference mix too
        _call(client, "/mix", stems=[handle_file(str(tiny[0]))], demo=None, model="rules",
              reference=handle_file(str(big)), targets="")
    # over Gradio's limit: the client refuses to send it, and the server refuses it when sent anyway
    huge = _wav_bytes(60.0)  # 2.6 MB
    (tmp_path / "huge.wav").write_bytes(huge)
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        _call(client, "/mix", stems=[handle_file(str(tmp_path / "huge.wav"))], demo=None, model="rules",
              reference=None, targets="")
    before = {p for p in running.uploads.rglob("*") if p.is_file()}
    status, body = _upload(running, [("huge.wav", huge)])
    assert status == 413 and "maximum allowed size" in str(body)
    assert {p for p in running.uploads.rglob("*") if p.is_file()} == before  # nothing of it kept


def test_only_files_the_app_created_are_served(running: RunningApp, corpus: dict[str, CorpusEntry]) -> None:
    first, second = running.client(download_files=False), running.client(download_files=False)
    mine = _call(first, "/mix", stems=[], demo="neon-drive", model="rules", reference=None, targets="")
    theirs = _call(second, "/mix", stems=[], demo="quiet-harbour", model="rules", reference=None, targets="")
    status, body = _fetch(mine[0]["url"])  # what the app returned is served
    assert status == 200 and body[:4] == b"RIFF"
    assert sf.info(io.BytesIO(body)).samplerate == LIMITS.demo_rate
    for result in (mine, theirs):  # the answers name no server folder: files come from Gradio's cache
        assert str(running.work) not in json.dumps(result, default=str)
    sessions = sorted((running.work / "sessions").iterdir())
    assert len(sessions) >= 2
    their_file = next(p for folder in sessions for p in folder.glob("mix-*.wav"))
    served = mine[0]["path"]
    refused = {
        "/etc/passwd": "/etc/passwd",
        "the repository's pyproject.toml": str(REPO / "pyproject.toml"),
        "the app's source": str(REPO / "ui" / "app.py"),
        "a corpus file on the server": str(corpus["pcm24"].path),
        "the listening database": str(running.db),
        "the database, by '..' from the sessions folder": f"{running.work}/sessions/../{running.db.name}",
        "the work folder": str(running.work),
        "the sessions folder (a listing)": str(running.work / "sessions"),
        "a session's folder": str(sessions[0]),
        "a session's file by its server path": str(their_file),
        "'..' out of a served file's folder": f"{Path(served).parent}/../../../../../../etc/passwd",
        "'..' from the upload folder to the database": f"{running.uploads}/../work/{running.work.name}/{running.db.name}",
        "a made-up cache entry": f"{Path(served).parent.parent}/{'0' * 64}/mix-0001.wav",
        "a relative path": "pyproject.toml",
        "a relative '..' path": "../../../../../../etc/passwd",
    }
    for what, path in refused.items():
        for quote in (False, True):
            status, body = _fetch(_file_route(running, path, quote=quote))
            assert status in (403, 404), f"{what} ({path}, quoted={quote}) was served: {status}"
            assert b"root:" not in body and b"SQLite format" not in body
    # percent-encoded dots and slashes decode to the same paths: refused as well
    status, _ = _fetch(running.url + "gradio_api/file=" + f"{Path(served).parent}/%2e%2e/%2e%2e/%2e%2e/etc/passwd")
    assert status in (403, 404)
    # the deprecated route behaves the same
    assert _fetch(running.url + "gradio_api/file/etc/passwd")[0] in (403, 404)
    assert _fetch(running.url + "gradio_api/file/" + served)[0] == 200


def test_hostile_upload_names_stay_in_the_upload_folder(running: RunningApp, tmp_path: Path) -> None:
    marker = f"escape{os.getpid()}"
    names = [
        f"../../{marker}-dots.wav",
        f"../../../../../../../../tmp/{marker}-abs-dots.wav",
        f"/tmp/{marker}-absolute.wav",
        f"..\\..\\{marker}-backslash.wav",
        f"{marker}-control\x01\x07\t.wav",
        f"{marker}-newline\nname.wav",
        f"Ünïcødé ♫ 音声 {marker}.wav",
        "..",
        ".",
    ]
    uploads = running.uploads.resolve()
    kept: dict[str, str] = {}
    outcomes = {}
    for i, name in enumerate(names):  # one request each: a refused name refuses its whole request
        status, body = _upload(running, [(name, _wav_bytes(0.5, freq=200.0 + 40 * i))])
        outcomes[name] = status
        assert status in (200, 400), f"{name!r}: {status} {body}"
        if status == 200:
            stored = Path(body[0]).resolve()
            assert stored.is_relative_to(uploads) and stored.parent.parent == uploads, f"{name!r} stored at {stored}"
            assert stored.is_file() and not any(c in stored.name for c in "\x00\x01\x07\n/\\")
            kept[name] = body[0]
    print(f"upload name -> HTTP status: {outcomes}")
    assert len(kept) >= 7  # only names that are no file name at all ('..', '.') may be refused
    # an empty file name: Gradio's parser takes the part for a form field and answers 500; nothing is written
    before = {p for p in running.uploads.rglob("*") if p.is_file()}
    assert _upload(running, [("", _wav_bytes(0.1))])[0] in (400, 500)
    assert {p for p in running.uploads.rglob("*") if p.is_file()} == before
    roots = {Path("/tmp"), tmp_path.parent, running.uploads.parent, running.work, REPO, Path.cwd()}
    escaped = [p for root in roots for p in root.glob(f"*{marker}*")]
    assert not escaped, f"upload names created files outside the upload folder: {escaped}"
    # the uploads mixed as stems: the session's files get safe names of their own
    wavs = [_file_data(p, n) for n, p in kept.items() if p.endswith(".wav")]  # '.' is kept without a suffix
    event, payload = _raw_call(running, "mix", [wavs[:LIMITS.max_tracks], None,
                                                {"headers": ["track", "class"], "data": []}, "rules", None, ""])
    assert event == "complete", payload
    for folder in (running.work / "sessions").iterdir():
        for f in folder.iterdir():
            assert re.fullmatch(r"[A-Za-z0-9_-]+-\d{4}\.(wav|json|png)", f.name), f"unsafe session file name {f.name!r}"
    # solo tracks named after the hostile files: names in the session folder stay safe
    client = running.client()
    hostile = tmp_path / f"{marker} solo\x01 ♫ (..).wav"
    hostile.write_bytes(_wav_bytes(0.5))
    result = _call(client, "/mix", stems=[handle_file(str(hostile))], demo=None, model="rules", reference=None,
                   targets="")
    track = result[6]["data"][0][0]
    solo = _call(client, "/solo", track=track)
    assert sf.info(solo).frames == int(0.5 * 22050)
    assert not [p for root in roots for p in root.glob(f"*{marker}*")]


def test_only_uploaded_files_are_read(running: RunningApp) -> None:
    """A client that names a server file instead of uploading one gets an error, not its contents."""
    tracks = {"headers": ["track", "class"], "data": []}
    for path in ("/etc/passwd", str(running.db), str(REPO / "pyproject.toml"), f"{running.uploads}/../../etc/passwd"):
        event, payload = _raw_call(running, "mix", [[_file_data(path)], None, tracks, "rules", None, ""])
        assert event == "error", f"{path} was read: {payload}"
        assert "root:" not in json.dumps(payload) and "SQLite" not in json.dumps(payload)
        event, payload = _raw_call(running, "load_settings", [_file_data(path)])
        assert event == "error", f"{path} was read as settings: {payload}"


def _values(value: float) -> list[float]:
    """Every slider input of ``/listen_submit`` set to ``value``."""
    return [value] * load.UI_SLIDERS


def test_participants_see_only_their_own_session(running: RunningApp, tmp_path: Path) -> None:
    from neuromix.ui.listening import ListeningStore, Stimulus, Trial

    store = ListeningStore(running.db)  # the app's own database
    t = np.arange(8000) / 8000.0
    stimuli = []
    for i, system in enumerate(("sum", "rules")):
        sf.write(tmp_path / f"{system}.wav", 0.1 * np.sin(2 * np.pi * (300 + 100 * i) * t), 8000)
        stimuli.append(Stimulus(system, tmp_path / f"{system}.wav"))
    test_id = store.create_test("privacy", ["clarity"], [Trial("song", tuple(stimuli), None)], hidden_reference=False)
    ana, bo = running.client(download_files=False), running.client(download_files=False)
    first = ana.predict(test_id, "ana-the-first", api_name="/listen_start")
    done = ana.predict(first[0], first[2], *_values(37.0), api_name="/listen_submit")
    assert "Thank you" in done[1]
    answers = [bo.predict(test_id, "bo", api_name="/listen_start")]
    answers.append(bo.predict(answers[0][0], api_name="/listen_resume"))
    answers.append(bo.predict(answers[0][0], answers[0][2], *_values(81.0), api_name="/listen_submit"))
    answers.append(bo.predict(api_name="/listen_tests"))
    text = json.dumps(answers, default=str)
    assert first[0] not in text and "ana-the-first" not in text  # nor her code, nor her name
    sliders = [u for answer in answers[:3] for u in answer[9:34] if isinstance(u, dict) and "value" in u]
    assert sliders and {u["value"] for u in sliders} == {50}  # nor her ratings: every slider starts at 50
    # a stimulus URL says nothing of its system, and its folder leads nowhere else
    players = [p for p in answers[0][4:9] if isinstance(p, dict) and p.get("value")]
    assert players
    for player in players:
        url = player["value"]["url"]
        assert "sum" not in Path(url).name and "rules" not in Path(url).name
        assert _fetch(url)[0] == 200
        stimulus = Path(player["value"]["path"])
        for guess in (store.path, stimulus.parent.parent.parent / store.path.name, stimulus.parent):
            assert _fetch(_file_route(running, str(guess)))[0] in (403, 404), f"{guess} was served"
    # someone else's code is only a code: guessing one fails
    with pytest.raises(AppError, match="unknown session code"):
        bo.predict(first[0][:-1] + ("A" if first[0][-1] != "A" else "B"), api_name="/listen_resume")
    # results and export need the organiser token (a few wrong tries: under the lock-out threshold)
    for token in ("", "wrong"):
        for api in ("/listen_results", "/listen_export"):
            with pytest.raises(AppError, match="(?i)token"):
                bo.predict(token, test_id, api_name=api)
    table = ana.predict(TOKEN, test_id, api_name="/listen_results")[0]
    assert {row[2] for row in table["data"]} == {2}  # two participants rated every stimulus


# --------------------------------------------------------------------------- kill -9 during submissions


def _short_listening_test(db: Path, folder: Path) -> str:
    """A listening test of one 2 s excerpt (22.05 kHz) mixed by "sum" and "rules", in ``db``."""
    from neuromix.ui.listening import ListeningStore, make_trials

    trials = make_trials(["neon-drive"], ["sum", "rules"], seconds=2.0, sample_rate=22050, out_dir=folder,
                         song_seconds=2.5)
    return ListeningStore(db).create_test("kill -9", ["clarity", "excitement"], trials, hidden_reference=True)


def _export_rows(client: Client, test_id: str) -> list[dict[str, str]]:
    path = client.predict(TOKEN, test_id, api_name="/listen_export")
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_kill_9_during_submissions_loses_no_acknowledged_submission(tmp_path: Path) -> None:
    db = tmp_path / "listening.sqlite"
    test_id = _short_listening_test(db, tmp_path / "stimuli")
    server = load.start_server(tmp_path / "first", db=db, token=TOKEN)
    acked: list[load.Submission] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def participant(k: int) -> None:
        client = Client(server.url, verbose=False)
        i = 0
        while not stop.is_set():
            try:
                sub = load.submit_rating(client, test_id, f"p{k}-{i}", float((7 * k + i) % 101))
            except Exception as exc:  # noqa: BLE001 - expected once the server is gone
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}")
                return
            with lock:
                acked.append(sub)
            i += 1

    threads = [threading.Thread(target=participant, args=(k,), daemon=True) for k in range(4)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(acked) < 24 and time.monotonic() < deadline and any(t.is_alive() for t in threads):
            time.sleep(0.05)
        server.kill()  # mid-way: the participants are still submitting
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a client hung after the server died"
    finally:
        server.kill()
    assert len(acked) >= 24, f"only {len(acked)} submissions before the kill: {failures[:3]}"
    assert failures, "no submission was cut off by the kill"

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert load.missing_submissions(db, acked) == []

    restarted = load.start_server(tmp_path / "second", db=db, token=TOKEN)
    try:
        client = Client(restarted.url, verbose=False)
        rows = _export_rows(client, test_id)
        exported: dict[str, set[float]] = {}
        for row in rows:
            exported.setdefault(row["session_id"], set()).add(float(row["rating"]))
        for sub in acked:
            assert exported.get(sub.session_id) == {sub.value}, f"{sub} not in the organiser's export"
        table = client.predict(TOKEN, test_id, api_name="/listen_results")[0]
        completed = len(exported)
        assert {row[2] for row in table["data"]} == {completed}  # n per system and criterion
        after = load.submit_rating(client, test_id, "after the restart", 55.0)  # and it takes new ones
        assert load.missing_submissions(db, [after]) == []
    finally:
        restarted.stop()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    print(f"kill -9 after {len(acked)} acknowledged submissions ({len(failures)} cut off): all stored, "
          f"{len(rows)} rating rows exported after the restart")


# --------------------------------------------------------------------------- load (scaled down)


@pytest.mark.slow
def test_load_scaled_down(tmp_path: Path) -> None:
    """``benchmarks/load.py`` with 5 clients, 40 submissions and 15 sequential mixes."""
    start = time.perf_counter()
    result = load.run_benchmark(tmp_path, clients=5, rounds=1, submissions=40, submit_threads=4, mixes=15,
                                seconds=2.0, tracks=3)
    print("\n" + result.text() + f"\n(total {time.perf_counter() - start:.0f} s)")
    report = result.load
    assert report.recorder.errors == []
    assert len(report.submissions) == 40 and report.missing == []
    calls = {endpoint: len(v) for endpoint, v in report.recorder.latencies.items()}
    assert calls == {"/synth_preset": 5, "/mix rules": 5, "/mix console": 5, "/synth_render": 5,
                     "/listen_start": 40, "/listen_submit": 40}
    assert len(result.rss_mb) == 15 and result.memory.bounded, result.text()
