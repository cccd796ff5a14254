"""Patches: validation with named fields, canonical JSON, controls and automation, reproducible renders."""

from __future__ import annotations

import json

import pytest
import torch

from neuromix.core.errors import ConfigError
from neuromix.synthesis.analysis import cents, describe, estimate_f0
from neuromix.synthesis.instrument import Instrument
from neuromix.synthesis.patch import Patch, list_presets
from neuromix.synthesis.render import adsr
from neuromix.synthesis.testing import save_tiny_network


@pytest.fixture(scope="module")
def bb_path(tmp_path_factory):
    return save_tiny_network(tmp_path_factory.mktemp("nets") / "bb.safetensors", "blackbox", seed=1)


def _doc(path, **overrides):
    doc = {
        "name": "test-lead",
        "network": {"path": str(path)},
        "pitched": True,
        "sample_rate": 22050,
        "duration_s": 0.8,
        "note": 57,
        "excitation": {
            "slots": [{"signal": "saw", "level_db": -6, "class": "lead"}],
            "context": [{"signal": "noise", "params": {"color": "pink"}, "class": "hihat"}],
        },
        "techniques": [
            {
                "type": "bend",
                "layer": "tcn.blocks.3.conv",
                "op": "scale",
                "amount": {"value": 1.5, "lfo": {"rate_hz": 3, "depth": 1}},
            },
            {"type": "control", "axes": [{"kind": "random", "seed": 3, "amount": 0.5}]},
        ],
        "controls": {
            "depth": {"target": "/techniques/0/amount/lfo/depth", "min": 0, "max": 2, "descriptor": "spread_db"},
            "axis": {"target": "/techniques/1/axes/0/amount", "min": -2, "max": 2},
        },
        "main_control": "depth",
        "envelope": {"attack_s": 0.01, "release_s": 0.1},
    }
    doc.update(overrides)
    return doc


def test_canonical_json_is_stable_and_round_trips(bb_path):
    patch = Patch.from_dict(_doc(bb_path))
    text = patch.to_json()
    assert text == Patch.from_json(text).to_json()
    assert json.loads(text)["seed"] == 0 and json.loads(text)["duration_s"] == 0.8
    # integers and floats normalise: 57 and 57.0 give the same file
    assert Patch.from_dict(_doc(bb_path, note=57.0)).to_json() == text
    assert " " not in text.replace("test-lead", "")[:50] and list(json.loads(text)) == sorted(json.loads(text))


def test_render_is_bit_identical_and_seeded(bb_path):
    patch = Patch.from_dict(_doc(bb_path))
    a = patch.render()
    b = Patch.from_json(patch.to_json()).render()
    assert torch.equal(a.audio, b.audio)
    assert a.audio.shape == (2, round((0.8 + 0.1) * 22050))
    assert not torch.equal(a.audio, patch.render(seed=5).audio)  # the context noise is seeded
    assert a.report.ok and a.info["network_hash"] == Instrument.load(str(bb_path)).content_hash


def test_render_follows_note_and_controls(bb_path):
    patch = Patch.from_dict(_doc(bb_path))
    for note in (45, 69):
        r = patch.render(note=note)
        assert abs(cents(estimate_f0(r.audio, r.sample_rate), 440 * 2 ** ((note - 69) / 12))) < 2.0
    assert patch.control_value("depth") == 1.0
    deeper = patch.with_controls(depth=2.0)
    assert deeper.control_value("depth") == 2.0 and not torch.equal(deeper.render().audio, patch.render().audio)
    with pytest.raises(ConfigError, match="control depth"):
        patch.with_controls(depth=5.0)
    with pytest.raises(ConfigError, match="unknown control"):
        patch.with_controls(nope=1.0)


def test_automation_writes_a_trajectory(bb_path):
    patch = Patch.from_dict(_doc(bb_path))
    moved = patch.with_automation({"axis": [[0.0, -2.0], [0.8, 2.0]]})
    doc = moved.to_dict()
    assert doc["techniques"][1]["axes"][0]["amount"] == {"points": [[0.0, -2.0], [0.8, 2.0]], "curve": "linear"}
    r = moved.render()
    assert r.report.ok and not torch.equal(r.audio, patch.render().audio)
    # a field that cannot vary over time refuses automation, naming it
    fixed = _doc(bb_path)
    fixed["controls"]["level"] = {"target": "/excitation/slots/0/level_db", "min": -24, "max": 0}
    with pytest.raises(ConfigError, match="level_db: must be a number"):
        Patch.from_dict(fixed).with_automation({"level": [[0.0, -12.0], [0.5, -6.0]]})


def test_envelope_is_continuous():
    env = adsr(22050, 22050, 0.5, 0.01, 0.1, 0.6, 0.3)
    assert float(env.max()) == pytest.approx(1.0, abs=1e-3) and float(env[0]) == 0.0
    assert float(env.diff().abs().max()) < 1.5 / (0.01 * 22050)
    assert float(env[int(0.3 * 22050)]) == pytest.approx(0.6, abs=1e-4) and float(env[-1]) == 0.0


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.update(sample_rate=1000), "sample_rate"),
        (lambda d: d.update(duration_s=-1), "duration_s"),
        (lambda d: d["excitation"]["slots"][0].update(signal="kazoo"), r"excitation\.slots\[0\]\.signal"),
        (lambda d: d["techniques"][0].update(op="explode"), r"techniques\[0\]\.op"),
        (lambda d: d["techniques"][0].update(amount=99), r"techniques\[0\]\.amount"),
        (lambda d: d["techniques"].append({"type": "control", "axes": []}), r"techniques\[2\]"),
        (lambda d: d["techniques"].append({"type": "warp"}), r"techniques\[2\]\.type"),
        (lambda d: d.update(colour="red"), "unknown field"),
        (lambda d: d.update(network={"name": "blackbox", "path": "x"}), "network"),
        (lambda d: d.update(network={"name": "blackbox", "hash": "xyz"}), r"network\.hash"),
        (lambda d: d["controls"]["depth"].update(target="/techniques/7/amount"), r"controls\.depth\.target"),
        (lambda d: d["controls"]["depth"].update(max=50), r"controls\.depth"),
        (lambda d: d.update(main_control="nope"), "main_control"),
        (lambda d: d.update(version=99), "version"),
        (lambda d: d["excitation"].update(slots=[{"signal": "noise"}]), "pitched"),
        (lambda d: d["envelope"].update(release_s=500), r"envelope\.release_s"),
        (lambda d: d["techniques"].append({"type": "feedback", "gain": 1.0, "taps": 30}), r"techniques\[2\]\.taps"),
    ],
)
def test_invalid_patches_name_the_field(bb_path, mutate, field):
    doc = _doc(bb_path)
    mutate(doc)
    with pytest.raises(ConfigError, match=field):
        Patch.from_dict(doc)


def test_bad_files_and_networks(tmp_path, bb_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "network": ')
    with pytest.raises(ConfigError, match="invalid JSON"):
        Patch.load(bad)
    with pytest.raises(ConfigError, match="presets:"):
        Patch.load("no-such-preset")
    unknown = Patch.from_dict(_doc(bb_path, network={"name": "wavenet"}))
    with pytest.raises(ConfigError, match="available shipped networks"):
        unknown.render()
    pinned = Patch.from_dict(_doc(bb_path, network={"path": str(bb_path), "hash": "00000000"}))
    with pytest.raises(ConfigError, match="network.hash"):
        pinned.render()
    good = Patch.from_dict(_doc(bb_path)).pinned()
    assert good.network.hash == Instrument.load(str(bb_path)).content_hash and good.render().report.ok
    layer = _doc(bb_path)
    layer["techniques"][0]["layer"] = "tcn.blocks.99.conv"
    with pytest.raises(ConfigError, match="not a bendable layer"):
        Patch.from_dict(layer).render()
    with pytest.raises(ConfigError, match="seconds"):
        Patch.from_dict(_doc(bb_path)).render(10_000.0)


def test_save_and_load_relative_network(tmp_path, bb_path):
    target = tmp_path / "net.safetensors"
    target.write_bytes(bb_path.read_bytes())
    patch = Patch.from_dict(_doc(bb_path, network={"path": "net.safetensors"}), base_dir=tmp_path)
    path = patch.save(tmp_path / "p.json")
    with pytest.raises(ConfigError, match="exists"):
        patch.save(path)
    loaded = Patch.load(path)
    assert loaded == patch and loaded.render().report.ok


def test_morph_crossfades_without_clicks(bb_path, tmp_path):
    other = _doc(bb_path, name="side-b")
    other["excitation"]["slots"][0]["signal"] = "square"
    other["techniques"][0]["amount"] = 0.2
    other["controls"], other["main_control"] = {}, None
    other_path = Patch.from_dict(other).save(tmp_path / "side-b.json")
    doc = _doc(bb_path, name="morph")
    doc["techniques"].append(
        {"type": "morph", "to": str(other_path), "amount": {"points": [[0.1, 0.0], [0.6, 1.0]], "curve": "smooth"}}
    )
    morph = Patch.from_dict(doc).render()
    ends = [Patch.from_dict(_doc(bb_path)).render(), Patch.load(other_path).render()]
    assert morph.report.ok
    # no sample-to-sample jump larger than the sources' own
    jump = float(morph.audio.diff(dim=-1).abs().max())
    assert jump <= 1.5 * max(float(e.audio.diff(dim=-1).abs().max()) for e in ends)
    # the start sounds like side A, the end like side B (spectral centroid of short windows)
    c = lambda x: float(describe(x, 22050)["centroid_hz"][0])  # noqa: E731
    head, tail = slice(0, 2000), slice(15000, 17000)
    assert (
        abs(c(morph.audio[:, head]) - c(ends[0].audio[:, head]))
        < abs(c(morph.audio[:, head]) - c(ends[1].audio[:, head])) + 1
    )
    assert (
        abs(c(morph.audio[:, tail]) - c(ends[1].audio[:, tail]))
        < abs(c(morph.audio[:, tail]) - c(ends[0].audio[:, tail])) + 1
    )


def test_presets_are_listed():
    assert len(list_presets()) >= 16
