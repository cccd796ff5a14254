"""Whole-song mixing: streaming render == whole render, safety limiting, settings round trip, CLI."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from neuromix.core import checkpoint
from neuromix.core.dsp.console import Console
from neuromix.core.errors import NeuromixError
from neuromix.mixing import shipped
from neuromix.mixing.inference import (
    StreamingCompressor,
    StreamingFIR,
    analysis_excerpt,
    mix_multitrack,
    render_blackbox,
    render_console,
    resolve_model,
    safety_limit,
)
from neuromix.mixing.models import BlackBoxConfig, BlackBoxNet, ConsoleNet, ConsoleNetConfig
from neuromix.ui import cli

SR = 16000
SMALL_CONSOLE = {"sample_rate": SR, "embed_dim": 32, "encoder_channels": 16, "heads": 2, "layers": 1,
                 "window_seconds": 0.5}
SMALL_BLACKBOX = {
    "sample_rate": SR, "embed_dim": 32, "encoder_channels": 16, "heads": 2, "layers": 1, "window_seconds": 0.5,
    "n_fft": 512, "hop": 128, "n_bands": 24, "max_band_hz": 8000.0, "tcn_channels": 16, "tcn_dilations": (1, 2, 4),
}


def _console_net(seed: int = 0) -> ConsoleNet:
    torch.manual_seed(seed)
    return ConsoleNet(ConsoleNetConfig(**SMALL_CONSOLE)).eval()


def _blackbox_net(seed: int = 0) -> BlackBoxNet:
    torch.manual_seed(seed)
    model = BlackBoxNet(BlackBoxConfig(**SMALL_BLACKBOX))
    torch.nn.init.normal_(model.tcn.out.weight, std=0.05)  # time-varying, non-trivial gains
    return model.eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for kind, model in (("console", _console_net(1)), ("blackbox", _blackbox_net(2))):
        paths[kind] = checkpoint.save(
            folder / f"{kind}_tiny.safetensors", model, model_type=model.model_type, config=model.config, sample_rate=SR
        )
    return paths


def _sine_tracks(seconds: float, sr: int = SR, tracks: int = 4, channels: int = 2) -> torch.Tensor:
    """Amplitude-modulated sines, one frequency per track: ``(tracks, channels, samples)``."""
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    out = []
    for i in range(tracks):
        f = 55.0 * 2.0 ** (1.3 * i)
        env = 0.55 + 0.45 * torch.sin(2 * math.pi * (0.4 + 0.3 * i) * t) ** 3
        x = 0.7 * env * torch.sin(2 * math.pi * f * t)
        out.append(torch.stack([x, 0.8 * x + 0.05 * torch.sin(2 * math.pi * 3 * f * t)][:channels]))
    return torch.stack(out).to(torch.float32)


def _rel_db(x: torch.Tensor, ref: torch.Tensor) -> float:
    ratio = float((x - ref).square().mean().sqrt() / ref.square().mean().sqrt())
    return 20.0 * math.log10(max(ratio, 1e-15))  # -300 dB: identical


def _true_peak_db(x: np.ndarray | torch.Tensor) -> float:
    arr = np.asarray(x, dtype=np.float64)
    return 20.0 * math.log10(float(np.abs(resample_poly(arr, 4, 1, axis=-1)).max()))


def _busy_settings(console: Console, tracks: int):
    """Settings where every stage works hard (long releases, loud reverb, a limiter that limits)."""
    p = console.default_params(1, tracks)
    tr, m = p.track, p.master
    tr["gain_db"][:] = torch.linspace(-3.0, 6.0, tracks)
    tr["eq_hp_cutoff_hz"][:] = 40.0
    tr["eq_low_gain_db"][:] = 4.0
    tr["eq_low_mid_gain_db"][:] = -6.0
    tr["eq_low_mid_q"][:] = 4.0
    tr["eq_high_mid_gain_db"][:] = 5.0
    tr["eq_high_gain_db"][:] = -3.0
    tr["comp_threshold_db"][:] = -30.0
    tr["comp_ratio"][:] = 8.0
    tr["comp_attack_ms"][:] = 2.0
    tr["comp_release_ms"][:] = 1000.0
    tr["comp_makeup_db"][:] = 6.0
    tr["pan"][:] = torch.linspace(-0.8, 0.8, tracks)
    tr["reverb_send_db"][:] = -3.0
    m["eq_low_gain_db"][:] = 3.0
    m["eq_mid_gain_db"][:] = -4.0
    m["eq_high_gain_db"][:] = 2.0
    m["width"][:] = 1.5
    m["comp_threshold_db"][:] = -24.0
    m["comp_ratio"][:] = 4.0
    m["comp_release_ms"][:] = 600.0
    m["reverb_decay_s"][:] = 2.0
    m["reverb_return_db"][:] = 0.0
    m["limiter_gain_db"][:] = 9.0
    m["limiter_release_ms"][:] = 300.0
    return p


# --------------------------------------------------------------------------- streaming == whole


@pytest.mark.parametrize("channels", [2, 1])
def test_console_blocks_equal_whole_render_with_every_stage(channels):
    console = Console(SR)  # every stage on, 65536-point EQ FIR, 2.5 s reverb
    assert all(getattr(console.config, s) for s in ("track_eq", "track_compressor", "reverb", "master_eq",
                                                     "master_width", "bus_compressor", "limiter"))
    tracks = _sine_tracks(6.0, channels=channels)[None]
    params = _busy_settings(console, tracks.shape[1])
    with torch.no_grad():
        whole = safety_limit(console(tracks, None, params), SR)
        blocks = safety_limit(render_console(console, tracks, None, params, block_samples=SR // 2), SR)
        # rendering the blocks independently (no carried state) is clearly wrong: the test can fail
        naive = torch.cat([console(tracks[..., s : s + SR // 2], None, params) for s in range(0, tracks.shape[-1], SR // 2)], -1)
    assert blocks.shape == whole.shape == (1, 2, tracks.shape[-1])
    assert _true_peak_db(whole[0]) > -1.6  # the limiter is working
    assert _rel_db(blocks, whole) < -60.0
    assert _rel_db(naive, whole) > -30.0


def test_streaming_fir_and_compressor_match_whole_signal():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 5000, generator=g, dtype=torch.float64)
    fir = torch.randn(2, 1, 700, generator=g, dtype=torch.float64)
    stream = StreamingFIR(fir)
    y = torch.cat([stream(x[..., s : s + 333]) for s in range(0, 5000, 333)], -1)
    ref = torch.stack([torch.from_numpy(np.stack([np.convolve(x[b, c].numpy(), fir[b, 0].numpy())[:5000]
                                                  for c in range(2)])) for b in range(2)])
    torch.testing.assert_close(y, ref, rtol=1e-9, atol=1e-9)

    from neuromix.core.dsp.functional import compressor

    sig = _sine_tracks(3.0, tracks=2)
    params = {"threshold_db": torch.tensor([-30.0, -20.0]), "ratio": torch.tensor([6.0, 3.0]),
              "attack_ms": torch.tensor([1.0, 20.0]), "release_ms": torch.tensor([900.0, 80.0]),
              "knee_db": torch.tensor([6.0, 0.0]), "makeup_db": torch.tensor([3.0, 0.0])}
    whole = compressor(sig, SR, **params)
    comp = StreamingCompressor(SR, params)
    blocks = torch.cat([comp(sig[..., s : s + 3200]) for s in range(0, sig.shape[-1], 3200)], -1)
    assert _rel_db(blocks, whole) < -90.0
    assert _rel_db(whole, sig) > -20.0  # it does compress


def test_blackbox_blocks_with_crossfade_equal_whole_render():
    model = _blackbox_net()
    x = _sine_tracks(5.0, tracks=3, channels=1)[None]
    with torch.no_grad():
        whole = model(x, None, SR).mix
        cond = model.condition(x, None, SR)
        blocks = render_blackbox(model, x, None, SR, cond, block_samples=SR)
        naive = torch.cat([model.render(x[..., s : s + SR], None, SR, cond) for s in range(0, x.shape[-1], SR)], -1)
    assert _rel_db(blocks, whole) < -60.0
    assert _rel_db(naive, whole) > -40.0


def test_api_blocks_equal_single_block_for_every_model():
    x = _sine_tracks(3.0, tracks=3)
    for model in (_console_net(), _blackbox_net(), "rules"):
        a = mix_multitrack(x, SR, model=model, block_seconds=0.4).mix
        b = mix_multitrack(x, SR, model=model, block_seconds=60.0).mix
        assert _rel_db(a, b) < -60.0, model


# --------------------------------------------------------------------------- output contract


@pytest.mark.parametrize("model", ["console", "blackbox", "rules"])
def test_output_is_finite_and_true_peak_limited(model):
    g = torch.Generator().manual_seed(3)
    x = 2.0 * _sine_tracks(2.0, tracks=3) + 0.8 * torch.randn(3, 2, 2 * SR, generator=g)  # clips on purpose
    net = {"console": _console_net(), "blackbox": _blackbox_net(), "rules": "rules"}[model]
    out = mix_multitrack(x, SR, model=net)
    assert out.mix.shape == (2, 2 * SR) and out.mix.dtype == torch.float32
    assert torch.isfinite(out.mix).all()
    assert _true_peak_db(out.mix) <= -1.0
    assert (out.settings is None) == (model == "blackbox")


def test_settings_round_trip_reproduces_the_mix_exactly():
    x = _sine_tracks(2.0, tracks=3)
    names = ["kick", "bass", "lead vox"]
    out = mix_multitrack(x, SR, model=_console_net(), names=names)
    doc = json.loads(json.dumps(out.settings))
    assert doc["model"] == "console_net" and doc["classes"] == dict(zip(names, out.classes))
    assert out.classes[:2] == ["kick", "bass"]
    again = mix_multitrack(x, SR, settings=doc, names=names)
    assert torch.equal(again.mix, out.mix)
    assert again.settings == out.settings
    # reordered tracks are matched by name
    perm = [2, 0, 1]
    moved = mix_multitrack(x[perm], SR, settings=doc, names=[names[i] for i in perm])
    torch.testing.assert_close(moved.mix, out.mix, atol=1e-5, rtol=0)
    with pytest.raises(NeuromixError, match="no settings for track"):
        mix_multitrack(x, SR, settings=doc, names=["a", "b", "c"])


def test_class_overrides_and_excerpt():
    x = _sine_tracks(1.0, tracks=2)
    out = mix_multitrack(x, SR, model="rules", names=["one", "two"], classes={"two": "pad", 0: "bass"})
    assert out.classes == ["bass", "pad"]
    with pytest.raises(NeuromixError, match="no track named"):
        mix_multitrack(x, SR, model="rules", names=["one", "two"], classes={"three": "pad"})
    long = torch.arange(100 * 10, dtype=torch.float32).reshape(1, 1, -1).expand(2, 1, -1)
    ex = analysis_excerpt(long, 10, seconds=30.0, windows=3)  # 100 s at 10 Hz -> 3 windows of 10 s
    assert ex.shape == (2, 1, 3 * 100)
    assert float(ex[0, 0, 0]) == 0.0 and float(ex[0, 0, -1]) == 999.0
    assert analysis_excerpt(x, SR) is x


def test_reference_steers_the_console_network_and_bad_inputs_are_refused():
    x = _sine_tracks(1.0, tracks=2)
    net = _console_net()
    plain = mix_multitrack(x, SR, model=net)
    ref = mix_multitrack(x, SR, model=net, reference=0.3 * _sine_tracks(1.5, tracks=1)[0])
    assert plain.settings["tracks"] != ref.settings["tracks"]
    with pytest.raises(NeuromixError, match="between 1 and 64"):
        mix_multitrack(torch.zeros(65, 1, 100), SR, model="rules")
    bad = x.clone()
    bad[1, 0, 7] = float("nan")
    with pytest.raises(NeuromixError, match="non-finite"):
        mix_multitrack(bad, SR, model="rules")
    with pytest.raises(NeuromixError, match="block_seconds"):
        mix_multitrack(x, SR, model="rules", block_seconds=-1.0)
    with pytest.raises(NeuromixError, match="console.stages"):
        mix_multitrack(x, SR, settings={**plain.settings, "console": {"stages": ["nope"]}})


# --------------------------------------------------------------------------- model resolution


def test_shipped_checkpoint_lookup(tmp_path, monkeypatch, checkpoints):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(shipped, "checkpoint_folder", lambda: empty)
    with pytest.raises(NeuromixError, match="no shipped console checkpoint; pass --model PATH or --model rules"):
        resolve_model("console")
    folder = tmp_path / "shipped"
    folder.mkdir()
    written = {}
    for base, seed, mtime in (("console_a", 4, 2_000_000), ("console_b", 5, 1_000_000)):
        model = _console_net(seed)
        path = checkpoint.save_release(folder / f"{base}.safetensors", model, model_type=model.model_type,
                                       config=model.config, sample_rate=SR)
        os.utime(path, (mtime, mtime))
        written[base] = path
    monkeypatch.setattr(shipped, "checkpoint_folder", lambda: folder)
    resolved = resolve_model("console")  # the newest by time, although console_b sorts last
    assert resolved.kind == "console" and written["console_a"].name in resolved.name
    with pytest.raises(NeuromixError, match="no shipped blackbox checkpoint"):
        resolve_model("blackbox")


# --------------------------------------------------------------------------- CLI


def _write(path, seconds=1.0, sr=SR, channels=1, freq=220.0, amp=0.3):
    t = np.arange(int(seconds * sr)) / sr
    x = amp * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2.0 * t))
    data = np.stack([x, 0.7 * x], axis=1)[:, :channels] if channels == 2 else x
    sf.write(path, data.astype(np.float32), sr, subtype="PCM_16")
    return path


def _song(folder, count=3, seconds=1.0):
    folder.mkdir()
    for i, name in enumerate(["kick", "bass", "keys", "vox"][:count]):
        _write(folder / f"{name}.wav", seconds=seconds, freq=80.0 * (i + 1), channels=1 + i % 2)
    return folder


def test_cli_params_settings_round_trip_and_overwrite(tmp_path, checkpoints, capsys):
    song = _song(tmp_path / "song")
    a, b, params = tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "s.json"
    assert cli.main(["mix", str(song), "-o", str(a), "--model", str(checkpoints["console"]), "--params", str(params),
                     "--classes", "keys.wav=pad"]) == 0
    doc = json.loads(params.read_text())
    assert doc["classes"]["keys"] == "pad" and [t["name"] for t in doc["tracks"]] == ["bass", "keys", "kick"]
    assert doc["model"].startswith("console_net:console_tiny.safetensors:")
    assert {"format", "version", "sample_rate", "tracks", "master", "console"} <= set(doc)
    assert cli.main(["mix", str(song), "-o", str(b), "--settings", str(params)]) == 0
    mix_a, sr_a = sf.read(a, always_2d=True)
    mix_b, _ = sf.read(b, always_2d=True)
    assert sr_a == SR and mix_a.shape == (SR, 2)
    np.testing.assert_array_equal(mix_a, mix_b)
    # refuses to overwrite without --force (exit 3) and leaves the file alone
    before = a.read_bytes()
    capsys.readouterr()
    assert cli.main(["mix", str(song), "-o", str(a), "--model", "rules"]) == 3
    assert "--force" in capsys.readouterr().err and a.read_bytes() == before
    assert cli.main(["mix", str(song), "-o", str(b), "--model", "rules", "--params", str(params)]) == 3
    assert cli.main(["mix", str(song), "-o", str(a), "--model", "rules", "--force"]) == 0
    assert a.read_bytes() != before
    params.write_text("{not json")
    capsys.readouterr()
    assert cli.main(["mix", str(song), "-o", str(tmp_path / "c.wav"), "--settings", str(params)]) == 2
    assert "s.json: settings file is not valid JSON" in capsys.readouterr().err


def test_cli_one_track_folder(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    _write(folder / "voice.wav", seconds=0.7)
    out = tmp_path / "mix.wav"
    assert cli.main(["mix", str(folder), "-o", str(out), "--model", "rules", "--no-progress"]) == 0
    data, sr = sf.read(out, always_2d=True)
    assert sr == SR and data.shape == (int(0.7 * SR), 2) and np.isfinite(data).all()
    assert np.abs(data).max() > 1e-3
    assert _true_peak_db(data.T) <= -1.0


def test_cli_64_tracks(tmp_path, checkpoints):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(64):
        _write(folder / f"t{i:02d}.wav", seconds=0.6, freq=60.0 * (1 + i % 17), amp=0.05)
    out = tmp_path / "mix.wav"
    assert cli.main(["mix", str(folder), "-o", str(out), "--model", str(checkpoints["console"])]) == 0
    data, _ = sf.read(out, always_2d=True)
    assert data.shape == (int(0.6 * SR), 2) and np.isfinite(data).all() and np.abs(data).max() > 1e-3


def test_cli_mixed_rates_lengths_and_channels(tmp_path, checkpoints, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    _write(folder / "a.wav", seconds=1.0, sr=SR, channels=1)
    _write(folder / "b.wav", seconds=0.7, sr=22050, channels=2, freq=330.0)
    _write(folder / "c.flac", seconds=0.5, sr=SR, channels=2, freq=500.0)
    out = tmp_path / "mix.wav"
    for model in (str(checkpoints["blackbox"]), str(checkpoints["console"]), "rules"):
        assert cli.main(["mix", str(folder), "-o", str(out), "--model", model, "--force"]) == 0
        data, sr = sf.read(out, always_2d=True)
        assert sr == SR and data.shape == (SR, 2) and np.isfinite(data).all()
    assert "resampled b.wav" in capsys.readouterr().err
    # the black box has no settings to write
    capsys.readouterr()
    assert cli.main(["mix", str(folder), "-o", str(tmp_path / "x.wav"), "--model", str(checkpoints["blackbox"]),
                     "--params", str(tmp_path / "p.json")]) == 2
    assert "black-box" in capsys.readouterr().err and not (tmp_path / "x.wav").exists()


def test_cli_bad_input_and_bad_model(tmp_path, checkpoints, capsys, monkeypatch):
    song = _song(tmp_path / "song", count=2)
    (song / "broken.wav").write_bytes(b"RIFF\x00\x00this is not audio at all")
    out = tmp_path / "mix.wav"
    assert cli.main(["mix", str(song), "-o", str(out), "--model", "rules"]) == 2
    err = capsys.readouterr().err
    assert "broken.wav" in err and "Traceback" not in err
    assert cli.main(["mix", str(song / "kick.wav"), str(tmp_path / "missing.wav"), "-o", str(out), "--model", "rules"]) == 2
    assert "missing.wav: file not found" in capsys.readouterr().err

    good = _song(tmp_path / "good", count=2)
    assert cli.main(["mix", str(good), "-o", str(out), "--model", str(tmp_path / "nope.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "nope.safetensors" in err and "no such checkpoint file" in err
    not_ckpt = tmp_path / "fake.safetensors"
    not_ckpt.write_bytes(b"\x80\x04 pickled junk")
    assert cli.main(["mix", str(good), "-o", str(out), "--model", str(not_ckpt)]) == 2
    assert "fake.safetensors" in capsys.readouterr().err

    empty = tmp_path / "no_checkpoints"
    empty.mkdir()
    monkeypatch.setattr(shipped, "checkpoint_folder", lambda: empty)
    for args in ([], ["--model", "console"]):
        assert cli.main(["mix", str(good), "-o", str(out), *args]) == 2
        assert "no shipped console checkpoint; pass --model PATH or --model rules" in capsys.readouterr().err
    assert cli.main(["mix", str(good), "-o", str(out), "--model", "blackbox"]) == 2
    assert "no shipped blackbox checkpoint" in capsys.readouterr().err
    assert not out.exists()
