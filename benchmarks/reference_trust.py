"""How much of each reference feature is mixing style, and how much is the song itself.

Renders N procedural songs, each mixed by S seeded engineer styles
(``neuromix.mixing.engineer``), measures ``reference_features`` of every mix, and splits each
feature's variance two ways: across songs (content), across styles, and the interaction.
The share of style, ``var_style / (var_style + var_content + var_interaction)``, is how far a
mix should move toward another song's value of that feature: the source of
``neuromix.mixing.goals.REFERENCE_TRUST``.

Run: ``python benchmarks/reference_trust.py``.
"""

from __future__ import annotations

import torch

from neuromix.mixing.engineer import engineer_mix
from neuromix.mixing.generator import generate_song
from neuromix.mixing.goals import reference_features

SR = 22050
STYLES, SONGS = 6, 10


def main() -> None:
    torch.set_num_threads(1)
    features: dict[str, torch.Tensor] = {}
    for i in range(SONGS):
        song = generate_song(43_000_000 + i, seconds=8, sample_rate=SR)
        tracks = song.as_multitrack()
        for j in range(STYLES):
            mix = engineer_mix(tracks, song.classes, SR, 44_000_000 + j)[0]
            for name, value in reference_features(mix, SR).items():
                features.setdefault(name, torch.zeros(SONGS, STYLES))[i, j] = float(value[0])
    for name, table in features.items():  # two-way layout: song (content) and style effects
        grand = table.mean()
        song_effect = table.mean(1) - grand
        style_effect = table.mean(0) - grand
        interaction = table - grand - song_effect[:, None] - style_effect[None]
        vc, vs, vr = float(song_effect.var()), float(style_effect.var()), float(interaction.var())
        share = vs / (vs + vc + vr)
        print(f"{name:11s} content var {vc:7.3f} style var {vs:7.3f} interaction {vr:7.3f} -> style share {share:.2f}")


if __name__ == "__main__":
    main()
