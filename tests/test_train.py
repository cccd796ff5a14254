"""Training: config validation, a few real steps, exact resumption, DDP on 2 CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from neuromix.core.errors import ConfigError
from neuromix.mixing.models import load_model
from neuromix.mixing.train import TrainConfig, shipped_config_path, train

TINY = {
    "model_type": "console_net",
    "model": {"sample_rate": 16000, "embed_dim": 32, "encoder_channels": 16, "heads": 2, "layers": 1,
              "window_seconds": 1.0, "reference_windows": 1},
    "sample_rate": 16000,
    "segment_seconds": 1.0,
    "min_tracks": 2,
    "max_tracks": 4,
    "batch_size": 2,
    "steps": 4,
    "audio_loss_from_step": 2,
    "val_every": 4,
    "val_items": 2,
    "checkpoint_every": 2,
    "num_workers": 0,
    "seed": 3,
}


def test_shipped_configs_validate():
    for name in ("console_small", "blackbox_small"):
        cfg = TrainConfig.load(shipped_config_path(name))
        assert cfg.steps > 0
    with pytest.raises(ConfigError, match="shipped configs"):
        shipped_config_path("nope")


@pytest.mark.parametrize(
    "doc,needle",
    [
        ({"stepz": 3}, "unknown field"),
        ({"steps": "many"}, "wrong type"),
        ({"steps": 2.5}, "wrong type"),
        ({"model_type": "mystery"}, "model_type"),
        ({"min_tracks": 5, "max_tracks": 2}, "min_tracks"),
        ({"model": {"embed_dim": "big"}}, "model"),
    ],
)
def test_config_validation(doc, needle):
    with pytest.raises(ConfigError, match=needle):
        TrainConfig.from_dict(doc)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(path)).items() if k.startswith("model.")}


@pytest.mark.slow
def test_train_resume_is_exact(tmp_path):
    cfg = TrainConfig.from_dict(TINY)
    straight = train(cfg, tmp_path / "a", progress=False)
    assert straight["step"] == 4 and "val_stft" in straight
    train(cfg, tmp_path / "b", progress=False, max_steps=2)
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg, tmp_path / "b", progress=False)
    resumed = train(cfg, tmp_path / "b", progress=False, resume=True)
    assert resumed["step"] == 4
    a, b = _weights(tmp_path / "a" / "train_state.safetensors"), _weights(tmp_path / "b" / "train_state.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)
    # the plain model checkpoint loads strictly and mixes
    model, info = load_model(tmp_path / "a" / "model.safetensors")
    assert info.extra["step"] == "4"
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert "stft" not in log[0] and "stft" in log[2]  # curriculum: settings first, then audio


@pytest.mark.slow
def test_ddp_two_processes_end_with_identical_weights(tmp_path):
    cfg_path = tmp_path / "tiny.json"
    cfg_path.write_text(json.dumps({**TINY, "steps": 3, "val_items": 0}))
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "neuromix", "train", "--config", str(cfg_path), "-o", str(tmp_path / "run"), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1] == {"step": 3, "ranks_identical": True}
    assert sum(1 for r in log if "loss" in r) == 3  # only rank 0 wrote the log


def _write_song(folder: Path, seconds: float = 2.0, sr: int = 16000) -> None:
    import numpy as np
    import soundfile as sf

    folder.mkdir(parents=True)
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    stems = {
        "kick.wav": np.sin(2 * np.pi * 55 * t) * np.exp(-((t * 4) % 1) * 8),
        "bass.wav": 0.3 * np.sin(2 * np.pi * 110 * t),
        "vox.wav": 0.2 * np.sin(2 * np.pi * 440 * t) + 0.02 * rng.standard_normal(t.size),
    }
    for name, audio in stems.items():
        sf.write(str(folder / name), audio.astype("float32"), sr)


def test_unmix_dataset_items(tmp_path):
    from neuromix.mixing.train import UnmixDataset

    _write_song(tmp_path / "songs" / "one")
    data = UnmixDataset([str(tmp_path / "songs")], 4, seconds=1.0, sample_rate=16000, max_tracks=8, seed=1)
    item, again = data[2], data[2]
    assert item["tracks"].shape == (3, 2, 16000) and item["has_settings"] is False
    torch.testing.assert_close(item["tracks"], again["tracks"])  # seeded
    assert (item["tracks"] - data[3]["tracks"]).abs().max() > 1e-3  # a different perturbation per item
    # the target is the plain sum of the unperturbed stems, which the input no longer sums to
    assert (item["tracks"].sum(0) - item["mix"]).abs().max() > 1e-3
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no multitrack songs"):
        UnmixDataset([str(tmp_path / "empty")], 1, seconds=1.0, sample_rate=16000, max_tracks=8)


@pytest.mark.slow
def test_training_with_real_folders(tmp_path):
    _write_song(tmp_path / "songs" / "one")
    cfg = TrainConfig.from_dict({**TINY, "steps": 2, "val_items": 0, "batch_size": 4, "audio_loss_from_step": 100,
                                 "folders": [str(tmp_path / "songs")], "real_fraction": 0.5})
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["step"] == 2
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    # batches that hold real items train on audio before the curriculum's audio step
    assert any("stft" in r for r in log)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    with pytest.raises(ConfigError, match="real_fraction"):
        TrainConfig.from_dict({**TINY, "folders": ["x"], "real_fraction": 1.0})
