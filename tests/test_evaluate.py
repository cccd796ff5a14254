"""Objective evaluation: metric values on hand-computed cases, baseline ordering, settings
errors, determinism, the real-song protocol and the ``neuromix eval`` command."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from neuromix.core import checkpoint
from neuromix.core.dsp.console import Console
from neuromix.core.errors import ConfigError, NeuromixError
from neuromix.core.features import integrated_loudness, short_term_loudness
from neuromix.mixing import shipped
from neuromix.mixing.augment import loudness_normalise
from neuromix.mixing.evaluate import (
    CATEGORIES,
    FEATURES,
    SETTING_METRICS,
    EvalConfig,
    EvalSong,
    bootstrap_ci,
    evaluate,
    load_data,
    mape,
    mix_metrics,
    resolve_systems,
    setting_errors,
    summarise,
    synthetic_songs,
    write_report,
)
from neuromix.mixing.models import (
    BlackBoxConfig,
    BlackBoxNet,
    ConsoleNet,
    ConsoleNetConfig,
)
from neuromix.ui.cli import EXIT_EXISTS, EXIT_OK, main

SR = 16000
REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "multitracks"
MAPE_KEYS = [f"{c}/{f}" for c in CATEGORIES for f in FEATURES[c]]
SMALL_CONSOLE = dict(sample_rate=SR, embed_dim=32, encoder_channels=16, heads=2, layers=1, window_seconds=0.5)
SMALL_BLACKBOX = dict(sample_rate=SR, embed_dim=32, encoder_channels=16, heads=2, layers=1, window_seconds=0.5,
                      n_fft=512, hop=128, n_bands=24, max_band_hz=8000.0, tcn_channels=16, tcn_dilations=(1, 2, 4))


def _sines(amplitude: float = 0.5, seconds: float = 4.0) -> torch.Tensor:
    """Left: 125 Hz + 1 kHz + 4 kHz sines, right: the same at half amplitude.

    Every period is a whole number of samples at 16 kHz and every analysis frame (2048 samples,
    0.4 s) holds whole periods of all three, so every frame has the same level and peak.
    """
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    s = sum(torch.sin(2 * math.pi * f * t) for f in (125.0, 1000.0, 4000.0))
    s = amplitude * s / s.abs().max()
    return torch.stack([s, 0.5 * s])[None].float()


def _panned_noise(pan: float, seconds: float = 3.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    s = 0.1 * torch.randn(int(seconds * SR), generator=g)
    theta = (pan + 1.0) * math.pi / 4.0
    return torch.stack([math.cos(theta) * s, math.sin(theta) * s])[None]


# --------------------------------------------------------------------------- metric values


def test_mape_closed_forms():
    assert mape([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 0.0
    assert mape([11.0, 22.0], [10.0, 20.0]) == pytest.approx(10.0)
    assert mape([-22.0], [-20.0]) == pytest.approx(10.0)  # relative to |reference|
    # running mean over 2 frames before the error: (1+3)/2 = 2 vs (2+2)/2 = 2 -> 0
    assert mape([1.0, 3.0], [2.0, 2.0], smooth=2) == pytest.approx(0.0)
    assert mape([1.0, 3.0], [2.0, 2.0], smooth=1) == pytest.approx(50.0)
    assert mape([5.0, 1.0], [1.0, 2.0], valid=[False, True]) == pytest.approx(50.0)
    assert mape([1.0], [0.0], denominator_floor=0.5) == pytest.approx(200.0)  # |1 - 0| / 0.5
    assert math.isnan(mape([1.0, 2.0], [1.0, 2.0], valid=[False, False]))


def test_a_mix_against_itself_scores_zero():
    x = _panned_noise(0.3) + _sines(0.2, 3.0)
    row = mix_metrics(x, x, SR)[0]
    for key in MAPE_KEYS + ["overall/mean_mape", "panning/signed_error", "stft/sum_difference"]:
        assert row[key] == pytest.approx(0.0, abs=1e-9), key


def test_six_db_louder_copy_has_known_errors():
    x = _sines(0.5)
    c = 10.0 ** (6.0 / 20.0)
    row = mix_metrics(c * x, x, SR)[0]
    shift = 20.0 * math.log10(c)  # 6 dB
    lufs = float(integrated_loudness(x.double(), SR)[0])
    st = short_term_loudness(x.double(), SR, 3.0, 0.25)[0]
    assert torch.allclose(st, st[0], atol=1e-3)  # a stationary sine: every window reads the same
    assert row["loudness/integrated_lufs"] == pytest.approx(100 * shift / abs(lufs), rel=1e-4)
    assert row["loudness/short_term_lufs"] == pytest.approx(100 * shift / abs(float(st[0])), rel=1e-3)
    # sample peak 0.5 (-6.02 dBFS); the peak and RMS levels are compared as 1 - dBFS
    assert row["loudness/peak_db"] == pytest.approx(100 * shift / (1 - 20 * math.log10(0.5)), rel=1e-4)
    rms = 10 * math.log10(float(x.double().square().mean()))  # mean square over both channels
    assert row["dynamics/rms_db"] == pytest.approx(100 * shift / (1 - rms), rel=1e-4)
    # level-independent features do not move
    for key in ["dynamics/crest_factor_db", "dynamics/dynamic_spread_db"] + [f"spectral/{f}" for f in FEATURES["spectral"]] \
            + [f"panning/{f}" for f in FEATURES["panning"]] + ["panning/signed_error"]:
        assert row[key] == pytest.approx(0.0, abs=1e-3), key
    # MR-STFT of c * x for a broadband x: |1 - c| + |ln c| per term, sum and difference terms
    noise = _panned_noise(0.5)
    row = mix_metrics(c * noise, noise, SR)[0]
    assert row["stft/sum_difference"] == pytest.approx(2 * (abs(1 - c) + math.log(c)), rel=1e-3)


def test_dynamic_spread_and_crest_of_a_sine():
    """Crest 3.01 dB, spread 3.01 dB (RMS level minus the mean sample level of a sine)."""
    from neuromix.mixing.evaluate import MetricConfig, _feature_tracks

    t = torch.arange(4 * SR, dtype=torch.float64) / SR
    x = 0.5 * torch.sin(2 * math.pi * 1000.0 * t)[None, None].expand(1, 2, -1)
    tracks = _feature_tracks(x, SR, MetricConfig())
    assert tracks["dynamics/crest_factor_db"].values[0].mean().item() == pytest.approx(10 * math.log10(2), abs=1e-3)
    t = torch.arange(4 * SR, dtype=torch.float64) / SR
    s = 0.5 * torch.sin(2 * math.pi * 997.0 * t)  # phases dense over the period
    mono = torch.stack([s, s])[None]
    spread = _feature_tracks(mono, SR, MetricConfig())["dynamics/dynamic_spread_db"].values[0]
    # E[20 log10 |sin|] = -6.02 dB relative to the amplitude, RMS = -3.01 dB: spread 3.01 dB
    assert spread.mean().item() == pytest.approx(20 * math.log10(2) - 10 * math.log10(2), abs=0.02)


def test_mirrored_panning_is_invisible_to_mape_but_not_to_signed_error():
    ref = _panned_noise(0.5)
    mirrored = ref.flip(1)  # L <-> R: the source sits at -0.5
    row = mix_metrics(mirrored, ref, SR)[0]
    for f in FEATURES["panning"]:
        assert row[f"panning/{f}"] == pytest.approx(0.0, abs=1e-3)  # RMS of the panning spectrum
    assert row["panning/signed_error"] == pytest.approx(1.0, abs=1e-3)  # |(-0.5) - 0.5|
    # centred output against a panned reference: every band reads |0 - 0.5| / 0.5 = 100 %
    centred = _panned_noise(0.0)
    assert mix_metrics(centred, ref, SR)[0]["panning/sps_total"] == pytest.approx(100.0, abs=0.1)


def test_batched_metrics_equal_item_by_item():
    a, b = _panned_noise(0.2, seed=1), _panned_noise(-0.4, seed=2)
    batched = mix_metrics(torch.cat([a, b]), torch.cat([b, a]), SR)
    single = [mix_metrics(a, b, SR)[0], mix_metrics(b, a, SR)[0]]
    for got, want in zip(batched, single):
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key


# --------------------------------------------------------------------------- settings errors


def test_setting_errors_closed_forms():
    console = Console(SR)
    truth = console.default_params(1, 3)
    truth.track["comp_ratio"].fill_(2.0)
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in setting_errors(truth, truth, SR).values())
    pred = truth.detach()
    pred.track["gain_db"] += 3.0
    pred.track["pan"] += torch.tensor([[0.2, -0.4, 0.0]])
    pred.track["comp_threshold_db"] -= 5.0
    pred.track["comp_ratio"].fill_(4.0)
    err = setting_errors(pred, truth, SR)
    assert set(err) == set(SETTING_METRICS)
    assert err["settings/gain_db"] == pytest.approx(3.0)
    assert err["settings/pan"] == pytest.approx(0.2)
    assert err["settings/comp_threshold_db"] == pytest.approx(5.0)
    assert err["settings/comp_ratio_pct"] == pytest.approx(100.0)
    assert err["settings/eq_db"] == pytest.approx(0.0, abs=1e-9)  # the gain is not part of the EQ
    # a +6 dB peaking band changes the EQ error; a flat shelf at 0 dB does not
    pred.track["eq_low_mid_gain_db"][0, 0] = 6.0
    assert setting_errors(pred, truth, SR)["settings/eq_db"] > 0.1
    assert setting_errors(pred, truth, SR, mask=torch.tensor([False, True, True]))["settings/eq_db"] == 0.0


# --------------------------------------------------------------------------- baselines and determinism


def _song_with_reference(kind: str) -> EvalSong:
    song = next(synthetic_songs(1, seconds=1.5, sample_rate=SR))
    tracks = song.tracks
    if kind == "loudness-sum":
        reference = loudness_normalise(tracks, SR, -23.0)[0].sum(0)
    else:
        reference = tracks.sum(0)
    return EvalSong(f"ref={kind}", "constructed", tracks, song.classes, reference, SR)


@pytest.mark.parametrize("kind", ["loudness-sum", "sum"])
def test_the_reference_system_scores_best(kind):
    song = _song_with_reference(kind)
    results = evaluate([song], resolve_systems("sum,loudness-sum,rules"), progress=False)
    by_system = {row["system"]: row for row in results.rows}
    best = by_system[kind]
    assert best["overall/mean_mape"] == pytest.approx(0.0, abs=1e-6)
    assert best["stft/sum_difference"] == pytest.approx(0.0, abs=1e-6)
    for other, row in by_system.items():
        if other != kind:
            assert row["overall/mean_mape"] > best["overall/mean_mape"] + 1.0
            assert row["stft/sum_difference"] > best["stft/sum_difference"] + 0.1


def _same(a, b) -> bool:
    """Equality of lists of dicts where NaN equals NaN."""
    def norm(rows):
        return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
    return norm(a) == norm(b)


def _checkpoints(tmp_path: Path) -> list[str]:
    torch.manual_seed(0)
    console = ConsoleNet(ConsoleNetConfig(**SMALL_CONSOLE))
    blackbox = BlackBoxNet(BlackBoxConfig(**SMALL_BLACKBOX))
    paths = []
    for model in (console, blackbox):
        p = checkpoint.save(tmp_path / f"{model.model_type}.safetensors", model, model_type=model.model_type,
                            config=model.config, sample_rate=SR)
        paths.append(str(p))
    return paths


def test_networks_baselines_settings_and_determinism(tmp_path):
    systems = resolve_systems(_checkpoints(tmp_path))
    assert [s.name for s in systems] == ["console_net", "blackbox_net", "sum", "loudness-sum", "rules"]
    songs = list(synthetic_songs(2, seconds=1.0, sample_rate=SR))
    assert [s.name for s in songs] == ["seed20000000", "seed20000001"]
    first = evaluate(songs, systems, config=EvalConfig(bootstrap=200), progress=False)
    second = evaluate(songs, systems, config=EvalConfig(bootstrap=200), progress=False)
    assert _same(first.rows, second.rows)  # same numbers, bit for bit
    assert _same(summarise(first), summarise(second))
    rows = {(r["song"], r["system"]): r for r in first.rows}
    assert len(rows) == 10
    for (song, system), row in rows.items():
        assert math.isfinite(row["overall/mean_mape"]) and math.isfinite(row["stft/sum_difference"])
        has_settings = system != "blackbox_net"
        assert ("settings/gain_db" in row) == has_settings, system
    written = write_report(first, tmp_path / "report")
    names = {p.name for p in written}
    assert {"report.md", "per_song.csv", "summary.csv", "results.json", "synthetic_loudness.png",
            "synthetic_settings.png"} <= names
    with pytest.raises(FileExistsError):
        write_report(first, tmp_path / "report")


def test_bootstrap_ci():
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    mean, low, high = bootstrap_ci(values, resamples=500, seed=3)
    assert mean == pytest.approx(4.0)
    assert low < mean < high and low >= 1.0 and high <= 10.0
    assert bootstrap_ci(values, resamples=500, seed=3) == (mean, low, high)
    assert bootstrap_ci([2.5]) == (2.5, 2.5, 2.5)
    assert all(math.isnan(v) for v in bootstrap_ci([]))


# --------------------------------------------------------------------------- systems and data specs


def test_shipped_checkpoints_resolve_or_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "checkpoint_folder", lambda: tmp_path)
    with pytest.raises(NeuromixError, match="no shipped console checkpoint"):
        resolve_systems("console")
    old, new = tmp_path / "console-00000000.safetensors", tmp_path / "console-11111111.safetensors"
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    import os

    os.utime(old, (1, 1))
    assert shipped.shipped_checkpoint("console") == new
    with pytest.raises(NeuromixError, match="blackbox"):
        shipped.shipped_checkpoint("blackbox")


def test_bad_specs_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="neither a system"):
        resolve_systems("sum,nonsense")
    with pytest.raises(ConfigError, match="synthetic:N"):
        load_data("synthetic:many")
    from neuromix.core.errors import AudioInputError

    with pytest.raises(AudioInputError):
        load_data(str(tmp_path / "missing"))


@pytest.mark.skipif(not (REAL / "caesium").is_dir(), reason="real multitracks not present (../shared/data/multitracks)")
def test_real_song_protocol_on_caesium():
    songs = load_data(str(REAL / "caesium"), sample_rate=SR, max_seconds=3.0)
    assert len(songs) == 1 and songs[0].normalise and songs[0].tracks.shape[0] == 9
    results = evaluate(songs, resolve_systems("sum,loudness-sum,rules"), progress=False)
    rows = {r["system"]: r for r in results.rows}
    assert set(rows) == {"sum", "loudness-sum", "rules"}
    # outputs and reference are normalised to the same integrated loudness before comparison
    for row in rows.values():
        assert row["loudness/integrated_lufs"] < 0.5
        assert all(math.isfinite(row[k]) for k in MAPE_KEYS + ["stft/sum_difference"])
    # under the protocol the stems are already at equal loudness, so the two sums nearly coincide
    # (they differ only through stems near the -70 LUFS gate, whose gated loudness moves with gain)
    assert abs(rows["sum"]["overall/mean_mape"] - rows["loudness-sum"]["overall/mean_mape"]) < 5.0


# --------------------------------------------------------------------------- CLI


def _read(path: Path) -> list[list[str]]:
    with path.open() as f:
        return list(csv.reader(f))


def test_cli_eval_smoke_and_rerun(tmp_path):
    console_path, _ = _checkpoints(tmp_path)
    out = tmp_path / "report"
    args = ["eval", "--data", "synthetic:2", "--systems", f"{console_path},rules", "--seconds", "1.0",
            "--sample-rate", str(SR), "-o", str(out), "--bootstrap", "100", "--no-progress"]
    assert main(args) == EXIT_OK
    report = (out / "report.md").read_text()
    assert "| console_net |" in report and "| loudness-sum |" in report and "synthetic_panning.png" in report
    assert (out / "synthetic_dynamics.png").stat().st_size > 1000
    first = _read(out / "per_song.csv")
    assert len(first) == 1 + 2 * 4  # header + 2 songs x (network + 3 baselines)
    assert main(args) == EXIT_EXISTS
    assert main(args + ["--force"]) == EXIT_OK
    assert _read(out / "per_song.csv") == first
    assert np.isfinite([float(v) for v in first[1][3:] if v]).all()
