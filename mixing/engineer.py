"""The "mixing engineer": synthetic target mixes for generated songs.

A target mix for training is what a plausible engineer would do with these stems. Here an
engineer is the rule prior of :class:`~neuromix.mixing.rules.RuleMixer` plus decisions that
depend on the content of each track plus a personal style drawn from a seed. The result is a
set of console settings (:class:`~neuromix.core.dsp.console.ConsoleParams`) and the mix the
console renders from them, so a network can be trained on the settings, on the audio, or both.

How a target is made
--------------------
``engineer_settings(tracks, classes, sample_rate, seed)``:

1. **Style** (:meth:`EngineerStyle.sample`): ``seed`` draws, from one
   ``torch.Generator(seed)``, eleven uniform numbers mapped to

   ==================  ===================  ==================================================
   field               range                meaning
   ==================  ===================  ==================================================
   ``lead_offset_db``  -2 .. +3 dB          vocal-forward (> 0) or band-forward (< 0)
   ``drums_offset_db`` -2.5 .. +2.5 dB      kick/snare/hi-hat/percussion louder or softer
   ``bass_offset_db``  -2 .. +2 dB          more or less bass
   ``brightness_db``   -2 .. +2 dB          high-shelf tilt on every track (half on the master)
   ``warmth_db``       -1.5 .. +2 dB        master low shelf at 120 Hz
   ``width``           0.6 .. 1.2           scale of every pan position (narrow .. wide)
   ``master_width``    0.85 .. 1.25         master mid/side width
   ``compression``     0 .. 1               where in each class's compression range to sit
   ``reverb_db``       -6 .. +4 dB          offset of every reverb send (dry .. wet)
   ``reverb_decay_s``  0.8 .. 2.8 s         reverb decay (log-uniform)
   ``target_lufs``     -16 .. -11 LUFS      master loudness
   ==================  ===================  ==================================================

2. **Rule prior**: everything :class:`~neuromix.mixing.rules.RuleMixer` does (lead element,
   loudness targets, panning, high-pass, class EQ, unmasking EQ, gain calibration, master
   bus compression and limiter gain), with these replacements:

   * loudness: ``rel_i`` = class value + ``lead_offset_db`` for the lead element,
     + ``drums_offset_db`` for drum classes, + ``bass_offset_db`` for bass;
   * pan: every off-centre position times ``width`` (clipped to 1); centred classes stay 0;
   * compression (content): ``p = clip(compression + 0.06 * (crest_i - crest_typical), 0, 1)``
     with ``crest_i`` the track's crest factor (dB) and ``crest_typical`` the class's; the
     threshold (relative to the track's loudness after the fader gain) goes from the gentle end
     (``p = 0``) to the heavy end (``p = 1``) of ``threshold_rel_db``, the ratio
     geometrically from its low to its high end, the release from long to short; attack at
     the geometric middle. Peakier tracks are compressed harder than smooth ones;
   * brightness (content): high-shelf gain = class move (0 if none)
     ``+ clip(1.5 * log2(centroid_typical / centroid_i), -2, 3)`` ``+ brightness_db``: dull
     tracks are brightened, overly bright ones tamed;
   * reverb send (content): middle of the class range
     ``+ clip(-3 * log2(max(onset_rate_i, 0.25) / 2), -6, 4)`` ``+ reverb_db``, then clamped to
     the class range widened by 6 dB on each side: sparse, sustained parts get more reverb
     than busy ones (2 onsets/s is neutral);
   * master: bus compressor ratio ``1.5 * 2**compression`` (1.5:1 .. 3:1) and threshold
     ``8 - 4 * compression`` dB above the dry bus loudness; low shelf ``warmth_db`` at
     120 Hz, high shelf ``brightness_db / 2`` at 8 kHz, ``master_width``, ``reverb_decay_s``,
     limiter gain iterated to ``target_lufs``.

3. Every value is clamped into the console's ranges.

The settings are deterministic in ``(tracks, classes, seed)``; ``engineer_mix`` renders them
with :class:`~neuromix.core.dsp.console.Console`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from neuromix.core.dsp.console import ConsoleParams
from neuromix.mixing.classify import TrackDescriptors
from neuromix.mixing.rules import MixPlan, RuleMixer

DRUM_CLASSES = frozenset({"kick", "snare", "hihat", "percussion"})

_STYLE_RANGES: dict[str, tuple[float, float]] = {
    "lead_offset_db": (-2.0, 3.0),
    "drums_offset_db": (-2.5, 2.5),
    "bass_offset_db": (-2.0, 2.0),
    "brightness_db": (-2.0, 2.0),
    "warmth_db": (-1.5, 2.0),
    "width": (0.6, 1.2),
    "master_width": (0.85, 1.25),
    "compression": (0.0, 1.0),
    "reverb_db": (-6.0, 4.0),
    "reverb_decay_s": (0.8, 2.8),
    "target_lufs": (-16.0, -11.0),
}
_LOG_FIELDS = frozenset({"reverb_decay_s"})


@dataclass(frozen=True)
class EngineerStyle:
    """One engineer's taste (see the module docstring for each field's range and meaning).

    The neutral style (:meth:`neutral`) keeps the rule table's balance, panning and master
    loudness; it still makes the content-dependent decisions, and its master bus compressor
    follows the style formula (2.1:1, 6 dB above the dry bus loudness at ``compression = 0.5``).
    """

    lead_offset_db: float = 0.0
    drums_offset_db: float = 0.0
    bass_offset_db: float = 0.0
    brightness_db: float = 0.0
    warmth_db: float = 0.0
    width: float = 1.0
    master_width: float = 1.0
    compression: float = 0.5
    reverb_db: float = 0.0
    reverb_decay_s: float = 1.6
    target_lufs: float = -14.0

    @classmethod
    def sample(cls, seed: int) -> EngineerStyle:
        """Draw a style from ``seed`` (uniform in each range; log-uniform for the decay)."""
        g = torch.Generator().manual_seed(int(seed))
        u = torch.rand(len(_STYLE_RANGES), generator=g, dtype=torch.float64).tolist()
        values = {}
        for (name, (lo, hi)), t in zip(_STYLE_RANGES.items(), u):
            values[name] = lo * (hi / lo) ** t if name in _LOG_FIELDS else lo + (hi - lo) * t
        return cls(**{k: round(v, 4) for k, v in values.items()})

    @classmethod
    def neutral(cls) -> EngineerStyle:
        """The style with every offset at zero (the rule table's own balance)."""
        return cls()

    def describe(self) -> str:
        """Short human-readable summary, e.g. ``"vocal-forward, bright, wide, heavy compression, wet"``."""
        parts = [
            "vocal-forward" if self.lead_offset_db > 1.0 else "band-forward" if self.lead_offset_db < -0.5 else "balanced",
            "bright" if self.brightness_db > 0.7 else "dark" if self.brightness_db < -0.7 else "neutral tone",
            "warm" if self.warmth_db > 0.8 else "lean" if self.warmth_db < -0.5 else "neutral lows",
            "wide" if self.width > 1.0 else "narrow" if self.width < 0.8 else "medium width",
            "heavy compression" if self.compression > 0.66 else "light compression" if self.compression < 0.33 else "moderate compression",
            "wet" if self.reverb_db > 1.0 else "dry" if self.reverb_db < -2.5 else "medium reverb",
        ]
        return ", ".join(parts)

    def to_dict(self) -> dict[str, float]:
        """The fields as a JSON-serialisable dict."""
        return asdict(self)


def _clip(v: float, lo: float, hi: float) -> float:
    return min(max(v, lo), hi)


class EngineerMixer(RuleMixer):
    """:class:`RuleMixer` with content-dependent decisions and an :class:`EngineerStyle`.

    Args:
        sample_rate: Hz.
        style: the engineer's taste (default: :meth:`EngineerStyle.neutral`).
        rules: rule table (mapping or path; default the shipped ``rules.json``).
    """

    def __init__(self, sample_rate: int, style: EngineerStyle | None = None,
                 rules: Mapping | str | Path | None = None) -> None:
        super().__init__(sample_rate, rules)
        self.style = style or EngineerStyle.neutral()

    def _relative_loudness(self, i: int, cls: str, secondary: bool, is_lead: bool, desc: TrackDescriptors) -> float:
        rel = super()._relative_loudness(i, cls, secondary, is_lead, desc)
        if is_lead:
            rel += self.style.lead_offset_db
        if cls in DRUM_CLASSES:
            rel += self.style.drums_offset_db
        if cls == "bass":
            rel += self.style.bass_offset_db
        return rel

    def _pan_scale(self) -> float:
        return self.style.width

    def _class_eq(self, i: int, cls: str, desc: TrackDescriptors) -> dict[str, dict]:
        moves = super()._class_eq(i, cls, desc)
        typical = self._class_rule(cls)["centroid_typical_hz"]
        centroid = max(float(desc.centroid_hz[i]), 20.0)
        tilt = _clip(1.5 * math.log2(typical / centroid), -2.0, 3.0) + self.style.brightness_db
        high = moves.get("high", {"freq_hz": 8000.0, "gain_db": 0.0, "q": 1.0})
        high["gain_db"] = _clip(high["gain_db"] + tilt, -12.0, 12.0)
        moves["high"] = high
        return moves

    def compression_amount(self, i: int, cls: str, desc: TrackDescriptors) -> float:
        """Position ``p`` in [0, 1] inside the class's compression ranges (0 gentle, 1 heavy)."""
        typical = self._class_rule(cls)["compression"]["crest_typical_db"]
        return _clip(self.style.compression + 0.06 * (float(desc.crest_db[i]) - typical), 0.0, 1.0)

    def _compression(self, i: int, cls: str, desc: TrackDescriptors) -> dict[str, float]:
        c = self._class_rule(cls)["compression"]
        p = self.compression_amount(i, cls, desc)
        heavy, gentle = c["threshold_rel_db"]
        r_lo, r_hi = c["ratio"]
        a_lo, a_hi = c["attack_ms"]
        rel_lo, rel_hi = c["release_ms"]
        return {
            "threshold_rel_db": gentle + (heavy - gentle) * p,
            "ratio": r_lo * (r_hi / r_lo) ** p,
            "attack_ms": math.sqrt(a_lo * a_hi),
            "release_ms": rel_hi * (rel_lo / rel_hi) ** p,
            "knee_db": c["knee_db"],
        }

    def _send_db(self, i: int, cls: str, desc: TrackDescriptors) -> float:
        lo, hi = self._class_rule(cls)["reverb_send_db"]
        rate = max(float(desc.onset_rate_hz[i]), 0.25)
        send = 0.5 * (lo + hi) + _clip(-3.0 * math.log2(rate / 2.0), -6.0, 4.0) + self.style.reverb_db
        return _clip(send, max(lo - 6.0, -60.0), min(hi + 6.0, 0.0))

    def _master_rules(self) -> dict:
        m = copy.deepcopy(self.rules["master"])
        s = self.style
        m["target_lufs"] = s.target_lufs
        m["bus_compressor"]["ratio"] = 1.5 * 2.0 ** s.compression
        m["bus_compressor"]["threshold_rel_db"] = 8.0 - 4.0 * s.compression
        m["eq"]["low_gain_db"] = s.warmth_db
        m["eq"]["high_gain_db"] = 0.5 * s.brightness_db
        m["width"] = s.master_width
        m["reverb"]["decay_s"] = s.reverb_decay_s
        return m

    def _set_master(self, params: ConsoleParams, x4, processed, mask, notes, silent: bool = False):
        params.master["eq_low_cutoff_hz"].fill_(120.0)
        params.master["eq_high_cutoff_hz"].fill_(8000.0)
        return super()._set_master(params, x4, processed, mask, notes, silent)


def engineer_plan(tracks: Tensor, classes: Sequence[str], sample_rate: int, seed: int,
                  mask: Tensor | None = None) -> MixPlan:
    """The engineer's full :class:`~neuromix.mixing.rules.MixPlan` (settings, measurements, mix).

    A note at the start of ``notes`` names the style.
    """
    style = EngineerStyle.sample(seed)
    plan = EngineerMixer(sample_rate, style).plan(tracks, classes, mask)
    plan.notes.insert(0, f"engineer style (seed {seed}): {style.describe()}")
    return plan


def engineer_settings(tracks: Tensor, classes: Sequence[str], sample_rate: int, seed: int,
                      mask: Tensor | None = None) -> ConsoleParams:
    """Target console settings of the seeded engineer for a multitrack.

    Args:
        tracks: ``(T, channels, samples)`` or ``(1, T, channels, samples)``, 1 or 2 channels,
            at least 0.4 s.
        classes: instrument class per track.
        sample_rate: Hz.
        seed: the engineer (style) seed.
        mask: optional ``(T,)`` / ``(1, T)`` bool mask of real tracks.

    Returns:
        ConsoleParams with batch 1, inside the console's ranges; deterministic in
        ``(tracks, classes, seed)``.
    """
    return engineer_plan(tracks, classes, sample_rate, seed, mask).params


def engineer_mix(tracks: Tensor, classes: Sequence[str], sample_rate: int, seed: int,
                 mask: Tensor | None = None) -> tuple[Tensor, ConsoleParams]:
    """Target mix and settings: ``((1, 2, samples) mix, params)``, rendered by the Console."""
    plan = engineer_plan(tracks, classes, sample_rate, seed, mask)
    return plan.mix, plan.params
