"""The safety contract over every preset x seeds x random bends x control extremes (0 violations).

Every output must be finite, DC-free (|mean| <= 1e-3 per channel) and have a true peak at or
below the ceiling (-1 dBTP), measured both by the head's own 4x meter and by
``scipy.signal.resample_poly`` (an independent 4x interpolator). Runs on tiny networks until
checkpoints ship.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import scipy.signal
import torch

from neuromix.synthesis.bending import BEND_OPS
from neuromix.synthesis.instrument import Instrument
from neuromix.synthesis.patch import Patch, list_presets
from neuromix.synthesis.safety import DC_LIMIT
from neuromix.synthesis.testing import save_tiny_network

PRESETS = list_presets()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nets")
    instruments = {}
    paths = {}
    for family in ("blackbox", "console"):
        paths[family] = save_tiny_network(folder / f"{family}.safetensors", family, seed=3)
        instruments[family] = Instrument.load(str(paths[family]))

    def substitute(patch: Patch) -> Patch:
        family = patch.network.name
        return patch.with_network(paths[family]).use_instrument(instruments[family])

    return substitute, instruments


def _random_bend(rng: random.Random, inst: Instrument) -> dict:
    layer = rng.choice([info.name for info in inst.layers()])
    op = rng.choice(sorted(BEND_OPS))
    low, high = BEND_OPS[op]
    value = rng.uniform(low, high)
    bend = {"type": "bend", "layer": layer, "op": op, "seed": rng.randrange(1000), "rate_hz": rng.uniform(0.5, 20)}
    if rng.random() < 0.5:
        depth = min(value - low, high - value) * rng.random()
        bend["amount"] = {
            "value": value,
            "lfo": {
                "rate_hz": rng.uniform(0.2, 12),
                "depth": depth,
                "shape": rng.choice(["sine", "triangle", "square"]),
            },
        }
    else:
        bend["amount"] = value
    return bend


def _violations(rendered) -> list[str]:
    audio = rendered.audio
    found = list(rendered.report.violations())
    if not torch.isfinite(audio).all():
        found.append("non-finite")
        return found
    dc = float(audio.double().mean(dim=-1).abs().max())
    if dc > DC_LIMIT:
        found.append(f"dc {dc:.2e}")
    up = scipy.signal.resample_poly(audio.double().numpy(), 4, 1, axis=-1)
    peak = 20 * math.log10(max(np.abs(up).max(), np.abs(audio.double().numpy()).max(), 1e-12))
    if peak > -1.0 + 0.02:
        found.append(f"scipy true peak {peak:.3f} dBTP")
    return found


def test_safety_contract_over_presets_seeds_bends_and_extremes(tiny):
    substitute, instruments = tiny
    rng = random.Random(1234)
    failures = []
    renders = 0
    for name in PRESETS:
        base = substitute(Patch.load(name))
        variants = [(f"seed {seed}", base, seed) for seed in (0, 7)]
        for k in range(2):
            doc = base.to_dict()
            doc["techniques"].append(_random_bend(rng, instruments[Patch.load(name).network.name]))
            variants.append((f"random bend {doc['techniques'][-1]}", base._derive(doc), k + 1))
        main = base.controls[base.main_control]
        for value in (main.low, main.high):
            variants.append((f"{base.main_control}={value}", base.with_controls({base.main_control: value}), 3))
        for label, patch, seed in variants:
            rendered = patch.render(0.6, seed=seed, note=rng.choice([36, 60, 84]))
            renders += 1
            problems = _violations(rendered)
            if problems:
                failures.append((name, label, problems))
    print(f"\nsafety: {renders} renders, {len(failures)} violations")
    assert not failures, failures[:5]
