"""Synthesis head speed: render speed per technique at 44.1 kHz, and a 60-second score.

Renders one note per technique (default 10 s gate) with the shipped networks when they are
installed, otherwise with *untrained networks of the shipped architecture* (the training
configs in ``mixing/configs``: same layers and widths, so the same cost). Prints the median
and best wall time of ``--repeats`` renders and the real-time factors (audio seconds per
second of compute; the safety stage included), then renders a 60-second score of 120 notes
and prints its wall time. The load average is printed before and after: on a shared machine
the figures are only comparable at similar load (the best of several runs is the least
disturbed).

Targets (design): >= 20x real time for excitation, bending, re-initialisation,
sonification and feedback; a 60-second score in under 10 s.

Usage: python benchmarks/synth.py [--seconds 10] [--repeats 3] [--threads 2] [--score-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from neuromix.core import checkpoint
from neuromix.mixing.models import build_model
from neuromix.synthesis.instrument import Instrument, available_networks
from neuromix.synthesis.patch import Patch
from neuromix.synthesis.score import render_score

ROOT = Path(__file__).resolve().parents[1]


def _untrained(folder: Path, family: str) -> Path:
    """Save an untrained network with the shipped training config of ``family``."""
    config_path = ROOT / "mixing" / "configs" / f"{family}_small.json"
    doc = json.loads(config_path.read_text())
    torch.manual_seed(0)
    model = build_model(doc["model_type"], doc["model"]).eval()
    if family == "blackbox":
        torch.nn.init.normal_(model.tcn.out.weight, std=0.05)  # zero at init: make the audio path work
    else:
        for head in (model.track_head, model.master_head):
            torch.nn.init.normal_(head[-1].weight, std=0.05)
    return checkpoint.save(
        folder / f"{family}.safetensors",
        model,
        model_type=model.model_type,
        config=model.config,
        sample_rate=doc["model"].get("sample_rate", 22050),
    )


def _patch(name: str, network: str, techniques: list, slots: list | None = None, pitched: bool = True) -> Patch:
    return Patch.from_dict(
        {
            "name": name,
            "network": {"path": network} if network.endswith(".safetensors") else {"name": network},
            "pitched": pitched,
            "sample_rate": 44100,
            "note": 57,
            "excitation": {"slots": slots or [{"signal": "saw", "level_db": -6.0, "class": "lead"}]},
            "techniques": techniques,
            "envelope": {"attack_s": 0.01, "release_s": 0.2},
        }
    )


def _time(fn, repeats: int) -> tuple[float, float]:
    """Median and best wall time of ``repeats`` calls (the best is the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="gate length of each technique's note")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the target is 2 cores)")
    parser.add_argument("--score-seconds", type=float, default=60.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    shipped = available_networks()
    tmp = tempfile.TemporaryDirectory()
    nets = {}
    for family in ("blackbox", "console"):
        if family in shipped:
            nets[family] = family
        else:
            nets[family] = str(_untrained(Path(tmp.name), family))
    kind = "shipped" if set(shipped) >= {"blackbox", "console"} else "untrained networks of the shipped architecture"
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, networks: {kind}")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    bb, cn = nets["blackbox"], nets["console"]
    instruments = {bb: Instrument.load(bb), cn: Instrument.load(cn)}

    cases = {
        "excitation": _patch("excitation", bb, []),
        "bending (audio path)": _patch(
            "bend",
            bb,
            [
                {
                    "type": "bend",
                    "layer": "tcn.blocks.3.conv",
                    "op": "scale",
                    "amount": {"value": 1.0, "lfo": {"rate_hz": 4, "depth": 1.5}},
                },
                {"type": "bend", "layer": "tcn.blocks.1.act", "op": "mask", "amount": 0.3, "seed": 1},
            ],
        ),
        "bending (conditioning, LFO)": _patch(
            "bend-cond",
            bb,
            [
                {
                    "type": "bend",
                    "layer": "analyser.encoder.blocks.1",
                    "op": "scale",
                    "amount": {"value": 1.0, "lfo": {"rate_hz": 0.5, "depth": 1.0}},
                }
            ],
        ),
        "re-initialisation": _patch(
            "reinit",
            bb,
            [{"type": "reinit", "layers": ["tcn.blocks.4", "tcn.blocks.5"], "init": "orthogonal", "seed": 1}],
        ),
        "sonification (wavetable)": _patch(
            "sonify", bb, [{"type": "sonify", "layer": "tcn.blocks.2.act", "mode": "wavetable"}]
        ),
        "feedback (pluck)": _patch(
            "feedback",
            bb,
            [{"type": "feedback", "gain": 0.995, "update_s": 0.15}],
            slots=[{"signal": "noise", "params": {"color": "pink"}, "level_db": -3.0}],
        ),
        "control axis (gradient)": _patch(
            "gradient",
            bb,
            [{"type": "control", "axes": [{"kind": "gradient", "descriptor": "centroid_hz", "amount": 1.0}]}],
        ),
        "dreaming (20 steps)": _patch(
            "dream",
            bb,
            [{"type": "dream", "target": {"kind": "unit", "layer": "tcn.blocks.4.conv", "channel": 3}, "steps": 20}],
            slots=[{"signal": "sine", "level_db": -6.0}],
        ),
        "console network (excitation)": _patch("console", cn, []),
        "console network (setting LFO)": _patch(
            "console-lfo",
            cn,
            [
                {
                    "type": "control",
                    "axes": [
                        {
                            "kind": "setting",
                            "setting": "master.eq_high_gain_db",
                            "amount": {"value": 0.2, "lfo": {"rate_hz": 0.25, "depth": 0.3}},
                        }
                    ],
                }
            ],
        ),
    }
    print(f"\n{'technique':<32} {'seconds':>8} {'median s':>9} {'best s':>7} {'x RT (median)':>14} {'x RT (best)':>12}")
    for label, patch in cases.items():
        inst = instruments[str(patch.network_source())]
        patch.use_instrument(inst)
        audio_s = args.seconds + patch.envelope.release_s
        if label.startswith("dreaming"):

            def run(patch=patch, inst=inst):
                inst.cache.clear()  # time the optimisation, not the memo
                patch.render(args.seconds)
        else:
            patch.render(min(args.seconds, 1.0))  # warm-up (plans, re-initialised copies)

            def run(patch=patch):
                patch.render(args.seconds)

        median, best = _time(run, args.repeats)
        print(f"{label:<32} {audio_s:8.1f} {median:9.2f} {best:7.2f} {audio_s / median:14.1f} {audio_s / best:12.1f}")

    # a 60-second score: 120 half-second notes of four patches on twelve pitches
    patches = {
        "lead": cases["excitation"],
        "bent": cases["bending (audio path)"],
        "pluck": cases["feedback (pluck)"],
        "table": cases["sonification (wavetable)"],
    }
    folder = Path(tmp.name)
    aliases = {}
    for alias, patch in patches.items():
        aliases[alias] = str(patch.save(folder / f"{alias}.json", overwrite=True))
    count = int(args.score_seconds * 2)
    events = [
        {
            "time": 0.5 * k,
            "duration": 0.45,
            "patch": list(aliases)[k % 4],
            "note": 48 + (k * 5) % 12,
            "velocity": 0.6 + 0.4 * ((k * 7) % 5) / 4,
            "pan": ((k % 5) - 2) / 2,
        }
        for k in range(count)
    ]
    score = {"sample_rate": 44100, "patches": aliases, "events": events, "output": {"loudness_lufs": -16.0}}
    walls = []
    for _ in range(max(1, min(args.repeats, 2))):
        start = time.perf_counter()
        rendered = render_score(score)
        walls.append(time.perf_counter() - start)
    length = rendered.audio.shape[-1] / rendered.sample_rate
    print(
        f"\nscore: {count} events, {rendered.info['renders']} distinct notes, {length:.1f} s of audio rendered in "
        f"{' / '.join(f'{w:.2f}' for w in walls)} s (best {length / min(walls):.1f}x real time); "
        f"safety ok: {rendered.report.ok}"
    )
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
