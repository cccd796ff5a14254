"""The demo job behind ``make run`` / ``neuromix demo``: a bundled song, mixed, written to a folder."""

from __future__ import annotations

import json
from pathlib import Path

from neuromix.core.io import write_audio, write_text_atomic
from neuromix.mixing.generator import DEMO_SONGS, demo_song, write_song
from neuromix.mixing.inference import mix_multitrack


def render_demo(song: str | None, output: str | Path, *, sample_rate: int = 44100, seconds: float | None = None) -> dict:
    """Generate a demo song, mix it with the rule-based mixer and write everything to ``output``.

    The mix is :func:`neuromix.mixing.inference.mix_multitrack` with the rule-based mixer (the
    same path as ``neuromix mix --model rules``). Writes ``stems/`` (one WAV per stem +
    metadata.json), ``mix.wav`` (24-bit, true peak <= -1 dBFS) and ``settings.json`` (the
    console settings, editable and re-loadable with ``neuromix mix --settings``).

    Returns:
        A JSON-serialisable summary (song, tracks, files, loudness).
    """
    from neuromix.core.features import integrated_loudness

    name = song or next(iter(DEMO_SONGS))
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    s = demo_song(name, sample_rate=sample_rate, seconds=seconds)
    write_song(s, out / "stems", overwrite=True)
    outcome = mix_multitrack(s.as_multitrack(), sample_rate, model="rules", classes=s.classes, names=s.names)
    write_audio(out / "mix.wav", outcome.mix, sample_rate, overwrite=True)
    write_text_atomic(out / "settings.json", json.dumps(outcome.settings, indent=2), overwrite=True)
    return {
        "song": name,
        "tracks": dict(zip(s.names, s.classes)),
        "mix": str(out / "mix.wav"),
        "settings": str(out / "settings.json"),
        "stems": str(out / "stems"),
        "loudness_lufs": round(float(integrated_loudness(outcome.mix[None], sample_rate)[0]), 2),
    }
