"""A trained mixing network seen as an instrument.

:class:`Instrument` wraps any network loaded through the checkpoint loader
(:func:`neuromix.mixing.shipped.load_network`: a shipped family name such as
``"blackbox"`` / ``"console"``, or a checkpoint path) and exposes its two paths:

* the **conditioning path** -- the :class:`~neuromix.mixing.models.TrackAnalyser`
  (per-track encoder, class embedding, set transformer) and, for the console network,
  its settings heads. It turns the multitrack (the excitation slots plus silent
  *context* slots) into a static state: FiLM conditioning vectors (black box) or
  normalised console settings (console network);
* the **audio path** -- the black box's FiLM-conditioned TCN that predicts
  time-frequency gains over STFT frames, or the console network's differentiable
  console rendering the predicted settings.

A state can vary over time. Conditioning-path modulation (a bend of an analyser
layer with an LFO, a class morph) is evaluated at *keyframes* (at most
:data:`MAX_KEYFRAMES`, :data:`MAX_CONSOLE_KEYFRAMES` for the console network; the
render picks about four per cycle of the fastest LFO, 2 to 8 per second); the black box
interpolates the conditioning between them at every STFT frame (its FiLM layers are fed
a per-frame conditioning by forward hooks, which also carry the control axes), and the
console network renders each keyframe's settings and crossfades the renders linearly
(click-free). Bends of audio-path layers see every frame's time.

Layer names are the network's module names (``"tcn.blocks.3.conv"``,
``"analyser.encoder.blocks.1"``); :meth:`Instrument.layers` lists the bendable ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from neuromix.core.blocks import FiLM, _TCNBlock
from neuromix.core.checkpoint import CheckpointInfo
from neuromix.core.errors import ConfigError
from neuromix.mixing.models import BlackBoxNet, ConsoleNet
from neuromix.synthesis.bending import Bend, Reinit, apply_bend, reinit_network
from neuromix.synthesis.modulation import Modulation

__all__ = ["Clock", "Instrument", "LayerInfo", "State", "available_networks", "MAX_KEYFRAMES"]

MAX_KEYFRAMES = 24
"""Most conditioning keyframes per render (black box)."""
MAX_CONSOLE_KEYFRAMES = 6
"""Most keyframes (renders crossfaded) per console-network render."""

_CHANNEL_FIRST = (nn.Conv1d, FiLM, _TCNBlock, nn.PReLU)
_CHANNEL_LAST = (nn.Linear, nn.LayerNorm, nn.Embedding, nn.TransformerEncoderLayer)
_ACTIVATIONS = (nn.GELU, nn.ReLU, nn.Tanh, nn.SiLU, nn.Sigmoid)


def available_networks() -> dict[str, Path]:
    """Shipped network family name -> checkpoint path (empty until checkpoints ship)."""
    from neuromix.mixing.shipped import shipped_checkpoints

    return shipped_checkpoints()


@dataclass(frozen=True)
class LayerInfo:
    """A bendable layer.

    Attributes:
        name: module name (``"tcn.blocks.3.conv"``).
        kind: module class name.
        path: ``"audio"`` (black-box TCN: a time axis of STFT frames) or ``"conditioning"``.
        channels: size of the channel axis of its output.
        channel_axis: index of the channel axis in its output (1 or -1).
    """

    name: str
    kind: str
    path: str
    channels: int
    channel_axis: int


@dataclass
class Clock:
    """Times the hooks read: the frame grid of the current audio-path call, or the keyframe."""

    offset_s: float = 0.0
    frame_period_s: float = 0.0
    keyframe_s: float = 0.0


@dataclass
class State:
    """The conditioning of one render, at keyframes.

    Attributes:
        times: ``(K,)`` float64 keyframe times in seconds.
        cond: black box: ``(K, S, D)`` FiLM conditioning of the ``S`` sounding slots.
        track_u: console network: ``(K, T, P)`` normalised track settings (all slots).
        master_u: console network: ``(K, M)`` normalised master settings.
        axes: black box: per-frame control axes ``(direction (S, D), amount)`` added to
            the interpolated conditioning.
    """

    times: Tensor
    cond: Tensor | None = None
    track_u: Tensor | None = None
    master_u: Tensor | None = None
    axes: list[tuple[Tensor, Modulation]] = field(default_factory=list)

    @property
    def keyframes(self) -> int:
        return int(self.times.shape[0])


@dataclass(frozen=True)
class ClassMorph:
    """Move the class embedding of the sounding slots from one class to another (amount 0..1+)."""

    source: int
    target: int
    amount: Modulation
    slots: tuple[int, ...] = ()


def _hat_weights(key_times: Tensor, times: Tensor) -> Tensor:
    """Piecewise-linear interpolation weights ``(K, T)`` of keyframes at ``times`` (held at the ends)."""
    k = key_times.shape[0]
    if k == 1:
        return torch.ones(1, times.shape[0], dtype=torch.float64)
    t = times.to(torch.float64).clamp(float(key_times[0]), float(key_times[-1]))
    idx = torch.searchsorted(key_times, t.contiguous(), right=True).clamp(1, k - 1)
    t0, t1 = key_times[idx - 1], key_times[idx]
    u = ((t - t0) / (t1 - t0).clamp_min(1e-12)).clamp(0.0, 1.0)
    weights = torch.zeros(k, times.shape[0], dtype=torch.float64)
    cols = torch.arange(times.shape[0])
    weights[idx - 1, cols] += 1.0 - u
    weights[idx, cols] += u
    return weights


class Instrument:
    """A network as an instrument: conditioning and audio paths, bendable layers, hooks.

    Args:
        network: a :class:`~neuromix.mixing.models.BlackBoxNet` or
            :class:`~neuromix.mixing.models.ConsoleNet` (not modified; put in eval mode).
        source: how it was named (shipped family name or path), for patches and messages.
        info: its checkpoint header, when loaded from a file.

    Raises:
        ConfigError: a network of another type.
    """

    def __init__(self, network: nn.Module, *, source: str = "<memory>", info: CheckpointInfo | None = None) -> None:
        if isinstance(network, BlackBoxNet):
            self.family = "blackbox"
        elif isinstance(network, ConsoleNet):
            self.family = "console"
        else:
            raise ConfigError(
                f"{source}: a {type(network).__name__} cannot be played; the synthesis head plays "
                "BlackBoxNet and ConsoleNet checkpoints"
            )
        self.network = network.eval()
        self.source = source
        self.info = info
        self._modules = dict(network.named_modules())
        self._layers = self._find_layers()
        self._variants: dict[str, Instrument] = {}
        self.cache: dict[Any, Any] = {}
        """Per-instrument memo (dream results, gradient axes); holds no global state."""

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, name_or_path: str | Path) -> Instrument:
        """Load a shipped network by family name (``"blackbox"``, ``"console"``) or a checkpoint path.

        Raises:
            ConfigError: an unknown name (the message lists the shipped networks) or a
                missing file. CheckpointError: an invalid checkpoint (never unpickled).
        """
        from neuromix.mixing.shipped import FAMILIES, load_network

        name = str(name_or_path)
        is_family = isinstance(name_or_path, str) and name in FAMILIES
        if not is_family and not Path(name).is_file():
            shipped = sorted(available_networks())
            listing = ", ".join(shipped) if shipped else f"none shipped yet (families: {', '.join(FAMILIES)})"
            raise ConfigError(
                f"unknown network {name!r}: not a shipped network name nor a checkpoint file; "
                f"available shipped networks: {listing}"
            )
        if is_family and name not in available_networks():
            raise ConfigError(
                f"network {name!r}: no shipped {name} checkpoint is installed (available: "
                f"{', '.join(sorted(available_networks())) or 'none yet'}); pass a checkpoint path instead"
            )
        network, info = load_network(name_or_path)
        return cls(network, source=name, info=info)

    @property
    def content_hash(self) -> str | None:
        """First 8 hex digits of the checkpoint's SHA-256 (None for an in-memory network)."""
        if self.info is not None:
            return self.info.short_hash
        return None

    # ------------------------------------------------------------------ layers

    def _channel_axis(self, name: str, module: nn.Module) -> int | None:
        if isinstance(module, _CHANNEL_FIRST):
            return 1
        if isinstance(module, _CHANNEL_LAST):
            return -1
        parent_name, _, child = name.rpartition(".")
        parent = self._modules.get(parent_name)
        if isinstance(module, _ACTIVATIONS) and isinstance(parent, nn.Sequential):
            index = int(child)
            for prev in reversed(list(parent)[:index]):
                if isinstance(prev, _CHANNEL_FIRST):
                    return 1
                if isinstance(prev, _CHANNEL_LAST):
                    return -1
            return None
        if isinstance(module, nn.Sequential) and len(module) > 0:
            last = list(module)[-1]
            return self._channel_axis(f"{name}.{len(module) - 1}", last)
        return None

    def _channels(self, module: nn.Module, name: str) -> int | None:
        if isinstance(module, nn.Conv1d):
            return module.out_channels
        if isinstance(module, nn.Linear):
            return module.out_features
        if isinstance(module, FiLM):
            return module.channels
        if isinstance(module, _TCNBlock):
            return module.conv.out_channels
        if isinstance(module, nn.PReLU):
            return module.num_parameters
        if isinstance(module, nn.LayerNorm):
            return int(module.normalized_shape[0])
        if isinstance(module, nn.Embedding):
            return module.embedding_dim
        if isinstance(module, nn.TransformerEncoderLayer):
            return module.linear2.out_features
        if isinstance(module, nn.Sequential) and len(module) > 0:
            for i in range(len(module) - 1, -1, -1):
                found = self._channels(module[i], f"{name}.{i}")
                if found is not None:
                    return found
            return None
        if isinstance(module, _ACTIVATIONS):
            parent_name, _, child = name.rpartition(".")
            parent = self._modules.get(parent_name)
            if isinstance(parent, nn.Sequential):
                for i in range(int(child) - 1, -1, -1):
                    found = self._channels(parent[i], f"{parent_name}.{i}")
                    if found is not None:
                        return found
        return None

    def _find_layers(self) -> dict[str, LayerInfo]:
        layers: dict[str, LayerInfo] = {}
        for name, module in self._modules.items():
            if not name or isinstance(module, (nn.Dropout, nn.Identity, nn.ModuleList, nn.MultiheadAttention)):
                continue
            axis = self._channel_axis(name, module)
            channels = self._channels(module, name)
            if axis is None or channels is None:
                continue
            path = "audio" if self.family == "blackbox" and name.startswith("tcn.") else "conditioning"
            layers[name] = LayerInfo(name, type(module).__name__, path, int(channels), axis)
        return layers

    def layers(self, path: str | None = None) -> list[LayerInfo]:
        """The bendable layers (optionally only the ``"audio"`` or ``"conditioning"`` path)."""
        return [info for info in self._layers.values() if path is None or info.path == path]

    def layer(self, name: str) -> LayerInfo:
        """Look a layer up by name.

        Raises:
            ConfigError: unknown layer (the message lists some bendable ones).
        """
        if name not in self._layers:
            audio = [i.name for i in self.layers("audio")][:12]
            cond = [i.name for i in self.layers("conditioning")][:6]
            raise ConfigError(
                f"layer {name!r} is not a bendable layer of this {self.family} network; e.g. "
                f"{', '.join(audio + cond)} (see `neuromix synth layers`)"
            )
        return self._layers[name]

    def module(self, name: str) -> nn.Module:
        """The module of a bendable layer (ConfigError for an unknown name)."""
        self.layer(name)
        return self._modules[name]

    # ------------------------------------------------------------------ variants

    def variant(self, reinits: Sequence[Reinit]) -> Instrument:
        """This instrument with some blocks re-initialised (cached per specification)."""
        if not reinits:
            return self
        import json

        key = json.dumps([r.to_json() for r in reinits], sort_keys=True)
        if key not in self._variants:
            for reinit in reinits:
                for name in reinit.layers:
                    if name not in self._modules or not name:
                        self.layer(name)  # raises with the list of layers
            clone = reinit_network(self.network, list(reinits), self._modules)
            self._variants[key] = Instrument(clone, source=self.source, info=self.info)
        return self._variants[key]

    # ------------------------------------------------------------------ hooks

    @contextmanager
    def hooks(
        self,
        bends: Sequence[Bend] = (),
        clock: Clock | None = None,
        *,
        class_morph: ClassMorph | None = None,
        captures: dict[str, list[Tensor]] | None = None,
        film_cond: Callable[[], Tensor | None] | None = None,
    ) -> Iterator[Clock]:
        """Register the forward hooks of a render; removed on exit.

        Args:
            bends: bends to apply (validated against :meth:`layers`).
            clock: the times hooks read (a new one if None); yielded.
            class_morph: class-embedding morph of the sounding slots (conditioning path).
            captures: layer name -> list that receives each output (detached), for sonification.
            film_cond: returns a per-frame conditioning ``(S, T, D)`` for the FiLM layers (or None).
        """
        clock = clock or Clock()
        handles = []
        calls = [0] * len(bends)
        try:
            if film_cond is not None:
                for name, module in self._modules.items():
                    if isinstance(module, FiLM) and name.startswith("tcn."):
                        handles.append(module.register_forward_hook(self._film_hook(film_cond)))
            if class_morph is not None:
                embedding = self._modules.get("analyser.class_embedding")
                if embedding is None:
                    raise ConfigError("this network has no class embedding to morph")
                handles.append(embedding.register_forward_hook(self._class_hook(class_morph, clock)))
            for index, bend in enumerate(bends):
                info = self.layer(bend.layer)
                module = self._modules[bend.layer]
                handles.append(module.register_forward_hook(self._bend_hook(bend, info, clock, calls, index)))
            for name in captures or {}:
                self.layer(name)
                store = captures[name]  # type: ignore[index]
                handles.append(
                    self._modules[name].register_forward_hook(
                        lambda _m, _i, out, store=store: store.append(out.detach()) if isinstance(out, Tensor) else None
                    )
                )
            yield clock
        finally:
            for handle in handles:
                handle.remove()

    @staticmethod
    def _bend_hook(bend: Bend, info: LayerInfo, clock: Clock, calls: list[int], index: int) -> Callable:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
            if not isinstance(output, Tensor):
                return None
            if info.path == "audio" and output.ndim == 3:
                frames = output.shape[-1]
                times = clock.offset_s + torch.arange(frames, dtype=torch.float64) * clock.frame_period_s
                amount = bend.amount.at(times).to(output.dtype).view(1, 1, frames)
                t = times.view(1, 1, frames)
            else:
                t = torch.tensor(clock.keyframe_s, dtype=torch.float64)
                amount = bend.amount.at(t.view(1)).to(output.dtype).reshape(())
            call = calls[index]
            calls[index] += 1
            return apply_bend(bend, output, info.channel_axis, amount, t, call)

        return hook

    @staticmethod
    def _class_hook(morph: ClassMorph, clock: Clock) -> Callable:
        def hook(module: nn.Embedding, _inputs: Any, output: Tensor) -> Tensor:
            a = float(morph.amount.at(torch.tensor([clock.keyframe_s], dtype=torch.float64))[0])
            weight = module.weight
            mixed = (1.0 - a) * weight[morph.source] + a * weight[morph.target]
            out = output.clone()
            out[:, list(morph.slots)] = mixed.to(out.dtype)
            return out

        return hook

    @staticmethod
    def _film_hook(film_cond: Callable[[], Tensor | None]) -> Callable:
        def hook(module: FiLM, inputs: Any, output: Tensor) -> Tensor:
            cond = film_cond()
            if cond is None:
                return output
            x = inputs[0]
            if cond.shape[1] != x.shape[-1]:
                raise RuntimeError(f"per-frame conditioning has {cond.shape[1]} frames, the layer {x.shape[-1]}")
            gamma, beta = module.params(cond.to(x.dtype))  # (S, T, C)
            return x * gamma.transpose(1, 2) + beta.transpose(1, 2)

        return hook

    # ------------------------------------------------------------------ geometry

    def frame_geometry(self, sample_rate: int) -> tuple[int, int]:
        """``(n_fft, hop)`` of the audio path at ``sample_rate`` (console network: ``(0, 0)``); memoised."""
        if self.family != "blackbox":
            return 0, 0
        key = ("frame_geometry", int(sample_rate))
        if key not in self.cache:
            self.cache[key] = tuple(self.network.stft_geometry(sample_rate))
        return self.cache[key]

    def frame_times(self, samples: int, sample_rate: int, offset_s: float = 0.0) -> Tensor:
        """Centre times (s, float64) of the audio path's frames for a signal of ``samples``."""
        _, hop = self.frame_geometry(sample_rate)
        if hop == 0:
            return torch.zeros(1, dtype=torch.float64)
        frames = samples // hop + 1
        return offset_s + torch.arange(frames, dtype=torch.float64) * (hop / sample_rate)

    # ------------------------------------------------------------------ conditioning path

    def condition(
        self,
        tracks: Tensor,
        classes: Tensor,
        sounding: Sequence[int],
        sample_rate: int,
        key_times: Tensor,
        *,
        bends: Sequence[Bend] = (),
        class_morph: ClassMorph | None = None,
        captures: dict[str, list[Tensor]] | None = None,
    ) -> State:
        """Run the conditioning path at every keyframe.

        Args:
            tracks: ``(1, T, 1, samples)`` mono slots (sounding and context).
            classes: ``(1, T)`` long instrument-class labels.
            sounding: indices of the sounding slots (the others are context only).
            sample_rate: Hz.
            key_times: ``(K,)`` float64 keyframe times (s).
            bends: bends (only conditioning-path layers act here).
            class_morph: optional class-embedding morph.
            captures: sonification captures (see :meth:`hooks`).

        Returns:
            A :class:`State` (differentiable w.r.t. ``tracks`` when grad is enabled).
        """
        cond_bends = [b for b in bends if self.layer(b.layer).path == "conditioning"]
        clock = Clock()
        conds, track_us, master_us = [], [], []
        extra: dict[str, Any] = {}
        if self.family == "console" and getattr(self.network.config, "rule_prior", False):
            # the rule-based mixer's settings (the prior a rule-prior console network corrects)
            # depend on the audio only: computed once, not at every keyframe
            mask = torch.ones(tracks.shape[:2], dtype=torch.bool)
            analysed = tracks.detach()
            shortest = int(0.5 * sample_rate)  # the rules measure loudness: BS.1770 needs >= 0.4 s
            if analysed.shape[-1] < shortest:
                analysed = analysed.repeat(1, 1, 1, -(-shortest // analysed.shape[-1]))[..., :shortest]
            extra["prior"] = self.network.rule_prior(analysed, mask, sample_rate, classes)
        with self.hooks(cond_bends, clock, class_morph=class_morph, captures=captures):
            for t in key_times.tolist():
                clock.keyframe_s = float(t)
                if self.family == "blackbox":
                    cond = self.network.condition(tracks, None, sample_rate, classes)  # (T, D)
                    conds.append(cond[list(sounding)])
                else:
                    track_u, master_u = self.network.predict(tracks, None, sample_rate, classes, **extra)
                    track_us.append(track_u[0])
                    master_us.append(master_u[0])
        if self.family == "blackbox":
            return State(key_times, cond=torch.stack(conds))
        return State(key_times, track_u=torch.stack(track_us), master_u=torch.stack(master_us))

    # ------------------------------------------------------------------ audio path

    def process(
        self,
        tracks: Tensor,
        sounding: Sequence[int],
        sample_rate: int,
        state: State,
        *,
        bends: Sequence[Bend] = (),
        offset_s: float = 0.0,
        captures: dict[str, list[Tensor]] | None = None,
    ) -> Tensor:
        """Run the audio path on the sounding slots.

        Args:
            tracks: ``(1, T, 1, samples)`` all slots (only ``sounding`` ones are heard).
            sounding: indices of the sounding slots.
            sample_rate: Hz.
            state: the conditioning (keyframes, axes).
            bends: bends (only audio-path layers act here).
            offset_s: time of sample 0 (for modulations inside a longer render).
            captures: sonification captures of audio-path layers.

        Returns:
            ``(1, 2, samples)`` stereo. Differentiable w.r.t. ``tracks`` and the state.
        """
        samples = tracks.shape[-1]
        if self.family == "console":
            return self._process_console(tracks, sounding, sample_rate, state, offset_s)
        audio_bends = [b for b in bends if self.layer(b.layer).path == "audio"]
        _, hop = self.frame_geometry(sample_rate)
        clock = Clock(offset_s=offset_s, frame_period_s=hop / sample_rate)
        sounding_tracks = tracks[:, list(sounding)]
        cond = state.cond  # (K, S, D)
        assert cond is not None
        varying = state.keyframes > 1 or any(not m.is_constant for _, m in state.axes)
        if not varying:
            static = cond[0] + sum((d * float(m.initial()) for d, m in state.axes), torch.zeros_like(cond[0]))
            with self.hooks(audio_bends, clock, captures=captures):
                return self.network.render(sounding_tracks, None, sample_rate, static)
        times = self.frame_times(samples, sample_rate, offset_s)
        weights = _hat_weights(state.times, times).to(cond.dtype)  # (K, F)
        per_frame = torch.einsum("kf,ksd->sfd", weights, cond)
        for direction, amount in state.axes:
            a = amount.at(times).to(cond.dtype)  # (F,)
            per_frame = per_frame + a[None, :, None] * direction[:, None, :]
        with self.hooks(audio_bends, clock, captures=captures, film_cond=lambda: per_frame):
            return self.network.render(sounding_tracks, None, sample_rate, per_frame[:, 0])

    def _process_console(
        self, tracks: Tensor, sounding: Sequence[int], sample_rate: int, state: State, offset_s: float
    ) -> Tensor:
        assert state.track_u is not None and state.master_u is not None
        net: ConsoleNet = self.network  # type: ignore[assignment]
        console = net.console(sample_rate)
        k = state.keyframes
        params = console.denormalise(state.track_u, state.master_u)
        mask = torch.zeros(k, tracks.shape[1], dtype=torch.bool)
        mask[:, list(sounding)] = True
        out = console(tracks.expand(k, -1, -1, -1), mask, params)  # (K, 2, n)
        if k == 1:
            return out
        times = offset_s + torch.arange(tracks.shape[-1], dtype=torch.float64) / sample_rate
        weights = _hat_weights(state.times, times).to(out.dtype)  # (K, n)
        return (out * weights[:, None, :]).sum(0, keepdim=True)


def keyframe_times(duration_s: float, rate_hz: float, limit: int) -> Tensor:
    """Evenly spaced keyframe times over ``[0, duration_s]`` at about ``rate_hz`` (2..``limit``)."""
    count = int(min(limit, max(2, math.ceil(duration_s * rate_hz) + 1)))
    return torch.linspace(0.0, float(duration_s), count, dtype=torch.float64)
