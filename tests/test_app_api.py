"""The browser workbench through its API (``gradio_client``): every event, bad uploads, sessions.

One app is launched in-process on 127.0.0.1 (a free port) for the module; stems are short
generated songs (5 s at 22.05 kHz) written into ``tmp_path``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from neuromix.mixing import inference
from neuromix.mixing.generator import generate_song, write_song
from neuromix.ui.app import AppLimits, build_app, launch_app

RATE = 22050
SECONDS = 5.0
LIMITS = AppLimits(max_tracks=6, max_seconds=20.0, max_upload_mb=1.0, demo_seconds=4.0)

needs_resolve = pytest.mark.skipif(not hasattr(inference, "resolve_mix"), reason="resolve_mix not in this build")


def _goals_ready() -> bool:
    import inspect

    if importlib.util.find_spec("neuromix.mixing.goals") is None:
        return False
    return "targets" in inspect.signature(inference.mix_multitrack).parameters


needs_goals = pytest.mark.skipif(not _goals_ready(), reason="targets not in this build")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory):
    app = build_app(limits=LIMITS, work_dir=tmp_path_factory.mktemp("work"), organiser_token="secret")
    url = launch_app(app, host="127.0.0.1", port=_free_port(), prevent_thread_lock=True, quiet=True)
    yield url
    app.close()
    app.neuromix_context.cleanup()


@pytest.fixture(scope="module")
def stems(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    song = generate_song(3, seconds=SECONDS, sample_rate=RATE, num_tracks=4)
    files = write_song(song, tmp_path_factory.mktemp("song") / "song")
    return [f for f in files if f.suffix == ".wav"]


@pytest.fixture()
def client(app_url: str) -> Client:
    return Client(app_url, verbose=False)


def _mix(client: Client, stems: list[Path], **kwargs):
    args = {"stems": [handle_file(str(p)) for p in stems], "demo": "neon-drive", "model": "rules",
            "reference": None, "targets": ""}
    args.update(kwargs)
    return client.predict(**args, api_name="/mix")


def _settings(result) -> dict:
    return json.loads(Path(result[1]).read_text())


def _value(table: dict, track: str, parameter: str) -> float:
    return next(r[2] for r in table["data"] if r[0] == track and r[1] == parameter)


def test_import_has_no_side_effects() -> None:
    code = "import sys, neuromix.ui.app, neuromix.ui.mix_tab, neuromix.ui.synth_tab; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_mix_uploaded_stems(client: Client, stems: list[Path]) -> None:
    result = _mix(client, stems, model="console")
    mix_path, _settings_path, table, _report, waveform, spectrum, tracks, *_rest, status = result
    info = sf.info(mix_path)
    assert (info.samplerate, info.channels, info.subtype) == (RATE, 2, "PCM_24")
    assert abs(info.duration - SECONDS) < 0.01
    audio, _ = sf.read(mix_path)
    assert 0.05 < np.abs(audio).max() <= 1.0  # written as is, not peak-normalised
    doc = _settings(result)
    names = [p.stem for p in stems]
    assert [t["name"] for t in doc["tracks"]] == names
    assert table["headers"] == ["track", "parameter", "value", "unit", "locked"]
    assert {r[0] for r in table["data"]} == {*names, "master"}
    assert [r[0] for r in tracks["data"]] == names
    assert Path(waveform).suffix == Path(spectrum).suffix == ".png"
    assert "4 uploaded stems" in status and "LUFS" in status


def test_mix_demo_and_blackbox(client: Client) -> None:
    result = client.predict(stems=[], demo="quiet-harbour", model="blackbox", reference=None, targets="",
                            api_name="/mix")
    assert sf.info(result[0]).duration == pytest.approx(LIMITS.demo_seconds, abs=0.01)
    assert result[1] is None and result[2]["data"] == []
    with pytest.raises(AppError, match="no console settings"):
        client.predict(settings={"headers": ["track", "parameter", "value", "unit", "locked"], "data": []},
                       api_name="/render")


def test_render_edited_settings_and_solo(client: Client, stems: list[Path]) -> None:
    table = _mix(client, stems)[2]
    row = next(r for r in table["data"] if r[0] == "bass" and r[1] == "gain_db")
    row[2] = round(row[2] - 6.0, 4)
    result = client.predict(settings=table, api_name="/render")
    bass = next(t for t in _settings(result)["tracks"] if t["name"] == "bass")
    assert bass["gain_db"] == row[2]
    assert "edited settings" in result[-1]
    solo = client.predict(track="bass", api_name="/solo")
    assert sf.info(solo).channels == 2 and sf.info(solo).samplerate == RATE


def test_load_settings_json(client: Client, stems: list[Path], tmp_path: Path) -> None:
    doc = _settings(_mix(client, stems))
    doc["master"]["width"] = 1.5
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(doc))
    result = client.predict(settings_json=handle_file(str(path)), api_name="/load_settings")
    assert _settings(result)["master"]["width"] == 1.5
    assert _value(result[2], "master", "width") == 1.5


@needs_resolve
def test_resolve_keeps_locked_values(client: Client, stems: list[Path]) -> None:
    table = _mix(client, stems)[2]
    locked = {("kick", "gain_db"), ("master", "width")}
    for r in table["data"]:
        if (r[0], r[1]) in locked:
            r[4] = True
        if (r[0], r[1]) == ("kick", "gain_db"):
            r[2] = round(r[2] + 3.0, 4)
    before = {k: _value(table, *k) for k in locked}
    result = client.predict(settings=table, reference=None, targets="", api_name="/resolve")
    doc = _settings(result)
    kick = next(t for t in doc["tracks"] if t["name"] == "kick")
    assert kick["gain_db"] == before[("kick", "gain_db")]
    assert doc["master"]["width"] == before[("master", "width")]
    assert all(r[4] == ((r[0], r[1]) in locked) for r in result[2]["data"])


def test_reference_mix(client: Client, stems: list[Path], tmp_path: Path) -> None:
    reference = tmp_path / "reference.wav"
    audio, rate = sf.read(_mix(client, stems, model="rules")[0])
    sf.write(reference, audio[: rate * 3], rate, subtype="FLOAT")
    result = _mix(client, stems, model="console", reference=handle_file(str(reference)))
    assert sf.info(result[0]).duration == pytest.approx(SECONDS, abs=0.01)
    if _goals_ready():
        assert "before" in result[3] and "after" in result[3]


@needs_goals
def test_targets_mix(client: Client, stems: list[Path]) -> None:
    text = client.predict(where="bass", word="louder", targets="master: wider", amount="much", api_name="/add_target")
    assert text == "master: wider; bass: much louder"
    result = _mix(client, stems, model="console", targets=text)
    assert "before" in result[3] and "after" in result[3]
    with pytest.raises(AppError, match="(?i)unknown"):
        _mix(client, stems, model="console", targets="bass: purple")


def test_add_target_text(client: Client) -> None:
    text = client.predict(where="master", word="wider", targets="", amount="", api_name="/add_target")
    text = client.predict(where="master", word="brighter", targets=text, amount="slightly", api_name="/add_target")
    assert text == "master: wider, slightly brighter"


def _write(path: Path, seconds: float, rate: int, channels: int = 1, subtype: str = "PCM_16") -> Path:
    sf.write(path, np.zeros((int(seconds * rate), channels), dtype=np.float32) + 0.01, rate, subtype=subtype)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unreadable", "not-audio.wav"),
        ("empty", "empty"),
        ("too_long", "(?i)long"),
        ("too_many", "at most 6 tracks"),
        ("too_large", "up to 1 MiB"),
    ],
)
def test_bad_uploads(client: Client, stems: list[Path], tmp_path: Path, case: str, message: str) -> None:
    files = list(stems[:2])
    if case == "unreadable":
        bad = tmp_path / "not-audio.wav"
        bad.write_text("this is not audio")
        files.append(bad)
    elif case == "empty":
        bad = tmp_path / "silent.wav"
        bad.write_bytes(b"")
        files.append(bad)
    elif case == "too_long":
        files.append(_write(tmp_path / "long.wav", 25.0, 8000))
    elif case == "too_many":
        files = [_write(tmp_path / f"t{i}.wav", 0.5, 8000) for i in range(7)]
    else:
        files.append(_write(tmp_path / "big.wav", 6.0, 44100, channels=2, subtype="PCM_24"))
    with pytest.raises(AppError, match=message) as caught:
        _mix(client, files)
    assert "Traceback" not in str(caught.value)


def test_resampled_upload_is_fine(client: Client, stems: list[Path], tmp_path: Path) -> None:
    other = _write(tmp_path / "pad.wav", 2.0, 16000)
    result = _mix(client, [*stems, other])
    assert sf.info(result[0]).samplerate == RATE
    assert "resampled pad.wav" in result[-1]


def test_bad_settings_and_classes(client: Client, stems: list[Path]) -> None:
    result = _mix(client, stems)
    table = result[2]
    table["data"][0][2] = "loud"
    with pytest.raises(AppError, match="must be a number"):
        client.predict(settings=table, api_name="/render")
    tracks = result[6]
    tracks["data"][0][1] = "banjo"
    with pytest.raises(AppError, match="unknown instrument class 'banjo'"):
        _mix(client, stems, tracks=tracks)


def test_sessions_do_not_share_data(app_url: str, stems: list[Path]) -> None:
    first, second = Client(app_url, verbose=False), Client(app_url, verbose=False)
    _mix(first, stems)
    with pytest.raises(AppError, match="mix a song first"):
        second.predict(track="bass", api_name="/solo")


def test_datasheet(client: Client) -> None:
    response, dynamics, summary, document = client.predict(mixer="rules", slot=7, context="silent",
                                                           api_name="/datasheet")
    assert Path(response).suffix == Path(dynamics).suffix == ".png"
    assert "threshold" in summary and "track 7" in summary
    doc = json.loads(Path(document).read_text())
    assert doc["format"] == "neuromix-datasheet" and doc["paths"][0]["index"] == 7
    with pytest.raises(AppError, match="99 is not in the list of choices"):
        client.predict(mixer="rules", slot=99, context="silent", api_name="/datasheet")


def _synth_args(view: tuple) -> dict:
    patch, _description, signal, level, feedback, bends, controls, seed, note, seconds = view
    return {"patch": patch, "signal": signal, "level_db": level, "feedback_gain": feedback, "bends": bends,
            "controls": controls, "seed": seed, "note": note, "seconds": seconds}


def test_synth_render_save_load(client: Client) -> None:
    view = client.predict(preset="wobble-saw-lead", api_name="/synth_preset")
    args = _synth_args(view)
    args.update(seed=3, note=57, seconds=0.6, signal="square")
    args["bends"]["data"][0][2] = 1.5
    sound, spectrogram, info, patch_text = client.predict(**args, api_name="/synth_render")
    patch = json.loads(patch_text)
    assert patch["seed"] == 3 and patch["note"] == 57 and patch["excitation"]["slots"][0]["signal"] == "square"
    assert patch["techniques"][0]["amount"]["value"] == 1.5 and "lfo" in patch["techniques"][0]["amount"]
    assert Path(spectrogram).suffix == ".png" and "pitch" in info
    first, rate = sf.read(sound)
    assert rate == 44100 and first.shape[1] == 2
    saved = client.predict(**args, api_name="/patch_save")
    assert json.loads(Path(saved).read_text()) == patch
    loaded = client.predict(patch_json=handle_file(saved), api_name="/patch_load")
    again = client.predict(**_synth_args(loaded), api_name="/synth_render")
    np.testing.assert_array_equal(sf.read(again[0])[0], first)  # the saved patch reproduces the sound


def test_synth_errors(client: Client, tmp_path: Path) -> None:
    view = client.predict(preset="glass-pluck", api_name="/synth_preset")
    args = _synth_args(view)
    args["patch"] = args["patch"].replace('"name": "blackbox"', '"path": "/etc/passwd"')
    with pytest.raises(AppError, match="shipped networks only"):
        client.predict(**args, api_name="/synth_render")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "neuromix-patch", "network": {"name": "blackbox"}}')
    with pytest.raises(AppError, match="excitation"):
        client.predict(patch_json=handle_file(str(bad)), api_name="/patch_load")


def test_score_render(client: Client, tmp_path: Path) -> None:
    view = client.predict(preset="glass-pluck", api_name="/synth_preset")
    score = tmp_path / "piece.toml"
    score.write_text(
        'format = "neuromix-score"\nversion = 1\nsample_rate = 22050\ntail_s = 0.2\n'
        '[[events]]\ntime = 0.0\nduration = 0.3\npatch = "current"\nnote = 60\n'
        '[[events]]\ntime = 0.3\nduration = 0.3\npatch = "wobble-saw-lead"\npitch = "E4"\n'
    )
    sound, _spectrogram, info = client.predict(score=handle_file(str(score)), **_synth_args(view),
                                              api_name="/score_render")
    assert sf.info(sound).samplerate == 22050 and sf.info(sound).duration > 0.6
    assert "piece" in info
    score.write_text(score.read_text().replace('"wobble-saw-lead"', '"../secret.json"'))
    with pytest.raises(AppError, match="preset names"):
        client.predict(score=handle_file(str(score)), **_synth_args(view), api_name="/score_render")


def test_session_folders_are_removed(tmp_path: Path) -> None:
    from neuromix.ui.state import AppContext, _delete_session

    ctx = AppContext(LIMITS, tmp_path)
    session = ctx.session(None)
    assert ctx.session(session) is session and session.folder.is_dir()
    first, second = session.path("mix", ".wav"), session.path("mix", ".wav")
    assert first != second and first.parent == session.folder
    _delete_session(session)
    assert not session.folder.exists()
    root = ctx.root
    ctx.cleanup()
    assert not root.exists()
