"""Console speed: 8 stereo tracks x 30 s at 44.1 kHz through every console stage.

Prints the forward time (median of repeats), the real-time factor (audio seconds
per second of compute) and the process's peak resident memory. Also prints the
floors the design compares against (plain sum; gain+pan+sum).

Usage: python benchmarks/console.py [--tracks 8] [--seconds 30] [--repeats 3] [--backward]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from neuromix.core.dsp.console import Console
from neuromix.core.dsp import functional as F


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, plan caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backward", action="store_true", help="also time forward+backward")
    args = parser.parse_args()

    torch.manual_seed(0)
    sr = args.sample_rate
    n = int(args.seconds * sr)
    x = 0.1 * torch.randn(1, args.tracks, 2, n)
    console = Console(sr)
    g = torch.Generator().manual_seed(1)
    # settings in the middle of every range, so every stage does real work
    track_u = 0.25 + 0.5 * torch.rand(1, args.tracks, len(console.track_ranges), generator=g)
    master_u = 0.25 + 0.5 * torch.rand(1, len(console.master_ranges), generator=g)
    params = console.denormalise(track_u, master_u)

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"input: {args.tracks} stereo tracks x {args.seconds:g} s at {sr} Hz")
    with torch.no_grad():
        t_sum = _time(lambda: x.sum(dim=1), args.repeats)
        t_gp = _time(lambda: F.pan(F.gain(x[0], params.track["gain_db"][0]), params.track["pan"][0]).sum(0), args.repeats)
        t_console = _time(lambda: console(x, None, params), args.repeats)
    print(f"floor: plain sum            {t_sum * 1e3:8.1f} ms")
    print(f"floor: gain + pan + sum     {t_gp * 1e3:8.1f} ms")
    print(f"console forward (all on)    {t_console * 1e3:8.1f} ms   real-time factor {args.seconds / t_console:6.1f}x")
    if args.backward:
        track_u.requires_grad_(True)

        def fwd_bwd() -> None:
            mix = console(x, None, console.denormalise(track_u, master_u))
            mix.square().mean().backward()

        t_fb = _time(fwd_bwd, max(1, args.repeats - 1))
        print(f"console forward + backward  {t_fb * 1e3:8.1f} ms")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory        {peak_mb:8.0f} MB")


if __name__ == "__main__":
    main()
