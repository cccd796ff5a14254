"""neuromix.synthesis: the generative head -- trained networks played as instruments.

Python API::

    from neuromix.synthesis import Patch, render_score, list_presets
    sound = Patch.load("glass-pluck").render(2.0, note=64, seed=1)   # Rendered: .audio (2, n), .write(path)
    piece = render_score("piece.toml")                                # stereo, safe

Modules: :mod:`~neuromix.synthesis.instrument` (a network as an instrument, bendable
layers, hooks), :mod:`~neuromix.synthesis.excitation` (test signals and oscillators),
:mod:`~neuromix.synthesis.bending`, :mod:`~neuromix.synthesis.control`,
:mod:`~neuromix.synthesis.sonify`, :mod:`~neuromix.synthesis.dream`,
:mod:`~neuromix.synthesis.feedback`, :mod:`~neuromix.synthesis.modulation`
(trajectories, LFOs), :mod:`~neuromix.synthesis.patch`, :mod:`~neuromix.synthesis.render`,
:mod:`~neuromix.synthesis.score` (timelines and MIDI), :mod:`~neuromix.synthesis.sweep`
(control-space maps), :mod:`~neuromix.synthesis.safety`, :mod:`~neuromix.synthesis.analysis`.
Nothing happens at import time.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Instrument",
    "Patch",
    "Rendered",
    "Score",
    "list_presets",
    "load_score",
    "make_safe",
    "midi_to_score",
    "render_midi",
    "render_score",
]

_EXPORTS = {
    "Instrument": "neuromix.synthesis.instrument",
    "Patch": "neuromix.synthesis.patch",
    "list_presets": "neuromix.synthesis.patch",
    "Rendered": "neuromix.synthesis.render",
    "Score": "neuromix.synthesis.score",
    "load_score": "neuromix.synthesis.score",
    "render_score": "neuromix.synthesis.score",
    "midi_to_score": "neuromix.synthesis.score",
    "render_midi": "neuromix.synthesis.score",
    "make_safe": "neuromix.synthesis.safety",
}


def __getattr__(name: str) -> Any:
    """Lazy access to the public API (keeps ``import neuromix.synthesis`` light)."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'neuromix.synthesis' has no attribute {name!r}")
