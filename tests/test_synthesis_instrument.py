"""Networks as instruments: layers, bends, re-initialisation, control axes, sonification, dreaming, feedback.

Uses tiny untrained networks with the shipped layer structure (``neuromix.synthesis.testing``),
saved with :func:`neuromix.core.checkpoint.save` and loaded by path like any checkpoint.
"""

from __future__ import annotations

import pickle

import pytest
import torch

from neuromix.core.errors import CheckpointError, ConfigError
from neuromix.synthesis.analysis import cents, describe, estimate_f0
from neuromix.synthesis.bending import BEND_OPS, Bend, Reinit
from neuromix.synthesis.control import apply_axes, parse_control
from neuromix.synthesis.dream import dream, parse_dream
from neuromix.synthesis.excitation import Slot, generate
from neuromix.synthesis.feedback import parse_feedback, run_feedback
from neuromix.synthesis.instrument import Instrument, State
from neuromix.synthesis.modulation import Modulation, parse_modulation
from neuromix.synthesis.sonify import parse_sonify, sonify
from neuromix.synthesis.testing import save_tiny_network

SR = 22050


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nets")
    return {
        "blackbox": Instrument.load(str(save_tiny_network(folder / "bb.safetensors", "blackbox", seed=0))),
        "console": Instrument.load(str(save_tiny_network(folder / "cn.safetensors", "console", seed=0))),
    }


def _tracks(seconds=1.0, freq=220.0, signal="saw", seed=0):
    n = int(seconds * SR)
    x = generate(Slot(signal, level_db=-6.0), n, SR, freq, seed=seed)
    return x[None, None, None], torch.tensor([[7]])  # class "lead"


def _play(inst, tracks, classes, bends=(), state=None):
    with torch.no_grad():
        if state is None:
            state = inst.condition(tracks, classes, [0], SR, torch.zeros(1, dtype=torch.float64), bends=bends)
        return inst.process(tracks, [0], SR, state, bends=bends)[0]


def test_layers_are_listed_with_paths_and_channels(nets):
    bb = nets["blackbox"]
    info = bb.layer("tcn.blocks.3.conv")
    assert (info.path, info.channels, info.channel_axis) == ("audio", 16, 1)
    assert bb.layer("analyser.encoder.blocks.1").path == "conditioning"
    assert bb.layer("analyser.aggregator.encoder.layers.0").channel_axis == -1
    names = {i.name for i in bb.layers("audio")}
    assert {f"tcn.blocks.{k}.conv" for k in range(6)} <= names and "tcn.out" in names
    assert all(i.path == "conditioning" for i in nets["console"].layers())
    assert nets["console"].layer("track_head.4").channels == len(nets["console"].network.track_names)
    with pytest.raises(ConfigError, match="tcn.blocks.0"):
        bb.layer("tcn.blocks.9.conv")


NEUTRAL = {
    "scale": 1.0,
    "bias": 0.0,
    "mask": 0.0,
    "threshold": 0.0,
    "invert": 0.0,
    "permute": 0.0,
    "noise_add": 0.0,
    "noise_mul": 0.0,
    "oscillate": 0.0,
}
STRONG = {
    "scale": 3.0,
    "bias": 2.0,
    "mask": 0.6,
    "threshold": 1.0,
    "invert": 1.0,
    "permute": 1.0,
    "noise_add": 2.0,
    "noise_mul": 2.0,
    "oscillate": 2.0,
}


@pytest.mark.parametrize("op", sorted(BEND_OPS))
def test_each_bend_is_identity_when_neutral_and_deterministic_when_not(nets, op):
    bb = nets["blackbox"]
    tracks, classes = _tracks(0.5)
    plain = _play(bb, tracks, classes)
    for layer in ("tcn.blocks.2.conv", "analyser.encoder.blocks.1"):
        neutral = Bend(layer, op, Modulation(NEUTRAL[op]), rate_hz=3.0, seed=1)
        assert torch.equal(_play(bb, tracks, classes, [neutral]), plain), (op, layer)
        strong = Bend(layer, op, Modulation(STRONG[op]), rate_hz=3.0, seed=1)
        a, b = _play(bb, tracks, classes, [strong]), _play(bb, tracks, classes, [strong])
        assert torch.equal(a, b)
        assert float((a - plain).abs().max()) > 1e-4, (op, layer)
    # the hooks are gone afterwards
    assert torch.equal(_play(bb, tracks, classes), plain)


def test_audio_path_modulation_is_time_aligned(nets):
    bb = nets["blackbox"]
    tracks, classes = _tracks(1.0)
    plain = _play(bb, tracks, classes)
    step = parse_modulation({"points": [[0.6, 1.0], [0.6001, 4.0]]}, "amount")
    bent = _play(bb, tracks, classes, [Bend("tcn.out", "scale", step)])
    n_fft, _ = bb.frame_geometry(SR)
    cut = int(0.6 * SR) - n_fft
    assert torch.equal(bent[:, :cut], plain[:, :cut])
    assert float((bent[:, int(0.7 * SR) :] - plain[:, int(0.7 * SR) :]).abs().max()) > 1e-3


def test_bend_channels_restrict_the_bend(nets):
    bb = nets["blackbox"]
    tracks, classes = _tracks(0.5)
    store_all, store_some = [], []
    bb.network.tcn.blocks[1].conv.register_forward_hook(lambda m, i, o: None).remove()
    with torch.no_grad():
        for bends, store in (
            ([], store_all),
            ([Bend("tcn.blocks.1.conv", "scale", Modulation(0.0), channels=(2, 5))], store_some),
        ):
            state = bb.condition(tracks, classes, [0], SR, torch.zeros(1, dtype=torch.float64))
            with bb.hooks(bends):
                handle = bb.module("tcn.blocks.1.conv").register_forward_hook(lambda m, i, o, s=store: s.append(o))
                bb.network.render(tracks, None, SR, state.cond[0])
                handle.remove()
    changed = (store_all[0] - store_some[0]).abs().amax(dim=(0, 2)) > 0
    assert changed.nonzero().flatten().tolist() == [2, 5]


def test_reinit_is_seeded_blendable_and_leaves_the_network_alone(nets):
    bb = nets["blackbox"]
    tracks, classes = _tracks(0.5)
    before = {k: v.clone() for k, v in bb.network.state_dict().items()}
    plain = _play(bb, tracks, classes)
    spec = Reinit(("tcn.blocks.4", "analyser.encoder.blocks.2"), "orthogonal", seed=3)
    a = _play(bb.variant([spec]), tracks, classes)
    b = _play(bb.variant([Reinit(spec.layers, "orthogonal", seed=3)]), tracks, classes)
    c = _play(bb.variant([Reinit(spec.layers, "orthogonal", seed=4)]), tracks, classes)
    zero = _play(bb.variant([Reinit(spec.layers, "orthogonal", seed=3, mix=0.0)]), tracks, classes)
    assert torch.equal(a, b) and not torch.equal(a, c) and float((a - plain).abs().max()) > 1e-4
    torch.testing.assert_close(zero, plain)
    assert all(torch.equal(v, before[k]) for k, v in bb.network.state_dict().items())
    with pytest.raises(ConfigError, match="not a bendable layer"):
        bb.variant([Reinit(("tcn.nope",))])


def test_gradient_axis_moves_its_descriptor(nets):
    bb = nets["blackbox"]
    tracks, classes = _tracks(0.8)
    with torch.no_grad():
        state = bb.condition(tracks, classes, [0], SR, torch.zeros(1, dtype=torch.float64))
    centroids = []
    for amount in (-0.3, 0.0, 0.3):
        space = parse_control(
            {"axes": [{"kind": "gradient", "descriptor": "centroid_hz", "amount": amount}], "step": 0.1}, "c"
        )
        moved = apply_axes(space, bb, state, tracks, [0], SR, [], 0.8)
        centroids.append(float(describe(_play(bb, tracks, classes, state=moved), SR)["centroid_hz"][0]))
    assert centroids[0] < centroids[1] < centroids[2]


def test_time_varying_conditioning_equals_static_when_constant(nets):
    bb = nets["blackbox"]
    tracks, classes = _tracks(0.6)
    with torch.no_grad():
        state = bb.condition(tracks, classes, [0], SR, torch.zeros(1, dtype=torch.float64))
        static = bb.process(tracks, [0], SR, state)
        keyed = State(torch.tensor([0.0, 0.6], dtype=torch.float64), cond=state.cond.expand(2, -1, -1))
        varying = bb.process(tracks, [0], SR, keyed)
    torch.testing.assert_close(varying, static, atol=1e-5, rtol=1e-4)
    space = parse_control({"axes": [{"kind": "context", "amount": -1.0}]}, "c")
    moved = apply_axes(space, bb, state, tracks, [0], SR, [], 0.6)
    direction, amount = moved.axes[0]
    half = state.cond.shape[-1] // 2
    cond = state.cond[0] + amount.initial() * direction
    assert torch.equal(cond[:, half:], torch.zeros_like(cond[:, half:]))


def test_console_settings_axis_and_keyframe_crossfade(nets):
    cn = nets["console"]
    tracks, classes = _tracks(0.6)
    with torch.no_grad():
        state = cn.condition(tracks, classes, [0], SR, torch.zeros(1, dtype=torch.float64))
        keyed = State(
            torch.tensor([0.0, 0.6], dtype=torch.float64),
            track_u=state.track_u.expand(2, -1, -1),
            master_u=state.master_u.expand(2, -1),
        )
        torch.testing.assert_close(
            cn.process(tracks, [0], SR, keyed), cn.process(tracks, [0], SR, state), atol=1e-5, rtol=1e-4
        )
    centroids = []
    for amount in (-0.5, 0.5):
        space = parse_control(
            {"axes": [{"kind": "setting", "setting": "master.eq_high_gain_db", "amount": amount}]}, "c"
        )
        moved = apply_axes(space, cn, state, tracks, [0], SR, [], 0.6)
        centroids.append(float(describe(_play(cn, tracks, classes, state=moved), SR)["centroid_hz"][0]))
    assert centroids[1] > centroids[0] * 1.1
    with pytest.raises(ConfigError, match="unknown console setting"):
        apply_axes(
            parse_control({"axes": [{"kind": "setting", "setting": "master.nope", "amount": 1}]}, "c"),
            cn,
            state,
            tracks,
            [0],
            SR,
            [],
            0.6,
        )


@pytest.mark.parametrize("mode", ["wavetable", "envelope", "direct"])
def test_sonification_modes(nets, mode):
    bb = nets["blackbox"]
    tracks, classes = _tracks(1.0)
    store: dict[str, list] = {"tcn.blocks.2.act": []}
    with torch.no_grad():
        state = bb.condition(tracks, classes, [0], SR, torch.zeros(1, dtype=torch.float64))
        out = bb.process(tracks, [0], SR, state, captures=store)[0]
    spec = parse_sonify({"layer": "tcn.blocks.2.act", "mode": mode, "top_k": 8, "rate_hz": 1500.0}, "s")
    info = bb.layer("tcn.blocks.2.act")
    y = sonify(store["tcn.blocks.2.act"][0], info, spec, out, SR, 196.0, bb.frame_times(out.shape[-1], SR))
    assert y.shape == out.shape and torch.isfinite(y).all() and float(y.abs().max()) > 0
    if mode == "wavetable":
        assert abs(cents(estimate_f0(y, SR), 196.0)) < 1.0
    if mode == "envelope":
        ratio = y / out.where(out.abs() > 1e-4, torch.ones_like(out))
        assert float(ratio.min()) >= -1e-4 and float(ratio.max()) <= 1.0 + 1e-4


def test_dreaming_climbs_its_objective_deterministically(nets):
    bb = nets["blackbox"]
    tracks, classes = _tracks(0.3, signal="sine")
    spec = parse_dream(
        {
            "target": {"kind": "unit", "layer": "tcn.blocks.4.conv", "channel": 3},
            "steps": 12,
            "lr": 0.1,
            "seconds": 0.3,
            "harmonics": 16,
        },
        "d",
    )
    a = dream(bb, spec, tracks, classes, [0], SR, 220.0, 0.5, seed=0)
    b = dream(bb, spec, tracks, classes, [0], SR, 220.0, 0.5, seed=0)
    assert a.history == b.history and a.history[-1] > a.history[0]
    x = a.signal(SR, SR, 220.0)
    assert abs(float(x.abs().max()) - 1.0) < 1e-6 and abs(cents(estimate_f0(x, SR), 220.0)) < 0.5
    waveform = parse_dream(
        {
            "target": {"kind": "descriptor", "name": "flatness"},
            "param": "waveform",
            "steps": 8,
            "seconds": 0.3,
            "loop_s": 0.05,
        },
        "d",
    )
    w = dream(bb, waveform, tracks, classes, [0], SR, 220.0, 0.5, seed=1)
    assert w.history[-1] > w.history[0]
    loop = w.signal(4 * w.loop_samples, w.rate, 220.0)
    assert torch.allclose(loop[: w.loop_samples], loop[w.loop_samples : 2 * w.loop_samples])
    cn = nets["console"]
    setting = parse_dream(
        {
            "target": {"kind": "setting", "name": "master.reverb_decay_s"},
            "param": "waveform",
            "steps": 8,
            "lr": 0.1,
            "seconds": 0.3,
        },
        "d",
    )
    s = dream(cn, setting, tracks, classes, [0], SR, 220.0, 0.5, seed=0)
    assert s.history[-1] > s.history[0]
    with pytest.raises(ConfigError, match="console network"):
        dream(bb, setting, tracks, classes, [0], SR, 220.0, 0.5, seed=0)


@pytest.mark.parametrize("note", [40, 64, 84])
def test_feedback_loop_sustains_on_pitch(nets, note):
    bb = nets["blackbox"]
    pitch = 440.0 * 2 ** ((note - 69) / 12)
    n = int(1.2 * SR)
    excitation = generate(Slot("noise", {"color": "pink"}, level_db=-3.0), n, SR, pitch, seed=0)
    tracks = excitation[None, None, None]
    classes = torch.tensor([[9]])
    with torch.no_grad():
        state = bb.condition(tracks, classes, [0], SR, torch.zeros(1, dtype=torch.float64))
        gain = 10 ** (-40 / 20 / pitch)  # -40 dB per second at the fundamental
        decaying = run_feedback(
            bb, parse_feedback({"gain": gain, "burst_s": 0.01}, "f"), excitation, tracks, [0], SR, state, pitch
        )
        sustained = run_feedback(
            bb,
            parse_feedback({"gain": 1.05, "burst_s": 0.01, "limit_db": -6.0}, "f"),
            excitation,
            tracks,
            [0],
            SR,
            state,
            pitch,
        )
    for y in (decaying, sustained):
        assert torch.isfinite(y).all()
        assert abs(cents(estimate_f0(y[None], SR, start_s=0.2, seconds=0.4), pitch)) < 10.0
    rms = lambda x: float(x.square().mean().sqrt())  # noqa: E731
    assert rms(decaying[int(0.9 * SR) :]) < 0.5 * rms(decaying[int(0.1 * SR) : int(0.3 * SR)])
    assert (
        rms(sustained[int(0.9 * SR) :]) > 0.1 and float(sustained[int(0.3 * SR) :].abs().max()) < 10 ** (-6 / 20) * 1.5
    )


def test_loading_refuses_unknown_names_and_pickles(tmp_path):
    with pytest.raises(ConfigError, match="available shipped networks"):
        Instrument.load("no-such-network")
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(CheckpointError, match="pickle"):
        Instrument.load(str(evil))
    with pytest.raises(ConfigError, match="cannot be played"):
        Instrument(torch.nn.Linear(2, 2))
