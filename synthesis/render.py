"""Rendering a patch: excitation -> conditioning -> techniques -> envelope -> safety.

The order of a render:

1. the network, with its ``reinit`` blocks re-drawn (cached per specification);
2. the excitation slots at the note's pitch (a ``dream`` replaces one slot's signal);
3. the conditioning path at keyframes (conditioning-path bends, class morph);
4. the ``control`` axes added to the conditioning / settings;
5. the audio path with its bends -- or the ``feedback`` loop around it;
6. ``sonify`` (replaces or blends the output with a layer's activations);
7. ``morph`` (crossfade, level-matched, into another patch's settings rendered with the
   same note, seed and *this patch's network*, along a trajectory);
8. the amplitude envelope (ADSR), then the safety stage
   (:func:`neuromix.synthesis.safety.make_safe`: finite, DC high-pass, loudness
   target, velocity/gain, true-peak limiter).

Everything random is seeded by the patch (or the ``seed`` argument), so rendering the
same patch twice on the same machine gives bit-identical audio.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from neuromix.core.errors import ConfigError
from neuromix.mixing.classes import CLASS_INDEX
from neuromix.mixing.models import UNKNOWN_CLASS
from neuromix.synthesis.control import apply_axes, class_morph
from neuromix.synthesis.dream import dream as run_dream
from neuromix.synthesis.dream import opt_rate
from neuromix.synthesis.excitation import generate, midi_to_hz
from neuromix.synthesis.feedback import run_feedback
from neuromix.synthesis.instrument import MAX_CONSOLE_KEYFRAMES, MAX_KEYFRAMES, Instrument, State, keyframe_times
from neuromix.synthesis.safety import SafetyReport, make_safe
from neuromix.synthesis.schema import LIMITS
from neuromix.synthesis.sonify import sonify as run_sonify

__all__ = ["Rendered", "adsr", "render_patch"]

MIN_CONTROL_RATE_HZ = 2.0
MAX_CONTROL_RATE_HZ = 8.0
"""Keyframe rates of time-varying conditioning: four keyframes per cycle of the fastest LFO
(at least 2, at most 8 per second, and at most :data:`MAX_KEYFRAMES` per render; the console
network uses fewer). Fast modulation belongs on the audio path, which sees every frame."""


def _keyframe_rate(modulations: list[Any]) -> float:
    rate = MIN_CONTROL_RATE_HZ
    for mod in modulations:
        if mod.lfo is not None and mod.lfo.depth > 0:
            rate = max(rate, 4.0 * mod.lfo.rate_hz)
        if len({v for _, v in mod.points}) > 1:
            rate = max(rate, 4.0)
    return min(rate, MAX_CONTROL_RATE_HZ)


@dataclass
class Rendered:
    """A rendered sound.

    Attributes:
        audio: ``(2, samples)`` float32 stereo, obeying the safety contract.
        sample_rate: Hz.
        pitch_hz: the note's pitch.
        seconds: gate length; the audio also holds the release.
        report: the safety report (None when rendered without the safety stage or with
            ``report=False``).
        controls: starting value of every control.
        info: network, hash, techniques, dream history...
    """

    audio: Tensor
    sample_rate: int
    pitch_hz: float
    seconds: float
    report: SafetyReport | None
    controls: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def write(self, path: str | Path, *, overwrite: bool = False, subtype: str = "PCM_24") -> Path:
        """Write a WAV/FLAC/... file (refuses to overwrite unless ``overwrite``)."""
        from neuromix.core.io import write_audio

        return write_audio(path, self.audio, self.sample_rate, subtype=subtype, overwrite=overwrite)


def adsr(
    samples: int, sample_rate: int, gate_s: float, attack_s: float, decay_s: float, sustain: float, release_s: float
) -> Tensor:
    """Linear ADSR envelope ``(samples,)`` float32; the release starts at the gate from the current level."""
    t = torch.arange(samples, dtype=torch.float64) / sample_rate
    attack = (t / attack_s).clamp(0.0, 1.0)
    decay = 1.0 - (1.0 - sustain) * (
        ((t - attack_s) / decay_s).clamp(0.0, 1.0) if decay_s > 0 else (t >= attack_s).double()
    )
    held = torch.where(t < attack_s, attack, decay)
    gate_t = torch.tensor([gate_s], dtype=torch.float64)
    at_gate = float(
        torch.where(
            gate_t < attack_s,
            (gate_t / attack_s).clamp(0, 1),
            1.0 - (1.0 - sustain) * (((gate_t - attack_s) / decay_s).clamp(0, 1) if decay_s > 0 else 1.0),
        )[0]
    )
    release = at_gate * (1.0 - ((t - gate_s) / release_s)).clamp(0.0, 1.0)
    return torch.where(t < gate_s, held, release).to(torch.float32)


def _dream_key(patch: Any, pitch_hz: float, seed: int) -> str:
    doc = patch.to_dict()
    keep = {k: doc[k] for k in ("excitation", "techniques", "sample_rate", "seed")}
    return json.dumps({"doc": keep, "pitch": round(pitch_hz, 9), "seed": seed}, sort_keys=True)


def _first_slot(state: State) -> State:
    """The state restricted to the first sounding slot (black box; console states are per track)."""
    if state.cond is None:
        return state
    return State(state.times, cond=state.cond[:, :1], axes=[(d[:1], m) for d, m in state.axes])


def render_patch(
    patch: Any,
    seconds: float | None = None,
    *,
    note: float | None = None,
    pitch_hz: float | None = None,
    seed: int | None = None,
    velocity: float = 1.0,
    safety: bool = True,
    report: bool = True,
    depth: int = 0,
) -> Rendered:
    """Render a :class:`~neuromix.synthesis.patch.Patch` (see the module docstring).

    Args:
        patch: the patch.
        seconds: gate length (default ``patch.duration_s``).
        note: MIDI note (default ``patch.note``).
        pitch_hz: pitch in Hz (overrides ``note``).
        seed: seed (default ``patch.seed``).
        velocity: amplitude factor 0..1 applied after the loudness target.
        safety: apply the safety stage (False only for the inner render of a morph).
        report: measure loudness and DC for the safety report (the true peak is always
            measured); a score skips it for its notes.
        depth: morph nesting depth (internal).

    Returns:
        :class:`Rendered`.

    Raises:
        ConfigError: invalid arguments, unknown layers, a pitch outside the audio band.
    """
    sr = patch.sample_rate
    gate = patch.duration_s if seconds is None else float(seconds)
    if not (gate > 0 and math.isfinite(gate)):
        raise ConfigError(f"seconds: must be positive, got {seconds}")
    total = gate + patch.envelope.release_s
    if total > LIMITS.max_render_s:
        raise ConfigError(
            f"seconds: {gate:g} s plus a {patch.envelope.release_s:g} s release exceeds the "
            f"{LIMITS.max_render_s:g} s limit of one render"
        )
    if pitch_hz is None:
        midi = patch.note if note is None else float(note)
        if not 0.0 <= midi <= 127.0:
            raise ConfigError(f"note: must be a MIDI note 0..127, got {midi}")
        pitch_hz = midi_to_hz(midi)
    pitch_hz = float(pitch_hz)
    if not 0.0 < pitch_hz < sr / 2:
        raise ConfigError(f"pitch_hz: must lie in (0, {sr / 2:g}) Hz, got {pitch_hz}")
    if not 0.0 <= velocity <= 1.0:
        raise ConfigError(f"velocity: must be in [0, 1], got {velocity}")
    seed = patch.seed if seed is None else int(seed)
    n = int(round(total * sr))

    base: Instrument = patch.instrument()
    inst = base.variant(patch.reinits)
    bends = list(patch.bends)
    for bend in bends:
        inst.layer(bend.layer)
    slots = list(patch.slots) + list(patch.context)
    sounding = list(range(len(patch.slots)))
    classes = torch.tensor([[CLASS_INDEX[s.instrument_class] if s.instrument_class else UNKNOWN_CLASS for s in slots]])
    signals = [generate(s, n, sr, pitch_hz, seed * 1009 + i, patch.base_dir) for i, s in enumerate(slots)]
    info: dict[str, Any] = {
        "network": str(patch.network_source()),
        "network_hash": base.content_hash,
        "family": base.family,
        "pitch_hz": pitch_hz,
        "seed": seed,
    }

    if patch.dream is not None:
        spec = patch.dream
        key = ("dream", _dream_key(patch, pitch_hz, seed))
        if key not in inst.cache:
            rate = opt_rate(sr)
            m = int(round(spec.seconds * rate))
            dream_tracks = torch.stack(
                [generate(s, m, rate, pitch_hz, seed * 1009 + i, patch.base_dir) for i, s in enumerate(slots)]
            )[None, :, None]
            level = 10.0 ** (patch.slots[spec.slot].level_db / 20.0)
            inst.cache[key] = run_dream(inst, spec, dream_tracks, classes, sounding, sr, pitch_hz, level, seed, bends)
        result = inst.cache[key]
        slot = patch.slots[spec.slot]
        x = result.signal(n, sr, pitch_hz) * (10.0 ** (slot.level_db / 20.0))
        fade = min(int(slot.fade_ms * 1e-3 * sr), n // 2)
        if fade > 0:
            ramp = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(fade, dtype=torch.float32) + 0.5) / fade)
            x = x.clone()
            x[:fade] *= ramp
            x[n - fade :] *= ramp.flip(0)
        signals[spec.slot] = x
        info["dream_history"] = list(result.history)
    tracks = torch.stack(signals)[None, :, None]  # (1, T, 1, n)

    with torch.no_grad():
        morph = class_morph(patch.control, sounding)
        varying = [b.amount for b in bends if inst.layer(b.layer).path == "conditioning" and not b.amount.is_constant]
        if morph is not None and not morph.amount.is_constant:
            varying.append(morph.amount)
        limit = MAX_KEYFRAMES if inst.family == "blackbox" else MAX_CONSOLE_KEYFRAMES
        key_times = (
            keyframe_times(total, _keyframe_rate(varying), limit) if varying else torch.zeros(1, dtype=torch.float64)
        )
        son = patch.sonify
        son_info = inst.layer(son.layer) if son is not None else None
        captures: dict[str, list[Tensor]] | None = {son.layer: []} if son is not None else None
        cond_captures = captures if son_info is not None and son_info.path == "conditioning" else None
        audio_captures = captures if son_info is not None and son_info.path == "audio" else None
        state = inst.condition(
            tracks, classes, sounding, sr, key_times, bends=bends, class_morph=morph, captures=cond_captures
        )
        state = apply_axes(patch.control, inst, state, tracks, sounding, sr, bends, total)

        if patch.feedback is not None:
            fb = patch.feedback
            excitation = tracks[0, sounding, 0].sum(0)
            first = [sounding[0]]
            first_state = _first_slot(state)
            loop = run_feedback(inst, fb, excitation, tracks, first, sr, first_state, pitch_hz, bends)
            loop_tracks = torch.zeros_like(tracks)
            loop_tracks[0, first[0], 0] = loop
            if fb.post or audio_captures is not None:
                processed = inst.process(loop_tracks, first, sr, first_state, bends=bends, captures=audio_captures)[0]
            out = processed if fb.post else loop[None].expand(2, -1).clone()
        else:
            out = inst.process(tracks, sounding, sr, state, bends=bends, captures=audio_captures)[0]

        if son is not None and son_info is not None:
            stored = captures[son.layer] if captures is not None else []
            if not stored:
                raise ConfigError(f"sonify: layer {son.layer} produced no output in this render")
            frame_times = inst.frame_times(n, sr) if son_info.path == "audio" else None
            out = run_sonify(stored[0], son_info, son, out, sr, pitch_hz, frame_times)

        if patch.morph is not None:
            if depth > 0:
                raise ConfigError("morph: the target patch of a morph cannot morph itself")
            other = _morph_target(patch)
            if other.sample_rate != sr:
                other = other.with_sample_rate(sr)
            if other.envelope.release_s != patch.envelope.release_s:
                doc = other.to_dict()
                doc["envelope"]["release_s"] = patch.envelope.release_s
                other = other._derive(doc)
            target = render_patch(other, gate, pitch_hz=pitch_hz, seed=seed, safety=False, depth=depth + 1)
            weight = patch.morph.amount.at(torch.arange(n, dtype=torch.float64) / sr).to(torch.float32)
            a_level = float(out.square().mean().sqrt()) + 1e-9
            b_level = float(target.audio.square().mean().sqrt()) + 1e-9
            out = (1.0 - weight) * out / a_level + weight * target.audio / b_level
            info["morph_to"] = patch.morph.to

    env = adsr(
        n, sr, gate, patch.envelope.attack_s, patch.envelope.decay_s, patch.envelope.sustain, patch.envelope.release_s
    )
    out = out * env
    controls = {name: patch.control_value(name) for name in patch.controls}
    if not safety:
        return Rendered(out.detach(), sr, pitch_hz, gate, None, controls, info)
    if velocity <= 0.0:
        out = torch.zeros_like(out)
        velocity_db = 0.0
    else:
        velocity_db = 20.0 * math.log10(velocity)
    safe, report = make_safe(
        out,
        sr,
        ceiling_db=patch.output.ceiling_db,
        loudness_lufs=patch.output.loudness_lufs,
        highpass_hz=patch.output.highpass_hz,
        gain_db=patch.output.gain_db + velocity_db,
        report=report,
    )
    return Rendered(safe, sr, pitch_hz, gate, report, controls, info)


def _morph_target(patch: Any) -> Any:
    from neuromix.synthesis.patch import Patch

    target = patch.morph.to
    path = Path(target)
    if path.suffix and not path.is_absolute() and patch.base_dir is not None:
        path = patch.base_dir / path
    other = Patch.load(path if path.suffix else target)
    if other.morph is not None:
        raise ConfigError(f"morph: the target patch {target!r} has a morph of its own (nesting is not allowed)")
    # both sides of a morph play this patch's network (two settings of one instrument)
    return other.use_instrument(patch.instrument())
