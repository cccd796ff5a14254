"""Tests of neuromix.core.checkpoint: safetensors round trips, refusal of pickles and bad files."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from neuromix.core import checkpoint as ckpt
from neuromix.core.checkpoint import (
    FORMAT_VERSION,
    CheckpointInfo,
    content_hash,
    load,
    read_info,
    release_name_hash,
    save,
    save_release,
)
from neuromix.core.errors import CheckpointError

CORE = Path(__file__).resolve().parents[1] / "core"


@dataclass(frozen=True)
class TinyConfig:
    width: int = 8
    dilations: tuple[int, ...] = (1, 2)
    gain: float = 0.5


class Tiny(nn.Module):
    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.config = config
        self.inp = nn.Conv1d(2, config.width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Conv1d(config.width, config.width, 3, dilation=d, padding=d) for d in config.dilations
        )
        self.out = nn.Conv1d(config.width, 2, 1)
        self.register_buffer("scale", torch.tensor(config.gain))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x))
        for block in self.blocks:
            h = h + torch.tanh(block(h))
        return self.out(h) * self.scale


class TinyPlus(Tiny):
    """Same config, one more parameter: a strict load of a Tiny file must fail."""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.extra_bias = nn.Parameter(torch.zeros(2))


@dataclass(frozen=True)
class TiedConfig:
    dim: int = 4


class Tied(nn.Module):
    def __init__(self, config: TiedConfig) -> None:
        super().__init__()
        self.enc = nn.Linear(config.dim, config.dim, bias=False)
        self.dec = nn.Linear(config.dim, config.dim, bias=False)
        self.dec.weight = self.enc.weight  # tied

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.relu(self.enc(x)))


class _FakeCompiled(nn.Module):
    """Stands in for torch.compile's OptimizedModule (same `_orig_mod` layout, no 5 s dynamo import)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self._orig_mod = module


REGISTRY = {"tiny": (Tiny, TinyConfig), "tied": (Tied, TiedConfig)}


def _tiny(seed: int = 0, **kw: object) -> tuple[Tiny, TinyConfig]:
    torch.manual_seed(seed)
    config = TinyConfig(**kw)  # type: ignore[arg-type]
    return Tiny(config), config


def _saved(tmp_path: Path, name: str = "tiny.safetensors") -> tuple[Path, Tiny]:
    model, config = _tiny()
    path = save(tmp_path / name, model, model_type="tiny", config=config, sample_rate=44100)
    return path, model


def _rewrite_metadata(path: Path, **changes: str | None) -> None:
    """Rewrite a checkpoint with some metadata entries changed (None deletes)."""
    tensors = safetensors.torch.load_file(str(path))
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = dict(json.loads(f.read(n))["__metadata__"])
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    safetensors.torch.save_file(tensors, str(path), metadata=meta)


# --------------------------------------------------------------------------- round trip


def test_round_trip_identical_outputs(tmp_path: Path) -> None:
    model, config = _tiny(seed=3, width=6, dilations=(1, 3, 9))
    model.train()
    path = save(
        tmp_path / "tiny.safetensors",
        model,
        model_type="tiny",
        config=config,
        sample_rate=48000,
        extra={"train_command": "neuromix train --steps 10"},
    )
    assert path == tmp_path / "tiny.safetensors"
    assert sorted(os.listdir(tmp_path)) == ["tiny.safetensors"]  # atomic: no temp file left
    loaded, info = load(path, REGISTRY)
    assert isinstance(loaded, Tiny) and not loaded.training
    assert loaded.config == config and isinstance(loaded.config.dilations, tuple)
    x = torch.randn(2, 2, 64, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert info.model_type == "tiny" and info.sample_rate == 48000
    assert info.extra == {"train_command": "neuromix train --steps 10"}


def test_read_info(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    info = read_info(path)
    assert isinstance(info, CheckpointInfo)
    assert info.model_type == "tiny"
    assert info.config == {"width": 8, "dilations": [1, 2], "gain": 0.5}
    assert info.sample_rate == 44100
    assert info.format_version == FORMAT_VERSION == 1
    assert info.extra == {}
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.short_hash == content_hash(path) == info.sha256[:8]
    assert content_hash(path, length=64) == info.sha256


def test_save_overwrites_atomically_and_unwraps_wrappers(tmp_path: Path) -> None:
    model, config = _tiny(seed=1)
    path = tmp_path / "dp.safetensors"
    save(path, nn.DataParallel(model), model_type="tiny", config=config, sample_rate=44100)
    loaded, _ = load(path, REGISTRY)  # keys carry no "module." prefix
    assert torch.equal(loaded.inp.weight, model.inp.weight)

    other, _ = _tiny(seed=2)
    wrapped = _FakeCompiled(other)
    save(path, wrapped, model_type="tiny", config=config, sample_rate=44100)  # replaces the file
    loaded, _ = load(path, REGISTRY)  # keys carry no "_orig_mod." prefix
    assert torch.equal(loaded.inp.weight, other.inp.weight)
    assert sorted(os.listdir(tmp_path)) == ["dp.safetensors"]


def test_tied_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Tied(TiedConfig())
    path = save(tmp_path / "tied.safetensors", model, model_type="tied", config=TiedConfig(), sample_rate=8000)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    assert sorted(k for k in header if k != "__metadata__") == ["enc.weight"]  # stored once
    loaded, _ = load(path, REGISTRY)
    x = torch.randn(3, 4)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.dec.weight is loaded.enc.weight


def test_save_argument_checks(tmp_path: Path) -> None:
    model, config = _tiny()
    with pytest.raises(TypeError, match="dataclass instance"):
        save(tmp_path / "a.safetensors", model, model_type="tiny", config=TinyConfig, sample_rate=44100)
    with pytest.raises(ValueError, match="reserved"):
        save(tmp_path / "a.safetensors", model, model_type="tiny", config=config, sample_rate=44100,
             extra={"config": "{}"})
    with pytest.raises(ValueError, match="sample_rate"):
        save(tmp_path / "a.safetensors", model, model_type="tiny", config=config, sample_rate=0)
    with pytest.raises(CheckpointError, match="does not exist"):
        save(tmp_path / "no" / "a.safetensors", model, model_type="tiny", config=config, sample_rate=44100)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- refusals


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to unpickle during the test fail loudly."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickling was attempted")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)


@pytest.mark.parametrize("legacy", [False, True])
def test_pickle_file_refused(tmp_path: Path, legacy: bool, no_unpickling: None) -> None:
    model, _ = _tiny()
    for name in ("model.pt", "model.safetensors"):
        path = tmp_path / name
        torch.save(model.state_dict(), path, _use_new_zipfile_serialization=not legacy)
        for call in (lambda: load(path, REGISTRY), lambda: read_info(path)):
            with pytest.raises(CheckpointError) as info:
                call()
            message = str(info.value)
            assert "is not a safetensors file; pickled checkpoints are never loaded" in message
            assert name in message


def test_other_non_safetensors_refused(tmp_path: Path, no_unpickling: None) -> None:
    text = tmp_path / "notes.safetensors"
    text.write_text("hello, this is not a checkpoint at all\n")
    archive = tmp_path / "weights.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("data.txt", "x")
    tiny = tmp_path / "tiny.bin"
    tiny.write_bytes(b"\x01\x02")
    for path in (text, archive, tiny):
        with pytest.raises(CheckpointError, match="not a safetensors file"):
            load(path, REGISTRY)
    with pytest.raises(CheckpointError, match="not found"):
        load(tmp_path / "missing.safetensors", REGISTRY)
    with pytest.raises(CheckpointError, match="is a directory"):
        load(tmp_path, REGISTRY)


def test_truncated_safetensors_refused(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    data = path.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    for cut in (len(data) - 1, 8 + header_len + 4, 8 + header_len // 2):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated"):
            load(path, REGISTRY)
        with pytest.raises(CheckpointError, match="truncated"):
            read_info(path)


def test_plain_safetensors_without_metadata_refused(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a neuromix checkpoint"):
        load(path, REGISTRY)


def test_newer_format_refused(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    _rewrite_metadata(path, neuromix_format=str(FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match="newer neuromix"):
        load(path, REGISTRY)
    with pytest.raises(CheckpointError, match="newer neuromix"):
        read_info(path)


def test_unknown_model_type(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    with pytest.raises(CheckpointError, match="unknown model type 'tiny'"):
        load(path, {"tied": (Tied, TiedConfig)})


def test_wrong_config_refused(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    good = read_info(path).config
    _rewrite_metadata(path, config=json.dumps({**good, "bogus": 1}))
    with pytest.raises(CheckpointError, match=r"unknown field\(s\) bogus"):
        load(path, REGISTRY)
    _rewrite_metadata(path, config=json.dumps({k: v for k, v in good.items() if k != "width"}))
    with pytest.raises(CheckpointError, match=r"missing field\(s\) width"):
        load(path, REGISTRY)
    _rewrite_metadata(path, config="{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load(path, REGISTRY)


def test_strict_mismatch_refused(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    with pytest.raises(CheckpointError, match="missing keys: extra_bias"):
        load(path, {"tiny": (TinyPlus, TinyConfig)})
    # a file with more weights than the model: unexpected keys
    plus = TinyPlus(TinyConfig())
    save(path, plus, model_type="tiny", config=TinyConfig(), sample_rate=44100)
    with pytest.raises(CheckpointError, match="unexpected keys: extra_bias"):
        load(path, REGISTRY)
    # a config that builds different shapes than the stored weights
    _saved(tmp_path)
    _rewrite_metadata(path, config=json.dumps({"width": 4, "dilations": [1, 2], "gain": 0.5}))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load(path, REGISTRY)


def test_release_name_carries_and_checks_hash(tmp_path: Path) -> None:
    model, config = _tiny()
    path = save_release(tmp_path / "mixer.safetensors", model, model_type="tiny", config=config, sample_rate=44100)
    assert path.parent == tmp_path and path.name.startswith("mixer-") and path.suffix == ".safetensors"
    digest = release_name_hash(path)
    assert digest is not None and len(digest) == 8
    assert digest == content_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    loaded, info = load(path, REGISTRY)
    assert info.short_hash == digest
    assert sorted(os.listdir(tmp_path)) == [path.name]

    # tamper with one byte of the weights: refused
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="content hash mismatch"):
        load(path, REGISTRY)
    # a copy with an unrelated name is not checked (and loads: the header is intact)
    plain = tmp_path / "mixer.safetensors"
    plain.write_bytes(bytes(data))
    load(plain, REGISTRY)
    # a wrong hash in the name: refused
    wrong = tmp_path / "mixer-00000000.safetensors"
    save(wrong, model, model_type="tiny", config=config, sample_rate=44100)
    with pytest.raises(CheckpointError, match="content hash mismatch"):
        load(wrong, REGISTRY)


# --------------------------------------------------------------------------- no pickle anywhere in core


def _pickle_uses(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in {"pickle", "cPickle", "_pickle", "dill", "joblib"}]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if mod.split(".")[0] in {"pickle", "cPickle", "_pickle", "dill", "joblib"}:
                found.append(f"from {mod}")
            if mod == "torch" and any(a.name == "load" for a in node.names):
                found.append("from torch import load")
        elif isinstance(node, ast.Attribute) and node.attr == "load":
            if isinstance(node.value, ast.Name) and node.value.id == "torch":
                found.append("torch.load")
        elif isinstance(node, ast.keyword) and node.arg == "allow_pickle":
            found.append("allow_pickle=")
    return found


def test_detector_catches_pickle_use() -> None:
    bad = "import pickle\nimport torch\nfrom torch import load\nx = torch.load('f')\nnp.load('a', allow_pickle=True)\n"
    assert _pickle_uses(bad) == ["pickle", "from torch import load", "torch.load", "allow_pickle="]


def test_core_never_unpickles() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert CORE / "checkpoint.py" in files
    offenders = {str(f.relative_to(CORE)): uses for f in files if (uses := _pickle_uses(f.read_text()))}
    assert offenders == {}
    # and a plain grep, in case the AST check misses a spelling
    call = re.compile(r"(?<![\w.])torch\.load\s*\(")
    imp = re.compile(r"^\s*(import|from)\s+(pickle|cPickle|_pickle|dill)\b", re.MULTILINE)
    grep = [str(f) for f in files if call.search(f.read_text()) or imp.search(f.read_text())]
    assert grep == []
    assert ckpt.__name__ == "neuromix.core.checkpoint"
