"""The Synthesize tab: trained networks played as instruments, through patches.

A patch (:class:`neuromix.synthesis.patch.Patch`) is shown as JSON (editable) with quick
edits on top: the first slot's excitation signal and level, the feedback loop's gain, the
network bends (a table: layer, op, amount), the patch's named controls, seed, note and
length. Quick edits apply only where they differ from the JSON, then the controls. The
rendered patch (edits applied) goes back into the JSON box, so "Save patch" downloads what
was heard, and loading that file reproduces it bit for bit.

A score (TOML/JSON timeline) or a MIDI file renders with presets; in a score, the alias
``current`` plays the patch of this tab. Patches and scores in the app may not read files
on the server (audio-file excitation, checkpoint paths, patch files): use presets or the
CLI for those.

API events: ``/synth_preset``, ``/synth_render``, ``/patch_save``, ``/patch_load``,
``/score_render``.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any

from neuromix.core.errors import ConfigError, NeuromixError
from neuromix.ui.plots import plot_spectrogram
from neuromix.ui.state import (
    AppContext,
    Session,
    cell_text,
    table_rows,
    user_errors,
    write_wav,
)

__all__ = [
    "BEND_COLUMNS",
    "CONTROL_COLUMNS",
    "PatchEdits",
    "apply_edits",
    "build_synth_tab",
    "patch_view",
]

BEND_COLUMNS: list[str] = ["layer", "op", "amount"]
CONTROL_COLUMNS: list[str] = ["control", "label", "value", "min", "max"]
CURRENT_ALIAS = "current"
_MAX_SECONDS = 10.0


def _file_path(file: Any) -> Path:
    """The path of an uploaded file (a path, or a file object with ``.name``)."""
    return Path(file) if isinstance(file, (str, os.PathLike)) else Path(file.name)


def _amount_value(amount: Any) -> float | None:
    """The number a bend amount starts at (a plain number or a modulation's ``value``)."""
    if isinstance(amount, dict):
        value = amount.get("value")
        return None if value is None else float(value)
    return float(amount)


def _feedback(doc: dict) -> dict | None:
    return next((t for t in doc.get("techniques", []) if t.get("type") == "feedback"), None)


def _gain_value(feedback: dict | None) -> float:
    if feedback is None:
        return 0.0
    value = _amount_value(feedback.get("gain"))
    return 0.0 if value is None else value


class PatchEdits:
    """The quick edits of the tab, as read from its widgets (``None``: leave as in the patch)."""

    def __init__(self, signal: str | None = None, level_db: float | None = None, feedback_gain: float | None = None,
                 bends: Any = None, controls: Any = None, seed: float | None = None, note: float | None = None,
                 seconds: float | None = None) -> None:
        self.signal = signal or None
        self.level_db = level_db
        self.feedback_gain = feedback_gain
        self.bends = None if bends is None else table_rows(bends)
        self.controls = None if controls is None else table_rows(controls)
        self.seed = seed
        self.note = note
        self.seconds = seconds


def _number(value: Any, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: must be a number, got {value!r}") from None


def _edit_slot(doc: dict, edits: PatchEdits) -> None:
    slot = doc["excitation"]["slots"][0]
    if edits.signal and edits.signal != slot.get("signal"):
        # a new signal: its own default parameters (the old ones belong to the old signal)
        slot = {k: v for k, v in slot.items() if k in ("level_db", "class", "fade_ms", "pitch_ratio", "detune_cents")}
        slot["signal"] = edits.signal
        doc["excitation"]["slots"][0] = slot
    if edits.level_db is not None and float(edits.level_db) != float(slot.get("level_db", -6.0)):
        slot["level_db"] = float(edits.level_db)


def _edit_feedback(doc: dict, gain: float | None) -> None:
    if gain is None:
        return
    feedback = _feedback(doc)
    if abs(float(gain) - _gain_value(feedback)) < 1e-9:
        return
    if feedback is None:  # a new loop tuned to the note (a pitch source of its own)
        doc.setdefault("techniques", []).append({"type": "feedback", "gain": float(gain)})
    elif isinstance(feedback.get("gain"), dict) and "value" in feedback["gain"]:
        feedback["gain"]["value"] = float(gain)
    else:
        feedback["gain"] = float(gain)


def _same_amount(cell: Any, current: float | None) -> bool:
    """Whether a table cell still shows the bend's current amount (blank for automation)."""
    blank = cell is None or cell == "" or (isinstance(cell, float) and math.isnan(cell))
    if blank or current is None:
        return blank and current is None
    try:
        return abs(float(cell) - current) <= 1e-9
    except (TypeError, ValueError):
        return False


def _edit_bends(doc: dict, rows: list[list[Any]] | None) -> None:
    """Replace the bends by the table's rows (kept: each old bend's seed, LFO and automation)."""
    if rows is None:
        return
    old = [t for t in doc.get("techniques", []) if t.get("type") == "bend"]
    new = []
    for i, row in enumerate(r for r in rows if len(r) >= 3 and cell_text(r[0])):
        layer, op = cell_text(row[0]), cell_text(row[1])
        bend = copy.deepcopy(old[i]) if i < len(old) else {"type": "bend"}
        bend.update(layer=layer, op=op)
        if i >= len(old) or not _same_amount(row[2], _amount_value(old[i]["amount"])):
            amount = _number(row[2], f"bend row {i + 1} ({layer}) amount")
            current = bend.get("amount")
            if isinstance(current, dict) and "value" in current:
                current["value"] = amount
            else:
                bend["amount"] = amount
        new.append(bend)
    # in place, so that controls pointing at /techniques/N keep their target
    merged, k = [], 0
    for technique in doc.get("techniques", []):
        if technique.get("type") != "bend":
            merged.append(technique)
        elif k < len(new):
            merged.append(new[k])
            k += 1
    doc["techniques"] = merged + new[k:]


def apply_edits(doc: dict, edits: PatchEdits) -> Any:
    """Apply the quick edits to a patch document; return the validated :class:`Patch`.

    Raises:
        ConfigError: an invalid edit (the message names the field).
    """
    from neuromix.synthesis.patch import Patch

    doc = copy.deepcopy(doc)
    if edits.seed is not None:
        doc["seed"] = int(_number(edits.seed, "seed"))
    if edits.note is not None:
        doc["note"] = _number(edits.note, "note")
    if edits.seconds is not None:
        doc["duration_s"] = _number(edits.seconds, "seconds")
    _edit_slot(doc, edits)
    _edit_feedback(doc, edits.feedback_gain)
    _edit_bends(doc, edits.bends)
    try:
        patch = Patch.from_dict(doc)
    except ConfigError as exc:
        if not str(exc).startswith("pitched:"):
            raise
        doc["pitched"] = False  # the new excitation has no pitch: the patch becomes unpitched
        patch = Patch.from_dict(doc)
    values = {}
    for row in edits.controls or []:
        name = cell_text(row[0]) if len(row) >= 3 else ""
        if name in patch.controls:
            value = _number(row[2], f"control {name}")
            if abs(value - patch.control_value(name)) > 1e-12:
                values[name] = value
    return patch.with_controls(values)


def check_app_patch(patch: Any) -> None:
    """Refuse patches that would read files on the server (audio slots, checkpoint paths).

    Raises:
        ConfigError: with the reason.
    """
    if patch.network.path is not None:
        raise ConfigError(
            "network.path: the app plays the shipped networks only ('console', 'blackbox'); "
            "use the CLI for your own checkpoints"
        )
    for slot in (*patch.slots, *patch.context):
        if slot.signal == "audio":
            raise ConfigError("excitation: audio-file slots read files on the server; use the CLI for those")


def patch_view(patch: Any) -> tuple:
    """Widget values showing a patch: JSON, description, signal, level, feedback gain,
    bends rows, controls rows, seed, note, seconds."""
    doc = patch.to_dict()
    slot = doc["excitation"]["slots"][0]
    bends = [[t["layer"], t["op"], _amount_value(t["amount"])] for t in doc["techniques"] if t["type"] == "bend"]
    controls = [
        [name, c.label or name, patch.control_value(name), c.low, c.high] for name, c in patch.controls.items()
    ]
    kinds = ", ".join(t["type"] for t in doc["techniques"]) or "none"
    description = f"**{patch.name}** ({', '.join(patch.tags) or 'no tags'}; techniques: {kinds}). {patch.description}"
    return (
        patch.to_json(indent=2), description, slot["signal"], slot.get("level_db", -6.0),
        _gain_value(_feedback(doc)), bends, controls, patch.seed, patch.note, patch.duration_s,
    )


def _patch_from_text(text: str | None) -> Any:
    from neuromix.synthesis.patch import Patch

    if not (text or "").strip():
        raise ConfigError("pick a preset or load a patch first")
    patch = Patch.from_json(text)
    check_app_patch(patch)
    return patch


def _check_score_doc(doc: dict) -> None:
    """Scores in the app may name presets and the alias ``current`` only."""
    refs = list((doc.get("patches") or {}).values()) + [e.get("patch") for e in doc.get("events") or [] if isinstance(e, dict)]
    for ref in refs:
        source = ref.get("patch") if isinstance(ref, dict) else ref
        if isinstance(source, str) and (Path(source).suffix or "/" in source or "\\" in source):
            raise ConfigError(
                f"patch {source!r}: scores in the app may use preset names and the alias "
                f"'{CURRENT_ALIAS}' (the patch of this tab) only, not patch files"
            )


class SynthTab:
    """The Synthesize tab's handlers; see the module docstring."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def preset(self, preset: str | None) -> tuple:
        """Show a shipped preset."""
        from neuromix.synthesis.patch import Patch, list_presets

        if preset not in list_presets():
            raise ConfigError(f"unknown preset {preset!r}; presets: {', '.join(list_presets())}")
        return patch_view(Patch.load(preset))

    def load(self, patch_json: Any) -> tuple:
        """Show a patch JSON file (as saved by this tab or ``neuromix synth render --save-patch``)."""
        if not patch_json:
            raise ConfigError("upload a patch JSON file first")
        path = _file_path(patch_json)
        try:
            text = path.read_bytes()
            patch = _patch_from_text(text.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{path.name}: not a text (JSON) file") from None
        except NeuromixError as exc:
            raise ConfigError(f"{path.name}: {exc}") from None
        return patch_view(patch)

    def _edited(self, text: str | None, edits: PatchEdits) -> Any:
        patch = apply_edits(_patch_from_text(text).to_dict(), edits)
        check_app_patch(patch)
        if patch.duration_s > _MAX_SECONDS:
            raise ConfigError(f"seconds: the app renders up to {_MAX_SECONDS:g} s per note")
        return patch

    def render(self, text: str | None, edits: PatchEdits, session: Session | None, progress: Any = None) -> tuple:
        """Render the patch with the edits; returns audio, spectrogram, info, patch JSON, session."""
        session = self.ctx.session(session)
        patch = self._edited(text, edits)
        if callable(progress):
            progress(0.2, desc=f"playing {patch.name}")
        rendered = patch.render()
        return self._sound(session, rendered, patch.name) + (patch.to_json(indent=2), session)

    def save(self, text: str | None, edits: PatchEdits, session: Session | None) -> tuple:
        """The edited patch as a JSON file."""
        session = self.ctx.session(session)
        patch = self._edited(text, edits)
        path = session.path(patch.name, ".json")
        patch.save(path, overwrite=True)
        return str(path), session

    def score(self, file: Any, text: str | None, edits: PatchEdits, session: Session | None, progress: Any = None) -> tuple:
        """Render a score (TOML/JSON) or a MIDI file (played with the tab's patch)."""
        from neuromix.synthesis.schema import load_document
        from neuromix.synthesis.score import parse_score, render_midi, render_score

        if not file:
            raise ConfigError("upload a score (.toml / .json) or a MIDI file (.mid) first")
        session = self.ctx.session(session)
        path = _file_path(file)
        report = _score_progress(progress)
        try:
            if path.suffix.lower() in (".mid", ".midi"):
                patch = self._edited(text, edits)
                rendered = render_midi(path, patch, progress=report)
            else:
                doc, _ = load_document(path, "score")
                _check_score_doc(doc)
                patches = doc.get("patches") or {}
                uses_current = CURRENT_ALIAS not in patches and any(
                    isinstance(e, dict) and e.get("patch") == CURRENT_ALIAS for e in doc.get("events") or []
                )
                score = parse_score(doc, None)
                if uses_current:
                    score.patches[CURRENT_ALIAS] = self._edited(text, edits)
                rendered = render_score(score, progress=report)
        except NeuromixError as exc:
            message = str(exc).replace(str(path), path.name)
            named = message.startswith(f"{path.name}:")  # the library's messages often name the file already
            raise ConfigError(message if named else f"{path.name}: {message}") from None
        return self._sound(session, rendered, path.stem) + (session,)

    def _sound(self, session: Session, rendered: Any, name: str) -> tuple:
        audio_path = write_wav(session.path(name, ".wav"), rendered.audio, rendered.sample_rate)
        picture = plot_spectrogram(rendered.audio, rendered.sample_rate, session.path(f"{name}-spectrogram", ".png"), name)
        seconds = rendered.audio.shape[-1] / rendered.sample_rate
        lines = [f"**{name}**: {seconds:.2f} s at {rendered.sample_rate} Hz"]
        if rendered.pitch_hz:
            lines[0] += f", pitch {rendered.pitch_hz:.1f} Hz"
        if rendered.report is not None:
            r = rendered.report
            loud = "—" if r.loudness_lufs is None else f"{r.loudness_lufs:.1f} LUFS"
            lines.append(f"- true peak {r.true_peak_db:.1f} dBTP, loudness {loud}, DC {r.dc:.1e}")
        if rendered.controls:
            lines.append("- controls: " + ", ".join(f"{k} = {v:.4g}" for k, v in rendered.controls.items()))
        return audio_path, picture, "\n".join(lines)


def _score_progress(progress: Any) -> Any:
    if not callable(progress):
        return None

    def report(done: int, total: int) -> None:
        progress(done / max(1, total), desc=f"note {done} of {total}")

    return report


def build_synth_tab(ctx: AppContext, session: Any) -> dict[str, Any]:
    """Create the Synthesize tab's components in the current ``gr.Tab`` and wire its events."""
    import gradio as gr
    from neuromix.synthesis.bending import BEND_OPS
    from neuromix.synthesis.excitation import SIGNALS
    from neuromix.synthesis.patch import list_presets

    tab = SynthTab(ctx)
    presets = list_presets()
    first = "glass-pluck" if "glass-pluck" in presets else presets[0]
    signals = [s for s in SIGNALS if s != "audio"]
    view = tab.preset(first)
    gr.Markdown(
        "Play a trained network as an instrument. Pick a preset, change the excitation, the feedback loop, "
        "the bends of the network's layers, the controls, seed, note and length; listen; save the patch "
        f"(JSON) to render it again bit for bit. Bend ops: {', '.join(BEND_OPS)}."
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            preset = gr.Dropdown(presets, value=first, label="Preset", elem_id="preset")
            description = gr.Markdown(view[1], label="description")
            with gr.Row():
                signal = gr.Dropdown(signals, value=view[2], label="Excitation (first slot)")
                level = gr.Slider(-60.0, 0.0, value=view[3], step=0.5, label="Excitation level (dBFS)")
            feedback = gr.Slider(0.0, 1.5, value=view[4], step=0.001, label="Feedback loop gain (0: none)")
            with gr.Row():
                seed = gr.Number(value=view[7], precision=0, label="Seed", minimum=0)
                note = gr.Slider(0.0, 127.0, value=view[8], step=1.0, label="Note (MIDI)")
                seconds = gr.Slider(0.1, _MAX_SECONDS, value=view[9], step=0.1, label="Length (s)")
            bends = gr.Dataframe(value=view[5], headers=BEND_COLUMNS, datatype=["str", "str", "number"],
                                 label="Bends", interactive=True)
            controls = gr.Dataframe(value=view[6], headers=CONTROL_COLUMNS,
                                    datatype=["str", "str", "number", "number", "number"],
                                    label="Controls", interactive=True, static_columns=[0, 1, 3, 4])
            render_button = gr.Button("Render", variant="primary", elem_id="synth-render")
        with gr.Column(scale=2, min_width=420):
            sound = gr.Audio(label="Sound", type="filepath", interactive=False, elem_id="synth-audio")
            spectrogram = gr.Image(label="Spectrogram", type="filepath", interactive=False)
            info = gr.Markdown(label="info", elem_id="synth-info")
            with gr.Accordion("Patch (JSON)", open=False):
                patch_json = gr.Code(value=view[0], language="json", label="Patch", interactive=True)
            with gr.Row():
                save_button = gr.Button("Save patch")
                patch_file = gr.File(label="Patch JSON", interactive=False)
                patch_upload = gr.File(label="Load a patch JSON", file_types=[".json"])
            with gr.Accordion("Render a score or a MIDI file", open=False):
                gr.Markdown(
                    "A score (TOML/JSON timeline of preset notes; the alias `current` plays this tab's patch) "
                    "or a MIDI file (every note plays this tab's patch)."
                )
                score_file = gr.File(label="Score or MIDI file", file_types=[".toml", ".json", ".mid", ".midi"])
                score_button = gr.Button("Render the score")

    view_outputs = [patch_json, description, signal, level, feedback, bends, controls, seed, note, seconds]
    edit_inputs = [signal, level, feedback, bends, controls, seed, note, seconds]
    safe_render, safe_score = user_errors(tab.render), user_errors(tab.score)

    # the API names the parameters after these signatures; Gradio finds progress by the default
    progress_default = gr.Progress()

    def render(patch, signal, level_db, feedback_gain, bends, controls, seed, note, seconds, state,
               progress=progress_default):
        edits = PatchEdits(signal, level_db, feedback_gain, bends, controls, seed, note, seconds)
        return safe_render(patch, edits, state, progress)

    def save(patch, signal, level_db, feedback_gain, bends, controls, seed, note, seconds, state):
        return tab.save(patch, PatchEdits(signal, level_db, feedback_gain, bends, controls, seed, note, seconds), state)

    def score(score, patch, signal, level_db, feedback_gain, bends, controls, seed, note, seconds, state,
              progress=progress_default):
        edits = PatchEdits(signal, level_db, feedback_gain, bends, controls, seed, note, seconds)
        return safe_score(score, patch, edits, state, progress)

    preset.input(user_errors(tab.preset), preset, view_outputs, api_name="synth_preset")
    render_button.click(render, [patch_json, *edit_inputs, session], [sound, spectrogram, info, patch_json, session],
                        api_name="synth_render")
    save_button.click(user_errors(save), [patch_json, *edit_inputs, session], [patch_file, session], api_name="patch_save")
    patch_upload.upload(user_errors(tab.load), patch_upload, view_outputs, api_name="patch_load")
    score_button.click(score, [score_file, patch_json, *edit_inputs, session], [sound, spectrogram, info, session],
                       api_name="score_render")
    return {"sound": sound}
