"""The Learn tab: the datasheet of a mixer for one track slot, measured on demand and cached.

:func:`neuromix.mixing.probe.probe` excites the chosen mixer (console network, black-box
network or the expert rules) with short test signals (:meth:`ProbeConfig.quick
<neuromix.mixing.probe.ProbeConfig.quick>`: a few seconds of work) in one slot of the first
demo song (or in its silent layout), and :func:`~neuromix.mixing.probe.write_datasheet`
draws the plots. Results are deterministic, so they are cached per (mixer, context, slot)
for every user of the app.

API event: ``/datasheet``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from neuromix.core.errors import ConfigError
from neuromix.ui.state import AppContext, user_errors

__all__ = ["CONTEXTS", "MIXERS", "DatasheetCache", "DatasheetFiles", "build_learn_tab", "slot_choices"]

MIXERS: tuple[str, ...] = ("console", "blackbox", "rules")
CONTEXTS: tuple[str, ...] = ("demo", "silent")
_CONTEXT_SECONDS = 8.0
_OCTAVES = ("63", "125", "250", "500", "1000", "2000", "4000", "8000")


@dataclass(frozen=True)
class DatasheetFiles:
    """A computed datasheet: two plots, a Markdown summary and the JSON document."""

    response_png: str
    dynamics_png: str
    summary: str
    json_path: str


def slot_choices() -> list[tuple[str, int]]:
    """``(label, index)`` of the track slots of the probe context (the first demo song)."""
    from neuromix.mixing.generator import DEMO_SONGS

    spec = next(iter(DEMO_SONGS.values()))
    return [(f"{i}: {cls}", i) for i, cls in enumerate(spec.classes)]


def _value(v: Any, unit: str = "") -> str:
    if v is None:
        return "—"
    return f"{v:g}{unit}" if isinstance(v, (int, float)) else str(v)


def summary_markdown(doc: Mapping[str, Any]) -> str:
    """Readable summary of a datasheet document (:meth:`Datasheet.to_dict`)."""
    target, context = doc["target"], doc["context"]
    lines = [
        f"### {target['name']} ({target['family']}, {target['sample_rate']} Hz), {context['kind']} context",
        "",
        "| path | pan | width | gain (dB) | threshold (dB) | ratio | knee (dB) | attack (ms) | release (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in doc["paths"]:
        name = "master bus" if p["path"] == "master" else f"track {p['index']}: {p['name']} ({p['class']})"
        comp, timing = p["compression"], p["timing"] or {}
        threshold = comp["threshold_db"] if comp["compressing"] else "none"
        lines.append(
            "| " + " | ".join(_value(v) for v in (
                name, p["stereo"]["pan"], p["stereo"]["width"], p["response"]["broadband_gain_db"], threshold,
                comp["ratio"] if comp["compressing"] else 1, comp["knee_db"] if comp["compressing"] else None,
                timing.get("attack_ms"), timing.get("release_ms"),
            )) + " |"
        )
    lines += ["", "Frequency response by octave (dB):", "", "| path | " + " | ".join(f"{f} Hz" for f in _OCTAVES) + " |",
              "|---|" + "---|" * len(_OCTAVES)]
    for p in doc["paths"]:
        name = "master" if p["path"] == "master" else f"track {p['index']}"
        octaves = p["response"]["octaves_db"]
        lines.append(f"| {name} | " + " | ".join(_value(octaves.get(f)) for f in _OCTAVES) + " |")
    lines += [""] + [f"- {note}" for note in doc.get("notes", [])]
    return "\n".join(lines)


class DatasheetCache:
    """Datasheets computed once per (mixer, context, slot), shared by all sessions.

    Concurrent requests for the same key wait for one computation.

    Args:
        ctx: the app context (its work folder holds the files; its limits the probe rate).
    """

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._done: dict[tuple[str, str, int], DatasheetFiles] = {}
        self._locks: dict[tuple[str, str, int], threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, mixer: str, context: str, slot: int, progress: Any = None) -> DatasheetFiles:
        """The datasheet (computed on the first request).

        Raises:
            ConfigError: an unknown mixer, context or slot.
        """
        if mixer not in MIXERS:
            raise ConfigError(f"unknown mixer {mixer!r}; choose one of {', '.join(MIXERS)}")
        if context not in CONTEXTS:
            raise ConfigError(f"unknown context {context!r}; choose one of {', '.join(CONTEXTS)}")
        slots = [i for _, i in slot_choices()]
        try:
            slot = int(slot)
        except (TypeError, ValueError):
            raise ConfigError(f"the track slot must be a number 0..{slots[-1]}, got {slot!r}") from None
        if slot not in slots:
            raise ConfigError(f"track slot {slot} does not exist; slots are 0..{slots[-1]}")
        key = (mixer, context, slot)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._done:
                self._done[key] = self._compute(mixer, context, slot, progress)
            return self._done[key]

    def _compute(self, mixer: str, context: str, slot: int, progress: Any) -> DatasheetFiles:
        from neuromix.mixing.probe import (
            ProbeConfig,
            load_context,
            probe,
            target_from_spec,
            write_datasheet,
        )

        if callable(progress):
            progress(0.1, desc=f"loading the {mixer} mixer")
        target = target_from_spec(mixer, self.ctx.limits.probe_rate)
        ctx = load_context(context, int(target.sample_rate), _CONTEXT_SECONDS)
        if callable(progress):
            progress(0.3, desc="measuring with sweeps, a stepped sine and tone bursts")
        sheet = probe(target, ctx, tracks=[slot], config=ProbeConfig.quick(), progress=False)
        folder = self.ctx.root / "datasheets" / f"{mixer}-{context}-{slot}"
        write_datasheet(sheet, folder, force=True)
        doc = json.loads((folder / "datasheet.json").read_text(encoding="utf-8"))
        track = next(p for p in doc["paths"] if p["path"] == "track")
        response, dynamics = (str(folder / name) for name in track["plots"])
        return DatasheetFiles(response, dynamics, summary_markdown(doc), str(folder / "datasheet.json"))


def build_learn_tab(ctx: AppContext) -> dict[str, Any]:
    """Create the Learn tab's components in the current ``gr.Tab`` and wire ``/datasheet``."""
    import gradio as gr

    cache = DatasheetCache(ctx)
    choices = slot_choices()
    gr.Markdown(
        "What does a mixer do to a track? Pick a mixer and a track slot of the demo song; the app "
        "measures it like an analogue device (sweeps for the frequency response, a stepped sine for the "
        "compression curve, tone bursts for attack and release, left/right responses for pan and width). "
        "The first request takes a few seconds; results are cached. The *silent* context gives "
        "device-like curves; the *demo* context shows the mixer reacting to a whole song."
    )
    with gr.Row():
        mixer = gr.Radio(list(MIXERS), value="console", label="Mixer", elem_id="learn-mixer")
        slot = gr.Dropdown(choices=choices, value=choices[-1][1], label="Track slot (class)")
        context = gr.Radio(list(CONTEXTS), value="demo", label="Context", elem_id="learn-context")
        button = gr.Button("Measure the datasheet", variant="primary", elem_id="datasheet-button")
    summary = gr.Markdown(label="summary", elem_id="datasheet-summary")
    with gr.Row():
        response = gr.Image(label="Frequency response, distortion, pan by frequency", type="filepath", interactive=False)
        dynamics = gr.Image(label="Compression curve and attack/release", type="filepath", interactive=False)
    document = gr.File(label="Datasheet JSON", interactive=False)

    progress_default = gr.Progress()  # Gradio finds progress by a parameter's default value

    def measure(mixer, slot, context, progress=progress_default):
        files = cache.get(mixer, context, slot, progress)
        return files.response_png, files.dynamics_png, files.summary, files.json_path

    button.click(user_errors(measure), [mixer, slot, context], [response, dynamics, summary, document], api_name="datasheet")
    return {"cache": cache}
