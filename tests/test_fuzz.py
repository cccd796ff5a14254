"""Property-based tests (hypothesis) of the DSP, the console and every loader (issue #9).

* Every processor of :mod:`neuromix.core.dsp.modules` and the whole
  :class:`~neuromix.core.dsp.console.Console`, for any parameters inside their
  ``param_ranges`` (drawn as normalised values in [0, 1], endpoints included, one per
  batch item) and any finite input of bounded amplitude (short, odd lengths, mono or
  stereo, silence, DC, full-scale squares, arbitrary sample values), give finite
  outputs of the documented shape.
* The limiter holds its ceiling: true peak (4x oversampled with
  ``scipy.signal.resample_poly``, the meter the limiter documents) at most
  :data:`CEILING_TOLERANCE_DB` above ``ceiling_db``.
* Loaders never raise anything but :class:`~neuromix.core.errors.NeuromixError` on
  arbitrary bytes (audio, settings, patches, scores, MIDI, checkpoints, training
  configs), on corrupted copies of valid files, or on arbitrary JSON documents.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuromix.core.dsp import dynamics as D
from neuromix.core.dsp import modules as M
from neuromix.core.dsp.console import Console
from neuromix.core.errors import NeuromixError

CEILING_TOLERANCE_DB = 0.05
"""How far above ``ceiling_db`` the limiter's 4x true peak may read (the existing limiter tests' bound)."""
MAX_AMPLITUDE = 8.0
"""Inputs stay within +-8 (+18 dBFS): bounded, but far over full scale."""
RATES = (8000, 22050, 44100)

FUZZ_SCALE = float(os.environ.get("NEUROMIX_FUZZ_SCALE", "1"))
"""Multiplies every example count (e.g. ``NEUROMIX_FUZZ_SCALE=20`` for a long soak run)."""
# database=None: no .hypothesis folder in the source tree; failures print their reproducing example
FUZZ = settings(max_examples=int(250 * FUZZ_SCALE), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
FUZZ_FEW = settings(max_examples=int(60 * FUZZ_SCALE), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Small tensors: one intra-op thread is faster and keeps the machine free for others."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --------------------------------------------------------------------------- strategies


@st.composite
def signals(draw: st.DrawFn, channels: tuple[int, ...] = (1, 2), max_samples: int = 4096) -> torch.Tensor:
    """A finite ``(batch, channels, samples)`` float32 signal with |x| <= MAX_AMPLITUDE."""
    batch = draw(st.integers(1, 2))
    chans = draw(st.sampled_from(channels))
    kind = draw(st.sampled_from(["values", "noise", "sine", "square", "dc", "silence", "impulse"]))
    if kind == "values":  # arbitrary sample values, short
        n = draw(st.integers(1, 64))
        values = draw(st.lists(st.floats(-MAX_AMPLITUDE, MAX_AMPLITUDE, width=32), min_size=batch * chans * n,
                               max_size=batch * chans * n))
        return torch.tensor(values, dtype=torch.float32).reshape(batch, chans, n)
    n = draw(st.integers(1, max_samples))
    level = draw(st.floats(0.0, MAX_AMPLITUDE))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    if kind == "noise":
        x = rng.uniform(-1.0, 1.0, (batch, chans, n))
    elif kind == "sine":
        wave = np.sin(2 * np.pi * rng.uniform(0.0, 0.5) * t + rng.uniform(0, 2 * np.pi))
        x = np.broadcast_to(wave, (batch, chans, n))
    elif kind == "square":
        period = draw(st.integers(2, 200))
        x = np.broadcast_to(np.where((t // (period // 2 or 1)) % 2 == 0, 1.0, -1.0), (batch, chans, n))
    elif kind == "dc":
        x = np.ones((batch, chans, n))
    elif kind == "silence":
        x = np.zeros((batch, chans, n))
    else:
        x = np.zeros((batch, chans, n))
        x[..., draw(st.integers(0, n - 1))] = 1.0
    return torch.tensor(level * x, dtype=torch.float32)


def normalised(count: int, batch: int) -> st.SearchStrategy[torch.Tensor]:
    """``(batch, count)`` normalised parameters in [0, 1], endpoints likely."""
    unit = st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0.0, 1.0))
    return st.lists(unit, min_size=batch * count, max_size=batch * count).map(
        lambda v: torch.tensor(v, dtype=torch.float32).reshape(batch, count)
    )


def _processors(rate: int) -> dict[str, M.Processor]:
    return {
        "gain": M.Gain(rate),
        "pan": M.Pan(rate),
        "width": M.StereoWidth(rate),
        "track_eq": M.ParametricEQ(rate),
        "compressor": M.Compressor(rate),
        "limiter": M.Limiter(rate),
        "reverb": M.Reverb(rate, seed=3, max_seconds=0.5),
        "delay": M.Delay(rate),
    }


_STEREO_IN = {"width"}  # mid/side processing needs two channels
_STEREO_OUT = {"pan", "reverb"}  # documented: mono in, stereo out


def _true_peak_db(y: torch.Tensor) -> np.ndarray:
    """Per batch item: 4x true peak (dBTP) over all channels, as the limiter measures it."""
    arr = y.detach().double().numpy()
    up = scipy.signal.resample_poly(arr, 4, 1, axis=-1)
    return 20 * np.log10(np.abs(up).max(axis=(1, 2)) + 1e-300)


# --------------------------------------------------------------------------- DSP and console


@FUZZ
@given(data=st.data(), rate=st.sampled_from(RATES), name=st.sampled_from(sorted(_processors(8000))))
def test_processors_finite_and_shaped(data: st.DataObject, rate: int, name: str) -> None:
    proc = _processors(rate)[name]
    x = data.draw(signals(channels=(2,) if name in _STEREO_IN else (1, 2)), label="x")
    u = data.draw(normalised(proc.num_params, x.shape[0]), label="u")
    params = proc.denormalise(u)
    for key, r in proc.param_ranges.items():  # the mapping itself stays inside the range
        slack = 1e-4 * max(abs(r.low), abs(r.high)) + 1e-6
        assert bool(((params[key] >= r.low - slack) & (params[key] <= r.high + slack)).all()), key
    before = x.clone()
    y = proc(x, params)
    channels = 2 if name in _STEREO_OUT else x.shape[1]
    assert y.shape == (x.shape[0], channels, x.shape[2]), (name, tuple(y.shape))
    assert y.dtype == torch.float32
    assert bool(torch.isfinite(y).all()), f"{name} at {rate} Hz: non-finite output"
    assert torch.equal(x, before), f"{name} modified its input"


@FUZZ_FEW
@given(data=st.data(), rate=st.sampled_from((8000, 22050)), tracks=st.integers(1, 4))
def test_console_finite_shaped_and_limited(data: st.DataObject, rate: int, tracks: int) -> None:
    console = Console(rate)
    x = data.draw(signals(max_samples=3000), label="one track")
    batch, chans, n = x.shape
    others = [data.draw(signals(channels=(chans,), max_samples=n), label=f"track{i}") for i in range(1, tracks)]
    stack = [x] + [torch.nn.functional.pad(o[:batch].expand(batch, -1, -1), (0, n - o.shape[-1])) for o in others]
    multitrack = torch.stack(stack, dim=1)  # (batch, tracks, channels, n)
    mask = torch.ones(batch, tracks, dtype=torch.bool)
    if tracks > 1 and data.draw(st.booleans(), label="pad a track"):
        mask[:, -1] = False
    track_u = data.draw(normalised(len(console.track_ranges), batch * tracks), label="track_u")
    track_u = track_u.reshape(batch, tracks, -1)
    master_u = data.draw(normalised(len(console.master_ranges), batch), label="master_u")
    params = console.denormalise(track_u, master_u)
    y = console(multitrack, mask, params)
    assert y.shape == (batch, 2, n)
    assert bool(torch.isfinite(y).all())
    ceiling = params.master["limiter_ceiling_db"].double().numpy()
    peaks = _true_peak_db(y)
    assert (peaks <= ceiling + CEILING_TOLERANCE_DB).all(), (peaks, ceiling)


@FUZZ
@given(
    x=signals(),
    rate=st.sampled_from(RATES),
    ceiling=st.floats(-24.0, 0.0),
    release=st.floats(1.0, 1000.0),
    lookahead=st.sampled_from([0.2, 1.5, 5.0]),
)
def test_limiter_holds_its_ceiling(
    x: torch.Tensor, rate: int, ceiling: float, release: float, lookahead: float
) -> None:
    y = D.limiter(x, rate, ceiling_db=ceiling, release_ms=release, lookahead_ms=lookahead)
    assert y.shape == x.shape and bool(torch.isfinite(y).all())
    peaks = _true_peak_db(y)
    assert (peaks <= ceiling + CEILING_TOLERANCE_DB).all(), (peaks, ceiling)
    if _true_peak_db(x).max() <= ceiling - 0.5:  # well below the ceiling: untouched
        torch.testing.assert_close(y, x, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------- loaders on arbitrary bytes


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _wav_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    t = np.arange(800) / 8000
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t))[:, None].repeat(2, 1), 8000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _flac_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, np.random.default_rng(1).uniform(-0.5, 0.5, (800, 1)), 8000, format="FLAC")
    return buf.getvalue()


def _midi_bytes() -> bytes:
    import io

    import mido

    track = mido.MidiTrack([mido.Message("note_on", note=60, velocity=90, time=0),
                            mido.Message("control_change", control=1, value=64, time=10),
                            mido.Message("note_off", note=60, time=100)])
    midi = mido.MidiFile(type=0)
    midi.tracks.append(track)
    buf = io.BytesIO()
    midi.save(file=buf)
    return buf.getvalue()


@st.composite
def corrupted(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` truncated, with bytes overwritten, inserted or with a header field replaced."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "u32"]))
        if op == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)):]
        elif op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(max_size=16))
        elif op == "u32" and len(data) >= 4:  # a size / rate / count field set to an extreme
            i = draw(st.integers(0, min(len(data), 64) - 4))
            data[i : i + 4] = struct.pack("<I", draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 3, 65535])))
    return bytes(data)


def _loaders(folder: Path) -> dict[str, tuple[str, Callable[[Path], object]]]:
    """Loader name -> (file suffix, call on a path)."""
    from neuromix.core import checkpoint
    from neuromix.core.io import load_multitrack, read_audio
    from neuromix.mixing.inference import read_settings
    from neuromix.mixing.models import MODEL_REGISTRY
    from neuromix.mixing.train import TrainConfig
    from neuromix.synthesis.patch import Patch
    from neuromix.synthesis.score import load_score, midi_to_score

    return {
        "read_audio.wav": (".wav", lambda p: read_audio(p)),
        "read_audio.flac": (".flac", lambda p: read_audio(p)),
        "load_multitrack": (".aiff", lambda p: load_multitrack([p])),
        "read_settings": (".json", read_settings),
        "Patch.load": (".json", Patch.load),
        "load_score.json": (".json", load_score),
        "load_score.toml": (".toml", load_score),
        "midi_to_score": (".mid", lambda p: midi_to_score(p, "glass-pluck")),
        "checkpoint.load": (".safetensors", lambda p: checkpoint.load(p, MODEL_REGISTRY)),
        "TrainConfig.load": (".json", TrainConfig.load),
    }


def _only_documented_errors(call: Callable[[Path], object], path: Path) -> None:
    try:
        call(path)
    except NeuromixError:
        pass  # documented, user-facing
    except BaseException as exc:  # noqa: BLE001
        raise AssertionError(f"{type(exc).__name__} escaped from a loader: {exc!r}"[:500]) from exc


_LOADER_NAMES = (
    "read_audio.wav", "read_audio.flac", "load_multitrack", "read_settings", "Patch.load", "load_score.json",
    "load_score.toml", "midi_to_score", "checkpoint.load", "TrainConfig.load",
)


def test_every_loader_is_fuzzed(scratch: Path) -> None:
    assert sorted(_LOADER_NAMES) == sorted(_loaders(scratch))


@FUZZ
@given(name=st.sampled_from(_LOADER_NAMES), data=st.binary(max_size=512))
def test_loaders_raise_only_documented_errors_on_random_bytes(scratch: Path, name: str, data: bytes) -> None:
    suffix, call = _loaders(scratch)[name]
    path = scratch / f"random{suffix}"
    path.write_bytes(data)
    _only_documented_errors(call, path)


@pytest.fixture(scope="module")
def valid_files(scratch: Path) -> dict[str, bytes]:
    """Valid files to corrupt, by loader name."""
    from neuromix.synthesis.patch import Patch
    from neuromix.synthesis.testing import save_tiny_network

    patch = Patch.load("glass-pluck").to_json(indent=1).encode()
    score = json.dumps({"format": "neuromix-score", "version": 1, "sample_rate": 22050,
                        "patches": {"a": "glass-pluck"},
                        "events": [{"time": 0, "duration": 0.1, "patch": "a", "note": 60}]}).encode()
    toml = (b'format = "neuromix-score"\nversion = 1\n'
            b'[[events]]\ntime = 0.0\nduration = 0.1\npatch = "glass-pluck"\nnote = 60\n')
    settings_doc = json.dumps({
        "format": "neuromix-console-settings", "version": 1,
        "tracks": [{"name": "a", "gain_db": -3.0, "pan": 0.2}], "master": {"width": 1.1},
    }).encode()
    ckpt = save_tiny_network(scratch / "tiny.safetensors", "console", seed=2).read_bytes()
    return {
        "read_audio.wav": _wav_bytes(),
        "read_audio.flac": _flac_bytes(),
        "load_multitrack": _wav_bytes(),
        "read_settings": settings_doc,
        "Patch.load": patch,
        "load_score.json": score,
        "load_score.toml": toml,
        "midi_to_score": _midi_bytes(),
        "checkpoint.load": ckpt,
        "TrainConfig.load": json.dumps({"steps": 3, "batch_size": 2, "model": {"embed_dim": 32}}).encode(),
    }


@FUZZ
@given(data=st.data(), name=st.sampled_from(_LOADER_NAMES))
def test_loaders_raise_only_documented_errors_on_corrupted_files(
    scratch: Path, valid_files: dict[str, bytes], data: st.DataObject, name: str
) -> None:
    suffix, call = _loaders(scratch)[name]
    blob = data.draw(corrupted(valid_files[name]), label="corrupted")
    path = scratch / f"corrupted{suffix}"
    path.write_bytes(blob)
    _only_documented_errors(call, path)


# --------------------------------------------------------------------------- arbitrary documents

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@st.composite
def patch_like(draw: st.DrawFn) -> dict:
    """A valid preset with a few fields replaced by arbitrary JSON values (nested ones too)."""
    from neuromix.synthesis.patch import Patch

    doc = Patch.load(draw(st.sampled_from(["glass-pluck", "wobble-saw-lead", "console-breathing"]))).to_dict()
    for _ in range(draw(st.integers(1, 3))):
        node: dict | list = doc
        path = []
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
            if not isinstance(node[key], (dict, list)):
                break
            path.append(key)
            node = node[key]
        if isinstance(node, dict) and node:
            node[draw(st.sampled_from(sorted(node)))] = draw(json_values)
        elif isinstance(node, list) and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(json_values)
    return doc


@FUZZ
@given(doc=patch_like())
def test_patch_documents_raise_only_config_errors(doc: dict) -> None:
    from neuromix.core.errors import ConfigError
    from neuromix.synthesis.patch import Patch

    try:
        patch = Patch.from_dict(doc)
    except ConfigError:
        return
    except BaseException as exc:  # noqa: BLE001
        raise AssertionError(f"{type(exc).__name__} from Patch.from_dict: {exc!r}"[:500]) from exc
    # a patch that validates serialises canonically and reloads to the same patch
    assert Patch.from_json(patch.to_json()) == patch


@FUZZ
@given(doc=st.one_of(json_values, st.dictionaries(st.sampled_from(
    ["format", "version", "tracks", "master", "console", "classes", "model", "sample_rate"]), json_values, max_size=6)))
def test_settings_documents_raise_only_config_errors(doc: object) -> None:
    from neuromix.core.errors import ConfigError

    console = Console(22050)
    try:
        params, names = console.settings_from_dict(doc)  # type: ignore[arg-type]
    except ConfigError:
        return
    except BaseException as exc:  # noqa: BLE001
        raise AssertionError(f"{type(exc).__name__} from settings_from_dict: {exc!r}"[:500]) from exc
    for value in [*params.track.values(), *params.master.values()]:
        assert bool(torch.isfinite(value).all())


_EVENT_KEYS = ["time", "duration", "patch", "note", "hz", "pitch", "velocity", "gain_db", "pan", "controls",
               "automation", "seed"]
_SCORE_KEYS = ["sample_rate", "tail_s", "output", "time_unit", "tempo_bpm", "name"]
patch_refs = st.one_of(
    st.sampled_from(["glass-pluck", "no-such-preset", "../x.json", ""]),
    st.fixed_dictionaries({"patch": st.sampled_from(["glass-pluck", "nope"])}, optional={"controls": json_values}),
    json_values,
)


@FUZZ
@given(
    events=st.lists(st.dictionaries(st.sampled_from(_EVENT_KEYS), json_values, max_size=8), max_size=3),
    extra=st.dictionaries(st.sampled_from(_SCORE_KEYS), json_values, max_size=3),
    patches=st.one_of(st.dictionaries(st.text(max_size=6), patch_refs, max_size=2), json_values),
)
def test_score_documents_raise_only_config_errors(events: list, extra: dict, patches: object) -> None:
    from neuromix.core.errors import ConfigError
    from neuromix.synthesis.score import load_score

    doc = {"format": "neuromix-score", "version": 1, "events": events, "patches": patches, **extra}
    try:
        load_score(doc)
    except ConfigError:
        pass
    except BaseException as exc:  # noqa: BLE001
        raise AssertionError(f"{type(exc).__name__} from load_score: {exc!r}"[:500]) from exc


def test_strategies_reach_the_edges() -> None:
    """The parameter strategy draws range endpoints (a guard against a silently narrow fuzzer)."""
    seen: set[float] = set()

    @settings(max_examples=60, deadline=None, database=None)
    @given(normalised(1, 1))
    def collect(u: torch.Tensor) -> None:
        seen.add(float(u))

    collect()
    assert {0.0, 1.0} <= seen
    assert math.isclose(max(seen), 1.0) and math.isclose(min(seen), 0.0)
