"""Datasheets: recovery of known console settings, agreement of a console network with its own
predictions, the black box's response, the analysis fits, and the ``neuromix probe`` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from neuromix.core import checkpoint
from neuromix.core.dsp.console import Console, ConsoleConfig
from neuromix.core.dsp.dynamics import gain_computer
from neuromix.core.dsp.modules import MASTER_EQ, TRACK_EQ, ParametricEQ
from neuromix.core.errors import ConfigError
from neuromix.mixing.models import BlackBoxConfig, BlackBoxNet, ConsoleNet, ConsoleNetConfig
from neuromix.mixing.probe import (
    BlackBoxTarget,
    ConsoleNetTarget,
    ConsoleTarget,
    ProbeConfig,
    fit_compressor,
    fit_eq,
    fit_timing,
    load_context,
    probe,
    sine_amplitude,
    target_from_spec,
    write_datasheet,
)
from neuromix.ui.cli import EXIT_EXISTS, EXIT_OK, main

SR = 16000
REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "multitracks"
# short signals: 1.5-2 s sweeps, 0.15-0.2 s level steps
CONFIG = ProbeConfig(sweep_seconds=2.0, sweep_level_db=-40.0, levels_db=(), steps_db=(-50.0, -4.0, 2.0),
                     step_seconds=0.2, burst_on_seconds=0.4, burst_off_seconds=0.6, burst_lead_seconds=0.3,
                     tail_seconds=0.1, context_offset_seconds=0.0, fit_eq=False)
SMALL_CONSOLE = {"sample_rate": SR, "embed_dim": 32, "encoder_channels": 16, "heads": 2, "layers": 1,
                 "window_seconds": 0.5}
SMALL_BLACKBOX = {"sample_rate": SR, "embed_dim": 32, "encoder_channels": 16, "heads": 2, "layers": 1,
                  "window_seconds": 0.5, "n_fft": 512, "hop": 128, "n_bands": 24, "max_band_hz": 8000.0,
                  "tcn_channels": 16, "tcn_dilations": (1, 2, 4)}


def _silent(tracks: int = 2):
    ctx = load_context("silent", SR, 8.0)
    ctx.tracks, ctx.names, ctx.classes = ctx.tracks[:tracks], ctx.names[:tracks], ctx.classes[:tracks]
    return ctx


def _eq_db(bands, params: dict, freqs) -> np.ndarray:
    """Magnitude in dB of an EQ layout, evaluated with scipy (independent of the probe's code)."""
    from scipy.signal import freqz

    from neuromix.core.dsp.filters import biquad_coefficients

    eq = ParametricEQ(SR, bands)
    kinds, cut, gain, q = eq.band_tensors({k: torch.tensor([v], dtype=torch.float64) for k, v in params.items()})
    total = np.zeros(len(freqs))
    for i, kind in enumerate(kinds):
        b, a = biquad_coefficients(kind, SR, cut[:, i], gain[:, i], q[:, i])
        _, h = freqz(b[0].numpy(), a[0].numpy(), worN=np.asarray(freqs), fs=SR)
        total += 20 * np.log10(np.abs(h))
    return total


TRACK = {"gain_db": 2.0, "eq_hp_cutoff_hz": 40.0, "eq_low_cutoff_hz": 150.0, "eq_low_gain_db": 4.0,
         "eq_low_mid_cutoff_hz": 500.0, "eq_low_mid_gain_db": -5.0, "eq_low_mid_q": 1.5,
         "eq_high_mid_cutoff_hz": 2500.0, "eq_high_mid_gain_db": 6.0, "eq_high_mid_q": 2.0,
         "eq_high_cutoff_hz": 5000.0, "eq_high_gain_db": -3.0, "comp_threshold_db": -20.0, "comp_ratio": 4.0,
         "comp_knee_db": 6.0, "comp_attack_ms": 5.0, "comp_release_ms": 60.0, "pan": 0.4}


def test_datasheet_recovers_known_console_settings(tmp_path):
    """Console with known settings, neutral master: EQ within 1 dB at band centres, compressor
    threshold within 1.5 dB and ratio within 15 %, pan within 0.05, times within 20 %."""
    console = Console(SR, ConsoleConfig(reverb=False, limiter=False))
    params = console.default_params(1, 2)
    for k, v in TRACK.items():
        params.track[k][0, 0] = v
    sheet = probe(ConsoleTarget(console, params), _silent(), tracks=[0], config=replace_cfg(master=False),
                  progress=False)
    track = sheet.track(0)
    eq = {k[3:]: v for k, v in TRACK.items() if k.startswith("eq_")}
    centres = [75.0, 150.0, 500.0, 1000.0, 2500.0, 5000.0, 6500.0]
    expected = TRACK["gain_db"] + _eq_db(TRACK_EQ, eq, centres)  # the sweep at -40 dBFS stays below the knee
    np.testing.assert_allclose(track.main.magnitude_db(centres), expected, atol=1.0)
    assert abs(track.pan - TRACK["pan"]) < 0.05
    assert track.width < 0.01  # a dry, panned point source
    comp = track.compression
    assert comp.compressing
    # the datasheet's threshold is input-referred: the compressor sees gain + EQ(1 kHz) more
    threshold_in = TRACK["comp_threshold_db"] - TRACK["gain_db"] - float(_eq_db(TRACK_EQ, eq, [1000.0])[0])
    assert abs(comp.threshold_db - threshold_in) < 1.5
    assert abs(comp.ratio / TRACK["comp_ratio"] - 1.0) < 0.15
    assert abs(track.timing.attack_ms / TRACK["comp_attack_ms"] - 1.0) < 0.2
    assert abs(track.timing.release_ms / TRACK["comp_release_ms"] - 1.0) < 0.2
    # the settings block is what was given, and the predictions agree with the measurements
    doc = track.to_dict()
    assert doc["settings"]["pan"] == pytest.approx(0.4)
    measured = doc["response"]["octaves_db"]
    for f, v in doc["predicted"]["octaves_db"].items():
        assert measured[f] == pytest.approx(v, abs=1.0), f
    assert sheet.master is None
    # output files
    written = write_datasheet(sheet, tmp_path / "sheet")
    names = {p.name for p in written}
    assert {"datasheet.json", "datasheet.md", "track0_kick0_response.png", "track0_kick0_dynamics.png"} <= names
    back = json.loads((tmp_path / "sheet" / "datasheet.json").read_text())
    assert back["format"] == "neuromix-datasheet" and back["paths"][0]["stereo"]["pan"] == pytest.approx(track.pan, abs=1e-3)


def replace_cfg(**changes) -> ProbeConfig:
    from dataclasses import replace

    return replace(CONFIG, **changes)


def test_master_path_datasheet():
    """Master EQ (+4 dB at 1 kHz), width 1.5 and bus compressor (-20 dB, 3:1) are recovered."""
    console = Console(SR, ConsoleConfig(reverb=False, limiter=False, track_compressor=False))
    params = console.default_params(1, 2)
    master = {"eq_mid_cutoff_hz": 1000.0, "eq_mid_gain_db": 4.0, "eq_mid_q": 1.0, "width": 1.5,
              "comp_threshold_db": -20.0, "comp_ratio": 3.0, "comp_knee_db": 4.0, "comp_attack_ms": 5.0,
              "comp_release_ms": 50.0}
    for k, v in master.items():
        params.master[k].fill_(v)
    sheet = probe(ConsoleTarget(console, params), _silent(), tracks=[1], config=CONFIG, progress=False)
    m = sheet.master
    assert m is not None and m.path == "master"
    eq = {k[3:]: float(params.master[k][0]) for k in params.master if k.startswith("eq_")}
    freqs = [100.0, 500.0, 1000.0, 2000.0, 5000.0]
    np.testing.assert_allclose(m.main.magnitude_db(freqs), _eq_db(MASTER_EQ, eq, freqs), atol=1.0)
    assert m.width == pytest.approx(1.5, rel=0.05)
    assert abs(m.pan) < 0.01
    threshold_in = master["comp_threshold_db"] - float(_eq_db(MASTER_EQ, eq, [1000.0])[0])
    assert m.compression.compressing and abs(m.compression.threshold_db - threshold_in) < 1.5
    assert abs(m.compression.ratio / master["comp_ratio"] - 1.0) < 0.15
    assert m.to_dict()["predicted"]["width"] == pytest.approx(1.5)


def test_console_network_datasheet_agrees_with_its_own_settings():
    """The settings are predicted once per test signal (probe track present) and the measured
    datasheet agrees with what those settings imply."""
    torch.manual_seed(0)
    model = ConsoleNet(ConsoleNetConfig(**SMALL_CONSOLE, console_stages=("track_eq", "track_compressor")))
    cfg = replace_cfg(sweep_seconds=1.5, sweep_level_db=-30.0, step_seconds=0.15, steps_db=(-50.0, 0.0, 2.0))
    sheet = probe(ConsoleNetTarget(model), _silent(3), tracks=[0], config=cfg, progress=False)
    doc = sheet.track(0).to_dict()
    predicted, measured = doc["predicted"], doc
    assert measured["stereo"]["pan"] == pytest.approx(predicted["pan"], abs=0.05)
    for f, v in predicted["octaves_db"].items():
        assert measured["response"]["octaves_db"][f] == pytest.approx(v, abs=1.0), f
    # this seed's network compresses inside the measured level range, so the fit is checked
    assert predicted["compressing"] and -44.0 < predicted["threshold_db"] < -6.0
    comp = measured["compression"]
    assert comp["compressing"]
    assert comp["threshold_db"] == pytest.approx(predicted["threshold_db"], abs=1.5)
    assert comp["ratio"] == pytest.approx(predicted["ratio"], rel=0.15)
    assert measured["timing"]["attack_ms"] == pytest.approx(predicted["attack_ms"], rel=0.2)


def test_untrained_black_box_is_a_flat_minus_6_db_path():
    """A black box with a zero output layer applies 10**(-6/20) to each side: -6 dB, centred,
    level-independent, no compression; it has no separable master path."""
    torch.manual_seed(0)
    model = BlackBoxNet(BlackBoxConfig(**SMALL_BLACKBOX))
    cfg = replace_cfg(sweep_seconds=1.5, levels_db=(-20.0,), step_seconds=0.15, steps_db=(-48.0, 0.0, 4.0))
    sheet = probe(BlackBoxTarget(model), _silent(2), tracks=[0], config=cfg, progress=False)
    track = sheet.track(0)
    grid = track.grid()
    inside = grid > 100.0  # a 1.5 s sweep leaves about 0.1-0.2 dB of (Fresnel) ripple
    for level, sweep in track.sweeps.items():
        np.testing.assert_allclose(sweep.magnitude_db(grid[inside]), -6.02, atol=0.2, err_msg=f"{level}")
    assert abs(track.pan) < 0.01 and not track.compression.compressing
    assert track.compression.gain_db == pytest.approx(-6.0, abs=0.1)
    assert float(np.median(track.main.thd_percent(grid))) < 0.5
    assert sheet.master is None and any("no separable master" in n for n in sheet.notes)
    assert track.to_dict()["predicted"] is None
    # deterministic: the same arguments give the same datasheet
    again = probe(BlackBoxTarget(model), _silent(2), tracks=[0], config=cfg, progress=False)
    assert json.dumps(again.to_dict()) == json.dumps(sheet.to_dict())


# --------------------------------------------------------------------------- analysis pieces


@pytest.mark.parametrize("threshold,ratio,knee", [(-24.0, 4.0, 6.0), (-12.0, 2.0, 0.0), (-30.0, 8.0, 10.0)])
def test_fit_compressor_recovers_a_gain_computer(threshold, ratio, knee):
    levels = np.arange(-60.0, 0.1, 2.0)
    gain = 3.0 - gain_computer(torch.tensor(levels), threshold, ratio, knee).numpy()
    fit = fit_compressor(levels, gain)
    assert fit.compressing
    assert fit.threshold_db == pytest.approx(threshold, abs=0.3)
    assert fit.ratio == pytest.approx(ratio, rel=0.03)
    assert fit.gain_db == pytest.approx(3.0, abs=0.05)
    assert fit.rms_error_db < 0.05
    flat = fit_compressor(levels, np.full_like(levels, -2.0))
    assert not flat.compressing and flat.threshold_db is None and flat.gain_db == pytest.approx(-2.0)


def test_sine_amplitude_and_timing_of_a_known_envelope():
    t = np.arange(int(1.2 * SR)) / SR
    y = np.stack([0.3 * np.sin(2 * np.pi * 1000.0 * t + 0.4), 0.1 * np.cos(2 * np.pi * 1000.0 * t)])
    np.testing.assert_allclose(sine_amplitude(y, SR, 1000.0), [0.3, 0.1], rtol=1e-6)
    # tone bursts through a one-pole gain (in dB): 10 dB reduction, attack 8 ms, release 80 ms
    up, down = int(0.3 * SR), int(0.7 * SR)
    x = np.sin(2 * np.pi * 1000.0 * t) * np.where((t >= 0.3) & (t < 0.7), 1.0, 0.1)
    target = np.where((t >= 0.3) & (t < 0.7), 10.0, 0.0)
    gr = np.zeros_like(t)
    a_att, a_rel = math.exp(-1.0 / (0.008 * SR)), math.exp(-1.0 / (0.080 * SR))
    for n in range(1, t.shape[0]):
        a = a_att if target[n] > gr[n - 1] else a_rel
        gr[n] = a * gr[n - 1] + (1 - a) * target[n]
    y = (x * 10 ** (-gr / 20))[None]
    fit = fit_timing(y, x, SR, 1000.0, up, down, -20.0, 0.0)
    assert fit.gain_change_db == pytest.approx(10.0, abs=0.2)
    assert fit.attack_ms == pytest.approx(8.0, rel=0.2)
    assert fit.release_ms == pytest.approx(80.0, rel=0.1)


def test_fit_eq_matches_a_console_eq_response():
    params = {k[3:]: v for k, v in TRACK.items() if k.startswith("eq_")}
    freqs = np.geomspace(40.0, 7000.0, 80)
    target = 2.0 + _eq_db(TRACK_EQ, params, freqs)
    fit = fit_eq(freqs, target, SR, TRACK_EQ, steps=300)
    assert fit["rms_error_db"] < 0.5
    assert set(ParametricEQ(SR, TRACK_EQ).param_ranges) <= set(fit)


def test_bad_inputs_raise_config_errors(tmp_path):
    console = Console(SR)
    target = ConsoleTarget(console, console.default_params(1, 1))
    with pytest.raises(ConfigError, match="out of range"):
        probe(target, _silent(2), tracks=[5], config=CONFIG, progress=False)
    with pytest.raises(ConfigError, match="neither a checkpoint"):
        target_from_spec(str(tmp_path / "nothing.safetensors"))
    with pytest.raises(ConfigError, match="unknown demo"):
        load_context("demo:nope", SR, 1.0)
    three = ConsoleTarget(console, console.default_params(1, 3))
    with pytest.raises(ConfigError, match="3 tracks but the context has 2"):
        probe(three, _silent(2), tracks=[0], config=CONFIG, progress=False)


# --------------------------------------------------------------------------- CLI


def _checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(1)
    model = BlackBoxNet(BlackBoxConfig(**SMALL_BLACKBOX))
    torch.nn.init.normal_(model.tcn.out.weight, std=0.05)
    return checkpoint.save(tmp_path / "bb.safetensors", model, model_type=model.model_type, config=model.config,
                           sample_rate=SR)


def test_cli_probe_checkpoint_and_settings_file(tmp_path):
    out = tmp_path / "sheet"
    args = ["probe", str(_checkpoint(tmp_path)), "-o", str(out), "--context", "silent", "--track", "1", "--quick",
            "--no-progress"]
    assert main(args) == EXIT_OK
    doc = json.loads((out / "datasheet.json").read_text())
    assert doc["target"]["family"] == "blackbox" and doc["target"]["sample_rate"] == SR
    assert len(doc["target"]["checkpoint_sha256"]) == 64
    assert [p["index"] for p in doc["paths"]] == [1]
    assert (out / "track1_snare1_response.png").stat().st_size > 1000
    assert main(args) == EXIT_EXISTS
    # a console settings document (one track: applied to every track of the context)
    console = Console(SR)
    params = console.default_params(1, 1)
    params.track["pan"].fill_(-0.6)
    settings = tmp_path / "settings.json"
    settings.write_text(console.settings_to_json(params, ["any"]))
    out2 = tmp_path / "sheet2"
    assert main(["probe", str(settings), "-o", str(out2), "--context", "silent", "--track", "0", "--quick",
                 "--no-progress"]) == EXIT_OK
    doc = json.loads((out2 / "datasheet.json").read_text())
    assert doc["paths"][0]["stereo"]["pan"] == pytest.approx(-0.6, abs=0.05)
    assert doc["paths"][1]["path"] == "master"


@pytest.mark.skipif(not (REAL / "caesium").is_dir(), reason="real multitracks not present (../shared/data/multitracks)")
def test_cli_probe_rules_in_a_real_song_context(tmp_path):
    out = tmp_path / "sheet"
    assert main(["probe", "rules", "-o", str(out), "--context", str(REAL / "caesium"), "--track", "6", "--quick",
                 "--sample-rate", str(SR), "--no-progress"]) == EXIT_OK
    doc = json.loads((out / "datasheet.json").read_text())
    assert doc["context"]["kind"] == "folder" and doc["context"]["tracks"][6]["name"] == "kick"
    track = doc["paths"][0]
    assert track["class"] == "kick" and abs(track["stereo"]["pan"]) < 0.05  # the rules keep kicks centred
    assert math.isfinite(track["response"]["broadband_gain_db"])
