"""The browser workbench: ``build_app(...) -> gr.Blocks`` with the tabs Mix, Learn, Synthesize, Listen.

Nothing happens at import time (Gradio itself is imported by :func:`build_app`). The app
opens on a bundled demo song, mixed by the console network as soon as the page loads
(:attr:`AppLimits.demo_seconds` seconds at :attr:`AppLimits.demo_rate` Hz, so the first
mix is ready within seconds, offline).

Every user's data lives in a per-session folder under the app's work folder, deleted when
the session ends and, with everything else the app wrote, when the app is garbage
collected or the process exits. Long jobs share a queue that runs
:attr:`AppLimits.concurrency` of them at once.

Launch from Python::

    from neuromix.ui.app import build_app, launch_app
    launch_app(build_app(), host="127.0.0.1", port=7860)

or ``neuromix ui`` (:func:`add_ui_arguments`, :func:`run_ui`).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import weakref
from pathlib import Path
from typing import Any

from neuromix.ui.state import AppContext, AppLimits

__all__ = ["AppLimits", "add_ui_arguments", "build_app", "launch_app", "run_ui"]

log = logging.getLogger("neuromix.ui")

_INTRO = (
    "# neuromix workbench\n"
    "**Mix** stems with a trained console network, a black-box network or the expert rules, toward a reference "
    "or targets, and edit the settings. **Learn** what a mixer does, measured like a device. **Synthesize** "
    "sounds by playing the trained networks as instruments. **Listen**: run a listening test."
)


def _add_listen_tab(ctx: AppContext, organiser_token: str | None, db_path: str | Path | None) -> bool:
    """Add the Listen tab when its modules are installed; returns whether it was added."""
    import gradio as gr

    try:
        from neuromix.ui.listen_tab import build_listen_tab
        from neuromix.ui.listening import ListeningStore
    except ModuleNotFoundError as exc:  # only a missing module, not an error inside it
        if exc.name not in ("neuromix.ui.listen_tab", "neuromix.ui.listening"):
            raise
        log.warning("the Listen tab is not available in this build (%s)", exc.name)
        return False
    store = ListeningStore(Path(db_path) if db_path is not None else ctx.root / "listening.sqlite")
    with gr.Tab("Listen", id="listen"):
        build_listen_tab(store, organiser_token, ctx.limits)
    return True


def build_app(
    *,
    limits: AppLimits | None = None,
    organiser_token: str | None = None,
    db_path: str | Path | None = None,
    work_dir: Path | None = None,
) -> Any:
    """Build the workbench (not launched).

    Args:
        limits: upload and job limits (default :class:`AppLimits`).
        organiser_token: token that opens the Listen tab's organiser view (None: no organiser view).
        db_path: SQLite file of the listening tests (default: inside the app's temporary work
            folder, i.e. not kept; give a path for ratings that must survive the app).
        work_dir: parent folder of the app's work folder (default: the system temp folder).

    Returns:
        The ``gr.Blocks``, queued with bounded concurrency. ``app.neuromix_context`` is its
        :class:`~neuromix.ui.state.AppContext` (call ``cleanup()`` to remove its files now).
    """
    import gradio as gr
    from neuromix.ui.learn_tab import build_learn_tab
    from neuromix.ui.mix_tab import build_mix_tab
    from neuromix.ui.synth_tab import build_synth_tab

    limits = limits or AppLimits()
    ctx = AppContext(limits, work_dir)
    with gr.Blocks(title="neuromix workbench", analytics_enabled=False, delete_cache=(1800, 6 * 3600)) as app:
        session = ctx.state()
        gr.Markdown(_INTRO)
        with gr.Tabs():
            with gr.Tab("Mix", id="mix"):
                mix = build_mix_tab(ctx, session)
            with gr.Tab("Learn", id="learn"):
                build_learn_tab(ctx)
            with gr.Tab("Synthesize", id="synthesize"):
                build_synth_tab(ctx, session)
            _add_listen_tab(ctx, organiser_token, db_path)
        fn, inputs, outputs = mix["mix_event"]
        app.load(fn, inputs, outputs, api_name="mix_demo", api_visibility="undocumented")
    app.queue(default_concurrency_limit=limits.concurrency)
    app.neuromix_context = ctx
    weakref.finalize(app, ctx.cleanup)
    return app


def _download_folders(ctx: AppContext) -> list[str]:
    """Folders for Gradio's ``allowed_paths``.

    Gradio returns a handler's file from the system temp folder or the working directory
    without them, copying it into its cache under an unguessable name (what clients get).
    A folder listed in ``allowed_paths`` is also served by plain path to anyone who names
    it, so the work folder (which holds the default listening-test database and every
    session) is never listed; only a work folder elsewhere lists its session and datasheet
    folders, without which the app could not return their files.
    """
    root = ctx.root.resolve()
    if any(root.is_relative_to(Path(p).resolve()) for p in (tempfile.gettempdir(), os.getcwd())):
        return []
    return [str(root / "sessions"), str(root / "datasheets")]


def launch_app(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    share: bool = False,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
) -> str:
    """Launch a built app; returns its local URL.

    Args:
        app: what :func:`build_app` returned.
        host: interface to listen on (``0.0.0.0`` for all).
        port: TCP port (None: Gradio picks a free one).
        share: make a public Gradio share link (off by default; needs the internet).
        prevent_thread_lock: return at once, the server running in a thread (tests).
        quiet: no start-up messages.
    """
    ctx: AppContext = app.neuromix_context
    limits = ctx.limits
    _, url, _ = app.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
        show_error=True,
        allowed_paths=_download_folders(ctx),
        max_file_size=f"{int(limits.max_upload_mb * 1.05) + 1}mb",
        footer_links=["api"],
    )
    return url


def add_ui_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``neuromix ui`` to a parser."""
    base = AppLimits()
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=7860, help="TCP port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also make a public Gradio share link (needs the internet)")
    parser.add_argument("--organiser-token", default=None,
                        help="token that opens the Listen tab's organiser view (default: $NEUROMIX_ORGANISER_TOKEN)")
    parser.add_argument("--max-upload-mb", type=float, default=base.max_upload_mb,
                        help=f"largest uploaded file in MiB (default {base.max_upload_mb:g})")
    parser.add_argument("--max-tracks", type=int, default=base.max_tracks,
                        help=f"most stems in one upload (default {base.max_tracks})")
    parser.add_argument("--max-seconds", type=float, default=base.max_seconds,
                        help=f"longest stem or reference in seconds (default {base.max_seconds:g})")
    parser.add_argument("--db", default="neuromix-listening.sqlite",
                        help="SQLite file of the listening tests (default ./neuromix-listening.sqlite)")


def run_ui(args: argparse.Namespace) -> int:
    """Start the workbench from parsed ``neuromix ui`` arguments; blocks until interrupted.

    Returns:
        0 when the server stops.

    Raises:
        ConfigError: invalid limits.
    """
    from neuromix.core.errors import ConfigError

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        limits = AppLimits(max_tracks=args.max_tracks, max_seconds=args.max_seconds, max_upload_mb=args.max_upload_mb)
    except ValueError as exc:
        raise ConfigError(f"--max-tracks, --max-seconds and --max-upload-mb must be positive ({exc})") from None
    token = args.organiser_token or os.environ.get("NEUROMIX_ORGANISER_TOKEN") or None
    app = build_app(limits=limits, organiser_token=token, db_path=args.db)
    try:
        launch_app(app, host=args.host, port=args.port, share=args.share)
    finally:
        app.neuromix_context.cleanup()
    return 0
