"""Load test of the browser workbench (issue #9): concurrent clients, listening-test submissions, memory.

The app runs as its own process (``python -m neuromix ui`` on 127.0.0.1, a free port, a
private temp folder), so its memory can be read from ``/proc`` and nothing of the clients
counts towards it. Three phases:

1. **set-up**: a listening test is created through the organiser API (``/listen_create``;
   demo songs, systems ``sum`` and ``rules``, short excerpts);
2. **load**: ``--clients`` concurrent ``gradio_client`` clients (one session each), each
   doing ``--rounds`` rounds of a mix with the expert rules, a mix with the console network
   (short generated stems, uploaded every time) and a synth render, while
   ``--submit-threads`` threads make ``--submissions`` listening-test submissions (each a
   new participant: ``/listen_start`` then ``/listen_submit``). Reported: throughput,
   p50/p95 latency per endpoint, errors (target 0), and that every acknowledged submission
   is stored (read back with :class:`~neuromix.ui.listening.ListeningStore`);
3. **memory**: the server's resident set size (RSS) across ``--mixes`` sequential mixes of
   one client (rules and console alternating); bounded when the mean of the last ten
   samples is within 10 % + 50 MB of the mean of the first ten.

    python benchmarks/load.py                       # the full run (a few minutes on 2 cores)
    python benchmarks/load.py --clients 5 --submissions 40 --submit-threads 4 --mixes 15 \
        --seconds 2 --tracks 3                      # what CI runs (tests/test_app_reliability.py)

``tests/test_app_reliability.py`` imports this module: :func:`start_server` and
:func:`submit_rating` also serve its ``kill -9`` test, and it runs :func:`run_benchmark`
scaled down.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

UI_SLIDERS = 25
"""Slider inputs of ``/listen_submit`` (5 stimuli x 5 criteria in the app)."""


# --------------------------------------------------------------------------- the server process


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A ``neuromix ui`` process started by :func:`start_server`.

    Attributes:
        proc: the process (``python -m neuromix ui``).
        url: its base URL (``http://127.0.0.1:PORT/``).
        db: the listening-test database it uses.
        log: file receiving its stdout and stderr.
    """

    proc: subprocess.Popen
    url: str
    db: Path
    log: Path

    def rss_mb(self) -> float:
        """Resident set size of the server process in MiB (from ``/proc/PID/status``)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        raise RuntimeError("VmRSS not found")  # pragma: no cover - not Linux

    def kill(self) -> None:
        """``kill -9`` the server (no clean-up of any kind) and reap it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop the server politely (SIGINT: ``run_ui`` removes its work folder), else kill it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(
    folder: Path,
    *,
    db: Path,
    token: str,
    port: int | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 120.0,
) -> Server:
    """Start ``python -m neuromix ui`` on 127.0.0.1 and wait until it answers.

    The process gets ``folder`` as its temp folder (``TMPDIR``: the app's work folder and
    Gradio's upload cache go there, so a killed server leaves nothing elsewhere), one
    OpenMP thread and analytics off.

    Args:
        folder: temp folder of the server (created).
        db: the listening-test database.
        token: the organiser token.
        port: TCP port (default: a free one).
        extra_args: more ``neuromix ui`` options (e.g. ``["--max-upload-mb", "2"]``).
        timeout: seconds to wait for the first answer.

    Raises:
        RuntimeError: the server exited or did not answer in time (with its log's tail).
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = {**os.environ, "TMPDIR": str(folder), "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONUNBUFFERED": "1"}
    log = folder / f"server-{port}-{time.monotonic_ns()}.log"
    argv = [sys.executable, "-m", "neuromix", "ui", "--host", "127.0.0.1", "--port", str(port), "--db", str(db),
            "--organiser-token", token, *extra_args]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder)
    server = Server(proc, f"http://127.0.0.1:{port}/", db, log)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + "gradio_api/info", timeout=5) as resp:
                if resp.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"the server did not answer within {timeout:g} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.25)


# --------------------------------------------------------------------------- inputs and API calls


def make_stems(folder: Path, *, tracks: int = 4, seconds: float = 5.0, rate: int = 22050, seed: int = 5) -> list[str]:
    """A short generated song (demo-like stems) written as WAV files; returns their paths."""
    from neuromix.mixing.generator import generate_song, write_song

    song = generate_song(seed, seconds=seconds, sample_rate=rate, num_tracks=tracks)
    return [str(p) for p in write_song(song, folder / "song") if p.suffix == ".wav"]


def mix(client: Any, stems: Sequence[str], model: str) -> str:
    """Upload ``stems`` and mix them with ``model``; returns the mix WAV (checked to be non-empty)."""
    import soundfile as sf
    from gradio_client import handle_file

    result = client.predict(stems=[handle_file(p) for p in stems], demo="neon-drive", model=model, reference=None,
                            targets="", api_name="/mix")
    if sf.info(result[0]).frames == 0:
        raise RuntimeError("empty mix")
    return result[0]


def synth_render(client: Any, view: Sequence[Any], seed: int) -> str:
    """Render the patch shown by ``/synth_preset`` (``view``) with ``seed``, 0.5 s long."""
    patch, _description, sig, level, feedback, bends, controls, _seed, note, _seconds = view
    result = client.predict(patch=patch, signal=sig, level_db=level, feedback_gain=feedback, bends=bends,
                            controls=controls, seed=seed, note=note, seconds=0.5, api_name="/synth_render")
    return result[0]


def create_listening_test(client: Any, token: str, *, songs: Sequence[str] = ("neon-drive",),
                          systems: Sequence[str] = ("sum", "rules"), seconds: float = 2.0) -> str:
    """Create a listening test through the organiser API; returns its code."""
    import re

    status, *_ = client.predict(token, "load test", list(songs), list(systems), "clarity, excitement", seconds, True,
                                api_name="/listen_create")
    found = re.search(r"\*\*([0-9a-z]+)\*\*", status)
    if found is None:
        raise RuntimeError(f"no test code in {status!r}")
    return found.group(1)


@dataclass(frozen=True)
class Submission:
    """An acknowledged listening-test submission: every slider of the trial was ``value``."""

    session_id: str
    trial_index: int
    value: float


def submit_rating(client: Any, test_id: str, participant: str, value: float,
                  timed: Callable[[str, Callable[[], Any]], Any] | None = None) -> Submission:
    """Start a session for ``participant`` and submit its first trial with every rating ``value``.

    Returns only after ``/listen_submit`` returned (the server acknowledged the commit).

    Args:
        timed: ``timed(endpoint, call)`` runs and times a call (default: just runs it).
    """
    run = timed or (lambda _name, call: call())
    out = run("/listen_start", lambda: client.predict(test_id, participant, api_name="/listen_start"))
    code, index = out[0], out[2]
    if index is None:
        raise RuntimeError(f"no trial to rate: {out[1]!r}")
    done = run("/listen_submit",
               lambda: client.predict(code, index, *([value] * UI_SLIDERS), api_name="/listen_submit"))
    if "saved" not in done[1] and "Thank you" not in done[1]:
        raise RuntimeError(f"unexpected answer to a submission: {done[1]!r}")
    return Submission(code, int(index), float(value))


def missing_submissions(db: Path, acknowledged: Sequence[Submission]) -> list[str]:
    """Acknowledged submissions that the database lacks or holds with other values (empty: all there)."""
    from neuromix.ui.listening import ListeningStore

    store = ListeningStore(db)
    missing = []
    for sub in acknowledged:
        try:
            stored = store.session_ratings(sub.session_id).get(sub.trial_index)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            missing.append(f"{sub.session_id}: {exc}")
            continue
        values = {v for per in (stored or {}).values() for v in per.values()}
        if values != {sub.value}:
            missing.append(f"{sub.session_id}/{sub.trial_index}: stored {sorted(values)}, sent {sub.value}")
    return missing


# --------------------------------------------------------------------------- measuring


@dataclass
class Recorder:
    """Latencies and errors per endpoint, thread-safe."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, endpoint: str, call: Callable[[], Any]) -> Any:
        """Run ``call``, record its latency under ``endpoint``; record and re-raise a failure."""
        start = time.perf_counter()
        try:
            result = call()
        except Exception as exc:
            with self._lock:
                self.errors.append(f"{endpoint}: {type(exc).__name__}: {str(exc)[:300]}")
            raise
        with self._lock:
            self.latencies[endpoint].append(time.perf_counter() - start)
        return result

    def table(self, wall_s: float) -> str:
        """Per endpoint: calls, p50, p95, max latency (s) and calls per second of wall time."""
        lines = [f"{'endpoint':<16}{'calls':>7}{'p50 s':>9}{'p95 s':>9}{'max s':>9}{'per s':>8}"]
        for endpoint in sorted(self.latencies):
            values = np.asarray(self.latencies[endpoint])
            p50, p95 = np.percentile(values, [50, 95])
            lines.append(f"{endpoint:<16}{len(values):>7}{p50:>9.2f}{p95:>9.2f}{values.max():>9.2f}"
                         f"{len(values) / wall_s:>8.2f}")
        return "\n".join(lines)


@dataclass
class LoadReport:
    """What :func:`run_load` measured."""

    wall_s: float
    recorder: Recorder
    submissions: list[Submission]
    missing: list[str]

    @property
    def calls(self) -> int:
        """API calls that returned."""
        return sum(len(v) for v in self.recorder.latencies.values())

    def text(self, clients: int) -> str:
        """A readable summary."""
        return (
            f"load: {clients} clients (mix rules, mix console, synth render) + {len(self.submissions)} listening-test "
            f"submissions in {self.wall_s:.1f} s: {self.calls} calls, {self.calls / self.wall_s:.2f} calls/s, "
            f"{len(self.recorder.errors)} errors; stored: {len(self.submissions) - len(self.missing)} of "
            f"{len(self.submissions)} acknowledged submissions\n{self.recorder.table(self.wall_s)}"
            + "".join(f"\n  error: {e}" for e in self.recorder.errors[:10])
            + "".join(f"\n  missing: {m}" for m in self.missing[:10])
        )


def run_load(server: Server, stems: Sequence[str], test_id: str, *, clients: int, rounds: int, submissions: int,
             submit_threads: int) -> LoadReport:
    """Phase 2: ``clients`` mixing / synthesising clients and the submissions, all at once."""
    from gradio_client import Client

    rec = Recorder()
    acked: list[Submission] = []
    lock = threading.Lock()
    counter = iter(range(submissions))

    def mixer(k: int) -> None:
        client = Client(server.url, verbose=False)
        view = rec.timed("/synth_preset", lambda: client.predict(preset="glass-pluck", api_name="/synth_preset"))
        for r in range(rounds):
            for model in ("rules", "console"):
                rec.timed(f"/mix {model}", lambda model=model: mix(client, stems, model))
            rec.timed("/synth_render", lambda r=r: synth_render(client, view, seed=k * rounds + r))

    def rater(_t: int) -> None:
        client = Client(server.url, verbose=False)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            sub = submit_rating(client, test_id, f"participant {i}", float(i % 101), timed=rec.timed)
            with lock:
                acked.append(sub)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients + submit_threads) as pool:
        futures = [pool.submit(mixer, k) for k in range(clients)]
        futures += [pool.submit(rater, t) for t in range(submit_threads)]
        for f in futures:
            f.exception()  # wait; a failure is already in the recorder
    wall = time.perf_counter() - start
    return LoadReport(wall, rec, acked, missing_submissions(server.db, acked))


def run_memory(server: Server, stems: Sequence[str], mixes: int) -> list[float]:
    """Phase 3: the server's RSS (MiB) after each of ``mixes`` sequential mixes of one client."""
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    rss = []
    for i in range(mixes):
        mix(client, stems, "rules" if i % 2 == 0 else "console")
        rss.append(server.rss_mb())
    return rss


@dataclass(frozen=True)
class MemoryVerdict:
    """Whether RSS samples show steady growth (see :func:`memory_bounded`)."""

    bounded: bool
    window: int
    first_mean: float
    last_mean: float


def memory_bounded(rss: Sequence[float], *, window: int = 10, relative: float = 0.10,
                   absolute_mb: float = 50.0) -> MemoryVerdict:
    """No steady growth: the mean of the last ``window`` samples is within ``relative`` +
    ``absolute_mb`` of the mean of the first ``window`` (fewer than ``2 * window`` samples:
    halves)."""
    window = max(1, min(window, len(rss) // 2))
    first, last = float(np.mean(rss[:window])), float(np.mean(rss[-window:]))
    return MemoryVerdict(last <= first * (1.0 + relative) + absolute_mb, window, first, last)


@dataclass
class BenchmarkResult:
    """Everything :func:`run_benchmark` measured."""

    create_s: float
    load: LoadReport
    rss_mb: list[float]
    memory: MemoryVerdict
    clients: int

    def text(self) -> str:
        """The benchmark's report."""
        rss, m = self.rss_mb, self.memory
        return (
            f"listening test created through /listen_create in {self.create_s:.1f} s\n{self.load.text(self.clients)}\n"
            f"memory: server RSS across {len(rss)} sequential mixes: first {rss[0]:.0f} MiB, last {rss[-1]:.0f} MiB, "
            f"max {max(rss):.0f} MiB; mean of the first {m.window} {m.first_mean:.0f} MiB, of the last {m.window} "
            f"{m.last_mean:.0f} MiB: {'bounded' if m.bounded else 'GROWING'}\n"
            f"  RSS every 10th mix (MiB): {', '.join(f'{v:.0f}' for v in rss[::10])}"
        )


def run_benchmark(folder: Path, *, clients: int = 20, rounds: int = 1, submissions: int = 200, submit_threads: int = 8,
                  mixes: int = 100, seconds: float = 5.0, tracks: int = 4, token: str = "load-test-token",
                  server: Server | None = None) -> BenchmarkResult:
    """All three phases against a server (started here in ``folder`` unless given, and stopped after).

    Returns:
        The measurements; nothing is asserted here (the caller decides).
    """
    from gradio_client import Client

    stems = make_stems(folder / "stems", tracks=tracks, seconds=seconds)
    own = server is None
    server = server or start_server(folder / "server", db=folder / "listening.sqlite", token=token)
    try:
        start = time.perf_counter()
        test_id = create_listening_test(Client(server.url, verbose=False), token)
        create_s = time.perf_counter() - start
        load = run_load(server, stems, test_id, clients=clients, rounds=rounds, submissions=submissions,
                        submit_threads=submit_threads)
        rss = run_memory(server, stems, mixes)
    finally:
        if own:
            server.stop()
    return BenchmarkResult(create_s, load, rss, memory_bounded(rss), clients)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its report; exit 1 on errors, lost submissions or memory growth."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20, help="concurrent mixing clients (default 20)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of (rules mix, console mix, synth) per client")
    parser.add_argument("--submissions", type=int, default=200, help="listening-test submissions (default 200)")
    parser.add_argument("--submit-threads", type=int, default=8, help="threads making the submissions (default 8)")
    parser.add_argument("--mixes", type=int, default=100, help="sequential mixes for the memory phase (default 100)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the stems in seconds (default 5)")
    parser.add_argument("--tracks", type=int, default=4, help="stems per song (default 4)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="neuromix-load-") as tmp:
        result = run_benchmark(Path(tmp), clients=args.clients, rounds=args.rounds, submissions=args.submissions,
                               submit_threads=args.submit_threads, mixes=args.mixes, seconds=args.seconds,
                               tracks=args.tracks)
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}")
    print(result.text())
    failed = result.load.recorder.errors or result.load.missing or not result.memory.bounded
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
