"""Small untrained networks for tests, demos and benchmarks when no trained checkpoint is at hand.

:func:`save_tiny_network` writes a checkpoint (through :func:`neuromix.core.checkpoint.save`)
of a :class:`~neuromix.mixing.models.BlackBoxNet` or :class:`~neuromix.mixing.models.ConsoleNet`
with the *same layer structure* as the shipped configurations (six TCN blocks, four
encoder blocks, two transformer layers, a rule-prior console network), so every layer name a preset uses exists,
but narrow widths, so it is fast. Layers that training starts from zero (the black
box's output layer, the rule-prior console network's last head layers) are drawn at
random so that they do something.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from neuromix.core import checkpoint
from neuromix.mixing.models import BlackBoxConfig, BlackBoxNet, ConsoleNet, ConsoleNetConfig

__all__ = ["TINY_BLACKBOX", "TINY_CONSOLE", "save_tiny_network"]

TINY_BLACKBOX = dict(
    sample_rate=22050,
    embed_dim=32,
    encoder_channels=16,
    heads=2,
    layers=2,
    window_seconds=1.0,
    n_fft=1024,
    hop=256,
    n_bands=24,
    max_band_hz=11025.0,
    tcn_channels=16,
    tcn_dilations=(1, 2, 4, 8, 16, 32),
)
TINY_CONSOLE = dict(
    sample_rate=22050, embed_dim=32, encoder_channels=16, heads=2, layers=2, window_seconds=1.0, rule_prior=True
)


def save_tiny_network(path: str | os.PathLike[str], family: str = "blackbox", seed: int = 0) -> Path:
    """Build, seed and save a tiny untrained network of ``family`` (``"blackbox"`` or ``"console"``).

    Args:
        path: output ``.safetensors`` file.
        family: ``"blackbox"`` or ``"console"``.
        seed: seed of the weights.

    Returns:
        The path written.
    """
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        if family == "blackbox":
            config = BlackBoxConfig(**TINY_BLACKBOX)
            model: torch.nn.Module = BlackBoxNet(config)
            torch.nn.init.normal_(model.tcn.out.weight, std=0.1)
        elif family == "console":
            config = ConsoleNetConfig(**TINY_CONSOLE)
            model = ConsoleNet(config)
            for head in (model.track_head, model.master_head):  # zero at init with a rule prior
                torch.nn.init.normal_(head[-1].weight, std=0.1)
        else:
            raise ValueError(f"family must be 'blackbox' or 'console', got {family!r}")
    finally:
        torch.random.set_rng_state(generator_state)
    return checkpoint.save(path, model.eval(), model_type=model.model_type, config=config, sample_rate=22050)
