"""Goal-oriented mixing figures: reference guidance on held-out pairs, target meeting, speed.

Reference guidance on held-out synthetic pairs (seeds never used in training), two
constructions: (1) the target is song A mixed by a seeded engineer style, the *correct*
reference another song B mixed in the same style, the *wrong* reference song B in another
style; (2) the training construction: the same song and settings, the next segment as the
reference, another pair's reference as the wrong one. Systems, all with the shipped
console network:

* unguided: the network alone, no reference;
* tokens: the network given the reference tokens (no optimisation);
* guided: tokens + test-time optimisation toward the reference's features;
* wrong: the same with the wrong reference.

Distances to the target mix: reference-feature distance (RMS of scaled errors of every
feature of ``neuromix.mixing.goals.reference_features``) and the sum/difference
multi-resolution STFT distance.

Targets: every semantic word on one track (and the master) of several held-out songs:
fraction met and the mean measured change.

Run: ``python benchmarks/guidance.py [--pairs 12] [--songs 4]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from neuromix.core.losses import sum_difference_stft_loss
from neuromix.mixing.classes import INSTRUMENT_CLASSES
from neuromix.mixing.engineer import engineer_mix
from neuromix.mixing.generator import generate_song
from neuromix.mixing.goals import REFERENCE_GOAL_FEATURES, SEMANTIC_WORDS, _reference_scale, reference_features
from neuromix.mixing.inference import mix_multitrack, resolve_model
from neuromix.mixing.train import EngineerDataset

SR = 22050


def feature_distance(mix: torch.Tensor, target: torch.Tensor, keys: tuple[str, ...] | None = None) -> float:
    """RMS of scaled feature errors (all of ``reference_features``, or ``keys``)."""
    a, b = reference_features(mix[None], SR), reference_features(target[None], SR)
    keys = keys or tuple(a)
    return float(torch.stack([((a[k] - b[k]) / _reference_scale(k)).square() for k in keys]).mean().sqrt())


def stft_distance(mix: torch.Tensor, target: torch.Tensor) -> float:
    return float(sum_difference_stft_loss(mix[None], target[None]))


def style_pairs(pairs: int) -> list[dict]:
    """Target: song A mixed by engineer style S; correct reference: another song B mixed in
    style S (the normal use: a reference from another song); wrong: song B in another style."""
    out = []
    for i in range(pairs):
        style, other = 40_000_000 + i, 40_100_000 + i
        a = generate_song(41_000_000 + i, seconds=6.0, sample_rate=SR)
        b = generate_song(42_000_000 + i, seconds=10.0, sample_rate=SR)
        ta, tb = a.as_multitrack(), b.as_multitrack()
        out.append({
            "tracks": ta, "names": list(a.names), "classes": list(a.classes),
            "target": engineer_mix(ta, a.classes, SR, style)[0][0],
            "reference": engineer_mix(tb, b.classes, SR, style)[0][0],
            "wrong": engineer_mix(tb, b.classes, SR, other)[0][0],
        })
    return out


def segment_pairs(pairs: int) -> list[dict]:
    """The training construction: the same song and settings, the next 5 s as reference;
    wrong: another pair's reference."""
    data = EngineerDataset(pairs, base_seed=30_000_000, seconds=5.0, sample_rate=SR, max_tracks=8)
    items = [data[i] for i in range(pairs)]
    out = []
    for i, item in enumerate(items):
        n = int(item["mask"].sum())
        out.append({
            "tracks": item["tracks"][:n], "names": [f"t{j}" for j in range(n)],
            "classes": [INSTRUMENT_CLASSES[int(c)] for c in item["classes"][:n]],
            "target": item["mix"], "reference": item["reference"], "wrong": items[(i + 1) % pairs]["reference"],
        })
    return out


def reference_study(title: str, pairs: list[dict], steps: int) -> None:
    model = resolve_model("console")
    rows: dict[str, list[tuple[float, float, float]]] = {k: [] for k in ("unguided", "tokens", "guided", "wrong")}
    times = []
    for i, p in enumerate(pairs):
        kw = {"model": model, "names": p["names"], "classes": p["classes"]}
        target = p["target"]
        plain = mix_multitrack(p["tracks"], SR, **kw)
        net_only = mix_multitrack(p["tracks"], SR, reference=p["reference"], steps=0, **kw)
        t0 = time.perf_counter()
        guided = mix_multitrack(p["tracks"], SR, reference=p["reference"], steps=steps, **kw)
        times.append(time.perf_counter() - t0)
        wrong = mix_multitrack(p["tracks"], SR, reference=p["wrong"], steps=steps, **kw)
        for key, out in (("unguided", plain), ("tokens", net_only), ("guided", guided), ("wrong", wrong)):
            rows[key].append((feature_distance(out.mix, target), stft_distance(out.mix, target),
                              feature_distance(out.mix, target, REFERENCE_GOAL_FEATURES)))
        print(f"pair {i + 1}/{len(pairs)}: " + ", ".join(f"{k} {v[-1][0]:.3f}/{v[-1][1]:.3f}/{v[-1][2]:.3f}"
                                                          for k, v in rows.items()), flush=True)
    n = len(pairs)
    print(f"\nReference guidance, {title}: {n} held-out pairs, {steps} steps, mean distances to the target mix")
    print("  system    all features / SD-MRSTFT / style features (those of REFERENCE_TRUST)")
    for key, vals in rows.items():
        means = [statistics.fmean(v[j] for v in vals) for j in range(3)]
        print(f"  {key:9s} {means[0]:.3f} / {means[1]:.3f} / {means[2]:.3f}")
    g, w, u = rows["guided"], rows["wrong"], rows["unguided"]
    for name, other in (("wrong", w), ("unguided", u)):
        wins = [sum(a[j] < b[j] for a, b in zip(g, other)) for j in range(3)]
        print(f"  guided closer than {name}: features {wins[0]}/{n}, STFT {wins[1]}/{n}, style {wins[2]}/{n}")
    print(f"  guided mix time (incl. the network): median {statistics.median(times):.2f} s\n", flush=True)


def target_study(songs: int, steps: int) -> None:
    data = EngineerDataset(songs, base_seed=31_000_000, seconds=6.0, sample_rate=SR, min_tracks=5, max_tracks=8)
    met: dict[str, list[bool]] = {w: [] for w in SEMANTIC_WORDS}
    moved: dict[str, list[float]] = {w: [] for w in SEMANTIC_WORDS}
    times = []
    for i in range(songs):
        item = data[i]
        n = int(item["mask"].sum())
        tracks = item["tracks"][:n]
        names = [f"t{j}" for j in range(n)]
        classes = [INSTRUMENT_CLASSES[int(c)] for c in item["classes"][:n]]
        start = mix_multitrack(tracks, SR, model="console", names=names, classes=classes)
        for word in SEMANTIC_WORDS:
            where = "master" if word in ("wider", "narrower") and i % 2 == 0 else names[i % n]
            t0 = time.perf_counter()
            out = mix_multitrack(tracks, SR, names=names, classes=classes, settings=start.settings,
                                 targets=f"{where}: {word}", steps=steps)
            times.append(time.perf_counter() - t0)
            for row in out.report.rows:
                met[word].append(row["met"])
                change = SEMANTIC_WORDS[word][row["feature"]]
                moved[word].append((row["after"] - row["before"]) / change if change else 1.0)
        print(f"song {i + 1}/{songs} done", flush=True)
    print(f"\nSemantic targets, {songs} held-out songs, {steps} steps (rows = feature changes asked):")
    total = sum(len(v) for v in met.values())
    print(f"  met {sum(sum(v) for v in met.values())}/{total}")
    for word in SEMANTIC_WORDS:
        print(f"  {word:9s} met {sum(met[word])}/{len(met[word])}, reached {100 * statistics.fmean(moved[word]):.0f} % "
              "of the asked change on average")
    print(f"  targets mix time (6 s, {SR} Hz): median {statistics.median(times):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--songs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(2)
    reference_study("another song in the target's style", style_pairs(args.pairs), args.steps)
    reference_study("next segment of the same song (training construction)", segment_pairs(args.pairs // 2),
                    args.steps)
    target_study(args.songs, args.steps)


if __name__ == "__main__":
    main()
