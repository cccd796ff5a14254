"""Expert mixing knowledge: the instrument-class rule table and a rule-based mixer.

The rule table
--------------
``mixing/rules.json`` (package data, loaded with
``importlib.resources.files("neuromix.mixing") / "rules.json"`` by :func:`load_rules` and
checked by :func:`validate_rules`, which raises :class:`~neuromix.core.errors.ConfigError`
naming the offending field) holds, for every class of
:data:`~neuromix.mixing.classes.INSTRUMENT_CLASSES`:

* ``loudness_lu``: integrated loudness relative to the *lead element* (LU);
* ``priority``: who wins when two tracks mask each other (higher wins);
* ``pan``: ``abs_min``/``abs_max``, the allowed distance from the centre (0 = centred;
  kick, snare, bass and vocal are 0/0);
* ``highpass_hz``: ``[low, high]`` range of the high-pass corner;
* ``eq``: typical moves, each on one slot of the console's track EQ: ``low`` (low shelf),
  ``low_mid`` and ``high_mid`` (peaking, with ``q``), ``high`` (high shelf);
* ``compression``: ``threshold_rel_db`` ``[heavy, gentle]`` (threshold minus the track's
  integrated loudness after the fader gain; the console's detector reads sample peaks, so
  thresholds mostly sit above the loudness and the gain reduction grows with the crest
  factor), ``ratio``, ``attack_ms``,
  ``release_ms`` ranges, ``knee_db`` and ``crest_typical_db`` (the crest factor the range is
  meant for);
* ``reverb_send_db``: ``[low, high]`` post-fader send to the reverb bus;
* ``centroid_typical_hz``: the spectral centroid the class usually has (used by the
  mixing-engineer model to judge "dull" or "bright");
* optional ``secondary`` overrides (``loudness_lu``, ``pan``) for the second and further
  members of a class (backing vocals, a second lead line).

Plus ``lead_order`` (which classes are the lead element), ``masking_priorities`` (class
pairs whose winner depends on the frequency region: the kick/bass low-end split),
``panning``, ``highpass`` and ``unmasking`` constants, the ``master`` defaults (target
loudness, bus compressor, limiter, reverb) and ``sources`` (the literature the conventions
are paraphrased from).

How :class:`RuleMixer` decides (deterministic, in this order)
------------------------------------------------------------
Tracks whose mask is False are ignored (neutral settings); tracks quieter than -70 LUFS are
"silent" (neutral settings, no gain change).

1. **Analysis** of every track (:func:`neuromix.mixing.classify.describe_tracks`): mean power
   spectrum, crest factor, centroid, low-frequency share, onset rate; BS.1770 integrated
   loudness ``L_i`` (:func:`neuromix.core.features.integrated_loudness`); octave band energies
   (:func:`neuromix.core.features.band_energies`).
2. **Lead element**: the loudest track of the first class of ``lead_order`` present (vocal,
   then lead); otherwise the loudest track of the highest-priority class. In every class the
   loudest track is its *main* member, the others are *secondary*.
3. **Loudness targets**: ``target_i = lead_anchor_lufs + rel_i - rel_lead`` where ``rel_i`` is
   the class's ``loudness_lu`` (``secondary.loudness_lu`` for secondary members of classes
   that have one). The anchor only sets the working level; the master stage sets the final
   loudness.
4. **Panning**: the lead element, centred classes (``abs_max == 0``) and tracks with more than
   ``lf_centre_ratio`` of their power below ``lf_cutoff_hz`` get 0. The other tracks are
   ordered by (priority descending, class name, main before secondary members of classes
   with ``secondary`` rules, index); consecutive tracks alternate left, right, left, ...
   In a group of ``n`` members (a class, or its secondary members), member ``k`` sits at
   ``abs_max - (abs_max - abs_min) * (k // 2) / (ceil(n/2) - 1)`` (a lone member at the middle
   of the range), then the distance above ``abs_min`` shrinks with the low-frequency share:
   ``abs_min + (d - abs_min) * (1 - lf_share / lf_centre_ratio)``.
5. **High-pass**: ``safety_factor`` times the frequency below which ``energy_fraction`` of the
   track's power lies, clamped into the class's ``highpass_hz`` range.
6. **Class EQ**: the class's ``eq`` moves, one per slot; empty slots stay flat.
7. **Unmasking EQ** from measured spectral overlap: with octave band levels ``B_i(b)`` (dB) of
   the bands whose centres lie in ``[min_hz, max_hz]``, the post-fader estimate
   ``B'_i = B_i + target_i - L_i``, the prominence ``w_i(b) = clip(1 + (B_i(b) - max_b B_i) / P,
   0, 1)`` (``P = prominence_range_db``) and, for a pair (winner ``h``, loser ``l``) of
   different classes, the level factor ``r = clip(1 + (B'_l(b) - B'_h(b)) / R, 0, 1)``
   (``R = level_range_db``) and the spatial factor ``s = 1 - spatial_release * |pan_h - pan_l| / 2``,
   the overlap is ``o = w_h w_l r s``. The winner is given by ``masking_priorities`` where an
   entry matches the pair and band, else by (priority, main member, target loudness, lower
   index). Where ``o > threshold`` the loser gets ``cut = -max_cut_db * (o - threshold) /
   (1 - threshold)`` in that band (the deepest over all winners) and the winner may get a
   presence boost ``presence_boost_db * (o - threshold) / (1 - threshold)`` for bands at or
   above ``presence_min_hz``. Bands map to EQ slots by centre: below 120 Hz the low shelf
   (corner at the band's upper edge, the cut scaled by ``shelf_cut_scale`` because a shelf
   also lowers everything below), up to 1 kHz the low-mid peak, up to 8 kHz the high-mid
   peak (centre at the band centre, Q ``cut_q``); the deepest cut per slot is used. A measured
   cut replaces the class move of its slot (if that move was a deeper cut within an octave,
   the deeper gain is kept). A boost is applied only to the high-mid slot when it has no cut:
   added to a class boost within an octave, or used alone if the slot is flat.
8. **Compression**: threshold ``L_i + gain_i + mid(threshold_rel_db)``, i.e. relative to the
   raw track's loudness after the fader gain (the level entering EQ and compressor, before
   EQ); ratio and times at the geometric middle of their ranges; the class's knee. With the
   shipped table the gain reduction on generated stems peaks at about 3-5 dB for vocal,
   bass, kick and snare and 2-3 dB for keys, pads and hi-hats.
9. **Reverb send**: the middle of ``reverb_send_db``.
10. **Gain calibration**: the track chain (gain, EQ, compressor) is rendered with gain
    ``target_i - L_i`` and the measured loudness is corrected until each track's processed
    loudness is within 0.05 LU of ``target_i`` (at most three corrections). A change of
    gain moves the compressor threshold with it (so compression stays the same, and the
    output scales exactly: no re-render is needed unless a range limit was hit); gain
    beyond the console's +12 dB goes into the compressor's makeup gain.
11. **Master**: EQ gains (flat in the shipped table), width and reverb from ``master``; bus
    compressor ratio/times/knee from ``master.bus_compressor`` and threshold =
    loudness of the dry bus + ``bus_compressor.threshold_rel_db``; limiter ceiling
    ``limiter.ceiling_db`` and its input gain ``limiter_gain_db`` iterated (at most seven
    renders) until the mix is within 0.05 LU of ``target_lufs``
    (or the gain reaches the end of its +-12 dB range).

Every value is finally clamped into the console's ranges (``Console.track_ranges`` /
``Console.master_ranges``).
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from neuromix.core import features
from neuromix.core.dsp.console import Console, ConsoleParams
from neuromix.core.dsp.modules import TRACK_EQ
from neuromix.core.errors import ConfigError
from neuromix.mixing.classes import INSTRUMENT_CLASSES
from neuromix.mixing.classify import TrackDescriptors, classify_tracks, describe_tracks

RULES_FORMAT = "neuromix-mixing-rules"
RULES_VERSION = 1
RULES_FILE = "rules.json"

EQ_SLOTS: tuple[str, ...] = ("low", "low_mid", "high_mid", "high")
"""The console's track-EQ bands a rule can move (``hp`` is set by ``highpass_hz``)."""

_SLOT_RANGE: dict[str, tuple[float, float]] = {b.name: (b.cutoff_hz[0], b.cutoff_hz[1]) for b in TRACK_EQ}
_MAX_EQ_GAIN_DB = 12.0
_SILENT_LUFS = -70.0
_DEFAULT_Q = 1.0


# --------------------------------------------------------------------------------------------
# loading and validation
# --------------------------------------------------------------------------------------------


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def _number(doc: Mapping, key: str, where: str, low: float | None = None, high: float | None = None) -> float:
    if key not in doc:
        raise _fail(where, f"missing '{key}'")
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(f"{where}.{key}", f"must be a finite number, got {value!r}")
    value = float(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise _fail(f"{where}.{key}", f"{value} is outside [{low}, {high}]")
    return value


def _pair(doc: Mapping, key: str, where: str, low: float, high: float) -> list[float]:
    if key not in doc:
        raise _fail(where, f"missing '{key}'")
    value = doc[key]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _fail(f"{where}.{key}", f"must be a [low, high] pair, got {value!r}")
    a = _number({"v": value[0]}, "v", f"{where}.{key}[0]", low, high)
    b = _number({"v": value[1]}, "v", f"{where}.{key}[1]", low, high)
    if a > b:
        raise _fail(f"{where}.{key}", f"low {a} exceeds high {b}")
    return [a, b]


def _pan(doc: Mapping, where: str) -> dict[str, float]:
    if not isinstance(doc, Mapping):
        raise _fail(where, "must be an object with abs_min and abs_max")
    lo = _number(doc, "abs_min", where, 0.0, 1.0)
    hi = _number(doc, "abs_max", where, 0.0, 1.0)
    if lo > hi:
        raise _fail(where, f"abs_min {lo} exceeds abs_max {hi}")
    return {"abs_min": lo, "abs_max": hi}


def validate_rules(doc: Any, where: str = "rules") -> dict:
    """Check a rule-table document and return a normalised deep copy (numbers as floats).

    The result has the same schema except that each class's ``eq`` becomes a dict
    ``{slot: {"freq_hz", "gain_db", "q"}}`` (``q`` defaults to 1); such a normalised table
    validates again unchanged. Checks the format tag and version, that every class of ``INSTRUMENT_CLASSES`` (and no
    other) has an entry with every field, that every number is finite and inside the
    console's range for the setting it drives, that ranges are ordered, that EQ moves name a
    known slot (at most one move per slot), that masking priorities name known classes, and
    the master and constant sections.

    Raises:
        ConfigError: naming the first invalid field.
    """
    if not isinstance(doc, Mapping):
        raise _fail(where, "the rule table must be a JSON object")
    if doc.get("format") != RULES_FORMAT:
        raise _fail(where, f"'format' must be {RULES_FORMAT!r}")
    if doc.get("version") != RULES_VERSION:
        raise _fail(where, f"unsupported 'version' {doc.get('version')!r} (this build reads {RULES_VERSION})")
    out = copy.deepcopy(dict(doc))
    sources = doc.get("sources")
    if not isinstance(sources, list) or not sources or not all(
        isinstance(s, Mapping) and isinstance(s.get("citation"), str) for s in sources
    ):
        raise _fail(where, "'sources' must be a non-empty list of objects with a 'citation'")
    classes = doc.get("classes")
    if not isinstance(classes, Mapping):
        raise _fail(where, "'classes' must be an object")
    missing = [c for c in INSTRUMENT_CLASSES if c not in classes]
    unknown = [c for c in classes if c not in INSTRUMENT_CLASSES]
    if missing:
        raise _fail(f"{where}.classes", f"no rules for class(es) {', '.join(missing)}")
    if unknown:
        raise _fail(f"{where}.classes", f"unknown class(es) {', '.join(unknown)}; valid: {', '.join(INSTRUMENT_CLASSES)}")
    hp_lo, hp_hi = _SLOT_RANGE["hp"]
    norm_classes: dict[str, dict] = {}
    for cls in INSTRUMENT_CLASSES:
        c, w = classes[cls], f"{where}.classes.{cls}"
        if not isinstance(c, Mapping):
            raise _fail(w, "must be an object")
        entry: dict[str, Any] = {"description": str(c.get("description", ""))}
        entry["loudness_lu"] = _number(c, "loudness_lu", w, -40.0, 12.0)
        entry["priority"] = _number(c, "priority", w, 0.0, 100.0)
        entry["pan"] = _pan(c.get("pan"), f"{w}.pan")
        entry["highpass_hz"] = _pair(c, "highpass_hz", w, hp_lo, hp_hi)
        eq = c.get("eq")
        if isinstance(eq, Mapping):  # an already-normalised table: {slot: move}
            eq = [{"slot": k, **v} if isinstance(v, Mapping) else v for k, v in eq.items()]
        if not isinstance(eq, list):
            raise _fail(f"{w}.eq", "must be a list of moves")
        moves: dict[str, dict] = {}
        for k, move in enumerate(eq):
            wm = f"{w}.eq[{k}]"
            if not isinstance(move, Mapping):
                raise _fail(wm, "must be an object")
            slot = move.get("slot")
            if slot not in EQ_SLOTS:
                raise _fail(f"{wm}.slot", f"must be one of {', '.join(EQ_SLOTS)}, got {slot!r}")
            if slot in moves:
                raise _fail(f"{wm}.slot", f"slot {slot!r} is used twice")
            lo, hi = _SLOT_RANGE[slot]
            moves[slot] = {
                "freq_hz": _number(move, "freq_hz", wm, lo, hi),
                "gain_db": _number(move, "gain_db", wm, -_MAX_EQ_GAIN_DB, _MAX_EQ_GAIN_DB),
                "q": _number(move, "q", wm, 0.3, 6.0) if "q" in move else _DEFAULT_Q,
            }
        entry["eq"] = moves
        comp = c.get("compression")
        if not isinstance(comp, Mapping):
            raise _fail(f"{w}.compression", "must be an object")
        wc = f"{w}.compression"
        entry["compression"] = {
            "threshold_rel_db": _pair(comp, "threshold_rel_db", wc, -40.0, 30.0),
            "ratio": _pair(comp, "ratio", wc, 1.0, 20.0),
            "attack_ms": _pair(comp, "attack_ms", wc, 0.5, 100.0),
            "release_ms": _pair(comp, "release_ms", wc, 10.0, 1000.0),
            "knee_db": _number(comp, "knee_db", wc, 0.0, 12.0),
            "crest_typical_db": _number(comp, "crest_typical_db", wc, 0.0, 40.0),
        }
        entry["reverb_send_db"] = _pair(c, "reverb_send_db", w, -60.0, 0.0)
        entry["centroid_typical_hz"] = _number(c, "centroid_typical_hz", w, 20.0, 20000.0)
        if "secondary" in c:
            sec = c["secondary"]
            if not isinstance(sec, Mapping):
                raise _fail(f"{w}.secondary", "must be an object")
            entry["secondary"] = {
                "loudness_lu": _number(sec, "loudness_lu", f"{w}.secondary", -40.0, 12.0),
                "pan": _pan(sec.get("pan"), f"{w}.secondary.pan"),
            }
        norm_classes[cls] = entry
    out["classes"] = norm_classes

    lead_order = doc.get("lead_order")
    if not isinstance(lead_order, list) or any(c not in INSTRUMENT_CLASSES for c in lead_order):
        raise _fail(f"{where}.lead_order", "must be a list of instrument classes")

    pairs = doc.get("masking_priorities")
    if not isinstance(pairs, list):
        raise _fail(f"{where}.masking_priorities", "must be a list")
    norm_pairs = []
    for k, p in enumerate(pairs):
        wp = f"{where}.masking_priorities[{k}]"
        if not isinstance(p, Mapping):
            raise _fail(wp, "must be an object")
        for role in ("winner", "loser"):
            if p.get(role) not in INSTRUMENT_CLASSES:
                raise _fail(f"{wp}.{role}", f"unknown class {p.get(role)!r}")
        if p["winner"] == p["loser"]:
            raise _fail(wp, "winner and loser must differ")
        lo = _number(p, "low_hz", wp, 0.0, 30000.0)
        hi = _number(p, "high_hz", wp, 0.0, 30000.0)
        if lo >= hi:
            raise _fail(wp, "low_hz must be below high_hz")
        norm_pairs.append({"winner": p["winner"], "loser": p["loser"], "low_hz": lo, "high_hz": hi})
    out["masking_priorities"] = norm_pairs

    section = _section(doc, "panning", where)
    out["panning"] = {
        "lf_cutoff_hz": _number(section, "lf_cutoff_hz", f"{where}.panning", 20.0, 1000.0),
        "lf_centre_ratio": _number(section, "lf_centre_ratio", f"{where}.panning", 0.01, 1.0),
    }
    section = _section(doc, "highpass", where)
    out["highpass"] = {
        "energy_fraction": _number(section, "energy_fraction", f"{where}.highpass", 0.0, 0.5),
        "safety_factor": _number(section, "safety_factor", f"{where}.highpass", 0.0, 2.0),
    }
    section, wu = _section(doc, "unmasking", where), f"{where}.unmasking"
    bands = section.get("bands")
    if bands not in ("octave", "bark"):
        raise _fail(f"{wu}.bands", "must be 'octave' or 'bark'")
    out["unmasking"] = {
        "bands": bands,
        "min_hz": _number(section, "min_hz", wu, 0.0, 30000.0),
        "max_hz": _number(section, "max_hz", wu, 0.0, 30000.0),
        "prominence_range_db": _number(section, "prominence_range_db", wu, 1.0, 60.0),
        "level_range_db": _number(section, "level_range_db", wu, 1.0, 60.0),
        "threshold": _number(section, "threshold", wu, 0.0, 0.99),
        "max_cut_db": _number(section, "max_cut_db", wu, 0.0, _MAX_EQ_GAIN_DB),
        "cut_q": _number(section, "cut_q", wu, 0.3, 6.0),
        "presence_boost_db": _number(section, "presence_boost_db", wu, 0.0, 6.0),
        "presence_min_hz": _number(section, "presence_min_hz", wu, 0.0, 30000.0),
        "spatial_release": _number(section, "spatial_release", wu, 0.0, 1.0),
        "shelf_cut_scale": _number(section, "shelf_cut_scale", wu, 0.0, 1.0),
    }
    if out["unmasking"]["min_hz"] >= out["unmasking"]["max_hz"]:
        raise _fail(wu, "min_hz must be below max_hz")

    m, wm = _section(doc, "master", where), f"{where}.master"
    bus, lim, rev, eq = (_section(m, k, wm) for k in ("bus_compressor", "limiter", "reverb", "eq"))
    out["master"] = {
        "target_lufs": _number(m, "target_lufs", wm, -40.0, -5.0),
        "lead_anchor_lufs": _number(m, "lead_anchor_lufs", wm, -50.0, -5.0),
        "bus_compressor": {
            "threshold_rel_db": _number(bus, "threshold_rel_db", f"{wm}.bus_compressor", -40.0, 30.0),
            "ratio": _number(bus, "ratio", f"{wm}.bus_compressor", 1.0, 20.0),
            "attack_ms": _number(bus, "attack_ms", f"{wm}.bus_compressor", 0.5, 100.0),
            "release_ms": _number(bus, "release_ms", f"{wm}.bus_compressor", 10.0, 1000.0),
            "knee_db": _number(bus, "knee_db", f"{wm}.bus_compressor", 0.0, 12.0),
        },
        "limiter": {
            "ceiling_db": _number(lim, "ceiling_db", f"{wm}.limiter", -6.0, -1.0),
            "release_ms": _number(lim, "release_ms", f"{wm}.limiter", 10.0, 500.0),
        },
        "reverb": {
            "decay_s": _number(rev, "decay_s", f"{wm}.reverb", 0.2, 4.0),
            "damping": _number(rev, "damping", f"{wm}.reverb", 0.1, 1.0),
            "predelay_ms": _number(rev, "predelay_ms", f"{wm}.reverb", 0.0, 80.0),
            "return_db": _number(rev, "return_db", f"{wm}.reverb", -24.0, 6.0),
        },
        "width": _number(m, "width", wm, 0.0, 2.0),
        "eq": {k: _number(eq, k, f"{wm}.eq", -_MAX_EQ_GAIN_DB, _MAX_EQ_GAIN_DB)
               for k in ("low_gain_db", "mid_gain_db", "high_gain_db")},
    }
    return out


def _section(doc: Mapping, key: str, where: str) -> Mapping:
    value = doc.get(key)
    if not isinstance(value, Mapping):
        raise _fail(where, f"'{key}' must be an object")
    return value


def load_rules(path: str | Path | None = None) -> dict:
    """Load and validate a rule table.

    Args:
        path: a JSON file; ``None`` loads the shipped table
            (``importlib.resources.files("neuromix.mixing") / "rules.json"``).

    Returns:
        The validated, normalised table (see :func:`validate_rules`).

    Raises:
        ConfigError: unreadable file, invalid JSON or an invalid field (named).
    """
    if path is None:
        where = f"neuromix.mixing/{RULES_FILE}"
        try:
            text = (importlib.resources.files("neuromix.mixing") / RULES_FILE).read_text(encoding="utf-8")
        except FileNotFoundError as err:  # a broken install
            raise ConfigError(f"{where} is missing from the installation") from err
    else:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"{where}: cannot read the rule table ({err})") from err
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{where}: invalid JSON ({err})") from err
    return validate_rules(doc, where)


# --------------------------------------------------------------------------------------------
# the rule-based mixer
# --------------------------------------------------------------------------------------------


@dataclass
class MixPlan:
    """The settings a mixer decided and the measurements behind them (batch 1).

    Attributes:
        params: console settings, ``(1, T)`` per track and ``(1,)`` master tensors.
        classes: instrument class per track.
        lead_index: index of the lead element (-1 when every track is silent or masked).
        loudness_lufs: ``(T,)`` measured integrated loudness of the raw tracks.
        target_lufs: ``(T,)`` loudness each track's processed signal was calibrated to (NaN for
            masked or silent tracks).
        processed_lufs: ``(T,)`` measured loudness after gain, EQ and compressor.
        band_centres_hz: ``(bands,)`` centres of the unmasking analysis bands.
        unmasking_cut_db: ``(T, bands)`` cut (<= 0) decided per track and band by unmasking.
        presence_boost_db: ``(T, bands)`` boost (>= 0) decided per track and band.
        output_lufs: loudness of the rendered mix.
        mix: ``(1, 2, samples)`` the mix rendered with :attr:`params` (what
            ``Console(sample_rate)(tracks, mask, params)`` gives, within float rounding).
        notes: human-readable record of the decisions.
    """

    params: ConsoleParams
    classes: list[str]
    lead_index: int
    loudness_lufs: Tensor
    target_lufs: Tensor
    processed_lufs: Tensor
    band_centres_hz: Tensor
    unmasking_cut_db: Tensor
    presence_boost_db: Tensor
    output_lufs: float
    mix: Tensor
    notes: list[str] = field(default_factory=list)


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _glerp(a: float, b: float, t: float) -> float:
    """Geometric interpolation between positive ``a`` and ``b``."""
    return a * (b / a) ** t


def _clip(v: float, lo: float, hi: float) -> float:
    return min(max(v, lo), hi)


class RuleMixer:
    """Rule-based mixer: instrument classes + measured content -> console settings.

    See the module docstring for every decision. Deterministic: the same tracks and
    classes give the same settings.

    Args:
        sample_rate: Hz of the tracks.
        rules: a rule table (mapping, validated), a path to one, or ``None`` for the shipped
            ``rules.json``.

    Example:
        >>> mixer = RuleMixer(44100)
        >>> mix, params = mixer.mix(tracks, ["kick", "bass", "vocal"])   # tracks (3, 2, N)
    """

    def __init__(self, sample_rate: int, rules: Mapping | str | Path | None = None) -> None:
        self.sample_rate = int(sample_rate)
        if rules is None or isinstance(rules, (str, Path)):
            self.rules = load_rules(rules)
        else:
            self.rules = validate_rules(rules)
        self.console = Console(self.sample_rate)
        # the master chain without the limiter (and without the EQ when it is flat, where it
        # is the identity), so the limiter gain can be iterated cheaply
        self._pre_limiter = {
            flat: Console(self.sample_rate, replace(self.console.config, limiter=False, master_eq=not flat))
            for flat in (False, True)
        }

    # ------------------------------------------------------------------ public API

    def settings(self, tracks: Tensor, classes: Sequence[str], mask: Tensor | None = None) -> ConsoleParams:
        """Console settings for a multitrack.

        Args:
            tracks: ``(T, channels, samples)`` or ``(1, T, channels, samples)``, 1 or 2
                channels, at least 0.4 s long, at ``sample_rate``.
            classes: instrument class per track (names of ``INSTRUMENT_CLASSES``).
            mask: ``(T,)`` or ``(1, T)`` bool, True for real tracks (None: all real).

        Returns:
            :class:`~neuromix.core.dsp.console.ConsoleParams` with batch 1, every value inside
            the console's ranges.
        """
        return self.plan(tracks, classes, mask).params

    def mix(self, tracks: Tensor, classes: Sequence[str], mask: Tensor | None = None) -> tuple[Tensor, ConsoleParams]:
        """Decide the settings and render the mix: ``((1, 2, samples) mix, params)``."""
        plan = self.plan(tracks, classes, mask)
        return plan.mix, plan.params

    def plan(self, tracks: Tensor, classes: Sequence[str], mask: Tensor | None = None) -> MixPlan:
        """Settings plus the measurements and decisions behind them (see :class:`MixPlan`)."""
        x4, mask4, classes = self._prepare(tracks, classes, mask)
        with torch.no_grad():
            return self._plan(x4, mask4, classes)

    # ------------------------------------------------------------------ hooks (overridden by the engineer model)

    def _class_rule(self, cls: str) -> dict:
        return self.rules["classes"][cls]

    def _master_rules(self) -> dict:
        return self.rules["master"]

    def _relative_loudness(self, i: int, cls: str, secondary: bool, is_lead: bool, desc: TrackDescriptors) -> float:
        """Loudness ``rel_i`` of track ``i`` in LU (targets are ``anchor + rel_i - rel_lead``)."""
        rule = self._class_rule(cls)
        if secondary and "secondary" in rule:
            return rule["secondary"]["loudness_lu"]
        return rule["loudness_lu"]

    def _pan_range(self, cls: str, secondary: bool) -> tuple[float, float]:
        rule = self._class_rule(cls)
        pan = rule["secondary"]["pan"] if secondary and "secondary" in rule else rule["pan"]
        return pan["abs_min"], pan["abs_max"]

    def _pan_scale(self) -> float:
        """Factor applied to every off-centre position (1 for the plain rules)."""
        return 1.0

    def _class_eq(self, i: int, cls: str, desc: TrackDescriptors) -> dict[str, dict]:
        """EQ moves per slot: ``{slot: {"freq_hz", "gain_db", "q"}}``."""
        return copy.deepcopy(self._class_rule(cls)["eq"])

    def _compression(self, i: int, cls: str, desc: TrackDescriptors) -> dict[str, float]:
        """Compressor settings; ``threshold_rel_db`` is relative to the track's loudness after the fader gain."""
        c = self._class_rule(cls)["compression"]
        return {
            "threshold_rel_db": _lerp(*c["threshold_rel_db"], 0.5),
            "ratio": _glerp(*c["ratio"], 0.5),
            "attack_ms": _glerp(*c["attack_ms"], 0.5),
            "release_ms": _glerp(*c["release_ms"], 0.5),
            "knee_db": c["knee_db"],
        }

    def _send_db(self, i: int, cls: str, desc: TrackDescriptors) -> float:
        return _lerp(*self._class_rule(cls)["reverb_send_db"], 0.5)

    # ------------------------------------------------------------------ the procedure

    def _prepare(self, tracks: Tensor, classes: Sequence[str], mask: Tensor | None) -> tuple[Tensor, Tensor, list[str]]:
        if not isinstance(tracks, Tensor):
            raise ValueError("tracks must be a tensor (T, channels, samples) or (1, T, channels, samples)")
        x = tracks.detach().to(torch.float32)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[0] != 1:
            raise ValueError(f"tracks must be (T, channels, samples) or (1, T, channels, samples), got {tuple(tracks.shape)}")
        num = x.shape[1]
        if x.shape[2] not in (1, 2):
            raise ValueError(f"tracks must be mono or stereo, got {x.shape[2]} channels")
        if num == 0:
            raise ValueError("no tracks")
        if x.shape[-1] < int(0.4 * self.sample_rate) + 1:
            raise ValueError("tracks must be at least 0.4 s long (one BS.1770 gating block)")
        if len(classes) != num:
            raise ValueError(f"{len(classes)} classes for {num} tracks")
        names = []
        for k, c in enumerate(classes):
            key = str(c).strip().lower()
            if key not in INSTRUMENT_CLASSES:
                raise ConfigError(f"classes[{k}]: unknown instrument class {c!r}; valid: {', '.join(INSTRUMENT_CLASSES)}")
            names.append(key)
        if mask is None:
            m = torch.ones(1, num, dtype=torch.bool)
        else:
            m = torch.as_tensor(mask).to(torch.bool).reshape(1, -1)
            if m.shape[1] != num:
                raise ValueError(f"mask has {m.shape[1]} entries for {num} tracks")
        return x, m, names

    def _plan(self, x4: Tensor, mask: Tensor, classes: list[str]) -> MixPlan:
        sr, console = self.sample_rate, self.console
        x = x4[0]
        num = x.shape[0]
        notes: list[str] = []
        desc = describe_tracks(x, sr)
        loud = features.integrated_loudness(x, sr)
        live = [i for i in range(num) if bool(mask[0, i]) and float(loud[i]) > _SILENT_LUFS]
        for i in range(num):
            if not bool(mask[0, i]):
                notes.append(f"track {i}: masked, neutral settings")
            elif i not in live:
                notes.append(f"track {i} ({classes[i]}): silent ({float(loud[i]):.1f} LUFS), neutral settings")
        params = console.default_params(1, num)
        nan = torch.full((num,), float("nan"))
        centres, levels = self._band_levels(x)
        cuts = torch.zeros(num, centres.numel())
        boosts = torch.zeros(num, centres.numel())
        if not live:
            self._set_master(params, None, None, mask, notes, silent=True)
            mix = self.console(x4, mask, params)
            return MixPlan(params, classes, -1, loud, nan, nan.clone(), centres, cuts, boosts, float("nan"), mix, notes)

        # 2. lead element, main/secondary members
        main: dict[str, int] = {}
        for i in sorted(live, key=lambda i: (-float(loud[i]), i)):
            main.setdefault(classes[i], i)
        secondary = {i: main[classes[i]] != i for i in live}
        lead_cls = next((c for c in self.rules["lead_order"] if c in main), None)
        if lead_cls is None:
            lead_cls = max(main, key=lambda c: (self._class_rule(c)["priority"], -main[c]))
        lead = main[lead_cls]
        notes.append(f"lead element: track {lead} ({lead_cls})")

        # 3. loudness targets
        anchor = self._master_rules()["lead_anchor_lufs"]
        rel = {i: self._relative_loudness(i, classes[i], secondary[i], i == lead, desc) for i in live}
        target = nan.clone()
        for i in live:
            target[i] = anchor + rel[i] - rel[lead]
            notes.append(f"track {i} ({classes[i]}{', secondary' if secondary[i] else ''}): "
                         f"loudness {float(loud[i]):.1f} LUFS -> target {float(target[i]):.1f} LUFS")

        # 4. pan, 5. high-pass
        pans = self._pans(live, classes, secondary, lead, desc, notes)
        hp_rule = self.rules["highpass"]
        f_frac = desc.energy_fraction_frequency(hp_rule["energy_fraction"])
        tr = params.track
        for i in live:
            lo, hi = self._class_rule(classes[i])["highpass_hz"]
            tr["eq_hp_cutoff_hz"][0, i] = _clip(hp_rule["safety_factor"] * float(f_frac[i]), lo, hi)
            tr["pan"][0, i] = pans[i]

        # 6./7. class EQ and unmasking EQ
        gains_est = {i: float(target[i] - loud[i]) for i in live}
        cuts, boosts = self._unmasking(levels, centres, live, classes, secondary, target, gains_est, pans)
        for i in live:
            moves = self._merge_eq(self._class_eq(i, classes[i], desc), cuts[i], boosts[i], centres, i, notes)
            for slot, mv in moves.items():
                tr[f"eq_{slot}_cutoff_hz"][0, i] = mv["freq_hz"]
                tr[f"eq_{slot}_gain_db"][0, i] = mv["gain_db"]
                if f"eq_{slot}_q" in tr:
                    tr[f"eq_{slot}_q"][0, i] = mv["q"]

        # 8. compression, 9. reverb send
        thr_rel = {}
        for i in live:
            comp = self._compression(i, classes[i], desc)
            thr_rel[i] = comp["threshold_rel_db"]
            for k in ("ratio", "attack_ms", "release_ms", "knee_db"):
                tr[f"comp_{k}"][0, i] = comp[k]
            tr["reverb_send_db"][0, i] = self._send_db(i, classes[i], desc)

        # 10. gain calibration
        processed, measured = self._calibrate(x4, params, live, target, loud, thr_rel, notes)

        # 11. master
        self._clamp(params)
        output, mix = self._set_master(params, x4, processed, mask, notes)
        processed_lufs = torch.where(torch.isnan(target), torch.full_like(measured, float("nan")), measured)
        return MixPlan(params, classes, lead, loud, target, processed_lufs, centres, cuts, boosts, output, mix, notes)

    def _pans(self, live: list[int], classes: list[str], secondary: dict[int, bool], lead: int,
              desc: TrackDescriptors, notes: list[str]) -> dict[int, float]:
        prule = self.rules["panning"]
        lf_ratio = prule["lf_centre_ratio"]
        pans = {i: 0.0 for i in live}
        off = []
        lf_share = desc.share_below(prule["lf_cutoff_hz"])
        role = {i: secondary[i] and "secondary" in self._class_rule(classes[i]) for i in live}
        for i in live:
            lo, hi = self._pan_range(classes[i], secondary[i])
            share = float(lf_share[i])
            if hi <= 0.0 or i == lead:
                continue
            if share >= lf_ratio:
                notes.append(f"track {i} ({classes[i]}): {100 * share:.0f}% of its power below "
                             f"{prule['lf_cutoff_hz']:.0f} Hz -> centred")
                continue
            off.append(i)
        # ordering: priority (desc), class name, index; members of a class consecutive
        off.sort(key=lambda i: (-self._class_rule(classes[i])["priority"], classes[i], role[i], i))
        members: dict[tuple[str, bool], list[int]] = {}
        for i in off:
            members.setdefault((classes[i], role[i]), []).append(i)
        scale = self._pan_scale()
        for side_index, i in enumerate(off):
            group = members[(classes[i], role[i])]
            k, n = group.index(i), len(group)
            lo, hi = self._pan_range(classes[i], secondary[i])
            if n == 1:
                d = 0.5 * (lo + hi)
            else:
                pairs = math.ceil(n / 2)
                d = hi - (hi - lo) * (k // 2) / max(pairs - 1, 1)
            share = float(lf_share[i])
            d = lo + (d - lo) * (1.0 - share / lf_ratio)
            d = _clip(d * scale, 0.0, 1.0)
            side = -1.0 if side_index % 2 == 0 else 1.0
            pans[i] = side * d
            notes.append(f"track {i} ({classes[i]}): pan {side * d:+.2f}")
        return pans

    def _band_levels(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Centres ``(bands,)`` and levels ``(T, bands)`` dB of the unmasking analysis bands."""
        u = self.rules["unmasking"]
        sr = self.sample_rate
        n_fft = 1 << max(8, int(round(math.log2(0.0929 * sr))))  # ~93 ms: resolves the 31 Hz octave
        pairs = features.band_edges(u["bands"], sr)
        if u["bands"] == "octave":
            centres_all = [lo * math.sqrt(2.0) for lo, _ in pairs]
        else:
            centres_all = [math.sqrt(lo * hi) if lo > 0 else 0.5 * hi for lo, hi in pairs]
        levels = features.band_energies(x, sr, u["bands"], mid_side=False, n_fft=n_fft, hop_length=n_fft // 4)[:, 0]
        keep = [k for k, c in enumerate(centres_all) if u["min_hz"] <= c <= u["max_hz"]]
        return torch.tensor([centres_all[k] for k in keep]), levels[:, keep].to(torch.float32)

    def _winner(self, i: int, j: int, freq: float, classes: list[str], secondary: dict[int, bool],
                target: Tensor) -> int:
        for p in self.rules["masking_priorities"]:
            if p["low_hz"] <= freq < p["high_hz"]:
                if (classes[i], classes[j]) == (p["winner"], p["loser"]):
                    return i
                if (classes[j], classes[i]) == (p["winner"], p["loser"]):
                    return j

        def key(k: int) -> tuple:
            return (self._class_rule(classes[k])["priority"], not secondary[k], float(target[k]), -k)

        return i if key(i) > key(j) else j

    def _unmasking(self, levels: Tensor, centres: Tensor, live: list[int], classes: list[str],
                   secondary: dict[int, bool], target: Tensor, gains: dict[int, float],
                   pans: dict[int, float]) -> tuple[Tensor, Tensor]:
        """Per-track, per-band cuts (<= 0 dB) and presence boosts (>= 0 dB); see the module docstring."""
        u = self.rules["unmasking"]
        num, bands = levels.shape
        cuts = torch.zeros(num, bands)
        boosts = torch.zeros(num, bands)
        if bands == 0:
            return cuts, boosts
        prom = (1.0 + (levels - levels.amax(-1, keepdim=True)) / u["prominence_range_db"]).clamp(0.0, 1.0)
        for a_pos, i in enumerate(live):
            for j in live[a_pos + 1:]:
                if classes[i] == classes[j]:
                    continue  # same-class parts are separated by panning, not by EQ
                spatial = 1.0 - u["spatial_release"] * abs(pans[i] - pans[j]) / 2.0
                for b in range(bands):
                    f = float(centres[b])
                    h = self._winner(i, j, f, classes, secondary, target)
                    lo = j if h == i else i
                    level = float(levels[lo, b] + gains[lo] - levels[h, b] - gains[h])
                    r = _clip(1.0 + level / u["level_range_db"], 0.0, 1.0)
                    o = float(prom[h, b] * prom[lo, b]) * r * spatial
                    if o <= u["threshold"]:
                        continue
                    strength = (o - u["threshold"]) / (1.0 - u["threshold"])
                    cuts[lo, b] = min(float(cuts[lo, b]), -u["max_cut_db"] * strength)
                    if f >= u["presence_min_hz"]:
                        boosts[h, b] = max(float(boosts[h, b]), u["presence_boost_db"] * strength)
        return cuts, boosts

    def _merge_eq(self, moves: dict[str, dict], cut: Tensor, boost: Tensor, centres: Tensor, i: int,
                  notes: list[str]) -> dict[str, dict]:
        u = self.rules["unmasking"]
        low_top = _SLOT_RANGE["low_mid"][0]
        best: dict[str, tuple[float, float]] = {}  # slot -> (gain, band centre)
        for b in range(centres.numel()):
            g, f = float(cut[b]), float(centres[b])
            if g >= 0.0:
                continue
            slot = "low" if f < low_top else "low_mid" if f <= 1000.0 else "high_mid" if f <= 8000.0 else None
            if slot is None:
                continue
            if slot not in best or g < best[slot][0]:
                best[slot] = (g, f)
        for slot, (g, f) in best.items():
            if slot == "low":  # a shelf cuts everything below its corner: use a gentler amount
                g *= u["shelf_cut_scale"]
            freq = f * math.sqrt(2.0) if slot == "low" else f
            freq = _clip(freq, *_SLOT_RANGE[slot])
            old = moves.get(slot)
            if old is not None and old["gain_db"] < g and abs(math.log2(old["freq_hz"] / freq)) <= 1.0:
                g = old["gain_db"]
            moves[slot] = {"freq_hz": freq, "gain_db": g, "q": u["cut_q"]}
            notes.append(f"track {i}: unmasking cut {g:.1f} dB at {freq:.0f} Hz ({slot})")
        if "high_mid" not in best and float(boost.max()) > 0.0:
            b = int(boost.argmax())
            f, g = float(centres[b]), float(boost[b])
            lo, hi = _SLOT_RANGE["high_mid"]
            if lo <= f <= hi:
                old = moves.get("high_mid")
                if old is None or old["gain_db"] == 0.0:
                    moves["high_mid"] = {"freq_hz": f, "gain_db": g, "q": u["cut_q"]}
                    notes.append(f"track {i}: presence boost +{g:.1f} dB at {f:.0f} Hz")
                elif old["gain_db"] > 0.0 and abs(math.log2(old["freq_hz"] / f)) <= 1.0:
                    old["gain_db"] = old["gain_db"] + g
                    notes.append(f"track {i}: presence boost +{g:.1f} dB added at {old['freq_hz']:.0f} Hz")
        return moves

    def _calibrate(self, x4: Tensor, params: ConsoleParams, live: list[int], target: Tensor, loud: Tensor,
                   thr_rel: dict[int, float], notes: list[str]) -> tuple[Tensor, Tensor]:
        """Set gain, makeup and threshold so each processed track hits its target.

        The track chain is homogeneous: the EQ is linear and the compressor works on levels
        relative to its threshold, so raising the gain and the threshold by ``d`` dB (or the
        makeup by ``d``) raises the output by exactly ``d`` dB. After one render the
        correction is therefore applied to the rendered signal by scaling; only when a range
        limit breaks that (a clamped gain or threshold) is the chain rendered again.

        Returns ``(processed (1, T, C, N), measured loudness (T,))`` for the final settings.
        """
        tr = params.track
        g_range, mk_range, th_range = (self.console.track_ranges[k] for k in ("gain_db", "comp_makeup_db", "comp_threshold_db"))
        for i in live:
            total = float(target[i] - loud[i])  # wanted gain before the compressor + makeup
            g = _clip(total, g_range.low, g_range.high)
            tr["gain_db"][0, i] = g
            tr["comp_makeup_db"][0, i] = _clip(total - g, mk_range.low, mk_range.high)
            tr["comp_threshold_db"][0, i] = _clip(float(loud[i]) + g + thr_rel[i], th_range.low, th_range.high)
        processed = self.console.process_tracks(x4, params)
        measured = features.integrated_loudness(processed[0], self.sample_rate)
        for _ in range(3):
            err = {i: float(target[i] - measured[i]) for i in live}
            if max(abs(e) for e in err.values()) < 0.05:
                break
            exact = True
            scale_db = torch.zeros(x4.shape[1])
            for i in live:
                g_old, th_old, mk_old = (float(tr[k][0, i]) for k in ("gain_db", "comp_threshold_db", "comp_makeup_db"))
                g_new = _clip(g_old + err[i], g_range.low, g_range.high)
                th_new = _clip(th_old + g_new - g_old, th_range.low, th_range.high)
                mk_new = _clip(mk_old + err[i] - (g_new - g_old), mk_range.low, mk_range.high)
                tr["gain_db"][0, i], tr["comp_threshold_db"][0, i], tr["comp_makeup_db"][0, i] = g_new, th_new, mk_new
                # what was actually set (float32) is what scales the output
                g_set, th_set, mk_set = (float(tr[k][0, i]) for k in ("gain_db", "comp_threshold_db", "comp_makeup_db"))
                exact &= abs((th_set - th_old) - (g_set - g_old)) < 1e-3
                scale_db[i] = (g_set - g_old) + (mk_set - mk_old)
            if exact:
                processed = processed * torch.pow(10.0, scale_db / 20.0)[None, :, None, None]
                measured = measured + scale_db
                if max(abs(float(target[i] - measured[i])) for i in live) < 0.05:
                    break
                continue
            processed = self.console.process_tracks(x4, params)
            measured = features.integrated_loudness(processed[0], self.sample_rate)
        for i in live:
            notes.append(f"track {i}: gain {float(tr['gain_db'][0, i]):+.1f} dB, makeup "
                         f"{float(tr['comp_makeup_db'][0, i]):.1f} dB, threshold "
                         f"{float(tr['comp_threshold_db'][0, i]):.1f} dBFS, ratio {float(tr['comp_ratio'][0, i]):.2f}")
        return processed, measured

    def _set_master(self, params: ConsoleParams, x4: Tensor | None, processed: Tensor | None, mask: Tensor,
                    notes: list[str], silent: bool = False) -> tuple[float, Tensor | None]:
        """Master settings (clamped into range); returns the output loudness and the mix.

        With ``silent`` (nothing to measure) only the defaults are set and ``(nan, None)``
        is returned.
        """
        m, rule = params.master, self._master_rules()
        bus, lim, rev = rule["bus_compressor"], rule["limiter"], rule["reverb"]
        m["eq_low_gain_db"].fill_(rule["eq"]["low_gain_db"])
        m["eq_mid_gain_db"].fill_(rule["eq"]["mid_gain_db"])
        m["eq_high_gain_db"].fill_(rule["eq"]["high_gain_db"])
        m["width"].fill_(rule["width"])
        for k in ("ratio", "attack_ms", "release_ms", "knee_db"):
            m[f"comp_{k}"].fill_(bus[k])
        m["reverb_decay_s"].fill_(rev["decay_s"])
        m["reverb_damping"].fill_(rev["damping"])
        m["reverb_predelay_ms"].fill_(rev["predelay_ms"])
        m["reverb_return_db"].fill_(rev["return_db"])
        m["limiter_ceiling_db"].fill_(lim["ceiling_db"])
        m["limiter_release_ms"].fill_(lim["release_ms"])
        m["limiter_gain_db"].fill_(0.0)
        if silent or processed is None:
            self._clamp(params)
            return float("nan"), None
        sr, target = self.sample_rate, rule["target_lufs"]
        dry, send = self.console.route(processed, mask, params)
        dry_lufs = float(features.integrated_loudness(dry, sr)[0])
        th = self.console.master_ranges["comp_threshold_db"]
        m["comp_threshold_db"].fill_(_clip(dry_lufs + bus["threshold_rel_db"], th.low, th.high))
        self._clamp(params)
        flat = all(float(m[k][0]) == 0.0 for k in ("eq_low_gain_db", "eq_mid_gain_db", "eq_high_gain_db"))
        pre = self._pre_limiter[flat].process_master(dry, send, params)
        g_range = self.console.master_ranges["limiter_gain_db"]
        gain = _clip(target - float(features.integrated_loudness(pre, sr)[0]), g_range.low, g_range.high)
        limiter_params = {"ceiling_db": m["limiter_ceiling_db"], "release_ms": m["limiter_release_ms"]}
        out_lufs, y = float("nan"), pre
        for step in range(7):
            gain_t = torch.tensor([gain], dtype=torch.float32)
            y = self.console.limiter(pre, {**limiter_params, "gain_db": gain_t})
            out_lufs = float(features.integrated_loudness(y, sr)[0])
            err = target - out_lufs
            new_gain = _clip(gain + err, g_range.low, g_range.high)
            if abs(err) < 0.05 or new_gain == gain or step == 6:
                break
            gain = new_gain
        m["limiter_gain_db"] = gain_t
        notes.append(f"master: bus compressor threshold {float(m['comp_threshold_db'][0]):.1f} dBFS "
                     f"(dry bus {dry_lufs:.1f} LUFS), limiter gain {gain:+.1f} dB -> {out_lufs:.1f} LUFS "
                     f"(target {target:.1f})")
        return out_lufs, y

    def _clamp(self, params: ConsoleParams) -> None:
        """Clamp every setting into the console's range, in place."""
        for k, r in self.console.track_ranges.items():
            params.track[k] = params.track[k].clamp(r.low, r.high)
        for k, r in self.console.master_ranges.items():
            params.master[k] = params.master[k].clamp(r.low, r.high)


def rule_prior(
    tracks: Tensor, classes: Sequence[str | None], sample_rate: int, mixer: RuleMixer | None = None
) -> tuple[Tensor, Tensor]:
    """The rule-based mixer's settings as normalised console parameters (a prior for networks).

    Tracks whose class is ``None`` are classified from their audio first
    (:func:`neuromix.mixing.classify.classify_tracks`). No gradient flows.

    Args:
        tracks: ``(T, channels, samples)`` at ``sample_rate``.
        classes: class per track, ``None`` where unknown.
        sample_rate: Hz.
        mixer: a :class:`RuleMixer` at ``sample_rate`` to reuse (built when omitted).

    Returns:
        ``(track_u (T, P), master_u (M,))`` in [0, 1], in the order of the console's
        ``track_ranges`` / ``master_ranges``.
    """
    mixer = mixer or RuleMixer(sample_rate)
    if any(c is None for c in classes):
        known = {i: c for i, c in enumerate(classes) if c is not None}
        classes = classify_tracks(None, tracks, sample_rate, overrides=known)
    with torch.no_grad():
        params = mixer.settings(tracks, list(classes))
        track_u, master_u = mixer.console.normalise(params)
    return track_u[0], master_u[0]
