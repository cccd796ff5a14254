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


def _check_output_folder(folder: Path, force: bool) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not force:
        raise OutputExistsError(f"{folder} is not empty; pass --force to overwrite")


# --------------------------------------------------------------------------- subcommands


def _cmd_generate(args: argparse.Namespace) -> int:
    from neuromix.mixing.generator import demo_song, generate_song, write_song

    out = Path(args.output)
    _check_output_folder(out, args.force)
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
    """``rules-mix`` is ``mix --model rules`` (same loading, classes, rendering and settings file)."""
    args.model, args.settings, args.reference, args.block_seconds = "rules", None, None, None
    args.no_progress = False
    args.target = args.targets = args.anchor = args.report = args.automation_out = None
    args.lock, args.resolve, args.automation, args.steps = [], False, False, 30
    return _cmd_mix(args)


def _cmd_mix(args: argparse.Namespace) -> int:
    from neuromix.core.errors import ConfigError
    from neuromix.core.io import load_multitrack, read_audio, write_audio, write_text_atomic
    from neuromix.mixing.goals import parse_targets, read_targets
    from neuromix.mixing.inference import mix_multitrack, read_settings, resolve_mix, resolve_model

    out = Path(args.output)
    extra_outputs = [Path(x) for x in (args.params, args.report, args.automation_out) if x]
    for path in [out, *extra_outputs]:
        _check_output(path, args.force)
    if len({p.resolve() for p in [out, *extra_outputs]}) != 1 + len(extra_outputs):
        raise ConfigError("the output, --params, --report and --automation-out must be different files")
    # validate every option before reading any audio
    settings = read_settings(args.settings) if args.settings else None
    anchor = read_settings(args.anchor) if args.anchor else None
    overrides = _parse_classes(args.classes) or None
    targets = None
    if args.target and args.targets:
        raise ConfigError("give targets either as --target TEXT or as --targets FILE, not both")
    if args.target:
        targets = parse_targets(args.target)
    elif args.targets:
        targets = read_targets(args.targets)
    locks = list(args.lock or [])
    guided = bool(args.reference or targets)
    if args.resolve and settings is None:
        raise ConfigError("--resolve re-optimises edited settings: give them with --settings FILE")
    if locks and not (guided or args.resolve):
        raise ConfigError("--lock keeps settings while optimising: add --reference, --target(s) or --resolve")
    if anchor is not None and not args.resolve:
        raise ConfigError("--anchor is the goal of --resolve; add --resolve")
    if args.report and not (guided or args.resolve):
        raise ConfigError("--report describes a goal-oriented mix: add --reference, --target(s) or --resolve")
    if args.automation and (settings is not None or guided):
        raise ConfigError("--automation rides the network's own prediction; it cannot be combined with "
                          "--settings, --reference or --target(s)")
    if args.automation_out and not args.automation:
        raise ConfigError("--automation-out needs --automation")
    if args.steps < 0 or args.steps > 1000:
        raise ConfigError("--steps must be between 0 and 1000")
    model = None
    if settings is None or args.resolve:
        model = resolve_model(args.model or "console")
        if args.params and model.kind == "blackbox":
            raise ConfigError(
                "--params: the black-box network has no console settings to write; "
                "use a console network (--model console or a console checkpoint) or --model rules"
            )
    elif args.model:
        print("note: --settings given, so --model is not used", file=sys.stderr)
    single = len(args.inputs) == 1 and Path(args.inputs[0]).is_dir()
    multitrack = load_multitrack(args.inputs[0] if single else args.inputs, args.sample_rate)
    for note in multitrack.notes:
        print(f"note: {note}", file=sys.stderr)
    reference = read_audio(args.reference, multitrack.sample_rate)[0] if args.reference else None
    progress = not args.no_progress and multitrack.duration_s > 30.0
    automation = None
    if args.resolve:
        outcome = resolve_mix(
            multitrack, settings=settings, locks=locks, reference=reference, targets=targets, anchor=anchor,
            model=model, classes=overrides, steps=args.steps, block_seconds=args.block_seconds, progress=progress,
        )
    elif args.automation:
        from neuromix.mixing.automation import automate_mix

        outcome, automation = automate_mix(
            multitrack, model=model, classes=overrides, window_seconds=args.automation_window,
            block_seconds=args.block_seconds, progress=progress,
        )
    else:
        outcome = mix_multitrack(
            multitrack,
            model=model if model is not None else "console",  # not used when settings are given
            classes=overrides,
            settings=settings,
            reference=reference,
            targets=targets,
            locks=locks,
            steps=args.steps,
            block_seconds=args.block_seconds,
            progress=progress,
        )
    write_audio(out, outcome.mix, multitrack.sample_rate, overwrite=args.force)
    written = [str(out)]
    if args.params and outcome.settings is not None:
        write_text_atomic(args.params, json.dumps(outcome.settings, indent=2) + "\n", overwrite=args.force)
        written.append(f"settings -> {args.params}")
    if args.report and outcome.report is not None:
        text = (json.dumps(outcome.report.to_dict(), indent=2) + "\n") if args.report.endswith(".json") \
            else outcome.report.to_markdown()
        write_text_atomic(args.report, text, overwrite=args.force)
        written.append(f"report -> {args.report}")
    if args.automation_out and automation is not None:
        write_text_atomic(args.automation_out, automation.to_csv() if args.automation_out.endswith(".csv")
                          else json.dumps(automation.to_dict(), indent=2) + "\n", overwrite=args.force)
        written.append(f"automation -> {args.automation_out}")
    classes = ", ".join(f"{n}={c}" for n, c in zip(outcome.names, outcome.classes))
    print(
        f"mixed {multitrack.num_tracks} tracks ({multitrack.duration_s:.1f} s at {multitrack.sample_rate} Hz) "
        f"with {outcome.model_name} -> " + ", ".join(written)
    )
    print(f"classes: {classes}")
    if outcome.report is not None:
        r = outcome.report
        unmet = [f"{row['where']}.{row['feature']}" for row in r.rows if not row["met"] and r.goal != "reference"]
        print(f"goal ({r.goal}): distance {r.distance_before:.3f} -> {r.distance_after:.3f}"
              + (f"; not fully reached: {', '.join(unmet)}" if unmet else ""))
    return EXIT_OK


def _cmd_ui(args: argparse.Namespace) -> int:
    from neuromix.ui.app import run_ui

    return run_ui(args)


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
    _check_output_folder(out, args.force)
    summary = render_demo(args.song, out, sample_rate=args.sample_rate, seconds=args.seconds)
    print(json.dumps(summary, indent=2))
    return EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:
    import shlex

    from neuromix.mixing.evaluate import (
        EvalConfig,
        evaluate,
        load_data,
        resolve_systems,
        summarise,
        summary_table,
        write_report,
    )

    out = Path(args.output)
    _check_output_folder(out, args.force)
    systems = resolve_systems(args.systems)
    max_seconds = args.max_seconds if args.max_seconds and args.max_seconds > 0 else None
    songs = []
    for spec in args.data:
        songs += load_data(spec, seconds=args.seconds, sample_rate=args.sample_rate, max_seconds=max_seconds)
    config = EvalConfig(bootstrap=args.bootstrap, seed=args.seed)
    results = evaluate(songs, systems, config=config, progress=not args.no_progress, total=len(songs))
    parts = ["neuromix", "eval", "--data", *args.data, "--systems", args.systems, "--seconds", f"{args.seconds:g}",
             "--max-seconds", f"{args.max_seconds:g}", "--bootstrap", str(args.bootstrap), "--seed", str(args.seed)]
    if args.sample_rate:
        parts += ["--sample-rate", str(args.sample_rate)]
    command = " ".join(shlex.quote(a) for a in parts + ["-o", str(out)])
    write_report(results, out, command=command, force=True)
    summary = summarise(results)
    for dataset in results.datasets:
        print(f"## {dataset}\n{summary_table(results, summary, dataset)}\n")
    print(f"report: {out / 'report.md'}")
    return EXIT_OK


def _cmd_probe(args: argparse.Namespace) -> int:
    from neuromix.mixing.probe import (
        ProbeConfig,
        load_context,
        probe,
        target_from_spec,
        write_datasheet,
    )

    out = Path(args.output)
    _check_output_folder(out, args.force)
    target = target_from_spec(args.target, args.sample_rate)
    config = ProbeConfig.quick() if args.quick else ProbeConfig()
    levels = config.step_levels()
    longest = max(config.sweep_seconds + config.tail_seconds + 0.5, len(levels) * config.step_seconds + 0.1,
                  config.burst_lead_seconds + config.burst_on_seconds + config.burst_off_seconds)
    context = load_context(args.context, target.sample_rate, config.context_offset_seconds + longest + 1.0)
    tracks = None if args.track is None else [args.track]
    sheet = probe(target, context, tracks=tracks, config=config, progress=not args.no_progress)
    write_datasheet(sheet, out, force=True)
    for path in sheet.to_dict()["paths"]:
        name = "master" if path["path"] == "master" else f"track {path['index']} ({path['name']}, {path['class']})"
        comp, timing = path["compression"], path["timing"] or {}
        squash = (f"threshold {comp['threshold_db']} dB, ratio {comp['ratio']}:1" if comp["compressing"]
                  else "no compression")
        print(f"{name}: gain {path['response']['broadband_gain_db']} dB, pan {path['stereo']['pan']}, "
              f"width {path['stereo']['width']}, {squash}, attack {timing.get('attack_ms')} ms, "
              f"release {timing.get('release_ms')} ms")
    print(f"datasheet: {out / 'datasheet.json'}")
    return EXIT_OK


def _parse_synth_controls(pairs: Sequence[str] | None) -> dict[str, float]:
    """Parse ``["brightness=0.7", ...]`` into a control -> value mapping."""
    from neuromix.core.errors import ConfigError

    values: dict[str, float] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--control {pair!r}: must be NAME=NUMBER") from None
        if not sep or not name.strip():
            raise ConfigError(f"--control {pair!r}: must be NAME=NUMBER")
    return values


def _synth_report(rendered: object, out: Path) -> None:
    report = rendered.report  # type: ignore[attr-defined]
    seconds = rendered.audio.shape[-1] / rendered.sample_rate  # type: ignore[attr-defined]
    line = f"wrote {out} ({seconds:.2f} s, {rendered.sample_rate} Hz stereo"  # type: ignore[attr-defined]
    if report is not None:
        loud = "" if report.loudness_lufs is None else f", {report.loudness_lufs:.1f} LUFS"
        line += f", true peak {report.true_peak_db:.2f} dBTP{loud}"
        if not report.ok:
            print(f"warning: safety contract violated: {'; '.join(report.violations())}", file=sys.stderr)
    print(line + ")")


def _cmd_synth_list(args: argparse.Namespace) -> int:
    from neuromix.synthesis.instrument import available_networks
    from neuromix.synthesis.patch import Patch, list_presets

    rows = []
    for name in list_presets():
        patch = Patch.load(name)
        rows.append({
            "name": name,
            "network": patch.network.name or patch.network.path,
            "pitched": patch.pitched,
            "techniques": sorted({type(t).__name__.lower() for t in patch.techniques}),
            "main_control": patch.main_control,
            "description": patch.description,
        })
    if args.json:
        print(json.dumps({"presets": rows, "networks": {k: str(v) for k, v in available_networks().items()}}, indent=2))
        return EXIT_OK
    for row in rows:
        kind = "pitched" if row["pitched"] else "unpitched"
        print(f"{row['name']:<22} [{row['network']}, {kind}; main control: {row['main_control']}]")
        print(f"    {row['description']}")
    shipped = available_networks()
    print(f"\nshipped networks: {', '.join(sorted(shipped)) or 'none yet (pass --network PATH to render)'}")
    return EXIT_OK


def _cmd_synth_layers(args: argparse.Namespace) -> int:
    from neuromix.synthesis.instrument import Instrument

    inst = Instrument.load(args.network)
    print(f"{inst.family} network {inst.source} (hash {inst.content_hash}): bendable layers")
    for info in inst.layers():
        print(f"  {info.name:<48} {info.kind:<24} {info.path:<13} {info.channels} channels")
    return EXIT_OK


def _synth_patch(args: argparse.Namespace) -> object:
    from neuromix.synthesis.patch import Patch

    patch = Patch.load(args.patch)
    if getattr(args, "network", None):
        patch = patch.with_network(args.network)
    return patch


def _cmd_synth_render(args: argparse.Namespace) -> int:
    out = Path(args.output)
    _check_output(out, args.force)
    if args.save_patch:
        _check_output(Path(args.save_patch), args.force)
    patch = _synth_patch(args)
    controls = _parse_synth_controls(args.control)
    rendered = patch.render(args.seconds, note=args.note, pitch_hz=args.hz, seed=args.seed,  # type: ignore[attr-defined]
                            velocity=args.velocity, controls=controls)
    rendered.write(out, overwrite=args.force)
    if args.save_patch:
        patch.with_controls(controls).pinned().save(args.save_patch, overwrite=args.force)  # type: ignore[attr-defined]
    _synth_report(rendered, out)
    return EXIT_OK


def _cmd_synth_score(args: argparse.Namespace) -> int:
    from neuromix.synthesis.score import render_score

    out = Path(args.output)
    _check_output(out, args.force)
    rendered = render_score(args.score)
    rendered.write(out, overwrite=args.force)
    print(f"rendered {rendered.info['events']} events ({rendered.info['renders']} distinct notes)")
    _synth_report(rendered, out)
    return EXIT_OK


def _cmd_synth_midi(args: argparse.Namespace) -> int:
    from neuromix.core.errors import ConfigError
    from neuromix.synthesis.score import render_midi

    out = Path(args.output)
    _check_output(out, args.force)
    cc: dict[int, str] = {}
    for pair in args.cc or []:
        number, sep, name = pair.partition("=")
        if not sep or not number.strip().isdigit() or not name.strip():
            raise ConfigError(f"--cc {pair!r}: must be NUMBER=CONTROL, e.g. 1=brightness")
        cc[int(number)] = name.strip()
    patch = _synth_patch(args)
    rendered = render_midi(args.midi, patch, cc=cc, sample_rate=args.sample_rate)  # type: ignore[arg-type]
    rendered.write(out, overwrite=args.force)
    print(f"rendered {rendered.info['events']} notes ({rendered.info['renders']} distinct)")
    _synth_report(rendered, out)
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
        "ui",
        help="start the browser workbench (Mix, Learn, Synthesize, Listen) on http://127.0.0.1:7860",
        description="Start the Gradio workbench. It opens on a bundled demo song mixed by the console\n"
        "network, offline. Stop it with Ctrl-C.\n"
        "Examples:\n"
        "  neuromix ui\n"
        "  neuromix ui --port 8080 --organiser-token s3cret --db tests.sqlite",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from neuromix.ui.app import add_ui_arguments

    add_ui_arguments(p)
    p.set_defaults(func=_cmd_ui)

    p = sub.add_parser(
        "mix",
        help="mix a folder (or files) of stems with a network or the rules, optionally toward a goal",
        description="Mix stems into a stereo WAV (true peak <= -1 dBFS) with a console network, the\n"
        "black-box network or the rule-based mixer. Static settings come from analysis windows\n"
        "spread over the song; the render streams in blocks, so songs of any length fit in memory.\n"
        "--params writes the console settings (editable JSON); --settings renders such a file\n"
        "instead of predicting (the same file reproduces the same mix).\n\n"
        "Goal-oriented mixing (console networks and rules): --reference and --target(s) make the\n"
        "settings optimise toward a reference mixdown's features or explicit targets, through the\n"
        "differentiable console, starting from the prediction. --lock keeps chosen settings exactly;\n"
        "--resolve re-optimises edited --settings toward the network's own mix (or --anchor).\n"
        "Target words: louder softer brighter darker warmer thinner wider narrower punchier smoother\n"
        "drier wetter ('much'/'slightly' scale them); places: track names, classes, drums, vocals, master.\n\n"
        "Examples:\n"
        "  neuromix mix song/ -o mix.wav --params settings.json\n"
        "  neuromix mix song/ -o mix2.wav --settings settings.json\n"
        "  neuromix mix kick.wav bass.wav vox.wav -o mix.wav --model rules --classes vox.wav=vocal\n"
        "  neuromix mix song/ -o mix.wav --reference other_song.wav --report report.md\n"
        "  neuromix mix song/ -o mix.wav --target 'vocals: louder, brighter; drums: punchier; master: wider'\n"
        "  neuromix mix song/ -o mix.wav --targets targets.toml --params settings.json\n"
        "  neuromix mix song/ -o mix3.wav --settings edited.json --lock vocal.gain_db --resolve\n"
        "  neuromix mix song/ -o mix.wav --automation --automation-out rides.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="a folder of stems, or several stem files")
    p.add_argument("-o", "--output", required=True, help="output audio file (.wav: stereo, 24-bit)")
    p.add_argument(
        "--model",
        default=None,
        help="console (default), blackbox (the shipped checkpoints), rules, or a checkpoint PATH",
    )
    p.add_argument("--params", help="also write the console settings (JSON) to this file")
    p.add_argument("--settings", help="render these settings (JSON from --params) instead of predicting")
    p.add_argument("--classes", help="override classes: NAME=CLASS[,NAME=CLASS...] (NAME: stem or file name)")
    p.add_argument("--reference", metavar="AUDIO",
                   help="a reference mixdown (often another song): console networks read it, then the settings "
                        "are optimised toward its spectral balance, width, loudness and dynamics "
                        "(e.g. --reference ref.wav)")
    p.add_argument("--target", metavar="TEXT",
                   help="targets in words or JSON, e.g. --target 'vocals: louder, brighter; master: wider'")
    p.add_argument("--targets", metavar="FILE",
                   help="targets file (.json/.toml/.txt), e.g. [tracks.vocals] loudness = 3 / [master] width = 2")
    p.add_argument("--lock", action="append", metavar="TRACK.PARAM",
                   help="keep a setting exactly while optimising (repeatable), e.g. --lock vocal.gain_db "
                        "--lock master.width --lock bass.*")
    p.add_argument("--resolve", action="store_true",
                   help="re-optimise the unlocked --settings toward the network's own mix (or --anchor, a "
                        "reference or targets), e.g. --settings edited.json --lock vocal.gain_db --resolve")
    p.add_argument("--anchor", metavar="SETTINGS",
                   help="with --resolve: the settings whose mix is the goal (default: the network's prediction)")
    p.add_argument("--steps", type=int, default=30, help="optimisation steps of a goal-oriented mix (default 30)")
    p.add_argument("--report", metavar="FILE",
                   help="write the goal report (.md table or .json): distances and each feature before/after")
    p.add_argument("--automation", action="store_true",
                   help="predict settings per window and ride the faders with smooth automation curves")
    p.add_argument("--automation-window", type=float, default=8.0,
                   help="window length in seconds of --automation (default 8)")
    p.add_argument("--automation-out", metavar="FILE", help="write the automation curves (.csv or .json)")
    p.add_argument("--sample-rate", type=int, default=None, help="session rate (default: the stems' rate)")
    p.add_argument("--block-seconds", type=float, default=None, help="render block length (default: by memory)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=_cmd_mix)

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

    p = sub.add_parser(
        "eval",
        help="evaluate mixing systems against reference mixes (Markdown/CSV report with plots)",
        description="Mix every song with every system and compare with the reference mix: loudness, spectral,\n"
        "panning and dynamics features (MAPE %, automix-toolkit protocol), a sum/difference STFT distance and,\n"
        "on synthetic songs, errors of the console settings. Baselines sum, loudness-sum and rules are always\n"
        "included. Real songs: stems, outputs and reference are loudness-normalised (-23 LUFS) first.\n"
        "Example: neuromix eval --data synthetic:20 ../shared/data/multitracks --systems console,blackbox -o report/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", nargs="+", default=["synthetic:20"],
                   help="synthetic[:N] (held-out generated songs, default N=20) and/or folders of songs with a mix")
    p.add_argument("--systems", default="console,blackbox,rules,sum,loudness-sum",
                   help="comma-separated: console, blackbox (shipped checkpoints), rules, sum, loudness-sum, "
                   "or checkpoint paths (default: all five)")
    p.add_argument("-o", "--output", required=True, help="report folder")
    p.add_argument("--seconds", type=float, default=5.0, help="synthetic segment length in seconds (default 5)")
    p.add_argument("--sample-rate", type=int, default=None,
                   help="evaluation rate in Hz (default 22050 for synthetic songs, 44100 for folders)")
    p.add_argument("--max-seconds", type=float, default=30.0,
                   help="evaluate at most this many seconds of each real song (0: all; default 30)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the 95%% CIs")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "probe",
        help="measure a mixer's datasheet with test signals (responses, compression, timing, pan)",
        description="Excite a mixer with test signals, one track at a time inside a context, and measure what it\n"
        "does: magnitude response and distortion (swept sine, several levels), static compression curve\n"
        "(stepped sine), attack/release (tone bursts), pan and width; for console-family targets also the\n"
        "master path. Writes datasheet.json, datasheet.md and PNG plots.\n"
        "TARGET: a checkpoint, console / blackbox (shipped), rules, or a console settings JSON file.\n"
        "Example: neuromix probe runs/console/model.safetensors -o datasheet/ --context demo --track 7",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", help="checkpoint path, console, blackbox, rules, or a settings .json")
    p.add_argument("-o", "--output", required=True, help="datasheet folder")
    p.add_argument("--context", default="demo",
                   help="other tracks: demo[:NAME] (a demo song, default), silent[:NAME] (its layout, silent) or a "
                   "song folder")
    p.add_argument("--track", type=int, default=None, help="probe only this track of the context (default: all)")
    p.add_argument("--sample-rate", type=int, default=None, help="probe rate in Hz (default: the target's)")
    p.add_argument("--quick", action="store_true", help="short test signals (a fast, coarser datasheet)")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_probe)
    p = sub.add_parser(
        "synth",
        help="sound design: render patches, scores and MIDI files with trained networks as instruments",
        description="Play trained networks as instruments (excitation, control-space moves, network bending,\n"
        "re-initialisation, sonification, dreaming, feedback, morphs). PATCH is a preset name (see\n"
        "`neuromix synth list`) or a patch JSON file. Every output is finite, DC-free and <= -1 dBTP.\n"
        "Examples:\n"
        "  neuromix synth list\n"
        "  neuromix synth render glass-pluck -o pluck.wav --note 64 --control sustain=0.995\n"
        "  neuromix synth score piece.toml -o piece.wav\n"
        "  neuromix synth midi song.mid --patch bright-axis-keys --cc 1=brightness -o song.wav\n"
        "  neuromix synth layers blackbox",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    synth = p.add_subparsers(dest="synth_command", metavar="SYNTH_COMMAND", required=True)
    q = synth.add_parser("list", help="list the shipped presets and networks")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=_cmd_synth_list)
    q = synth.add_parser("layers", help="list the bendable layers of a network (shipped name or checkpoint path)")
    q.add_argument("network", help="shipped network name (blackbox, console) or checkpoint path")
    q.set_defaults(func=_cmd_synth_layers)
    q = synth.add_parser("render", help="render one patch to an audio file")
    q.add_argument("patch", help="preset name or patch JSON file")
    q.add_argument("-o", "--output", required=True, help="output audio file (WAV, FLAC, ...)")
    q.add_argument("--seconds", type=float, default=None, help="gate length (default: the patch's duration)")
    q.add_argument("--note", type=float, default=None, help="MIDI note (default: the patch's note)")
    q.add_argument("--hz", type=float, default=None, help="pitch in Hz (overrides --note)")
    q.add_argument("--seed", type=int, default=None, help="seed (default: the patch's seed)")
    q.add_argument("--velocity", type=float, default=1.0, help="amplitude factor 0..1")
    q.add_argument("--control", action="append", metavar="NAME=VALUE", help="set a control (repeatable)")
    q.add_argument("--network", help="play another network (shipped name or checkpoint path)")
    q.add_argument("--save-patch", help="also write the patch as rendered (controls set, network hash pinned)")
    q.add_argument("--force", action="store_true", help="overwrite existing outputs")
    q.set_defaults(func=_cmd_synth_render)
    q = synth.add_parser("score", help="render a score (JSON or TOML timeline) to a stereo file")
    q.add_argument("score", help="score file (.json or .toml)")
    q.add_argument("-o", "--output", required=True, help="output audio file")
    q.add_argument("--force", action="store_true", help="overwrite an existing output")
    q.set_defaults(func=_cmd_synth_score)
    q = synth.add_parser("midi", help="render a MIDI file with a patch (notes at their pitch, velocity to gain)")
    q.add_argument("midi", help="Standard MIDI File (.mid)")
    q.add_argument("--patch", required=True, help="preset name or patch JSON file every note triggers")
    q.add_argument("--cc", action="append", metavar="NUMBER=CONTROL", help="map a MIDI controller to a control")
    q.add_argument("--network", help="play another network (shipped name or checkpoint path)")
    q.add_argument("--sample-rate", type=int, default=44100, help="output rate in Hz (default 44100)")
    q.add_argument("-o", "--output", required=True, help="output audio file")
    q.add_argument("--force", action="store_true", help="overwrite an existing output")
    q.set_defaults(func=_cmd_synth_midi)

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
