"""The app's memory bound: at most AppLimits.max_live_songs decoded songs across sessions."""

from __future__ import annotations

import pytest
import torch

from neuromix.core.errors import ConfigError
from neuromix.ui.mix_tab import LoadedSong, MixTab, MixState
from neuromix.ui.state import AppContext, AppLimits, Session


def _song(tag: str) -> LoadedSong:
    return LoadedSong((tag,), torch.zeros(1, 2, 100), 22050, ["a"], ["keys"], [], tag)


def test_least_recently_used_songs_are_released(tmp_path):
    ctx = AppContext(AppLimits(max_live_songs=2), tmp_path)
    handlers = MixTab(ctx)
    sessions = [Session(tmp_path / str(i)) for i in range(3)]
    states = []
    for i, session in enumerate(sessions):
        state = session.data.setdefault("mix", MixState())
        state.use(_song(f"s{i}"))
        ctx.hold(state)
        states.append(state)
        if i == 1:
            handlers._song(sessions[0])  # session 0 used again: session 1 is now the oldest
    assert states[1].song is None and states[1].released
    assert states[0].song is not None and states[2].song is not None
    with pytest.raises(ConfigError, match="released to make room"):
        handlers._song(sessions[1])
    states[1].use(_song("again"))  # loading again brings it back (and releases another)
    ctx.hold(states[1])
    assert handlers._song(sessions[1]).key == ("again",)
    assert sum(s.song is not None for s in states) == 2
    with pytest.raises(ValueError):
        AppLimits(max_live_songs=0)
