"""Every entry of the hostile-input corpus (``tests/corpus.py``) through the Python API and the CLI.

For each (entry, interface) pair the expectation is either a correct output or a clear,
specific error: a :class:`~neuromix.core.errors.NeuromixError` from the API; from the
CLI exit code 2, exactly one ``neuromix ...: error: ...`` line on stderr holding the
expected words, no traceback, no hang, and no file left behind in the (otherwise empty)
working folder of the command. The tests build a results table, write it next to the
test's ``tmp_path``, print it (``pytest -s`` shows it) and assert every row.

The CLI is slow to start (it imports torch), so every corpus entry goes through exactly
one CLI command chosen by its kind (all audio files through ``mix --model rules``), plus a
few extra routes; everything else runs in-process through the API.

:data:`KNOWN_BUGS` lists rows left out of the tables while a bug is being fixed (empty: every
row is asserted).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import BASE_SONG, ERROR, OK, PICKLE_MARKER, CorpusEntry, build_corpus  # noqa: E402

from neuromix.core.errors import ConfigError, NeuromixError  # noqa: E402

CEILING_DBTP = -1.0
"""Every mix and synth render promises a true peak at or below this (dBTP)."""
PEAK_TOLERANCE_DB = 0.1
"""Slack for the 4x-oversampled true-peak estimate and 24-bit quantisation."""
CLI_TIMEOUT_S = 90.0
API_TIMEOUT_S = 60.0
CLI_WORKERS = max(1, min(2, os.cpu_count() or 1))

# (entry, interface) -> the bug; see the module docstring.
KNOWN_BUGS: dict[tuple[str, str], str] = {}
KNOWN_BUG_TIMEOUT_S = 5.0
"""Known bugs that hang are cut short: they are expected to fail anyway."""


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CorpusEntry]:
    """The corpus, written once per module; name -> entry."""
    root = tmp_path_factory.mktemp("corpus")
    return {e.name: e for e in build_corpus(root)}


def _corpus_root(corpus: dict[str, CorpusEntry]) -> Path:
    """The corpus folder (the parent of the base song)."""
    entry = corpus["settings_valid"]
    return entry.path.parent.parent


class BadOutput(AssertionError):
    """An interface returned something, but not a correct output."""


@dataclass
class Row:
    """One line of a results table."""

    entry: str
    kind: str
    interface: str
    expected: str
    outcome: str  # ok | error | crash | bad-output | timeout
    message: str
    passed: bool
    seconds: float


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the main thread when the block runs longer than ``seconds``."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no result after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _true_peak_db(audio: np.ndarray) -> float:
    """4x-oversampled peak of ``(channels, samples)`` audio in dBTP (sample peak for tiny clips)."""
    if audio.shape[-1] >= 16:
        audio = scipy.signal.resample_poly(audio, 4, 1, axis=-1)
    return float(20 * np.log10(np.abs(audio).max() + 1e-12))


def _check_stereo(audio: np.ndarray | torch.Tensor, what: str, frames: int | None = None) -> str:
    """Check a ``(2, samples)`` result: finite, stereo, right length, true peak under the ceiling."""
    x = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    if x.ndim != 2 or x.shape[0] != 2 or x.shape[1] == 0:
        raise BadOutput(f"{what}: expected (2, samples), got {x.shape}")
    if not np.isfinite(x).all():
        raise BadOutput(f"{what}: non-finite samples")
    if frames is not None and x.shape[1] != frames:
        raise BadOutput(f"{what}: {x.shape[1]} samples, expected {frames}")
    peak = _true_peak_db(x.astype(np.float64))
    if peak > CEILING_DBTP + PEAK_TOLERANCE_DB:
        raise BadOutput(f"{what}: true peak {peak:.2f} dBTP above the {CEILING_DBTP} dBTP ceiling")
    return f"(2, {x.shape[1]}), {peak:.1f} dBTP"


def _check_audio_file(path: Path, rate: int | None = None, frames: int | None = None) -> str:
    try:
        data, sr = sf.read(str(path), always_2d=True, dtype="float64")
    except Exception as exc:  # noqa: BLE001 - any failure to read back is a broken output
        raise BadOutput(f"{path.name} cannot be read back: {exc}") from exc
    if rate is not None and sr != rate:
        raise BadOutput(f"{path.name}: {sr} Hz, expected {rate} Hz")
    return f"{path.name} {sr} Hz " + _check_stereo(data.T, path.name, frames)


def _matches(expected: tuple[str, str | None], outcome: str, message: str) -> bool:
    expect, needle = expected
    if outcome != expect:
        return False
    return expect == OK or needle is None or needle.lower() in message.lower()


def _table(rows: list[Row], title: str) -> str:
    lines = [f"## {title}", "", "| entry | kind | interface | expected | outcome | pass | s | message |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        msg = r.message.replace("|", "\\|").replace("\n", " ")
        msg = msg if len(msg) <= 180 else msg[:177] + "..."
        lines.append(f"| {r.entry} | {r.kind} | {r.interface} | {r.expected} | {r.outcome} | "
                     f"{'yes' if r.passed else '**NO**'} | {r.seconds:.1f} | {msg} |")
    passed = sum(r.passed for r in rows)
    lines += ["", f"{passed}/{len(rows)} rows as expected"]
    return "\n".join(lines)


def _report(rows: list[Row], title: str, out: Path) -> None:
    text = _table(rows, title)
    out.write_text(text + "\n", encoding="utf-8")
    print("\n" + text + f"\n(table written to {out})")
    failed = [r for r in rows if not r.passed]
    assert not failed, "rows not as expected:\n" + "\n".join(
        f"  {r.entry} via {r.interface}: expected {r.expected}, got {r.outcome}: {r.message[:300]}" for r in failed
    )


def _expected_text(expected: tuple[str, str | None]) -> str:
    return expected[0] + (f" ~ {expected[1]!r}" if expected[0] == ERROR and expected[1] else "")


# --------------------------------------------------------------------------- the Python API


def _api_interfaces(entry: CorpusEntry, root: Path) -> dict[str, Callable[[], str]]:
    """Interface name -> a call that returns a summary of a correct output (or raises)."""
    from neuromix.core import checkpoint
    from neuromix.core.io import load_multitrack, read_audio
    from neuromix.mixing.evaluate import load_data
    from neuromix.mixing.inference import mix_multitrack, read_settings
    from neuromix.mixing.models import MODEL_REGISTRY
    from neuromix.mixing.probe import target_from_spec
    from neuromix.mixing.train import TrainConfig
    from neuromix.synthesis import Instrument, Patch, load_score, midi_to_score, render_midi, render_score

    p = entry.path
    patch_file = root / "patches" / "patch_valid.json"

    def read() -> str:
        audio, rate = read_audio(p)
        if audio.dtype != torch.float32 or audio.ndim != 2 or not 1 <= audio.shape[0] <= 2 or audio.shape[1] == 0:
            raise BadOutput(f"read_audio returned {audio.dtype} {tuple(audio.shape)}")
        if not bool(torch.isfinite(audio).all()) or rate != sf.info(str(p)).samplerate:
            raise BadOutput("read_audio: non-finite audio or a rate that is not the file's")
        return f"{tuple(audio.shape)} at {rate} Hz"

    def multitrack() -> str:
        song = load_multitrack(p if entry.kind == "folder" else [p])
        if song.audio.ndim != 3 or song.audio.shape[1] != 2 or not bool(torch.isfinite(song.audio).all()):
            raise BadOutput(f"load_multitrack returned {tuple(song.audio.shape)}")
        return f"{tuple(song.audio.shape)} at {song.sample_rate} Hz"

    def mixed(model: str) -> Callable[[], str]:
        def run() -> str:
            song = load_multitrack(p if entry.kind == "folder" else [p])
            outcome = mix_multitrack(song, model=model)
            return _check_stereo(outcome.mix, f"mix by {model}", song.audio.shape[-1])

        return run

    def with_settings() -> str:
        doc = read_settings(p)
        song = load_multitrack(root / BASE_SONG)
        return _check_stereo(mix_multitrack(song, settings=doc).mix, "mix with settings", song.audio.shape[-1])

    def with_checkpoint() -> str:
        song = load_multitrack(root / BASE_SONG)
        return _check_stereo(mix_multitrack(song, model=p).mix, "mix by checkpoint", song.audio.shape[-1])

    def checkpoint_load() -> str:
        model, info = checkpoint.load(p, MODEL_REGISTRY)
        if model.training:
            raise BadOutput("checkpoint.load returned a model in training mode")
        return f"{info.model_type} {info.short_hash}"

    def rendered(result: Any, what: str) -> str:
        return f"{result.sample_rate} Hz " + _check_stereo(result.audio, what)

    def evaluation() -> str:
        songs = load_data(str(p), sample_rate=22050, max_seconds=1.0)
        if not songs or any(not bool(torch.isfinite(s.reference).all()) for s in songs):
            raise BadOutput("load_data returned no songs or a non-finite reference")
        return f"{len(songs)} song(s)"

    table: dict[str, dict[str, Callable[[], str]]] = {
        "audio": {
            "read_audio": read,
            "load_multitrack": multitrack,
            "mix_multitrack:rules": mixed("rules"),
            "mix_multitrack:console": mixed("console"),
            "mix_multitrack:blackbox": mixed("blackbox"),
        },
        "folder": {"load_multitrack": multitrack, "mix_multitrack:rules": mixed("rules")},
        "settings": {
            "read_settings": lambda: f"{len(read_settings(p))} keys",
            "mix_multitrack:settings": with_settings,
        },
        "patch": {
            "Patch.load": lambda: repr(Patch.load(p)),
            "Patch.render": lambda: rendered(Patch.load(p).render(0.2), "patch render"),
        },
        "score": {
            "load_score": lambda: f"{len(load_score(p).events)} events",
            "render_score": lambda: rendered(render_score(p), "score render"),
        },
        "midi": {
            "midi_to_score": lambda: f"{len(midi_to_score(p, str(patch_file)).events)} events",
            "render_midi": lambda: rendered(render_midi(p, str(patch_file), sample_rate=22050), "MIDI render"),
        },
        "checkpoint": {
            "checkpoint.load": checkpoint_load,
            "Instrument.load": lambda: f"{Instrument.load(p).family} network",
            "mix_multitrack:checkpoint": with_checkpoint,
        },
        "train_config": {"TrainConfig.load": lambda: f"{TrainConfig.load(p).model_type}"},
    }
    interfaces = dict(table[entry.kind])
    if entry.kind == "folder" and entry.name in EVAL_ROUTE:
        interfaces["evaluate.load_data"] = evaluation
    if entry.name in PROBE_ROUTE and entry.kind == "settings":
        interfaces["probe.target_from_spec"] = lambda: type(target_from_spec(str(p))).__name__
    return interfaces


def _run_api(entry: CorpusEntry, interface: str, call: Callable[[], str], timeout: float = API_TIMEOUT_S) -> Row:
    expected = entry.expectation(interface)
    start = time.perf_counter()
    try:
        with _deadline(timeout):
            outcome, message = OK, call()
    except NeuromixError as exc:
        outcome, message = ERROR, str(exc)
        if "\n" in message.strip() or not message.strip():
            outcome, message = "unclear-error", f"multi-line or empty message: {message!r}"
    except BadOutput as exc:
        outcome, message = "bad-output", str(exc)
    except TimeoutError as exc:
        outcome, message = "timeout", str(exc)
    except Exception as exc:  # noqa: BLE001 - anything else is exactly what this suite looks for
        outcome, message = "crash", f"{type(exc).__name__}: {exc}"
    return Row(entry.name, entry.kind, interface, _expected_text(expected), outcome, message,
               _matches(expected, outcome, message), time.perf_counter() - start)


def _api_rows(corpus: dict[str, CorpusEntry], *, known: bool) -> list[Row]:
    root = _corpus_root(corpus)
    rows = []
    for entry in corpus.values():
        for interface, call in _api_interfaces(entry, root).items():
            if ((entry.name, interface) in KNOWN_BUGS) == known:
                rows.append(_run_api(entry, interface, call))
    return rows


def test_every_entry_through_the_api(corpus: dict[str, CorpusEntry], tmp_path: Path) -> None:
    rows = _api_rows(corpus, known=False)
    assert len(rows) >= 3 * len(corpus) // 2
    _report(rows, f"Python API: {len(corpus)} corpus entries, {len(rows)} calls", tmp_path / "bad_inputs_api.md")
    assert not (_corpus_root(corpus) / PICKLE_MARKER).exists(), "something unpickled a corpus pickle"


# --------------------------------------------------------------------------- the command line

# Entries that take an extra or a different CLI route than their kind's default.
EVAL_ROUTE = {"folder_song_with_mix", "folder_nan_mixdown", "folder_metadata_escape", "folder_symlink_loop"}
PROBE_ROUTE = {"settings_deep", "settings_not_object"}


@dataclass(frozen=True)
class CliCase:
    """One CLI invocation: an entry, a readable interface name and how to build argv in a work folder."""

    entry: CorpusEntry
    interface: str
    argv: Callable[[Path], list[str]]
    output: str  # the name of the output (file or folder) inside the work folder


def _cli_cases(corpus: dict[str, CorpusEntry]) -> list[CliCase]:
    root = _corpus_root(corpus)
    song = str(root / BASE_SONG)
    patch = str(root / "patches" / "patch_valid.json")
    cases: list[CliCase] = []
    for e in corpus.values():
        p = str(e.path)
        if e.kind == "audio":
            cases.append(CliCase(e, "cli mix --model rules",
                                 lambda w, p=p: ["mix", p, "-o", str(w / "out.wav"), "--model", "rules"], "out.wav"))
        elif e.kind == "folder" and e.name in EVAL_ROUTE - {"folder_symlink_loop"}:
            cases.append(CliCase(e, "cli eval", lambda w, p=p: [
                "eval", "--data", p, "--systems", "sum", "--bootstrap", "10", "--max-seconds", "1",
                "--no-progress", "-o", str(w / "report")], "report"))
        elif e.kind == "folder":
            cases.append(CliCase(e, "cli rules-mix", lambda w, p=p: ["rules-mix", p, "-o", str(w / "out.wav")],
                                 "out.wav"))
        elif e.kind == "settings" and e.name in PROBE_ROUTE:
            cases.append(CliCase(e, "cli probe", lambda w, p=p: [
                "probe", p, "--context", "silent", "--quick", "--no-progress", "-o", str(w / "sheet")], "sheet"))
        elif e.kind == "settings":
            cases.append(CliCase(e, "cli mix --settings",
                                 lambda w, p=p: ["mix", song, "-o", str(w / "out.wav"), "--settings", p], "out.wav"))
        elif e.kind == "patch":
            cases.append(CliCase(e, "cli synth render",
                                 lambda w, p=p: ["synth", "render", p, "-o", str(w / "out.wav"), "--seconds", "0.2"],
                                 "out.wav"))
        elif e.kind == "score":
            cases.append(CliCase(e, "cli synth score", lambda w, p=p: ["synth", "score", p, "-o", str(w / "out.wav")],
                                 "out.wav"))
        elif e.kind == "midi":
            cases.append(CliCase(e, "cli synth midi", lambda w, p=p: [
                "synth", "midi", p, "--patch", patch, "--sample-rate", "22050", "-o", str(w / "out.wav")], "out.wav"))
        elif e.kind == "checkpoint":
            cases.append(CliCase(e, "cli mix --model CHECKPOINT",
                                 lambda w, p=p: ["mix", song, "-o", str(w / "out.wav"), "--model", p], "out.wav"))
        elif e.kind == "train_config":
            cases.append(CliCase(e, "cli train", lambda w, p=p: [
                "train", "--config", p, "-o", str(w / "run"), "--max-steps", "1", "--no-progress"], "run"))
        else:  # pragma: no cover - a new kind needs a route
            raise AssertionError(f"no CLI route for kind {e.kind}")
    # extra routes: the same inputs through other commands
    loop, empty, short = corpus["folder_symlink_loop"], corpus["folder_empty"], corpus["one_sample"]
    cases.append(CliCase(loop, "cli eval", lambda w: [
        "eval", "--data", str(loop.path), "--systems", "sum", "--no-progress", "-o", str(w / "report")], "report"))
    cases.append(CliCase(empty, "cli probe", lambda w: [
        "probe", "rules", "--context", str(empty.path), "--quick", "--no-progress", "-o", str(w / "sheet")], "sheet"))
    cases.append(CliCase(short, "cli mix", lambda w: ["mix", str(short.path), "-o", str(w / "out.wav")], "out.wav"))
    cases.append(CliCase(short, "cli mix --model blackbox", lambda w: [
        "mix", str(short.path), "-o", str(w / "out.wav"), "--model", "blackbox"], "out.wav"))
    return cases


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def _check_cli_output(case: CliCase, work: Path, root: Path) -> str:
    """Validate what a successful command wrote; return a summary."""
    out = work / case.output
    kind = case.entry.kind
    if case.interface == "cli eval":
        if not (out / "report.md").is_file():
            raise BadOutput(f"eval wrote no report.md ({_files_under(work)})")
        return f"report with {len(_files_under(out))} files"
    if not out.is_file():
        raise BadOutput(f"exit 0 but no {case.output} ({_files_under(work)})")
    extra = [f for f in _files_under(work) if f != case.output]
    if extra:
        raise BadOutput(f"stray files beside the output: {extra}")
    if kind == "audio":
        info = sf.info(str(case.entry.path))
        return _check_audio_file(out, info.samplerate, info.frames)
    if case.interface in ("cli mix --settings", "cli mix --model CHECKPOINT"):
        info = sf.info(str(root / BASE_SONG / "kick.wav"))
        return _check_audio_file(out, info.samplerate, info.frames)
    return _check_audio_file(out)


@dataclass(frozen=True)
class Completed:
    """What a CLI process left: exit status (negative: killed by that signal), stdout, stderr."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float


def _cli_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONIOENCODING": "utf-8"}


def _exec_cli(argv: list[str], cwd: Path, timeout: float = CLI_TIMEOUT_S) -> Completed | None:
    """``python -m neuromix ARGV`` in a fresh interpreter; ``None`` on a timeout (the process is killed)."""
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "neuromix", *argv], cwd=cwd, env=_cli_env(),
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return Completed(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start)


class ForkServer:
    """Runs ``neuromix.ui.cli.main`` in forked child processes of a warm interpreter.

    ``python -m neuromix`` spends about 2 s of CPU importing torch before it looks at its
    arguments; over a hundred corpus runs that is most of this file's time. The server is a
    separate interpreter (``python tests/test_bad_inputs.py --serve``) that imports the CLI
    and the libraries its commands load, then forks one child per request. The child is a
    fresh process for the command's purposes: its own working folder, stdout and stderr
    (files outside the working folder), its own exit status, and ``SIGKILL`` of its process
    group on a timeout; an uncaught exception prints a traceback and exits 1, exactly as
    ``raise SystemExit(main())`` in ``neuromix/__main__.py`` does. The server itself only
    imports (no torch operations, no threads), so forking it is safe.
    ``test_fork_server_agrees_with_python_m_neuromix`` checks one run per command form
    against a real ``python -m neuromix``.
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve"], env=_cli_env(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def run(self, argv: list[str], cwd: Path) -> Completed | None:
        """Run one command; ``None`` on a timeout."""
        import json

        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd), "timeout": CLI_TIMEOUT_S}) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if reply["timeout"]:
            return None
        return Completed(reply["returncode"], reply["stdout"], reply["stderr"], reply["seconds"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _serve() -> None:
    """The fork server's loop: one JSON request per line on stdin, one JSON reply per line on stdout."""
    import json
    import tempfile
    import traceback

    import neuromix.mixing.evaluate  # noqa: F401 - warm the imports every command needs
    import neuromix.mixing.inference  # noqa: F401
    import neuromix.mixing.probe  # noqa: F401
    import neuromix.mixing.train  # noqa: F401
    import neuromix.synthesis.instrument  # noqa: F401
    import neuromix.synthesis.score  # noqa: F401
    from neuromix.ui.cli import main

    protocol = sys.stdout
    print("ready", file=protocol, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        with tempfile.TemporaryDirectory(prefix="nmx-fork-") as tmp:
            out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
            start = time.perf_counter()
            protocol.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the child: become the command
                code = 1
                try:
                    os.setpgid(0, 0)
                    os.chdir(request["cwd"])
                    for fd, path in ((1, out_path), (2, err_path)):
                        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
                    sys.argv = ["neuromix", *request["argv"]]
                    try:
                        code = main(request["argv"])
                    except SystemExit as exc:
                        if isinstance(exc.code, str):
                            print(exc.code, file=sys.stderr)
                        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
                    except BaseException:  # noqa: BLE001 - what the interpreter would print
                        traceback.print_exc()
                        code = 1
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code if isinstance(code, int) else 1)
            deadline = start + request["timeout"]
            timed_out, status = False, 0
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.perf_counter() > deadline:
                    timed_out = True
                    os.killpg(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.01)
            reply = {
                "timeout": timed_out,
                "returncode": os.waitstatus_to_exitcode(status) if not timed_out else None,
                "stdout": out_path.read_text(errors="replace") if out_path.exists() else "",
                "stderr": err_path.read_text(errors="replace") if err_path.exists() else "",
                "seconds": time.perf_counter() - start,
            }
        print(json.dumps(reply), file=protocol, flush=True)


def _judge_cli(case: CliCase, work: Path, root: Path, done: Completed | None, runner: str) -> Row:
    """Turn a finished command into a table row (see the module docstring for the criteria)."""
    expected = case.entry.expectation(case.interface)
    interface = case.interface if runner == "fork" else f"{case.interface} [exec]"

    def row(outcome: str, message: str, seconds: float) -> Row:
        return Row(case.entry.name, case.entry.kind, interface, _expected_text(expected), outcome, message,
                   _matches(expected, outcome, message), seconds)

    if done is None:
        return row("timeout", "no exit before the timeout (killed)", CLI_TIMEOUT_S)
    stderr = done.stderr
    errors = [line for line in stderr.splitlines() if line.startswith("neuromix") and ": error: " in line]
    if "Traceback" in stderr or done.returncode not in (0, 2):
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        return row("crash", f"exit {done.returncode}: {last}", done.seconds)
    if done.returncode == 2:
        left = _files_under(work)
        if len(errors) != 1:
            return row("unclear-error", f"{len(errors)} error lines on stderr: {stderr.strip()[:300]!r}", done.seconds)
        if left:
            return row("left-files", f"{errors[0]} -- but left behind {left}", done.seconds)
        return row(ERROR, errors[0], done.seconds)
    try:
        return row(OK, _check_cli_output(case, work, root), done.seconds)
    except BadOutput as exc:
        return row("bad-output", str(exc), done.seconds)


def _run_case(case: CliCase, work: Path, root: Path, server: ForkServer | None, timeout: float = CLI_TIMEOUT_S) -> Row:
    work.mkdir(parents=True)
    argv = case.argv(work)
    done = server.run(argv, work) if server is not None else _exec_cli(argv, work, timeout)
    return _judge_cli(case, work, root, done, "fork" if server is not None else "exec")


def _cli_rows(corpus: dict[str, CorpusEntry], work: Path, cases: list[CliCase], *, fork: bool) -> list[Row]:
    """Run ``cases`` on :data:`CLI_WORKERS` workers (each with its own fork server when ``fork``)."""
    import queue

    root = _corpus_root(corpus)
    servers: queue.Queue[ForkServer | None] = queue.Queue()
    started = [ForkServer() for _ in range(CLI_WORKERS)] if fork else [None] * CLI_WORKERS
    for server in started:
        servers.put(server)

    def one(index: int, case: CliCase) -> Row:
        server = servers.get()
        try:
            return _run_case(case, work / f"{index:03d}", root, server)
        finally:
            servers.put(server)

    try:
        with ThreadPoolExecutor(max_workers=CLI_WORKERS) as pool:
            return list(pool.map(one, range(len(cases)), cases))
    finally:
        for server in started:
            if server is not None:
                server.close()


@pytest.fixture(scope="module")
def cli_rows(corpus: dict[str, CorpusEntry], tmp_path_factory: pytest.TempPathFactory) -> list[Row]:
    """Every CLI case (known bugs left out) run through the fork server."""
    cases = [c for c in _cli_cases(corpus) if (c.entry.name, c.interface) not in KNOWN_BUGS]
    return _cli_rows(corpus, tmp_path_factory.mktemp("cli"), cases, fork=True)


def test_every_entry_through_the_cli(corpus: dict[str, CorpusEntry], cli_rows: list[Row], tmp_path: Path) -> None:
    covered = {r.entry for r in cli_rows} | {name for name, _ in KNOWN_BUGS}
    assert covered == set(corpus), f"entries with no CLI route: {sorted(set(corpus) - covered)}"
    assert {r.entry for r in cli_rows if r.interface == "cli mix --model rules"} == {
        e.name for e in corpus.values() if e.kind == "audio"
    }
    commands = sorted({r.interface for r in cli_rows})
    _report(cli_rows, f"CLI: {len(cli_rows)} runs over {len(commands)} command forms", tmp_path / "bad_inputs_cli.md")
    assert not (_corpus_root(corpus) / PICKLE_MARKER).exists(), "something unpickled a corpus pickle"


def test_fork_server_agrees_with_python_m_neuromix(
    corpus: dict[str, CorpusEntry], cli_rows: list[Row], tmp_path: Path
) -> None:
    """One error per command form and two successes, re-run as real ``python -m neuromix`` processes."""
    by_key = {(r.entry, r.interface): r for r in cli_rows}
    chosen: dict[tuple[str, str], CliCase] = {}
    for case in _cli_cases(corpus):
        if (case.entry.name, case.interface) not in by_key:
            continue
        outcome = by_key[(case.entry.name, case.interface)].outcome
        if outcome == ERROR or case.interface in ("cli mix --model rules", "cli synth render"):
            chosen.setdefault((case.interface, outcome), case)
    rows = _cli_rows(corpus, tmp_path / "exec", list(chosen.values()), fork=False)
    _report(rows, f"CLI as real processes: {len(rows)} runs", tmp_path / "bad_inputs_cli_exec.md")
    for row in rows:
        forked = by_key[(row.entry, row.interface.removesuffix(" [exec]"))]
        assert row.outcome == forked.outcome, (row, forked)
        if row.outcome == ERROR:  # the same message, up to the per-run work folder
            assert _without_work(row.message) == _without_work(forked.message), (row.message, forked.message)


def _without_work(message: str) -> str:
    import re

    return re.sub(r"/\S*/(cli\d*|exec)/\d{3}/", "WORK/", message)


def test_short_clips_and_fifo_settings_fixed(corpus: dict[str, CorpusEntry], tmp_path: Path) -> None:
    """Two bugs the corpus found in mixing/inference.py, now fixed: a clip shorter than 0.4 s
    crashed the networks (now padded for analysis, the mix cut back), and read_settings hung
    on a named pipe (now refused as not a regular file)."""
    from neuromix.mixing.inference import mix_multitrack, read_settings

    for model in ("console", "blackbox", "rules"):
        out = mix_multitrack(torch.full((1, 1, 100), 0.1), 22050, model=model)
        assert out.mix.shape == (2, 100) and bool(torch.isfinite(out.mix).all())
    fifo = tmp_path / "f.json"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="regular file"):
        read_settings(fifo)


# --------------------------------------------------------------------------- fixes found by the corpus


def test_session_rates_outside_the_limits_are_refused(corpus: dict[str, CorpusEntry]) -> None:
    """A requested rate of 100 Hz used to reach the mixers (ValueError from K-weighting), and one of
    100 MHz made them allocate gigabytes."""
    from neuromix.core.io import AudioLimits, load_multitrack, read_audio

    song = _corpus_root(corpus) / BASE_SONG
    for rate in (100, 7999, 384001, 10**8):
        with pytest.raises(ConfigError, match="8000 to 384000 Hz"):
            load_multitrack(song, rate)
        with pytest.raises(ConfigError, match="8000 to 384000 Hz"):
            read_audio(song / "kick.wav", rate)
    assert load_multitrack(song, 8000).sample_rate == 8000
    # the range is a limit like the others: narrow it and an 8 kHz file is refused
    with pytest.raises(NeuromixError, match="16000 to 48000 Hz"):
        read_audio(corpus["rate_8k"].path, limits=AudioLimits(min_sample_rate=16000, max_sample_rate=48000))


def test_probe_refuses_bad_settings_sample_rates(tmp_path: Path, corpus: dict[str, CorpusEntry]) -> None:
    """probe's settings target used int() on any sample_rate and json.loads without bounds."""
    import json

    from neuromix.mixing.probe import target_from_spec

    doc = json.loads(corpus["settings_valid"].path.read_text())
    for bad in ("fast", 1, 10**12, True):
        path = tmp_path / f"rate_{bad}.json"
        path.write_text(json.dumps({**doc, "sample_rate": bad}))
        with pytest.raises(ConfigError, match="sample_rate"):
            target_from_spec(str(path))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(doc))
    assert target_from_spec(str(good)).sample_rate == doc["sample_rate"]


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve()
