"""Patches: versioned, validated JSON documents that reproduce a sound bit for bit.

A patch records everything a render needs::

    {
      "format": "neuromix-patch", "version": 1,
      "name": "glass-pluck", "description": "...", "tags": ["pitched", "feedback"],
      "network": {"name": "blackbox", "hash": null},        # or {"path": "...", "hash": "1a2b3c4d"}
      "seed": 0, "sample_rate": 44100, "duration_s": 2.0, "note": 60.0, "pitched": true,
      "excitation": {"slots": [{"signal": "saw", "level_db": -6.0, "class": "keys"}],
                     "context": [{"signal": "noise", "params": {"color": "pink"}, "class": "drums"}]},
      "techniques": [{"type": "bend", "layer": "tcn.blocks.3.conv", "op": "scale", "amount": 1.5}],
      "controls": {"brightness": {"target": "/techniques/0/amount", "min": 0.0, "max": 3.0,
                                  "descriptor": "centroid_hz", "label": "Brightness"}},
      "main_control": "brightness",
      "envelope": {"attack_s": 0.005, "decay_s": 0.1, "sustain": 1.0, "release_s": 0.2},
      "output": {"ceiling_db": -1.0, "loudness_lufs": -20.0, "highpass_hz": 20.0, "gain_db": 0.0}
    }

Techniques (each at most once, except bends and re-initialisations): ``bend``
(:mod:`~neuromix.synthesis.bending`), ``reinit``, ``control``
(:mod:`~neuromix.synthesis.control`), ``sonify`` (:mod:`~neuromix.synthesis.sonify`),
``dream`` (:mod:`~neuromix.synthesis.dream`), ``feedback``
(:mod:`~neuromix.synthesis.feedback`) and ``morph`` (a click-free crossfade, along a
trajectory, into another patch rendered with the same note and seed).

Controls name a field of the document by JSON pointer (RFC 6901) with a range, the
descriptor they are meant to move (for controllability reports) and a label; setting
a control writes the value there, and automating it writes a breakpoint envelope
(only into fields that may vary over time).

:meth:`Patch.to_json` is canonical: defaults filled in, numbers normalised, keys
sorted, no spaces, so equal patches give equal files. Loading never unpickles and
checks size and depth (:mod:`~neuromix.synthesis.schema`).
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from neuromix.core.errors import ConfigError
from neuromix.synthesis.analysis import DESCRIPTORS
from neuromix.synthesis.bending import Bend, Reinit, parse_bend, parse_reinit
from neuromix.synthesis.control import ControlSpace, parse_control
from neuromix.synthesis.dream import Dream, parse_dream
from neuromix.synthesis.excitation import parse_slot
from neuromix.synthesis.feedback import Feedback, parse_feedback
from neuromix.synthesis.modulation import Modulation, parse_modulation
from neuromix.synthesis.schema import (
    LIMITS,
    check_keys,
    choice,
    integer,
    load_document,
    number,
    parse_document,
    string,
)
from neuromix.synthesis.sonify import Sonify, parse_sonify

__all__ = [
    "PATCH_FORMAT",
    "PATCH_VERSION",
    "Control",
    "Envelope",
    "Morph",
    "NetworkRef",
    "OutputSpec",
    "Patch",
    "list_presets",
    "preset_path",
]

PATCH_FORMAT = "neuromix-patch"
PATCH_VERSION = 1
TECHNIQUE_TYPES = ("bend", "reinit", "control", "sonify", "dream", "feedback", "morph")
_SINGLE = ("control", "sonify", "dream", "feedback", "morph")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_HASH = re.compile(r"^[0-9a-f]{8}$")
_TOP_KEYS = (
    "format",
    "version",
    "name",
    "description",
    "tags",
    "network",
    "seed",
    "sample_rate",
    "duration_s",
    "note",
    "pitched",
    "excitation",
    "techniques",
    "controls",
    "main_control",
    "envelope",
    "output",
)


@dataclass(frozen=True)
class NetworkRef:
    """Which network a patch plays: a shipped family name or a checkpoint path, and its hash."""

    name: str | None = None
    path: str | None = None
    hash: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"hash": self.hash}
        if self.name is not None:
            doc["name"] = self.name
        else:
            doc["path"] = self.path
        return doc


@dataclass(frozen=True)
class Envelope:
    """Amplitude envelope applied to the output (linear ADSR; release after the gate)."""

    attack_s: float = 0.005
    decay_s: float = 0.1
    sustain: float = 1.0
    release_s: float = 0.2

    def to_json(self) -> dict[str, Any]:
        return {
            "attack_s": self.attack_s,
            "decay_s": self.decay_s,
            "sustain": self.sustain,
            "release_s": self.release_s,
        }


@dataclass(frozen=True)
class OutputSpec:
    """Safety-stage settings: true-peak ceiling, loudness target, DC high-pass, gain."""

    ceiling_db: float = -1.0
    loudness_lufs: float | None = -20.0
    highpass_hz: float = 20.0
    gain_db: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "ceiling_db": self.ceiling_db,
            "loudness_lufs": self.loudness_lufs,
            "highpass_hz": self.highpass_hz,
            "gain_db": self.gain_db,
        }


@dataclass(frozen=True)
class Morph:
    """Crossfade into another patch (preset name or path) along ``amount`` (0 = this, 1 = other)."""

    to: str
    amount: Modulation

    def to_json(self) -> dict[str, Any]:
        return {"type": "morph", "to": self.to, "amount": self.amount.to_json()}


@dataclass(frozen=True)
class Control:
    """A named control: a JSON pointer into the patch, its range and intended descriptor."""

    target: str
    low: float
    high: float
    descriptor: str | None = None
    label: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "min": self.low,
            "max": self.high,
            "descriptor": self.descriptor,
            "label": self.label,
        }


# --------------------------------------------------------------------------- pointers


def _pointer_tokens(pointer: str, where: str) -> list[str]:
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        raise ConfigError(f"{where}: must be a JSON pointer such as '/techniques/0/amount'")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _resolve(doc: Any, pointer: str, where: str) -> tuple[Any, str | int]:
    """Parent container and key of ``pointer`` in ``doc`` (the field must exist)."""
    tokens = _pointer_tokens(pointer, where)
    node = doc
    for i, token in enumerate(tokens):
        last = i == len(tokens) - 1
        if isinstance(node, list):
            if not token.isdigit() or int(token) >= len(node):
                raise ConfigError(f"{where}: {pointer!r} does not name an existing field")
            key: str | int = int(token)
        elif isinstance(node, dict):
            if token not in node:
                raise ConfigError(f"{where}: {pointer!r} does not name an existing field")
            key = token
        else:
            raise ConfigError(f"{where}: {pointer!r} does not name an existing field")
        if last:
            return node, key
        node = node[key]  # type: ignore[index]
    raise ConfigError(f"{where}: empty pointer")  # pragma: no cover


# --------------------------------------------------------------------------- presets


def _preset_dir() -> Path:
    return Path(str(files("neuromix.synthesis") / "presets"))


def list_presets() -> list[str]:
    """Names of the shipped presets (sorted)."""
    folder = _preset_dir()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def preset_path(name: str) -> Path:
    """Path of a shipped preset; ConfigError listing the presets for an unknown name."""
    path = _preset_dir() / f"{name}.json"
    if not _NAME.match(name) or not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(list_presets())}")
    return path


# --------------------------------------------------------------------------- the patch


class Patch:
    """A validated patch. Build with :meth:`from_dict`, :meth:`load` or :meth:`from_json`.

    Attributes are the parsed sections (``name``, ``network``, ``seed``, ``sample_rate``,
    ``duration_s``, ``note``, ``pitched``, ``slots``, ``context``, ``bends``, ``reinits``,
    ``control``, ``sonify``, ``dream``, ``feedback``, ``morph``, ``controls``,
    ``main_control``, ``envelope``, ``output``); :meth:`to_dict` gives the canonical document.
    """

    def __init__(self, doc: dict[str, Any], base_dir: Path | None = None, *, _check_controls: bool = True) -> None:
        self.base_dir = base_dir
        self._instrument: Any = None
        self._parse(doc, _check_controls)

    # ------------------------------------------------------------------ parsing

    def _parse(self, doc: Any, check_controls: bool) -> None:
        check_keys(doc, "patch", _TOP_KEYS, ("network", "excitation"))
        fmt = doc.get("format", PATCH_FORMAT)
        if fmt != PATCH_FORMAT:
            raise ConfigError(f"format: must be {PATCH_FORMAT!r}, got {fmt!r}")
        version = integer(doc.get("version", PATCH_VERSION), "version", low=1)
        if version > PATCH_VERSION:
            raise ConfigError(f"version: patch format {version} is newer than this neuromix reads ({PATCH_VERSION})")
        name = string(doc.get("name", "untitled"), "name", max_len=64)
        if not _NAME.match(name):
            raise ConfigError(f"name: {name!r} must be lower-case letters, digits, '-' or '_' (max 64)")
        self.name = name
        self.description = string(doc.get("description", ""), "description", max_len=2000, allow_empty=True)
        tags = doc.get("tags", [])
        if not isinstance(tags, list) or len(tags) > 16:
            raise ConfigError("tags: must be a list of at most 16 strings")
        self.tags = tuple(string(t, f"tags[{i}]", max_len=32) for i, t in enumerate(tags))
        self.network = self._parse_network(doc["network"])
        self.seed = integer(doc.get("seed", 0), "seed", low=0, high=2**31 - 1)
        self.sample_rate = integer(
            doc.get("sample_rate", 44100), "sample_rate", low=LIMITS.min_rate, high=LIMITS.max_rate
        )
        self.duration_s = number(doc.get("duration_s", 2.0), "duration_s", low=0.05, high=LIMITS.max_render_s)
        self.note = number(doc.get("note", 60.0), "note", low=0.0, high=127.0)
        pitched = doc.get("pitched", False)
        if not isinstance(pitched, bool):
            raise ConfigError("pitched: must be true or false")
        self.pitched = pitched

        exc = check_keys(doc["excitation"], "excitation", ("slots", "context"), ("slots",))
        slots = exc["slots"]
        context = exc.get("context", [])
        if not isinstance(slots, list) or not slots:
            raise ConfigError("excitation.slots: must be a non-empty list of slot objects")
        if not isinstance(context, list):
            raise ConfigError("excitation.context: must be a list of slot objects")
        if len(slots) + len(context) > LIMITS.max_slots:
            raise ConfigError(f"excitation: at most {LIMITS.max_slots} slots in all (sounding + context)")
        self.slots = tuple(parse_slot(s, f"excitation.slots[{i}]") for i, s in enumerate(slots))
        self.context = tuple(parse_slot(s, f"excitation.context[{i}]") for i, s in enumerate(context))

        techniques = doc.get("techniques", [])
        if not isinstance(techniques, list):
            raise ConfigError("techniques: must be a list of technique objects")
        if len(techniques) > LIMITS.max_techniques:
            raise ConfigError(f"techniques: at most {LIMITS.max_techniques} techniques")
        self.techniques: list[Any] = []
        self.bends: list[Bend] = []
        self.reinits: list[Reinit] = []
        self.control: ControlSpace | None = None
        self.sonify: Sonify | None = None
        self.dream: Dream | None = None
        self.feedback: Feedback | None = None
        self.morph: Morph | None = None
        for i, tech in enumerate(techniques):
            where = f"techniques[{i}]"
            if not isinstance(tech, dict) or "type" not in tech:
                raise ConfigError(f"{where}: must be an object with a 'type' ({', '.join(TECHNIQUE_TYPES)})")
            kind = choice(tech["type"], f"{where}.type", TECHNIQUE_TYPES)
            if kind in _SINGLE and getattr(self, kind) is not None:
                raise ConfigError(f"{where}: a patch has at most one {kind} technique")
            if kind == "bend":
                parsed: Any = parse_bend(tech, where)
                self.bends.append(parsed)
            elif kind == "reinit":
                parsed = parse_reinit(tech, where)
                self.reinits.append(parsed)
            elif kind == "control":
                parsed = self.control = parse_control(tech, where)
            elif kind == "sonify":
                parsed = self.sonify = parse_sonify(tech, where)
            elif kind == "dream":
                parsed = self.dream = parse_dream(tech, where)
                if parsed.slot >= len(self.slots):
                    raise ConfigError(f"{where}.slot: the patch has {len(self.slots)} sounding slot(s)")
            elif kind == "feedback":
                parsed = self.feedback = parse_feedback(tech, where)
            else:
                check_keys(tech, where, ("type", "to", "amount"), ("to",))
                parsed = self.morph = Morph(
                    to=string(tech["to"], f"{where}.to", max_len=1000),
                    amount=parse_modulation(
                        tech.get("amount", {"points": [[0.0, 0.0], [1.0, 1.0]]}), f"{where}.amount", low=0.0, high=1.0
                    ),
                )
            self.techniques.append(parsed)

        env = check_keys(doc.get("envelope", {}), "envelope", ("attack_s", "decay_s", "sustain", "release_s"))
        self.envelope = Envelope(
            attack_s=number(env.get("attack_s", 0.005), "envelope.attack_s", low=0.001, high=30.0),
            decay_s=number(env.get("decay_s", 0.1), "envelope.decay_s", low=0.0, high=30.0),
            sustain=number(env.get("sustain", 1.0), "envelope.sustain", low=0.0, high=1.0),
            release_s=number(env.get("release_s", 0.2), "envelope.release_s", low=0.005, high=30.0),
        )
        out = check_keys(doc.get("output", {}), "output", ("ceiling_db", "loudness_lufs", "highpass_hz", "gain_db"))
        loud = out.get("loudness_lufs", -20.0)
        self.output = OutputSpec(
            ceiling_db=number(out.get("ceiling_db", -1.0), "output.ceiling_db", low=-40.0, high=-1.0),
            loudness_lufs=None if loud is None else number(loud, "output.loudness_lufs", low=-60.0, high=-6.0),
            highpass_hz=number(out.get("highpass_hz", 20.0), "output.highpass_hz", low=5.0, high=500.0),
            gain_db=number(out.get("gain_db", 0.0), "output.gain_db", low=-60.0, high=12.0),
        )
        if self.duration_s + self.envelope.release_s > LIMITS.max_render_s:
            raise ConfigError(f"duration_s: with the release the render would exceed {LIMITS.max_render_s:g} s")
        if self.pitched and not self._has_pitch_source():
            raise ConfigError(
                "pitched: a pitched patch needs a pitched sounding slot, a feedback loop tuned to the note "
                "(no delay_ms) or a wavetable sonification"
            )

        self._doc = self._canonical()  # controls are checked against the canonical document
        raw_controls = doc.get("controls", {})
        if not isinstance(raw_controls, dict) or len(raw_controls) > 16:
            raise ConfigError("controls: must be an object of at most 16 named controls")
        self.controls: dict[str, Control] = {}
        for cname, spec in raw_controls.items():
            where = f"controls.{cname}"
            if not _NAME.match(str(cname)):
                raise ConfigError(f"{where}: control names are lower-case letters, digits, '-' or '_'")
            check_keys(spec, where, ("target", "min", "max", "descriptor", "label"), ("target", "min", "max"))
            low = number(spec["min"], f"{where}.min")
            high = number(spec["max"], f"{where}.max")
            if not low < high:
                raise ConfigError(f"{where}: min ({low:g}) must be smaller than max ({high:g})")
            descriptor = spec.get("descriptor")
            if descriptor is not None:
                descriptor = choice(descriptor, f"{where}.descriptor", tuple(DESCRIPTORS))
            label = spec.get("label")
            if label is not None:
                label = string(label, f"{where}.label", max_len=64)
            control = Control(string(spec["target"], f"{where}.target", max_len=200), low, high, descriptor, label)
            parent, key = _resolve(self._doc, control.target, f"{where}.target")
            if isinstance(parent[key], bool) or not isinstance(parent[key], (int, float, dict)):  # type: ignore[index]
                raise ConfigError(f"{where}.target: {control.target!r} is not a numeric parameter")
            self.controls[str(cname)] = control
        main = doc.get("main_control")
        if main is not None and (not isinstance(main, str) or main not in self.controls):
            raise ConfigError(
                f"main_control: {main!r} is not one of the controls ({', '.join(self.controls) or 'none'})"
            )
        self.main_control: str | None = main
        self._doc = self._canonical()
        if check_controls:
            for cname, control in self.controls.items():
                for value in (control.low, control.high):
                    try:
                        self._set_pointer(control.target, value, check_controls=False)
                    except ConfigError as exc:
                        raise ConfigError(f"controls.{cname}: value {value:g} is not valid there: {exc}") from None

    def _has_pitch_source(self) -> bool:
        if any(slot.pitched for slot in self.slots):
            return True
        if self.feedback is not None and self.feedback.delay_ms is None:
            return True
        return self.sonify is not None and self.sonify.mode == "wavetable"

    @staticmethod
    def _parse_network(doc: Any) -> NetworkRef:
        check_keys(doc, "network", ("name", "path", "hash"))
        if ("name" in doc) == ("path" in doc):
            raise ConfigError("network: give either name (a shipped network) or path (a checkpoint file)")
        h = doc.get("hash")
        if h is not None:
            h = string(h, "network.hash", max_len=8)
            if not _HASH.match(h):
                raise ConfigError("network.hash: must be the 8 hex digits of the checkpoint's sha256")
        if "name" in doc:
            return NetworkRef(name=string(doc["name"], "network.name", max_len=64), hash=h)
        return NetworkRef(path=string(doc["path"], "network.path", max_len=1000), hash=h)

    def _canonical(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": PATCH_FORMAT,
            "version": PATCH_VERSION,
            "name": self.name,
            "description": self.description,
            "tags": list(self.tags),
            "network": self.network.to_json(),
            "seed": self.seed,
            "sample_rate": self.sample_rate,
            "duration_s": self.duration_s,
            "note": self.note,
            "pitched": self.pitched,
            "excitation": {"slots": [s.to_json() for s in self.slots], "context": [s.to_json() for s in self.context]},
            "techniques": [t.to_json() for t in self.techniques],
            "controls": {k: c.to_json() for k, c in getattr(self, "controls", {}).items()},
            "main_control": getattr(self, "main_control", None),
            "envelope": self.envelope.to_json(),
            "output": self.output.to_json(),
        }
        return doc

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_dict(cls, doc: dict[str, Any], base_dir: str | os.PathLike[str] | None = None) -> Patch:
        """Validate a patch document (ConfigError naming the field on any problem)."""
        return cls(copy.deepcopy(doc), None if base_dir is None else Path(base_dir))

    @classmethod
    def from_json(cls, text: str | bytes, base_dir: str | os.PathLike[str] | None = None) -> Patch:
        """Parse and validate a patch from JSON text (size and depth bounded)."""
        return cls(parse_document(text, "patch"), None if base_dir is None else Path(base_dir))

    @classmethod
    def load(cls, name_or_path: str | os.PathLike[str]) -> Patch:
        """Load a shipped preset by name or a patch file by path.

        Raises:
            ConfigError: unknown preset (lists them), missing/invalid file (names the field).
        """
        text = str(name_or_path)
        path = Path(text)
        if not path.suffix and _NAME.match(text) and not path.exists():
            path = preset_path(text)
        elif not path.exists():
            raise ConfigError(
                f"{text}: no such patch file, and not a preset name; presets: {', '.join(list_presets())}"
            )
        doc, path = load_document(path, "patch")
        try:
            return cls(doc, path.parent)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The canonical document (a deep copy)."""
        return copy.deepcopy(self._doc)

    def to_json(self, *, indent: int | None = None) -> str:
        """Canonical JSON (sorted keys, no spaces unless ``indent``, no NaN)."""
        if indent is None:
            return json.dumps(self._doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return json.dumps(self._doc, sort_keys=True, indent=indent, ensure_ascii=False, allow_nan=False)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False, indent: int | None = 2) -> Path:
        """Write the patch as JSON, atomically (refuses to overwrite unless ``overwrite``)."""
        from neuromix.core.io import write_text_atomic

        p = Path(path)
        if p.exists() and not overwrite:
            raise ConfigError(f"{p}: exists; pass overwrite=True (or --force)")
        return write_text_atomic(p, self.to_json(indent=indent) + "\n", overwrite=True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Patch) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        kinds = [type(t).__name__ for t in self.techniques]
        return f"Patch({self.name!r}, network={self.network.name or self.network.path!r}, techniques={kinds})"

    # ------------------------------------------------------------------ variations

    def _derive(self, doc: dict[str, Any], *, check_controls: bool = True) -> Patch:
        new = Patch(doc, self.base_dir, _check_controls=check_controls)
        if new.network == self.network:
            new._instrument = self._instrument
        return new

    def _set_pointer(self, pointer: str, value: Any, *, check_controls: bool = True) -> Patch:
        doc = self.to_dict()
        parent, key = _resolve(doc, pointer, "control")
        parent[key] = value  # type: ignore[index]
        return self._derive(doc, check_controls=check_controls)

    def control_value(self, name: str) -> float:
        """Current value of a control (the starting value when it varies over time)."""
        control = self._control(name)
        parent, key = _resolve(self._doc, control.target, name)
        value = parent[key]  # type: ignore[index]
        if isinstance(value, dict):
            return parse_modulation(value, name).initial()
        return float(value)

    def _control(self, name: str) -> Control:
        if name not in self.controls:
            raise ConfigError(
                f"unknown control {name!r} of patch {self.name}; controls: {', '.join(self.controls) or 'none'}"
            )
        return self.controls[name]

    def with_controls(self, values: dict[str, float] | None = None, **kw: float) -> Patch:
        """A copy with controls set (each within its range)."""
        merged = dict(values or {}, **kw)
        doc = self.to_dict()
        for name, value in merged.items():
            control = self._control(name)
            value = number(value, f"control {name}", low=control.low, high=control.high)
            parent, key = _resolve(doc, control.target, name)
            parent[key] = value  # type: ignore[index]
        return self._derive(doc, check_controls=False) if merged else self

    def with_automation(self, curves: dict[str, Any]) -> Patch:
        """A copy whose controls follow breakpoint curves ``{name: [[t_s, value], ...]}`` (t from the note start).

        Only parameters that may vary over time accept automation (ConfigError otherwise);
        an LFO already on the parameter is kept.
        """
        doc = self.to_dict()
        for name, points in curves.items():
            control = self._control(name)
            from neuromix.synthesis.modulation import parse_points

            pts = parse_points(points, f"automation.{name}", low=control.low, high=control.high)
            parent, key = _resolve(doc, control.target, name)
            current = parent[key]  # type: ignore[index]
            new: dict[str, Any] = {"points": [[t, v] for t, v in pts], "curve": "linear"}
            if isinstance(current, dict) and current.get("lfo") is not None:
                new["lfo"] = current["lfo"]
            parent[key] = new  # type: ignore[index]
        if not curves:
            return self
        try:
            return self._derive(doc, check_controls=False)
        except ConfigError as exc:
            raise ConfigError(f"automation of {', '.join(curves)}: {exc}") from None

    def with_network(self, name_or_path: str | os.PathLike[str], hash: str | None = None) -> Patch:
        """A copy playing another network (shipped name or checkpoint path)."""
        from neuromix.mixing.shipped import FAMILIES

        doc = self.to_dict()
        text = str(name_or_path)
        doc["network"] = (
            {"name": text, "hash": hash} if text in FAMILIES else {"path": str(Path(text).resolve()), "hash": hash}
        )
        return Patch(doc, self.base_dir)

    def with_sample_rate(self, sample_rate: int) -> Patch:
        """A copy rendering at another rate."""
        if sample_rate == self.sample_rate:
            return self
        doc = self.to_dict()
        doc["sample_rate"] = sample_rate
        return self._derive(doc)

    def pinned(self) -> Patch:
        """A copy whose network reference carries the loaded checkpoint's content hash."""
        inst = self.instrument()
        doc = self.to_dict()
        doc["network"]["hash"] = inst.content_hash
        return self._derive(doc)

    # ------------------------------------------------------------------ rendering

    def network_source(self) -> str | Path:
        """The shipped name or the resolved checkpoint path."""
        if self.network.name is not None:
            return self.network.name
        path = Path(self.network.path or "")
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return path

    def instrument(self) -> Any:
        """The :class:`~neuromix.synthesis.instrument.Instrument` this patch plays (loaded once, hash checked)."""
        if self._instrument is None:
            from neuromix.synthesis.instrument import Instrument

            inst = Instrument.load(self.network_source())
            if self.network.hash is not None and inst.content_hash != self.network.hash:
                raise ConfigError(
                    f"network.hash: the patch was made with checkpoint {self.network.hash} but "
                    f"{self.network_source()} is {inst.content_hash}; the sound would differ "
                    "(remove the hash to play it anyway)"
                )
            self._instrument = inst
        return self._instrument

    def use_instrument(self, instrument: Any) -> Patch:
        """Play an already loaded instrument (e.g. shared by a score); returns self."""
        self._instrument = instrument
        return self

    def render(
        self,
        seconds: float | None = None,
        *,
        note: float | None = None,
        pitch_hz: float | None = None,
        seed: int | None = None,
        velocity: float = 1.0,
        controls: dict[str, float] | None = None,
        automation: dict[str, Any] | None = None,
        report: bool = True,
    ) -> Any:
        """Render the patch (see :func:`neuromix.synthesis.render.render_patch`).

        Args:
            seconds: gate length in seconds (default ``duration_s``); the output also holds
                the envelope's release.
            note: MIDI note (default the patch's ``note``); ``pitch_hz`` overrides it.
            pitch_hz: pitch in Hz.
            seed: seed (default the patch's ``seed``).
            velocity: 0..1 amplitude factor after the loudness target.
            controls: control values for this render.
            automation: control breakpoint curves for this render.
            report: measure loudness and DC for the safety report (``Rendered.report`` is
                None without it).

        Returns:
            A :class:`~neuromix.synthesis.render.Rendered` (stereo audio, rate, report, info).
        """
        from neuromix.synthesis.render import render_patch

        patch = self.with_controls(controls or {}).with_automation(automation or {})
        return render_patch(patch, seconds, note=note, pitch_hz=pitch_hz, seed=seed, velocity=velocity, report=report)
