"""Data loader speed: real-song segments read from disk and synthetic songs, on one core.

Prints, for :class:`~neuromix.mixing.data.SegmentDataset` over the bundled CC0 songs
(``../shared/data/multitracks``, 48 kHz FLAC), segments per second and stem-seconds of
audio per second, at 44.1 kHz (resampled) and at the files' 48 kHz; and for
:class:`~neuromix.mixing.data.SyntheticSongDataset`, songs per second. Torch runs on
one thread (as in a DataLoader worker), so the figures are per worker process. CPU time
per item is printed next to wall time: on a shared machine the wall figures are slower.

Usage: python benchmarks/loaders.py [--seconds 5] [--segments 40] [--synthetic 8]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

from neuromix.mixing.data import SegmentDataset, SyntheticSongDataset, find_songs

MULTITRACKS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "multitracks"


def _throughput(dataset: torch.utils.data.Dataset, count: int) -> tuple[float, float, float]:
    """Wall seconds per item, CPU seconds per item (this process), stem-samples per wall second."""
    start, cpu_start = time.perf_counter(), time.process_time()
    samples = 0
    for i in range(count):
        item = dataset[i % len(dataset)]
        samples += item["tracks"].shape[0] * item["tracks"].shape[-1]
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return elapsed / count, cpu / count, samples / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="segment / song length")
    parser.add_argument("--segments", type=int, default=40, help="real-song segments to time")
    parser.add_argument("--synthetic", type=int, default=8, help="synthetic songs to time")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}, segment length {args.seconds} s")

    if MULTITRACKS.is_dir():
        songs = find_songs(MULTITRACKS)
        stems = sum(s.num_stems for s in songs)
        print(f"real songs: {len(songs)} ({stems} stems, {stems / len(songs):.1f} per song) from {MULTITRACKS.resolve()}")
        for rate in (44100, 48000):
            ds = SegmentDataset(songs, segment_seconds=args.seconds, sample_rate=rate,
                                segments_per_song=max(1, args.segments // len(songs) + 1), seed=0)
            for i in range(len(songs)):  # warm-up: file headers, resampling kernels
                ds[i]
            per_item, cpu_item, rate_samples = _throughput(ds, args.segments)
            print(
                f"  SegmentDataset @ {rate} Hz{' (resampled from 48 kHz)' if rate != 48000 else ' (native)':>24}: "
                f"{1 / per_item:6.2f} segments/s ({per_item * 1000:6.1f} ms wall, {cpu_item * 1000:6.1f} ms CPU "
                f"each, {args.segments} timed), {rate_samples / rate:7.1f} stem-seconds/s"
            )
    else:
        print(f"real songs: not found at {MULTITRACKS.resolve()}, skipped")

    try:
        import neuromix.mixing.generator  # noqa: F401
    except ImportError:
        print("SyntheticSongDataset: neuromix.mixing.generator not available, skipped")
    else:
        ds = SyntheticSongDataset(args.synthetic + 1, seconds=args.seconds, sample_rate=44100)
        ds[args.synthetic]  # warm-up
        per_item, cpu_item, rate_samples = _throughput(ds, args.synthetic)
        print(
            f"  SyntheticSongDataset @ 44100 Hz: {1 / per_item:6.2f} songs/s ({per_item * 1000:6.1f} ms wall, "
            f"{cpu_item * 1000:6.1f} ms CPU each, {args.synthetic} timed), {rate_samples / 44100:7.1f} stem-seconds/s"
        )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
