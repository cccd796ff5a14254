"""Speed of the procedural multitrack generator (one CPU thread).

Times :func:`neuromix.mixing.generator.generate_song` for an 8-track, 10-second song at
44.1 kHz (median over 5 seeds, after one warm-up call) and the three bundled demo songs, and
prints seconds and the real-time factor (audio seconds rendered per second of compute, per
song; higher is faster).

Usage:
    python benchmarks/generator.py [--seeds 5] [--seconds 10] [--tracks 8] [--sample-rate 44100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    """Run the benchmark and print a small table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds for the median (default 5)")
    parser.add_argument("--seconds", type=float, default=10.0, help="song length in seconds (default 10)")
    parser.add_argument("--tracks", type=int, default=8, help="tracks per song (default 8)")
    parser.add_argument("--sample-rate", type=int, default=44100, help="sample rate in Hz (default 44100)")
    args = parser.parse_args()

    # One thread for BLAS as well as torch, so the numbers mean "one core".
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    torch.set_num_threads(1)
    from neuromix.mixing.generator import DEMO_SONGS, demo_song, generate_song

    generate_song(0, seconds=1.0, sample_rate=args.sample_rate, num_tracks=args.tracks)  # warm-up (imports, caches)
    times = []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        song = generate_song(seed, seconds=args.seconds, sample_rate=args.sample_rate, num_tracks=args.tracks)
        times.append(time.perf_counter() - t0)
        print(f"  seed {seed}: {times[-1]:.3f} s  ({song.meta['genre']}, {len(song.stems)} tracks, "
              f"{', '.join(song.classes)})")
    med = statistics.median(times)
    print(f"generate_song: {args.tracks} tracks x {args.seconds:g} s @ {args.sample_rate} Hz, 1 thread")
    print(f"  median {med:.3f} s over {args.seeds} seeds (min {min(times):.3f}, max {max(times):.3f}); "
          f"real-time factor {args.seconds / med:.1f}x")
    print("demo songs (default length):")
    for name, spec in DEMO_SONGS.items():
        t0 = time.perf_counter()
        song = demo_song(name, sample_rate=args.sample_rate)
        dt = time.perf_counter() - t0
        print(f"  {name:14s} {spec.genre:10s} {len(song.stems):2d} tracks x {spec.seconds:g} s: {dt:.3f} s, "
              f"real-time factor {spec.seconds / dt:.1f}x")


if __name__ == "__main__":
    main()
