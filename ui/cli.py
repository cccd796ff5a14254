"""The ``neuromix`` command line: a thin layer over the library.

Each subcommand lives in a small ``_cmd_*`` function that parses nothing
itself, calls library functions and returns an exit code. Heavy imports
(torch models, gradio) happen inside the subcommands, so ``neuromix --help``
stays fast.

Exit codes: 0 success, 1 unexpected internal error, 2 bad usage or bad input
(a :class:`neuromix.core.errors.NeuromixError`, shown without a traceback),
3 refused to overwrite an existing output, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import neuromix

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_EXISTS = 3
EXIT_INTERRUPTED = 130


class OutputExistsError(Exception):
    """The output exists and ``--force`` was not given."""


def _check_output(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; pass --force to overwrite it")


# --------------------------------------------------------------------------- subcommands


def _cmd_generate(args: argparse.Namespace) -> int:
    from neuromix.mixing.generator import demo_song, generate_song, write_song

    out = Path(args.output)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise OutputExistsError(f"{out} is not empty; pass --force to overwrite")
    if args.demo:
        song = demo_song(args.demo, sample_rate=args.sample_rate, seconds=args.seconds)
    else:
        song = generate_song(
            args.seed, seconds=args.seconds or 10.0, sample_rate=args.sample_rate, genre=args.genre
        )
    write_song(song, out, overwrite=args.force)
    print(f"wrote {len(song.stems)} stems ({', '.join(song.names)}) and metadata.json to {out}")
    return EXIT_OK


def _parse_classes(spec: str | None) -> dict[str, str]:
    """Parse ``"kick.wav=kick,vox=vocal"`` into a name -> class mapping."""
    from neuromix.core.errors import ConfigError
    from neuromix.mixing.classes import INSTRUMENT_CLASSES

    mapping: dict[str, str] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        name, sep, cls = part.partition("=")
        if not sep or not name.strip() or cls.strip().lower() not in INSTRUMENT_CLASSES:
            raise ConfigError(
                f"--classes: {part!r} must be NAME=CLASS with CLASS one of {', '.join(INSTRUMENT_CLASSES)}"
            )
        mapping[name.strip()] = cls.strip().lower()
    return mapping


def _cmd_rules_mix(args: argparse.Namespace) -> int:
    import torch

    from neuromix.core.io import load_multitrack, write_audio
    from neuromix.mixing.classify import classify_tracks
    from neuromix.mixing.rules import RuleMixer

    out = Path(args.output)
    _check_output(out, args.force)
    if args.params:
        _check_output(Path(args.params), args.force)
    overrides = _parse_classes(args.classes)  # validate options before reading any audio
    multitrack = load_multitrack(args.inputs if len(args.inputs) > 1 else args.inputs[0], args.sample_rate)
    for note in multitrack.notes:
        print(f"note: {note}", file=sys.stderr)
    classes = classify_tracks(multitrack.names, multitrack.audio, multitrack.sample_rate, overrides=overrides)
    mixer = RuleMixer(multitrack.sample_rate)
    with torch.no_grad():
        mix, params = mixer.mix(multitrack.audio, classes)
    write_audio(out, mix[0], multitrack.sample_rate, overwrite=args.force)
    if args.params:
        doc = mixer.console.settings_to_dict(params, multitrack.names)
        doc["classes"] = dict(zip(multitrack.names, classes))
        Path(args.params).write_text(json.dumps(doc, indent=2))
    print(f"mixed {multitrack.num_tracks} tracks -> {out}" + (f", settings -> {args.params}" if args.params else ""))
    return EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    from neuromix.mixing.train import TrainConfig, shipped_config_path, train

    path = Path(args.config)
    if not path.exists() and not args.config.endswith(".json"):
        path = shipped_config_path(args.config)
    cfg = TrainConfig.load(path)
    summary = train(
        cfg,
        args.output,
        resume=args.resume,
        device=args.device,
        progress=not args.no_progress,
        max_steps=args.max_steps,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from neuromix.ui.demo import render_demo

    out = Path(args.output)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise OutputExistsError(f"{out} is not empty; pass --force to overwrite")
    summary = render_demo(args.song, out, sample_rate=args.sample_rate, seconds=args.seconds)
    print(json.dumps(summary, indent=2))
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="neuromix",
        description=(
            "neuromix: intelligent music mixing and neural sound design.\n"
            "Mix multitracks with trained networks or expert rules, and make new sounds\n"
            "by exciting trained networks with test signals."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `neuromix COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"neuromix {neuromix.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "generate",
        help="write a procedurally generated multitrack song (stems + metadata.json)",
        description="Generate a seeded multitrack song and write one WAV per stem plus metadata.json.\n"
        "Example: neuromix generate --seed 7 -o song7/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seed", type=int, default=0, help="song seed (same seed -> identical stems)")
    p.add_argument("--demo", help="write one of the bundled demo songs instead (by name)")
    p.add_argument("--genre", help="genre of a seeded song (e.g. pop, electronic, ballad)")
    p.add_argument("--seconds", type=float, default=None, help="song length in seconds")
    p.add_argument("--sample-rate", type=int, default=44100, help="sample rate in Hz (default 44100)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser(
        "rules-mix",
        help="mix a folder (or files) of stems with the rule-based expert mixer",
        description="Mix stems with the rule-based mixer (expert mixing knowledge: loudness balance by\n"
        "instrument class, panning conventions, unmasking EQ, compression, bus compression, limiter).\n"
        "Instrument classes come from file names, then from audio features; --classes overrides them.\n"
        "Example: neuromix rules-mix song/ -o mix.wav --params settings.json --classes gtr1.wav=guitar",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="a folder of stems, or several stem files")
    p.add_argument("-o", "--output", required=True, help="output WAV (stereo, 24-bit, true peak <= -1 dBFS)")
    p.add_argument("--params", help="also write the console settings (JSON) to this file")
    p.add_argument("--classes", help="override classes: NAME=CLASS[,NAME=CLASS...] (NAME: stem file name)")
    p.add_argument("--sample-rate", type=int, default=None, help="session rate (default: the stems' rate)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=_cmd_rules_mix)

    p = sub.add_parser(
        "train",
        help="train a mixing network (console or black-box) from a JSON config",
        description="Train a mixing network. CONFIG is a JSON file or the name of a shipped config\n"
        "(console_small, blackbox_small). Progress shows the loss and throughput; the run folder\n"
        "keeps a resumable state (stop at any moment, continue with --resume).\n"
        "Several processes: torchrun --standalone --nproc_per_node=2 -m neuromix train --config ...\n"
        "Example: neuromix train --config console_small -o runs/console",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="JSON config file or shipped config name")
    p.add_argument("-o", "--output", required=True, help="run folder (state, model, log)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in this call")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "demo",
        help="render a bundled demo song and its mix to a folder (the main job of `make run`)",
        description="Generate a bundled demo song, mix it, and write stems, mix.wav and settings.json.\n"
        "Example: neuromix demo -o out/demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--song", default=None, help="demo song name (default: the first one)")
    p.add_argument("--seconds", type=float, default=None, help="render only this many seconds")
    p.add_argument("--sample-rate", type=int, default=44100, help="sample rate in Hz")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    from neuromix.core.errors import NeuromixError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except OutputExistsError as exc:
        print(f"neuromix: {exc}", file=sys.stderr)
        return EXIT_EXISTS
    except NeuromixError as exc:
        print(f"neuromix {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("neuromix: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
