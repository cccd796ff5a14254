"""Round trip through the workbench's API: upload 4 stems x 30 s at 44.1 kHz, mix with the
console network, download the mix.

The app runs in this process (a local server on 127.0.0.1); every run uses a new
``gradio_client.Client`` (a new session, so the stems are read again) and is timed from the
call to the downloaded WAV. One warm-up run loads the network; the median of the timed runs
is printed.

    python benchmarks/app_roundtrip.py [--runs 5] [--seconds 30] [--tracks 4]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stems(folder: Path, tracks: int, seconds: float, rate: int) -> list[str]:
    from neuromix.mixing.generator import generate_song, write_song

    song = generate_song(11, seconds=seconds, sample_rate=rate, num_tracks=tracks)
    return [str(p) for p in write_song(song, folder / "song") if p.suffix == ".wav"]


def _round_trip(url: str, stems: list[str]) -> float:
    import soundfile as sf
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    start = time.perf_counter()
    result = client.predict(stems=[handle_file(p) for p in stems], demo="neon-drive", model="console",
                            reference=None, targets="", api_name="/mix")
    elapsed = time.perf_counter() - start
    if sf.info(result[0]).frames == 0:
        raise RuntimeError("empty mix")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=44100)
    args = parser.parse_args()

    import torch
    from neuromix.ui.app import build_app, launch_app

    with tempfile.TemporaryDirectory() as tmp:
        stems = _stems(Path(tmp), args.tracks, args.seconds, args.rate)
        size = sum(Path(p).stat().st_size for p in stems) / 2**20
        app = build_app(work_dir=Path(tmp) / "work")
        url = launch_app(app, host="127.0.0.1", port=_free_port(), prevent_thread_lock=True, quiet=True)
        try:
            warm = _round_trip(url, stems)
            times = [_round_trip(url, stems) for _ in range(args.runs)]
        finally:
            app.close()
            app.neuromix_context.cleanup()
    print(f"app round trip: {args.tracks} stems x {args.seconds:g} s at {args.rate} Hz ({size:.1f} MiB of WAV), "
          f"console network, {torch.get_num_threads()} torch threads")
    print(f"  warm-up {warm:.2f} s; runs: {', '.join(f'{t:.2f}' for t in times)} s")
    print(f"  median {statistics.median(times):.2f} s (target < 5 s on 2 cores)")


if __name__ == "__main__":
    main()
