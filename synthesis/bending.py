"""Network bending: forward hooks that transform a named layer's output, and re-initialisation.

A :class:`Bend` changes what one layer (``"tcn.blocks.3.conv"``) outputs, with one
operation and one (time-varying) amount:

========== ==========================================================================
op         output ``y`` from the layer output ``x`` and amount ``a``
========== ==========================================================================
scale      ``a * x``
bias       ``x + a * rms(x)`` (offset in units of the activation's RMS)
mask       channels muted in a seeded order until a fraction ``a`` is silent
           (channel of rank ``r`` gets gain ``1 - clamp(a C - r, 0, 1)``: continuous in ``a``)
threshold  ``x`` where ``|x| >= a * rms(x)``, else 0 (a dead zone)
invert     ``(1 - 2a) x`` (``a = 1``: sign flipped)
permute    ``(1 - a) x + a x[perm]`` with a seeded channel permutation
noise_add  ``x + a * rms(x) * n`` with seeded Gaussian ``n``
noise_mul  ``x * (1 + a n)``
oscillate  ``x * (1 + a sin(2 pi rate t + 2 pi c / C))`` for channel ``c`` of ``C``
========== ==========================================================================

Amounts are :class:`~neuromix.synthesis.modulation.Modulation` values (constants,
envelopes, LFOs). On the audio path (a time axis of STFT frames) they are evaluated
at every frame's time; on the conditioning path at the current keyframe time (see
:class:`neuromix.synthesis.instrument.Instrument`). A bend can be restricted to a
list of channels. All randomness comes from ``torch.Generator`` seeded by the bend's
``seed``: a render is deterministic.

:class:`Reinit` replaces the weights (parameters with two or more dimensions) of
chosen modules by a named initialisation scheme with a seed, optionally blended with
the trained weights (``mix``), on a copy of the network.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from neuromix.core.errors import ConfigError
from neuromix.synthesis.modulation import Modulation, parse_modulation
from neuromix.synthesis.schema import check_keys, choice, integer, number, string

__all__ = ["BEND_OPS", "INIT_SCHEMES", "Bend", "Reinit", "apply_bend", "parse_bend", "parse_reinit", "reinit_network"]

BEND_OPS: dict[str, tuple[float, float]] = {
    "scale": (-8.0, 8.0),
    "bias": (-8.0, 8.0),
    "mask": (0.0, 1.0),
    "threshold": (0.0, 8.0),
    "invert": (0.0, 1.0),
    "permute": (0.0, 1.0),
    "noise_add": (0.0, 8.0),
    "noise_mul": (0.0, 8.0),
    "oscillate": (0.0, 4.0),
}
"""Bend operation -> allowed range of its amount."""

INIT_SCHEMES = (
    "normal",
    "uniform",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "sparse",
)


@dataclass(frozen=True)
class Bend:
    """One bend of one layer.

    Attributes:
        layer: module name, e.g. ``"tcn.blocks.3.conv"``.
        op: one of :data:`BEND_OPS`.
        amount: the op's amount (see the module table), possibly time-varying.
        rate_hz: oscillation rate of ``oscillate`` (Hz).
        seed: seed of the op's randomness (mask order, permutation, noise).
        channels: restrict the bend to these channel indices (None: all).
    """

    layer: str
    op: str
    amount: Modulation
    rate_hz: float = 1.0
    seed: int = 0
    channels: tuple[int, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": "bend",
            "layer": self.layer,
            "op": self.op,
            "amount": self.amount.to_json(),
            "seed": self.seed,
        }
        if self.op == "oscillate":
            doc["rate_hz"] = self.rate_hz
        if self.channels is not None:
            doc["channels"] = list(self.channels)
        return doc


def parse_bend(doc: Any, where: str) -> Bend:
    """Validate a bend technique object (``{"type": "bend", "layer": ..., "op": ..., "amount": ...}``)."""
    check_keys(doc, where, ("type", "layer", "op", "amount", "rate_hz", "seed", "channels"), ("layer", "op", "amount"))
    op = choice(doc["op"], f"{where}.op", tuple(BEND_OPS))
    low, high = BEND_OPS[op]
    channels = None
    if doc.get("channels") is not None:
        raw = doc["channels"]
        if not isinstance(raw, list) or not raw or len(raw) > 4096:
            raise ConfigError(f"{where}.channels: must be a non-empty list of channel indices")
        channels = tuple(sorted({integer(c, f"{where}.channels[{i}]", low=0) for i, c in enumerate(raw)}))
    return Bend(
        layer=string(doc["layer"], f"{where}.layer"),
        op=op,
        amount=parse_modulation(doc["amount"], f"{where}.amount", low=low, high=high),
        rate_hz=number(doc.get("rate_hz", 1.0), f"{where}.rate_hz", low=0.0, high=200.0, low_open=True),
        seed=integer(doc.get("seed", 0), f"{where}.seed", low=0, high=2**31 - 1),
        channels=channels,
    )


def _seeded(seed: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + salt) % (2**63 - 1))


def _rms(x: Tensor) -> Tensor:
    return x.square().mean().add(1e-12).sqrt()


def _move_channels_last(x: Tensor, axis: int) -> Tensor:
    return x.movedim(axis, -1)


def apply_bend(
    bend: Bend,
    x: Tensor,
    channel_axis: int,
    amount: Tensor,
    times: Tensor,
    call: int,
) -> Tensor:
    """Apply one bend to a layer output.

    Args:
        bend: the bend.
        x: the layer's output (any shape with a channel axis).
        channel_axis: index of the channel axis of ``x``.
        amount: the amount, broadcastable to ``x`` (a scalar tensor or a per-frame
            tensor already shaped to broadcast along the time axis).
        times: seconds, broadcastable like ``amount`` (used by ``oscillate``).
        call: how many times this bend's hook ran before in this render (salts the noise).

    Returns:
        The bent tensor (same shape and dtype); differentiable w.r.t. ``x``.
    """
    axis = channel_axis % x.ndim
    num = x.shape[axis]
    shape = [1] * x.ndim
    shape[axis] = num
    amount = amount.to(x.dtype)
    op = bend.op
    if op == "scale":
        y = x * amount
    elif op == "bias":
        y = x + amount * _rms(x)
    elif op == "mask":
        order = torch.randperm(num, generator=_seeded(bend.seed, 1)).to(x.dtype)
        muted = (amount * num - order.view(shape)).clamp(0.0, 1.0)
        y = x * (1.0 - muted)
    elif op == "threshold":
        y = x * (x.abs() >= amount * _rms(x)).to(x.dtype)
    elif op == "invert":
        y = x * (1.0 - 2.0 * amount)
    elif op == "permute":
        perm = torch.randperm(num, generator=_seeded(bend.seed, 2))
        y = (1.0 - amount) * x + amount * x.index_select(axis, perm.to(x.device))
    elif op == "noise_add":
        noise = torch.randn(x.shape, generator=_seeded(bend.seed, 1000 + call), dtype=x.dtype)
        y = x + amount * _rms(x) * noise
    elif op == "noise_mul":
        noise = torch.randn(x.shape, generator=_seeded(bend.seed, 2000 + call), dtype=x.dtype)
        y = x * (1.0 + amount * noise)
    elif op == "oscillate":
        phase = (2.0 * math.pi / max(num, 1)) * torch.arange(num, dtype=torch.float64).view(shape)
        wave = torch.sin(2.0 * math.pi * bend.rate_hz * times.to(torch.float64) + phase).to(x.dtype)
        y = x * (1.0 + amount * wave)
    else:  # pragma: no cover - validated on parse
        raise ConfigError(f"unknown bend op {op!r}")
    if bend.channels is not None:
        keep = torch.zeros(num, dtype=torch.bool)
        valid = [c for c in bend.channels if c < num]
        if not valid:
            raise ConfigError(f"bend of {bend.layer}: channels {list(bend.channels)} do not exist (it has {num})")
        keep[list(valid)] = True
        y = torch.where(keep.view(shape), y, x)
    return y


# --------------------------------------------------------------------------- re-initialisation


@dataclass(frozen=True)
class Reinit:
    """Re-initialise the weights of chosen modules (on a copy of the network).

    Attributes:
        layers: module names (every parameter with >= 2 dims inside each is re-drawn).
        init: one of :data:`INIT_SCHEMES`.
        seed: seed of the draw.
        mix: blend ``(1 - mix) * trained + mix * new`` (1 = fully re-initialised).
        gain: gain (xavier, orthogonal), std (normal), bound (uniform) of the scheme.
    """

    layers: tuple[str, ...]
    init: str = "kaiming_normal"
    seed: int = 0
    mix: float = 1.0
    gain: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "reinit",
            "layers": list(self.layers),
            "init": self.init,
            "seed": self.seed,
            "mix": self.mix,
            "gain": self.gain,
        }


def parse_reinit(doc: Any, where: str) -> Reinit:
    """Validate a re-initialisation technique object."""
    check_keys(doc, where, ("type", "layers", "init", "seed", "mix", "gain"), ("layers",))
    layers = doc["layers"]
    if not isinstance(layers, list) or not layers or len(layers) > 64:
        raise ConfigError(f"{where}.layers: must be a non-empty list of module names")
    return Reinit(
        layers=tuple(string(name, f"{where}.layers[{i}]") for i, name in enumerate(layers)),
        init=choice(doc.get("init", "kaiming_normal"), f"{where}.init", INIT_SCHEMES),
        seed=integer(doc.get("seed", 0), f"{where}.seed", low=0, high=2**31 - 1),
        mix=number(doc.get("mix", 1.0), f"{where}.mix", low=0.0, high=1.0),
        gain=number(doc.get("gain", 1.0), f"{where}.gain", low=0.0, high=8.0, low_open=True),
    )


def _draw(param: Tensor, scheme: str, gain: float, generator: torch.Generator) -> Tensor:
    new = torch.empty_like(param)
    if scheme == "normal":
        nn.init.normal_(new, 0.0, 0.02 * gain, generator=generator)
    elif scheme == "uniform":
        nn.init.uniform_(new, -0.05 * gain, 0.05 * gain, generator=generator)
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(new, gain=gain, generator=generator)
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(new, gain=gain, generator=generator)
    elif scheme == "kaiming_uniform":
        nn.init.kaiming_uniform_(new, nonlinearity="linear", generator=generator)
        new.mul_(gain)
    elif scheme == "kaiming_normal":
        nn.init.kaiming_normal_(new, nonlinearity="linear", generator=generator)
        new.mul_(gain)
    elif scheme == "orthogonal":
        nn.init.orthogonal_(new.view(new.shape[0], -1), gain=gain, generator=generator)
    else:  # sparse
        flat = new.view(new.shape[0], -1)
        nn.init.sparse_(flat, sparsity=0.9, std=0.1 * gain, generator=generator)
    return new


def reinit_network(network: nn.Module, reinits: list[Reinit], known: dict[str, nn.Module]) -> nn.Module:
    """A deep copy of ``network`` with the weights of the named modules re-drawn.

    Args:
        network: the trained network (not modified).
        reinits: re-initialisations, applied in order.
        known: name -> module of ``network`` (to name unknown layers in errors).

    Returns:
        The modified copy, in eval mode.

    Raises:
        ConfigError: a layer name that does not exist, or a module with no weight to re-draw.
    """
    clone = copy.deepcopy(network).eval()
    modules = dict(clone.named_modules())
    for r_index, reinit in enumerate(reinits):
        for l_index, name in enumerate(reinit.layers):
            if name not in modules or not name:
                raise ConfigError(f"reinit: unknown layer {name!r}; see the network's layer list ({_few(known)})")
            generator = _seeded(reinit.seed, 7919 * (r_index + 1) + l_index)
            weights = [(n, p) for n, p in modules[name].named_parameters() if p.ndim >= 2]
            if not weights:
                raise ConfigError(f"reinit: layer {name!r} has no weight matrix to re-initialise")
            with torch.no_grad():
                for _, param in weights:
                    new = _draw(param.detach(), reinit.init, reinit.gain, generator)
                    param.copy_((1.0 - reinit.mix) * param + reinit.mix * new)
    return clone


def _few(known: dict[str, nn.Module]) -> str:
    names = [n for n in known if n]
    return ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
