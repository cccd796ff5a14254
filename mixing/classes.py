"""Instrument classes shared by the generator, the rule table, the classifier and the networks."""

from __future__ import annotations

INSTRUMENT_CLASSES: tuple[str, ...] = (
    "kick",
    "snare",
    "hihat",  # hi-hats and cymbals
    "percussion",  # toms, shakers, claps, other percussion
    "bass",
    "keys",  # piano-like, electric piano, mallets
    "pad",
    "lead",  # lead synth
    "vocal",  # voice-like, lead and backing
    "guitar",
    "strings",  # strings and brass-like sustained ensembles
    "other",  # anything unlabelled that cannot be inferred
)
"""Ordered class names; a class's index is its integer label."""

CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(INSTRUMENT_CLASSES)}


def class_index(name: str) -> int:
    """Return the integer label of a class name (case-insensitive); raises KeyError listing valid names."""
    key = name.strip().lower()
    if key not in CLASS_INDEX:
        raise KeyError(f"unknown instrument class {name!r}; valid: {', '.join(INSTRUMENT_CLASSES)}")
    return CLASS_INDEX[key]
