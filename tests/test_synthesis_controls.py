"""Controllability: every preset's main control moves its intended descriptor; control-space maps.

Reports the Spearman correlation between each main control and its descriptor over a sweep
(printed with ``-s``). A main control that does nothing is a bug: the descriptor must move by
a clearly measurable amount and rank-correlate with the control (either sign: on an untrained
tiny network the direction of a network-dependent effect is not guaranteed).
"""

from __future__ import annotations

import numpy as np
import pytest

from neuromix.synthesis.instrument import Instrument
from neuromix.synthesis.patch import Patch, list_presets
from neuromix.synthesis.sweep import controllability, sweep
from neuromix.synthesis.testing import save_tiny_network

MIN_SPREAD = {
    "centroid_hz": 20.0,
    "spread_db": 0.1,
    "decay_s": 0.05,
    "flatness": 0.005,
    "crest_db": 0.3,
    "loudness_lufs": 0.5,
    "rms_db": 0.5,
    "bandwidth_hz": 20.0,
    "rolloff_hz": 50.0,
    "width": 0.01,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nets")
    paths = {f: save_tiny_network(folder / f"{f}.safetensors", f, seed=0) for f in ("blackbox", "console")}
    instruments = {f: Instrument.load(str(p)) for f, p in paths.items()}
    return lambda patch: patch.with_network(paths[patch.network.name]).use_instrument(instruments[patch.network.name])


def test_main_controls_move_their_descriptors(tiny):
    rows, failures = [], []
    for name in list_presets():
        result = controllability(tiny(Patch.load(name)), points=5, seconds=0.8)
        rows.append(
            f"{name:<22} {result.control:<11} -> {result.descriptor:<12} rho {result.rho:+.2f}  "
            f"spread {result.spread:.3g}"
        )
        if result.spread < MIN_SPREAD[result.descriptor] or abs(result.rho) < 0.6:
            failures.append((name, result.control, result.rho, result.spread))
    print("\n" + "\n".join(rows))
    assert not failures, failures


def test_two_dimensional_descriptor_map_and_trajectory(tiny):
    patch = tiny(Patch.load("wobble-saw-lead"))
    result = sweep(patch, "wobble", [0.0, 1.5, 3.0], "rate", [1.0, 8.0], seconds=0.6, trajectory_s=1.0)
    assert result.controls == ["wobble", "rate"] and result.values == [[0.0, 1.5, 3.0], [1.0, 8.0]]
    for name in ("loudness_lufs", "centroid_hz", "decay_s"):
        assert result.maps[name].shape == (3, 2) and np.isfinite(result.maps[name]).all()
    # with no wobble the rate cannot matter; with wobble it does
    assert result.maps["centroid_hz"][0, 0] == pytest.approx(result.maps["centroid_hz"][0, 1])
    assert result.maps["centroid_hz"][2, 0] != pytest.approx(result.maps["centroid_hz"][2, 1])
    assert result.trajectory is not None and result.trajectory.shape[0] == 2
    assert abs(result.trajectory.shape[-1] - round((1.0 + patch.envelope.release_s) * patch.sample_rate)) < 64
