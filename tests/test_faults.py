"""Faults (issue #9): ``kill -9`` in the middle of writes and of training loses nothing.

* :func:`~neuromix.core.io.write_audio` in a loop, killed at several moments: the
  destination is always the previous or the new complete file, never a broken one.
  What a kill leaves besides it is at most a hidden ``.NAME.*.tmp`` file (a
  ``SIGKILL`` cannot be cleaned up after); loaders ignore it (hidden), and nothing
  that looks like an output is left.
* ``neuromix mix --force`` over an existing mix, killed at several moments: the old mix
  or the new complete one.
* ``neuromix train`` killed after its first checkpoints, then ``--resume``: it restarts
  from the last complete state and ends with exactly the weights of an uninterrupted
  run; the state and model files are never half-written, the log has every step once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_train import TINY as TRAIN_TINY
import soundfile as sf
import torch
from safetensors import safe_open

from neuromix.core.io import load_multitrack

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
TEMP_NAME = re.compile(r"^\.(?P<dest>.+)\.[^.]+\.tmp$")
"""How the project's atomic writers name their temporary files: ``.<destination>.<random>.tmp``."""

_WRITER = """
import sys
import numpy as np
from neuromix.core.io import write_audio

dest, frames = sys.argv[1], int(sys.argv[2])
base = (0.5 * np.sin(2 * np.pi * 441.0 * np.arange(frames) / 44100)).astype(np.float32)
i = 0
while True:
    i += 1
    level = (i % 9 + 1) / 10  # every write has its own level: a mixed-up file would show it
    write_audio(dest, np.stack([base * level, -base * level]), 44100, overwrite=True)
    print(i, flush=True)
"""


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL a child we started (and reap it)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def _assert_only_hidden_temps(folder: Path, dests: set[str]) -> list[str]:
    """Everything besides the destinations must be a hidden temp file of one of them; return those."""
    extra = _leftovers(folder, dests)
    for name in extra:
        match = TEMP_NAME.match(name)
        assert match is not None and match.group("dest") in dests, f"unexpected file {name!r} in {folder}"
    return extra


# --------------------------------------------------------------------------- write_audio


def test_write_audio_killed_mid_write_leaves_old_or_new(tmp_path: Path) -> None:
    frames = 44100 * 15  # 15 s of stereo 24-bit: ~4 MB, tens of milliseconds per write
    base = 0.5 * np.sin(2 * np.pi * 441.0 * np.arange(frames) / 44100)
    observed = []
    for attempt, delay in enumerate([0.0, 0.013, 0.037, 0.071, 0.12, 0.25]):
        folder = tmp_path / f"run{attempt}"
        folder.mkdir()
        dest = folder / "mix.wav"
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(dest), str(frames)], env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # the first write is complete
            assert first.strip() == "1", proc.stderr.read() if proc.stderr else ""
            time.sleep(delay)
        finally:
            _kill(proc)
        data, rate = sf.read(str(dest), always_2d=True)  # never a broken file
        assert rate == 44100 and data.shape == (frames, 2)
        level = float(np.dot(data[:, 0], base) / np.dot(base, base))
        assert round(level * 10) in range(1, 10), level
        np.testing.assert_allclose(data[:, 0], level * base, atol=1e-6)  # one write's data, whole
        np.testing.assert_allclose(data[:, 1], -data[:, 0], atol=1e-6)
        temps = _assert_only_hidden_temps(folder, {"mix.wav"})
        observed.append((delay, round(level, 1), temps))
        # a stem folder holding the leftovers still loads as just the finished file
        assert load_multitrack(folder, exclude_stems=()).names == ["mix"]
    print("kill delay after a finished write, level found, temp files left:", observed)


# --------------------------------------------------------------------------- neuromix mix


def _song(folder: Path, seconds: float, rate: int = 22050) -> None:
    folder.mkdir()
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    stems = {
        "kick": 0.8 * np.sin(2 * np.pi * 55 * t) * np.exp(-((t * 2) % 1) * 12),
        "bass": 0.3 * np.sin(2 * np.pi * 110 * t),
        "keys": 0.2 * np.sin(2 * np.pi * 330 * t) + 0.1 * np.sin(2 * np.pi * 495 * t),
        "vox": 0.2 * np.sin(2 * np.pi * 440 * t * (1 + 0.01 * np.sin(2 * np.pi * 5 * t)))
        + 0.01 * rng.standard_normal(t.size),
    }
    for name, audio in stems.items():
        sf.write(str(folder / f"{name}.wav"), audio.astype(np.float32), rate)


def _wait_for_temp(folder: Path, proc: subprocess.Popen, timeout: float) -> bool:
    """Poll until a temporary output file appears in ``folder`` (True) or the process ends / time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(TEMP_NAME.match(p.name) for p in folder.iterdir()):
            return True
        time.sleep(0.002)
    return False


@pytest.mark.slow
def test_mix_killed_at_any_moment_leaves_old_or_new_mix(tmp_path: Path) -> None:
    song = tmp_path / "song"
    _song(song, seconds=40.0)
    frames = sf.info(str(song / "kick.wav")).frames
    old = np.full((1000, 2), 0.25)
    outcomes = []
    # when: "write" kills the moment the temporary output appears (mid-write), a number after that many s
    for attempt, when in enumerate(["write", "write", 2.0, 60.0]):
        out_dir = tmp_path / f"out{attempt}"
        out_dir.mkdir()
        out = out_dir / "mix.wav"
        sf.write(str(out), old, 22050, subtype="PCM_24")
        proc = subprocess.Popen([sys.executable, "-m", "neuromix", "mix", str(song), "-o", str(out), "--force",
                                 "--model", "rules", "--no-progress"], env=ENV, cwd=out_dir,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        finished = False
        try:
            if when == "write":
                assert _wait_for_temp(out_dir, proc, 120.0), "the mix never started writing"
            else:
                try:
                    proc.wait(timeout=float(when))
                    finished = proc.returncode == 0
                except subprocess.TimeoutExpired:
                    pass
        finally:
            _kill(proc)
        data, rate = sf.read(str(out), always_2d=True)  # never a broken file
        if data.shape == old.shape and np.allclose(data, old, atol=1e-6):
            state = "old"
        else:  # the new mix, complete: full length, finite, under the ceiling
            assert rate == 22050 and data.shape == (frames, 2), data.shape
            assert np.isfinite(data).all() and np.abs(data).max() <= 10 ** (-1 / 20) + 1e-4
            state = "new"
        temps = _assert_only_hidden_temps(out_dir, {"mix.wav"})
        outcomes.append((when, state, temps))
        if finished:
            assert state == "new" and not temps
    print("kill at -> destination, temp files left:", outcomes)
    assert outcomes[-1][1] == "new"


# --------------------------------------------------------------------------- training

# the training tests' tiny run, longer and checkpointed every step
TINY = {**TRAIN_TINY, "max_tracks": 3, "steps": 10, "audio_loss_from_step": 5, "val_every": 100, "val_items": 0,
        "checkpoint_every": 1}


def _state_step(path: Path) -> int | None:
    """The step a training state file holds (None if it does not exist yet)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return int((handle.metadata() or {})["step"])
    except FileNotFoundError:
        return None


def _weights(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys() if k.startswith("model.")}


def _train(config: Path, run: Path, *extra: str) -> subprocess.Popen:
    argv = ["train", "--config", str(config), "-o", str(run), "--no-progress", *extra]
    return subprocess.Popen([sys.executable, "-m", "neuromix", *argv], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_training_killed_resumes_from_last_complete_checkpoint(tmp_path: Path) -> None:
    from neuromix.mixing.models import load_model

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    run = tmp_path / "run"
    state = run / "train_state.safetensors"
    proc = _train(config, run)
    try:
        deadline = time.monotonic() + 240
        while (_state_step(state) or 0) < 3:  # a few checkpoints written
            assert proc.poll() is None, f"training ended early: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.02)
        time.sleep(0.15)  # somewhere inside the next step or its checkpoint write
    finally:
        _kill(proc)
    killed_at = _state_step(state)
    assert killed_at is not None and 3 <= killed_at < TINY["steps"]
    # both files are complete and loadable; the model file is written just after the state
    model, info = load_model(run / "model.safetensors")
    assert int(info.extra["step"]) in (killed_at - 1, killed_at)
    temps = _assert_only_hidden_temps(run, {"train_state.safetensors", "model.safetensors", "log.jsonl", "config.json"})

    resumed = _train(config, run, "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert _state_step(state) == TINY["steps"]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, TINY["steps"] + 1)), "every step logged exactly once"

    straight = _train(config, tmp_path / "straight")
    _, err = straight.communicate(timeout=300)
    assert straight.returncode == 0, err[-3000:]
    a, b = _weights(state), _weights(tmp_path / "straight" / "train_state.safetensors")
    assert a.keys() == b.keys()
    for key in a:  # resumed from the last complete state: the same run as without the kill
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)
    print(f"killed after the step-{killed_at} checkpoint; temp files left by the kill: {temps}")
