"""Whole-song mixing speed and memory: ``mix_multitrack`` with the small default networks.

Each case runs in its own subprocess so that its peak resident memory (``ru_maxrss``) is
its own: build the network from the shipped training config (``console_small`` /
``blackbox_small``, random weights), make ``tracks`` mono tracks of ``seconds`` at 44.1 kHz
(seeded noise and tones with slow envelopes, so the compressors and limiters work), run one
short warm-up mix, then time one full :func:`~neuromix.mixing.inference.mix_multitrack`
call (analysis, settings, streaming render, safety limiter). The console network runs every
console stage (its config enables them all). ``console`` is the shipped config as it is
(with ``rule_prior`` the rule-based mixer runs on the analysis windows inside the network's
prediction); ``console-noprior`` the same network without the prior.

Printed per case: wall time, CPU time of the process during the call (user + system: on a
busy machine the wall time grows, the CPU time much less), real-time factor (audio seconds
per wall second), peak RSS of the process, and the RSS before the timed call (the input,
the runtime and the warm-up). Targets (8 tracks x 30 s): console <= 1.3 s and
< 1.5 GB; black box <= 4 s; 16 tracks x 5 min < 3 GB with either.

Usage:
    python benchmarks/mix.py                 # 4/8/16/32 tracks x 30 s, and 16 tracks x 5 min
    python benchmarks/mix.py --long          # also 4/8/32 tracks x 5 min
    python benchmarks/mix.py --models console --tracks 8 --seconds 30
    python benchmarks/mix.py --profile blackbox   # torch.profiler table of 8 x 30 s
Threads: torch's default unless ``--threads N`` (or OMP_NUM_THREADS) says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

SAMPLE_RATE = 44100
CONFIGS = {"console": "console_small", "console-noprior": "console_small", "blackbox": "blackbox_small", "rules": None}
"""Model kind -> shipped training config. ``console-noprior`` is ``console_small`` with
``rule_prior`` off (the network alone, without the rule-based mixer it corrects)."""
TARGETS = {  # (model, tracks, seconds) -> (max seconds or None, max GB)
    ("console", 8, 30.0): (1.3, 1.5),
    ("console-noprior", 8, 30.0): (1.3, 1.5),
    ("blackbox", 8, 30.0): (4.0, None),
    ("console", 16, 300.0): (None, 3.0),
    ("console-noprior", 16, 300.0): (None, 3.0),
    ("blackbox", 16, 300.0): (None, 3.0),
}


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB on Linux


def _current_rss_gb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**3
    except OSError:
        return float("nan")


def _tracks(count: int, seconds: float, seed: int = 0):
    import math

    import torch

    n = int(seconds * SAMPLE_RATE)
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float32) / SAMPLE_RATE
    out = torch.empty(count, 1, n)
    for i in range(count):
        env = 0.5 + 0.5 * torch.sin(2 * math.pi * (0.3 + 0.17 * i) * t + i).square()
        tone = torch.sin(2 * math.pi * (55.0 * 1.5 ** (i % 9)) * t)
        noise = torch.randn(n, generator=g)
        out[i, 0] = (0.25 * tone + 0.08 * noise) * env
    return out


def _model(kind: str):
    if CONFIGS[kind] is None:
        return kind
    import torch

    from neuromix.mixing.models import build_model
    from neuromix.mixing.train import TrainConfig, shipped_config_path

    cfg = TrainConfig.load(shipped_config_path(CONFIGS[kind]))
    model_cfg = dict(cfg.model)
    if kind == "console-noprior":
        model_cfg["rule_prior"] = False
    torch.manual_seed(0)
    return build_model(cfg.model_type, model_cfg).eval()


def run_case(kind: str, tracks: int, seconds: float) -> dict:
    """Time one case in this process; returns a JSON-able dict."""
    import torch

    from neuromix.mixing.inference import mix_multitrack

    model = _model(kind)
    names = [f"t{i}" for i in range(tracks)]
    classes = ["other"] * tracks  # skip the audio classifier: time the mixer
    mix_multitrack(_tracks(tracks, 1.0, seed=1), SAMPLE_RATE, model=model, names=names, classes=classes)  # warm-up
    x = _tracks(tracks, seconds)
    before = _current_rss_gb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    out = mix_multitrack(x, SAMPLE_RATE, model=model, names=names, classes=classes)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime
    assert out.mix.shape == (2, x.shape[-1]) and bool(torch.isfinite(out.mix).all())
    return {
        "model": kind,
        "tracks": tracks,
        "seconds": seconds,
        "wall_s": wall,
        "cpu_s": cpu,
        "rtf": seconds / wall,
        "peak_gb": _rss_gb(),
        "rss_before_gb": before,
        "threads": torch.get_num_threads(),
    }


def profile_case(kind: str, tracks: int, seconds: float) -> None:
    """Print the torch.profiler table (self CPU time) of one mix."""
    from torch.profiler import ProfilerActivity, profile

    from neuromix.mixing.inference import mix_multitrack

    model = _model(kind)
    names, classes = [f"t{i}" for i in range(tracks)], ["other"] * tracks
    mix_multitrack(_tracks(tracks, 1.0, seed=1), SAMPLE_RATE, model=model, names=names, classes=classes)
    x = _tracks(tracks, seconds)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        mix_multitrack(x, SAMPLE_RATE, model=model, names=names, classes=classes)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def _child(args: argparse.Namespace, kind: str, tracks: int, seconds: float) -> dict | None:
    cmd = [sys.executable, __file__, "--case", kind, str(tracks), str(seconds)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"  {kind} {tracks} x {seconds:g} s FAILED:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["console", "console-noprior", "blackbox"], choices=sorted(CONFIGS))
    parser.add_argument("--tracks", nargs="+", type=int, default=[4, 8, 16, 32])
    parser.add_argument("--seconds", nargs="+", type=float, default=[30.0])
    parser.add_argument("--long", action="store_true", help="also every track count x 5 min")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in each case (0: default)")
    parser.add_argument("--case", nargs=3, metavar=("MODEL", "TRACKS", "SECONDS"), help=argparse.SUPPRESS)
    parser.add_argument("--profile", choices=sorted(CONFIGS), help="profile 8 tracks x 30 s of this model")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(run_case(args.case[0], int(args.case[1]), float(args.case[2]))))
        return
    if args.profile:
        profile_case(args.profile, 8, 30.0)
        return

    cases = [(m, t, s) for m in args.models for s in args.seconds for t in args.tracks]
    long_tracks = args.tracks if args.long else [16]
    cases += [(m, t, 300.0) for m in args.models for t in long_tracks if (m, t, 300.0) not in cases]
    load = os.getloadavg()
    print(f"mix_multitrack at {SAMPLE_RATE} Hz, mono tracks, batch 1, random weights "
          f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs)")
    print(f"{'model':15} {'tracks':>6} {'audio':>7} {'time':>8} {'CPU time':>8} {'x realtime':>10} "
          f"{'peak RSS':>9} {'RSS before':>10}  target")
    for kind, tracks, seconds in cases:
        r = _child(args, kind, tracks, seconds)
        if r is None:
            continue
        target = TARGETS.get((kind, tracks, seconds))
        verdict = ""
        if target is not None:
            max_s, max_gb = target
            ok = (max_s is None or r["wall_s"] <= max_s) and (max_gb is None or r["peak_gb"] < max_gb)
            limits = " and ".join(x for x in (f"<= {max_s} s" if max_s else "", f"< {max_gb} GB" if max_gb else "") if x)
            verdict = f"{'ok' if ok else 'MISSED'} ({limits})"
        print(f"{kind:15} {tracks:6d} {seconds:6.0f}s {r['wall_s']:7.2f}s {r['cpu_s']:7.2f}s {r['rtf']:10.1f} "
              f"{r['peak_gb']:8.2f}G {r['rss_before_gb']:9.2f}G  {verdict}  [threads {r['threads']}]", flush=True)


if __name__ == "__main__":
    main()
