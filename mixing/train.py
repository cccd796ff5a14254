"""Training of the mixing networks: ``neuromix train --config FILE.json``.

Data: procedural songs (generated on the fly in DataLoader workers) mixed by the
seeded "mixing engineer" (:mod:`neuromix.mixing.engineer`), whose settings are
known, so the console network gets a parameter loss next to the audio losses;
optionally real multitrack folders with un-mix augmentation (the wet stems' plain
sum is the target, FxNorm-style; see :class:`UnmixDataset`).

Each synthetic item is a song of two segments: the network sees the first,
the engineer's settings for it render the target mix, and the same settings
render the second segment into a *reference* mix of the same style (used with
probability ``reference_probability``: reference dropout, so one model serves
both modes).

Losses: sum/difference multi-resolution STFT + feature loss on the mix, plus
(console network, synthetic data) an L1 loss on the normalised settings. The
curriculum trains on settings alone for ``audio_loss_from_step`` steps, then
adds the audio losses.

Runs on CPU by default, on CUDA with ``device="cuda"``, and on many processes or
machines under ``torchrun`` (DistributedDataParallel, DistributedSampler; only
rank 0 writes files). Training state (weights, optimizer, step) is one
safetensors file written atomically, so a run can be stopped at any moment and
resumed with ``--resume``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from neuromix.core import checkpoint
from neuromix.core.dsp.console import Console
from neuromix.core.errors import ConfigError
from neuromix.core.io import write_text_atomic
from neuromix.core.losses import feature_loss, sum_difference_stft_loss
from neuromix.mixing.classes import CLASS_INDEX
from neuromix.mixing.models import ALL_STAGES, MODEL_REGISTRY, ConsoleNet, build_model
from neuromix.mixing.rules import RuleMixer, rule_prior
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

VALIDATION_SEED_OFFSET = 10_000_000
TEST_SEED_OFFSET = 20_000_000
STATE_FILE = "train_state.safetensors"
MODEL_FILE = "model.safetensors"
LOG_FILE = "log.jsonl"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (stored as JSON next to the results).

    Attributes:
        model_type: a key of :data:`~neuromix.mixing.models.MODEL_REGISTRY`.
        model: config fields of that model (the rest take their defaults).
        sample_rate: training rate in Hz.
        segment_seconds: length of the audio the network sees per item.
        min_tracks, max_tracks: range of track counts of generated songs.
        batch_size: items per step and process.
        steps: optimizer steps in total.
        lr, weight_decay, grad_clip, warmup_steps: AdamW and schedule (cosine decay to 10 %).
        param_loss_weight, audio_loss_weight, feature_loss_weight: loss weights.
        audio_loss_from_step: curriculum: settings-only loss before this step.
        reference_probability: chance that an item comes with its reference mix.
        class_dropout: chance that a track's class label is hidden (model learns to cope).
        val_every, val_items: validation cadence and size (fixed held-out seeds).
        checkpoint_every: steps between saves of the resumable state.
        folders: real multitrack folders (searched with :func:`~neuromix.mixing.data.find_songs`)
            trained with un-mix augmentation besides the generator: the wet stems are
            perturbed (:func:`~neuromix.mixing.augment.sample_unmix`) and their plain sum is
            the target (no settings loss for these items).
        real_fraction: share of training items drawn from ``folders`` (0 < f < 1 with folders).
        num_workers: DataLoader worker processes per training process.
        pool_items: when > 0, generate this many synthetic items once (with ``num_workers``
            processes, audio kept as float16) and train for several epochs over that pool,
            instead of generating every item on the fly; for CPU budgets where generating
            and mixing a song costs more than a training step.
        seed: seed of the model init and of the data order.
    """

    model_type: str = "console_net"
    model: dict[str, Any] = field(default_factory=dict)
    sample_rate: int = 22050
    segment_seconds: float = 4.0
    min_tracks: int = 4
    max_tracks: int = 10
    batch_size: int = 8
    steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    warmup_steps: int = 50
    param_loss_weight: float = 1.0
    audio_loss_weight: float = 1.0
    feature_loss_weight: float = 0.1
    audio_loss_from_step: int = 0
    reference_probability: float = 0.5
    class_dropout: float = 0.2
    val_every: int = 200
    val_items: int = 16
    checkpoint_every: int = 50
    folders: tuple[str, ...] = ()
    real_fraction: float = 0.25
    num_workers: int = 1
    pool_items: int = 0
    seed: int = 0

    @staticmethod
    def from_dict(doc: Mapping[str, Any]) -> TrainConfig:
        """Validate a JSON document (unknown keys and wrong types raise ConfigError)."""
        if not isinstance(doc, Mapping):
            raise ConfigError("training config must be a JSON object")
        fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(doc) - set(fields))
        if unknown:
            raise ConfigError(f"training config: unknown field(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in doc.items():
            default = getattr(TrainConfig(), name)
            if isinstance(default, bool) or default is None:
                ok = isinstance(value, type(default))
            elif isinstance(default, (int, float)) and not isinstance(default, bool):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                if ok and isinstance(default, int) and not float(value).is_integer():
                    ok = False
                value = type(default)(value) if ok else value
            elif isinstance(default, tuple):
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
                value = tuple(value) if ok else value
            else:
                ok = isinstance(value, type(default))
            if not ok:
                raise ConfigError(f"training config: field {name!r} has the wrong type ({type(value).__name__})")
            values[name] = value
        cfg = TrainConfig(**values)
        if cfg.model_type not in MODEL_REGISTRY:
            raise ConfigError(f"training config: model_type must be one of {', '.join(MODEL_REGISTRY)}")
        if not (1 <= cfg.min_tracks <= cfg.max_tracks <= 64):
            raise ConfigError("training config: need 1 <= min_tracks <= max_tracks <= 64")
        if cfg.folders and not 0.0 < cfg.real_fraction < 1.0:
            raise ConfigError("training config: real_fraction must be between 0 and 1 when folders are given")
        if cfg.batch_size < 1 or cfg.steps < 1 or cfg.segment_seconds <= 0.5:
            raise ConfigError("training config: batch_size and steps must be >= 1, segment_seconds > 0.5")
        try:
            build_model(cfg.model_type, cfg.model)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"training config: invalid 'model' section: {exc}") from exc
        return cfg

    @staticmethod
    def load(path: str | Path) -> TrainConfig:
        """Read and validate a JSON config file."""
        path = Path(path)
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):  # a pipe or device would block the reader
                raise ConfigError(f"{path}: is not a regular file (a folder, pipe or device), not a training config")
            if info.st_size > 1_000_000:
                raise ConfigError(f"{path}: training config is too large")
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read training config ({exc.strerror})") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: training config is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
        return TrainConfig.from_dict(doc)

    def to_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["folders"] = list(self.folders)
        return doc


def shipped_config_path(name: str) -> Path:
    """Path of a shipped training config by name (``console_small``, ``blackbox_small``, ...)."""
    from importlib.resources import files

    folder = files("neuromix.mixing") / "configs"
    candidate = folder / f"{name}.json"
    if not candidate.is_file():
        available = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))
        raise ConfigError(f"no training config {name!r}; shipped configs: {', '.join(available)}")
    return Path(str(candidate))


# --------------------------------------------------------------------------- data


class EngineerDataset(Dataset):
    """Synthetic items: generated song -> engineer settings, target mix and a same-style reference.

    Item ``i`` uses seed ``base_seed + i`` for the song and the engineer, so it is the
    same in every process and worker.

    Items (dict): ``tracks`` (T, 2, N), ``mask`` (T,), ``classes`` (T,) long, ``mix`` (2, N),
    ``reference`` (2, N), ``track_u`` (T, P), ``master_u`` (M,) (the engineer's normalised
    settings), ``prior_track_u`` (T, P), ``prior_master_u`` (M,) (the rule-based mixer's, the
    prior of rule-prior console networks), ``seed``.
    """

    def __init__(
        self,
        length: int,
        *,
        base_seed: int,
        seconds: float,
        sample_rate: int,
        min_tracks: int = 4,
        max_tracks: int = 10,
    ) -> None:
        self.length = int(length)
        self.base_seed = int(base_seed)
        self.seconds = float(seconds)
        self.sample_rate = int(sample_rate)
        self.min_tracks = int(min_tracks)
        self.max_tracks = int(max_tracks)
        self.console = Console(sample_rate)
        self.rules = RuleMixer(sample_rate)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        from neuromix.mixing.engineer import engineer_settings
        from neuromix.mixing.generator import generate_song

        seed = self.base_seed + int(index)
        count = self.min_tracks + seed % (self.max_tracks - self.min_tracks + 1)
        n = int(round(self.seconds * self.sample_rate))
        song = generate_song(seed, seconds=2 * self.seconds, sample_rate=self.sample_rate, num_tracks=count)
        tracks = song.as_multitrack()
        first, second = tracks[..., :n], tracks[..., n : 2 * n]
        with torch.no_grad():
            params = engineer_settings(first, song.classes, self.sample_rate, seed)
            mix = self.console(first[None], None, params)[0]
            reference = self.console(second[None], None, params)[0]
            track_u, master_u = self.console.normalise(params)
        prior_track_u, prior_master_u = rule_prior(first, song.classes, self.sample_rate, self.rules)
        return {
            "tracks": first,
            "mask": torch.ones(first.shape[0], dtype=torch.bool),
            "classes": torch.tensor([CLASS_INDEX[c] for c in song.classes], dtype=torch.long),
            "mix": mix,
            "reference": reference,
            "track_u": track_u[0],
            "master_u": master_u[0],
            "prior_track_u": prior_track_u,
            "prior_master_u": prior_master_u,
            "has_settings": True,
            "seed": seed,
        }


class UnmixDataset(Dataset):
    """Real multitrack segments with un-mix augmentation (after FxNorm-automix).

    Item ``i`` is segment ``i % len(segments)`` of the songs (deterministic positions), its
    wet stems perturbed by seeded un-mix settings (gain, EQ, dynamics, pan/width); the
    target is the plain sum of the *unperturbed* wet stems, so a network learns to undo
    the perturbation, i.e. to mix. Items carry ``has_settings = False`` (no settings loss)
    and zero settings targets; the rule prior is computed on the perturbed stems.
    """

    def __init__(
        self,
        folders: tuple[str, ...] | list[str],
        length: int,
        *,
        seconds: float,
        sample_rate: int,
        max_tracks: int,
        seed: int = 0,
    ) -> None:
        from neuromix.mixing.data import SegmentDataset, find_songs

        songs = [song for folder in folders for song in find_songs(folder)]
        if not songs:
            raise ConfigError(f"training config: no multitrack songs found in {', '.join(folders)}")
        self.segments = SegmentDataset(
            songs, segment_seconds=seconds, sample_rate=sample_rate, segments_per_song=8, seed=seed,
            max_tracks=max_tracks,
        )
        self.length = int(length)
        self.seed = int(seed)
        self.sample_rate = int(sample_rate)
        self.console = Console(sample_rate)
        self.rules = RuleMixer(sample_rate)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        from neuromix.mixing.augment import apply_unmix, sample_unmix
        from neuromix.mixing.classes import INSTRUMENT_CLASSES

        item = self.segments[int(index) % len(self.segments)]
        wet = item["tracks"]
        params = sample_unmix(wet.shape[0], self.seed * 1_000_003 + int(index))
        with torch.no_grad():
            tracks = apply_unmix(wet, self.sample_rate, params)
        classes = [INSTRUMENT_CLASSES[int(c)] for c in item["classes"]]
        prior_track_u, prior_master_u = rule_prior(tracks, classes, self.sample_rate, self.rules)
        return {
            "tracks": tracks,
            "mask": item["mask"],
            "classes": item["classes"],
            "mix": wet.sum(dim=0),
            "reference": wet.sum(dim=0),
            "track_u": torch.zeros(wet.shape[0], len(self.console.track_ranges)),
            "master_u": torch.zeros(len(self.console.master_ranges)),
            "prior_track_u": prior_track_u,
            "prior_master_u": prior_master_u,
            "has_settings": False,
            "seed": int(index),
        }


class PooledDataset(Dataset):
    """The first ``size`` items of a dataset, generated once and kept in memory.

    Audio tensors (``tracks``, ``mix``, ``reference``) are stored as float16 (half the
    memory; -96 dB quantisation floor is far below the losses' resolution) and returned
    as float32. Generation runs in ``workers`` processes with a progress bar.
    """

    AUDIO_KEYS = ("tracks", "mix", "reference")

    def __init__(self, base: Dataset, size: int, workers: int = 0, progress: bool = True) -> None:
        from tqdm import tqdm

        self.items: list[dict[str, Any]] = []
        loader = DataLoader(
            torch.utils.data.Subset(base, range(size)),
            batch_size=None,
            num_workers=workers,
            **({"prefetch_factor": 4} if workers > 0 else {}),
        )
        for item in tqdm(loader, total=size, desc="pool", unit="item", disable=not progress):
            self.items.append({k: v.half() if k in self.AUDIO_KEYS else v for k, v in item.items()})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        return {k: v.float() if k in self.AUDIO_KEYS else v for k, v in item.items()}


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pad tracks (and per-track targets) to the largest track count of the batch."""
    num = max(item["tracks"].shape[0] for item in items)
    out: dict[str, Any] = {}
    for key in ("tracks", "mask", "classes", "track_u", "prior_track_u"):
        padded = []
        for item in items:
            value = item[key]
            pad = num - value.shape[0]
            if pad:
                value = torch.cat([value, value.new_zeros((pad, *value.shape[1:]))], dim=0)
            padded.append(value)
        out[key] = torch.stack(padded)
    for key in ("mix", "reference", "master_u", "prior_master_u"):
        out[key] = torch.stack([item[key] for item in items])
    out["seed"] = torch.tensor([item["seed"] for item in items])
    out["has_settings"] = torch.tensor([bool(item.get("has_settings", True)) for item in items])
    return out


class _SkipSampler(Sampler[int]):
    """Yield a sampler's indices after skipping the first ``skip`` (for exact resumption)."""

    def __init__(self, sampler: Sampler[int], skip: int) -> None:
        self.sampler = sampler
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        for i, index in enumerate(self.sampler):
            if i >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- state files


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    cfg: TrainConfig,
    generator: torch.Generator | None = None,
) -> None:
    """Write weights, optimizer state, step and RNG state into one safetensors file, atomically.

    No pickle is involved: tensors go to safetensors, the rest to its JSON metadata.
    """
    tensors: dict[str, Tensor] = {}
    if generator is not None:
        tensors["rng.generator"] = generator.get_state()
    for name, value in checkpoint.unwrap_model(model).state_dict().items():
        tensors[f"model.{name}"] = value.detach().cpu().contiguous()
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for key, value in state.items():
            t = value if isinstance(value, Tensor) else torch.tensor(value)
            tensors[f"optim.{index}.{key}"] = t.detach().cpu().contiguous()
    metadata = {
        "step": str(step),
        "config": json.dumps(cfg.to_dict()),
        "param_groups": json.dumps(opt["param_groups"]),
    }
    _atomic_write(path, safetensors_bytes(tensors, metadata=metadata))


def load_state(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator | None = None
) -> int:
    """Restore a :func:`save_state` file into ``model``, ``optimizer`` (and ``generator``); returns the step."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises several types for broken files
        raise checkpoint.CheckpointError(f"{path}: not a readable training state ({exc})") from exc
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    target = checkpoint.unwrap_model(model)
    try:
        target.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise checkpoint.CheckpointError(f"{path}: weights do not match the model: {exc}") from exc
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
    if generator is not None and "rng.generator" in tensors:
        generator.set_state(tensors["rng.generator"])
    return int(metadata["step"])


def _trim_log(path: Path, step: int) -> None:
    """Keep the log records up to ``step`` (the resumed state's step), atomically.

    A run stopped abruptly (``kill -9``, power loss) may have logged steps after its last
    saved state, or half a line; the resumed run repeats those steps, so their old records
    are dropped instead of appearing twice.
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(line + "\n")
    _atomic_write(path, "".join(kept).encode("utf-8"))


# --------------------------------------------------------------------------- training


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def _track_settings_error(pred: Tensor, target: Tensor, mask: Tensor, has_settings: Tensor) -> Tensor:
    """Mean absolute error of normalised per-track settings over real tracks of items with known settings."""
    weights = mask.to(pred.dtype)[..., None] * has_settings.to(pred.dtype)[:, None, None]
    return ((pred - target).abs() * weights).sum() / (weights.sum() * pred.shape[-1]).clamp_min(1.0)


def compute_losses(
    model: nn.Module, batch: Mapping[str, Any], cfg: TrainConfig, step: int, generator: torch.Generator | None
) -> tuple[Tensor, dict[str, float]]:
    """Forward pass and the weighted loss of one batch; returns ``(loss, parts)``."""
    core = checkpoint.unwrap_model(model)
    tracks, mask, classes = batch["tracks"], batch["mask"], batch["classes"].clone()
    has_settings = batch.get("has_settings", torch.ones(tracks.shape[0], dtype=torch.bool)).to(tracks.device)
    if generator is not None and cfg.class_dropout > 0:
        hide = torch.rand(classes.shape, generator=generator) < cfg.class_dropout
        classes[hide.to(classes.device)] = len(CLASS_INDEX)
    reference = reference_mask = None
    if isinstance(core, ConsoleNet) and core.config.reference_windows > 0:
        reference = batch["reference"]
        if generator is None:
            reference_mask = torch.zeros(tracks.shape[0], dtype=torch.bool)
        else:
            reference_mask = torch.rand(tracks.shape[0], generator=generator) < cfg.reference_probability
        # real (un-mixed) items carry no reference of their own style
        reference_mask = reference_mask.to(tracks.device) & has_settings
    # items without known settings (real songs) only have audio targets: audio losses on
    audio_on = step >= cfg.audio_loss_from_step or not bool(has_settings.all())
    parts: dict[str, float] = {}
    loss = tracks.new_zeros(())
    if isinstance(core, ConsoleNet):
        prior = (batch["prior_track_u"], batch["prior_master_u"])
        result = model(tracks, mask, cfg.sample_rate, classes, reference, reference_mask, render=audio_on, prior=prior)
        p_loss = _track_settings_error(result.track_u, batch["track_u"], mask, has_settings)
        item = has_settings.to(result.master_u.dtype)
        master_err = ((result.master_u - batch["master_u"]).abs().mean(dim=-1) * item).sum()
        p_loss = p_loss + master_err / item.sum().clamp_min(1.0)
        parts["param"] = float(p_loss.detach())
        loss = loss + cfg.param_loss_weight * p_loss
    else:  # the black box has no settings: audio losses from the first step
        result = model(tracks, mask, cfg.sample_rate, classes)
        audio_on = True
    if audio_on:
        mix = result.mix
        a_loss = sum_difference_stft_loss(mix, batch["mix"])
        parts["stft"] = float(a_loss.detach())
        loss = loss + cfg.audio_loss_weight * a_loss
        if cfg.feature_loss_weight > 0:
            f_loss, _ = feature_loss(mix, batch["mix"], cfg.sample_rate)
            parts["feature"] = float(f_loss.detach())
            loss = loss + cfg.feature_loss_weight * f_loss
    parts["loss"] = float(loss.detach())
    return loss, parts


def _validate(model: nn.Module, loader: DataLoader, cfg: TrainConfig) -> dict[str, float]:
    """Mean sum/difference STFT distance (and settings error) on the fixed held-out set."""
    core = checkpoint.unwrap_model(model)
    core.eval()
    stft, param, count = 0.0, 0.0, 0
    with torch.no_grad():
        for batch in loader:
            if isinstance(core, ConsoleNet):
                prior = (batch["prior_track_u"], batch["prior_master_u"])
                track_u, master_u = core.predict(
                    batch["tracks"], batch["mask"], cfg.sample_rate, batch["classes"], prior=prior
                )
                err = _track_settings_error(track_u, batch["track_u"], batch["mask"], batch["has_settings"])
                param += float(err) * batch["tracks"].shape[0]
                console = core.console(cfg.sample_rate)
                mix = console(batch["tracks"], batch["mask"], console.denormalise(track_u, master_u))
            else:
                mix = core(batch["tracks"], batch["mask"], cfg.sample_rate, batch["classes"]).mix
            stft += float(sum_difference_stft_loss(mix, batch["mix"])) * batch["tracks"].shape[0]
            count += batch["tracks"].shape[0]
    core.train()
    result = {"val_stft": stft / max(1, count)}
    if isinstance(core, ConsoleNet):
        result["val_param"] = param / max(1, count)
    return result


def train(
    cfg: TrainConfig,
    output: str | Path,
    *,
    resume: bool = False,
    device: str = "cpu",
    progress: bool = True,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) a mixing network; returns a summary dict (rank 0's view).

    Args:
        cfg: the run's configuration.
        output: run folder (``train_state.safetensors``, ``model.safetensors``, ``log.jsonl``,
            ``config.json``); refuses a folder holding another run unless ``resume``.
        resume: continue from the folder's training state.
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:N"``).
        progress: show a progress bar (rank 0).
        max_steps: stop after this many steps in this call (for tests and time-boxed sessions);
            the schedule still follows ``cfg.steps``.
    """
    from tqdm import tqdm

    out = Path(output)
    info = _setup_distributed(device)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but CUDA is not available")
        device = f"cuda:{info.local_rank}" if info.world > 1 else device
    state_path = out / STATE_FILE
    if info.main:
        if state_path.exists() and not resume:
            raise ConfigError(f"{out} already holds a training run; pass --resume to continue it")
        if resume and not state_path.exists():
            raise ConfigError(f"{out}: nothing to resume (no {STATE_FILE})")
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.json", json.dumps(cfg.to_dict(), indent=2), overwrite=True)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model_type, cfg.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed * 7919 + info.rank)
    start = load_state(state_path, model, optimizer, generator if info.world == 1 else None) if resume else 0
    if resume and info.main:
        _trim_log(out / LOG_FILE, start)
    if info.world > 1:
        model = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)

    train_set = EngineerDataset(
        1_000_000,
        base_seed=cfg.seed * 1_000_000,
        seconds=cfg.segment_seconds,
        sample_rate=cfg.sample_rate,
        min_tracks=cfg.min_tracks,
        max_tracks=cfg.max_tracks,
    )
    if cfg.pool_items > 0:
        train_set = PooledDataset(train_set, cfg.pool_items, cfg.num_workers, progress and info.main)
    if cfg.folders:
        synthetic_items = len(train_set)
        real_items = max(1, round(cfg.real_fraction / (1.0 - cfg.real_fraction) * synthetic_items))
        real_set = UnmixDataset(
            cfg.folders,
            real_items,
            seconds=cfg.segment_seconds,
            sample_rate=cfg.sample_rate,
            max_tracks=cfg.max_tracks,
            seed=cfg.seed,
        )
        train_set = torch.utils.data.ConcatDataset([train_set, real_set])
    sampler = DistributedSampler(train_set, num_replicas=info.world, rank=info.rank, shuffle=True, seed=cfg.seed)
    steps_per_epoch = len(sampler) // cfg.batch_size
    if steps_per_epoch < 1:
        raise ConfigError("training config: fewer items than one batch per process (raise pool_items)")
    loader_kwargs: dict[str, Any] = {"batch_size": cfg.batch_size, "collate_fn": collate, "drop_last": True}
    if cfg.num_workers > 0 and cfg.pool_items == 0:
        loader_kwargs.update(num_workers=cfg.num_workers, persistent_workers=False, prefetch_factor=2)
    val_loader = None
    if info.main and cfg.val_items > 0:
        val_set = EngineerDataset(
            cfg.val_items,
            base_seed=VALIDATION_SEED_OFFSET,
            seconds=cfg.segment_seconds,
            sample_rate=cfg.sample_rate,
            min_tracks=cfg.min_tracks,
            max_tracks=cfg.max_tracks,
        )
        val_loader = DataLoader(val_set, batch_size=cfg.batch_size, collate_fn=collate)

    end = cfg.steps if max_steps is None else min(cfg.steps, start + max_steps)
    if resume and info.world > 1:  # the saved RNG state is rank 0's; give each rank its own stream
        generator.manual_seed(cfg.seed * 7919 + info.rank + 1000 * start)
    bar = tqdm(total=end, initial=start, disable=not (progress and info.main), desc="train", unit="step")
    log_path = out / LOG_FILE
    step = start
    t0, items = time.perf_counter(), 0
    last: dict[str, float] = {}
    summary: dict[str, Any] = {}
    model.train()
    while step < end:
        epoch, offset = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch)
        loader = DataLoader(train_set, sampler=_SkipSampler(sampler, offset * cfg.batch_size), **loader_kwargs)
        for batch in loader:
            batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * _lr_factor(step, cfg)
            loss, last = compute_losses(model, batch, cfg, step, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            items += batch["tracks"].shape[0] * info.world
            rate = items / (time.perf_counter() - t0)
            bar.set_postfix({k: f"{v:.4f}" for k, v in last.items()} | {"items/s": f"{rate:.2f}"})
            bar.update(1)
            record: dict[str, Any] = {"step": step, **last, "items_per_s": rate}
            if val_loader is not None and (step % cfg.val_every == 0 or step == end):
                record.update(_validate(model, val_loader, cfg))
                summary.update({k: v for k, v in record.items() if k.startswith("val_")})
                bar.write(f"step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k.startswith("val_")))
            if info.main:
                with log_path.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                if step % cfg.checkpoint_every == 0 or step == end:
                    _save_all(out, model, optimizer, step, cfg, generator)
            if step >= end:
                break
    bar.close()
    summary.update({"step": step, **last})
    if info.world > 1:
        summary["ranks_identical"] = _ranks_identical(model)
        if info.main:
            with log_path.open("a") as handle:
                handle.write(json.dumps({"step": step, "ranks_identical": summary["ranks_identical"]}) + "\n")
        dist.barrier()
    return summary


def _save_all(
    out: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int, cfg: TrainConfig, generator: torch.Generator
) -> None:
    core = checkpoint.unwrap_model(model)
    save_state(out / STATE_FILE, model, optimizer, step, cfg, generator)
    checkpoint.save(
        out / MODEL_FILE,
        core,
        model_type=cfg.model_type,
        config=core.config,
        sample_rate=cfg.sample_rate,
        extra={"step": str(step), "train_config": json.dumps(cfg.to_dict())},
    )


def _ranks_identical(model: nn.Module) -> bool:
    """All-gather a checksum of every rank's weights; True when all ranks hold the same values."""
    flat = torch.cat([p.detach().double().flatten() for p in checkpoint.unwrap_model(model).parameters()])
    checksum = torch.stack([flat.sum(), (flat * torch.arange(flat.numel(), dtype=flat.dtype)).sum() / flat.numel()])
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


__all__ = [
    "ALL_STAGES",
    "EngineerDataset",
    "TEST_SEED_OFFSET",
    "TrainConfig",
    "VALIDATION_SEED_OFFSET",
    "collate",
    "compute_losses",
    "load_state",
    "save_state",
    "train",
]
