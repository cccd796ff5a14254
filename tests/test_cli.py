"""The command line: help, version, generate, rules-mix and demo, through a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

import neuromix
from neuromix.mixing.classes import INSTRUMENT_CLASSES


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neuromix", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_help_and_version():
    out = run("--help")
    assert out.returncode == 0
    for command in ("generate", "rules-mix", "demo", "train"):
        assert command in out.stdout
    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"neuromix {neuromix.__version__}"


def test_generate_writes_stems_and_metadata(tmp_path):
    out = run("generate", "--seed", "5", "--seconds", "3", "--sample-rate", "22050", "-o", str(tmp_path / "song"))
    assert out.returncode == 0, out.stderr
    meta = json.loads((tmp_path / "song" / "metadata.json").read_text())
    wavs = sorted((tmp_path / "song").glob("*.wav"))
    assert len(wavs) >= 4
    info = sf.info(str(wavs[0]))
    assert info.samplerate == 22050 and abs(info.duration - 3.0) < 1e-3
    assert all(stem["class"] in INSTRUMENT_CLASSES for stem in meta["stems"])
    again = run("generate", "--seed", "5", "--seconds", "3", "-o", str(tmp_path / "song"))
    assert again.returncode == 3 and "--force" in again.stderr


def test_rules_mix_of_a_generated_song(tmp_path):
    assert run("generate", "--seed", "2", "--seconds", "3", "--sample-rate", "22050", "-o", str(tmp_path / "s")).returncode == 0
    mix_path, params_path = tmp_path / "mix.wav", tmp_path / "params.json"
    out = run("rules-mix", str(tmp_path / "s"), "-o", str(mix_path), "--params", str(params_path))
    assert out.returncode == 0, out.stderr
    mix, sr = sf.read(str(mix_path), always_2d=True)
    assert sr == 22050 and mix.shape[1] == 2 and np.isfinite(mix).all()
    true_peak = np.abs(scipy.signal.resample_poly(mix, 4, 1, axis=0)).max()
    assert 20 * np.log10(true_peak) <= -1.0 + 0.05
    params = json.loads(params_path.read_text())
    assert {t["name"] for t in params["tracks"]} == {p.stem for p in (tmp_path / "s").glob("*.wav")}
    # the classes recorded are the generator's (file names carry them)
    meta = json.loads((tmp_path / "s" / "metadata.json").read_text())
    assert params["classes"] == {stem["name"]: stem["class"] for stem in meta["stems"]}
    assert run("rules-mix", str(tmp_path / "s"), "-o", str(mix_path)).returncode == 3


def test_rules_mix_bad_input_is_a_clear_error(tmp_path):
    (tmp_path / "stems").mkdir()
    (tmp_path / "stems" / "vox.wav").write_bytes(b"this is not audio")
    out = run("rules-mix", str(tmp_path / "stems"), "-o", str(tmp_path / "m.wav"))
    assert out.returncode == 2
    assert "vox.wav" in out.stderr and "Traceback" not in out.stderr
    out = run("rules-mix", str(tmp_path / "stems"), "-o", str(tmp_path / "m.wav"), "--classes", "vox.wav=tuba")
    assert out.returncode == 2 and "--classes" in out.stderr


@pytest.mark.slow
def test_demo_job(tmp_path):
    out = run("demo", "--seconds", "4", "--sample-rate", "22050", "-o", str(tmp_path / "demo"))
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert abs(summary["loudness_lufs"] - (-14.0)) < 1.0
    assert (tmp_path / "demo" / "mix.wav").exists() and (tmp_path / "demo" / "settings.json").exists()
