"""Security of the library and the CLI (issue #9): no unpickling, hash-checked shipped models, no path escapes.

``tests/test_checkpoint.py`` already checks that ``neuromix.core`` never imports pickle
or calls ``torch.load``. This file widens that to every package (core, mixing,
synthesis, ui and the top-level package) and to the other ways of running data as code
(``eval``/``exec``, ``marshal``, ``shelve``, unsafe YAML, ``torch.jit.load``); proves
with a booby-trapped pickle that no entry point that takes a checkpoint unpickles it;
tampers with copies of the shipped networks; and feeds documents whose file
references climb out of their folder.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import _MarkerPayload  # noqa: E402

from neuromix.core import checkpoint  # noqa: E402
from neuromix.core.errors import CheckpointError, ConfigError, NeuromixError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("core", "mixing", "synthesis", "ui", "checkpoints")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}


# --------------------------------------------------------------------------- source scan

_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "marshal", "shelve", "cloudpickle"}


def _unsafe_uses(source: str) -> list[str]:
    """Ways of turning untrusted bytes into code that appear in ``source`` (AST based)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in _PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] in _PICKLE_MODULES:
                found.append(f"from {module} import")
            if module in ("torch", "torch.jit", "numpy") and any(a.name == "load" for a in node.names):
                found.append(f"from {module} import load")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("eval", "exec", "__import__"):
                found.append(f"{func.id}()")
            elif isinstance(func, ast.Attribute):
                owner = ast.unparse(func.value)
                name = f"{owner}.{func.attr}"
                if name in ("torch.load", "torch.jit.load", "yaml.unsafe_load", "yaml.full_load"):
                    found.append(f"{name}()")
                elif name == "yaml.load" and not any(
                    k.arg == "Loader" and "Safe" in ast.unparse(k.value) for k in node.keywords
                ):
                    found.append("yaml.load() without a safe Loader")
            for keyword in node.keywords:
                if keyword.arg == "allow_pickle" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    found.append("allow_pickle=")
                if keyword.arg == "weights_only" and ast.unparse(keyword.value) == "False":
                    found.append("weights_only=False")
    return found


_GREP = re.compile(
    r"(?<![\w.])torch\.load\s*\(|(?<![\w.])pickle\.loads?\s*\(|allow_pickle\s*=\s*True|"
    r"(?<![\w.])eval\s*\(|(?<![\w.])exec\s*\(|^\s*(import|from)\s+(pickle|cPickle|_pickle|dill|marshal|shelve)\b",
    re.MULTILINE,
)


def _package_sources() -> list[Path]:
    files = [p for d in PACKAGE_DIRS for p in sorted((REPO / d).rglob("*.py"))]
    assert len(files) > 40 and REPO / "core" / "checkpoint.py" in files and REPO / "ui" / "cli.py" in files
    return files


def test_detector_catches_every_unsafe_spelling() -> None:
    bad = (
        "import pickle\nimport marshal as m\nfrom dill import loads\nfrom torch import load\n"
        "torch.load('f')\ntorch.jit.load('g')\nnp.load('a', allow_pickle=True)\neval('1')\nexec('x=1')\n"
        "yaml.load(text)\nyaml.unsafe_load(text)\ntorch.load('h', weights_only=False)\n"
    )
    assert sorted(_unsafe_uses(bad)) == sorted([
        "import pickle", "import marshal", "from dill import", "from torch import load", "torch.load()",
        "torch.jit.load()", "allow_pickle=", "eval()", "exec()", "yaml.load() without a safe Loader",
        "yaml.unsafe_load()", "torch.load()", "weights_only=False",
    ])
    fine = "model.eval()\nyaml.safe_load(t)\nyaml.load(t, Loader=yaml.SafeLoader)\nnp.load('a.npy')\njson.loads(s)\n"
    assert _unsafe_uses(fine) == [] and _GREP.search(fine) is None
    assert all(_GREP.search(line) for line in ("x = torch.load(p)", "pickle.loads(b)", "eval (s)", "import pickle"))


def test_no_package_source_can_run_untrusted_data_as_code() -> None:
    offenders = {}
    for path in _package_sources():
        text = path.read_text(encoding="utf-8")
        uses = _unsafe_uses(text) + [f"grep: {m.group(0).strip()}" for m in _GREP.finditer(text)]
        if uses:
            offenders[str(path.relative_to(REPO))] = uses
    assert offenders == {}


# --------------------------------------------------------------------------- pickles never unpickled


@pytest.fixture()
def booby_trapped(tmp_path: Path) -> tuple[dict[str, Path], Path]:
    """Files whose unpickling would create ``marker``: raw pickles (protocols 0-5) and torch-style zips."""
    marker = tmp_path / "UNPICKLED"
    files: dict[str, Path] = {}
    for protocol in (0, 2, 5):
        path = tmp_path / f"model-p{protocol}.safetensors"
        path.write_bytes(pickle.dumps(_MarkerPayload(marker), protocol=protocol))
        files[f"pickle protocol {protocol}"] = path
    archive = tmp_path / "model.pt"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(_MarkerPayload(marker), protocol=2))
    files["torch.save zip"] = archive
    assert not marker.exists()
    return files, marker


def _checkpoint_entry_points(tmp_path: Path) -> dict[str, Callable[[Path], object]]:
    """Every library function that takes a checkpoint path."""
    import torch

    from neuromix.mixing.evaluate import resolve_systems
    from neuromix.mixing.inference import mix_multitrack, resolve_model
    from neuromix.mixing.models import MODEL_REGISTRY, load_model
    from neuromix.mixing.probe import target_from_spec
    from neuromix.mixing.shipped import load_network
    from neuromix.mixing.train import TrainConfig, train
    from neuromix.synthesis import Instrument, Patch

    def resume_from(path: Path) -> object:
        run = tmp_path / f"run-{path.stem}"
        run.mkdir()
        shutil.copy(path, run / "train_state.safetensors")
        cfg = TrainConfig.from_dict({"model": {"embed_dim": 32, "encoder_channels": 16, "heads": 2, "layers": 1},
                                     "steps": 1, "num_workers": 0, "val_items": 0})
        return train(cfg, run, resume=True, progress=False)

    def patch_playing(path: Path) -> object:
        doc = Patch.load("glass-pluck").to_dict()
        doc["network"] = {"path": str(path)}
        return Patch.from_dict(doc).render(0.1)

    return {
        "checkpoint.load": lambda p: checkpoint.load(p, MODEL_REGISTRY),
        "checkpoint.read_info": checkpoint.read_info,
        "models.load_model": load_model,
        "shipped.load_network": load_network,
        "inference.resolve_model": resolve_model,
        "mix_multitrack(model=path)": lambda p: mix_multitrack(torch.zeros(1, 1, 22050), 22050, model=p),
        "evaluate.resolve_systems": lambda p: resolve_systems(str(p)),
        "probe.target_from_spec": lambda p: target_from_spec(str(p)),
        "synthesis Instrument.load": Instrument.load,
        "synthesis patch network.path": patch_playing,
        "train --resume (state file)": resume_from,
    }


def test_no_entry_point_unpickles_a_checkpoint(tmp_path: Path, booby_trapped: tuple[dict[str, Path], Path]) -> None:
    files, marker = booby_trapped
    refused = []
    for name, call in _checkpoint_entry_points(tmp_path).items():
        for kind, path in files.items():
            with pytest.raises(NeuromixError) as info:
                call(path)
            assert not marker.exists(), f"{name} unpickled a {kind}"
            refused.append((name, kind, type(info.value).__name__))
    assert len(refused) == 11 * 4
    # the loader names the reason: a pickle, or a zip archive (torch.save)
    with pytest.raises(CheckpointError, match="pickled checkpoints are never loaded"):
        checkpoint.load(files["pickle protocol 2"], {})


def test_cli_refuses_a_pickled_model_without_unpickling(
    tmp_path: Path, booby_trapped: tuple[dict[str, Path], Path]
) -> None:
    files, marker = booby_trapped
    song = tmp_path / "song"
    song.mkdir()
    sf.write(str(song / "a.wav"), np.zeros(22050, np.float32), 22050)
    evil = str(files["pickle protocol 2"])
    for argv in (["mix", str(song), "-o", str(tmp_path / "m.wav"), "--model", evil], ["synth", "layers", evil]):
        proc = subprocess.run([sys.executable, "-m", "neuromix", *argv], cwd=tmp_path, env=ENV, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and "pickled checkpoints are never loaded" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert not marker.exists() and not (tmp_path / "m.wav").exists()


# --------------------------------------------------------------------------- shipped checkpoints


def _shipped() -> list[Path]:
    from neuromix.mixing.shipped import shipped_checkpoints

    found = sorted(shipped_checkpoints().values())
    assert found, "no shipped checkpoints"
    return found


def test_shipped_checkpoints_carry_their_content_hash() -> None:
    for path in _shipped():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert checkpoint.release_name_hash(path) == digest[:8], path.name


@pytest.mark.parametrize("where", ["tensor data", "header metadata", "last byte"])
def test_tampered_copies_of_shipped_checkpoints_are_refused(tmp_path: Path, where: str) -> None:
    from neuromix.mixing.models import load_model

    for path in _shipped():
        data = bytearray(path.read_bytes())
        (n,) = struct.unpack("<Q", data[:8])
        positions = {"tensor data": 8 + n + (len(data) - 8 - n) // 2, "header metadata": 8 + n // 2,
                     "last byte": len(data) - 1}
        index = positions[where]
        data[index] ^= 0x20 if where == "header metadata" and chr(data[index]).isalpha() else 0x01
        copy = tmp_path / path.name
        copy.write_bytes(bytes(data))
        with pytest.raises(CheckpointError) as info:
            load_model(copy)
        # a flipped bit in the data or the metadata is caught by the hash (or, in the
        # header, possibly by the header validation first), never loaded
        assert "content hash mismatch" in str(info.value) or where == "header metadata", str(info.value)


def test_a_tampered_file_in_the_shipped_folder_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replace the package's console network in place (same name, other bytes): ``--model console`` refuses it."""
    from neuromix.mixing import shipped
    from neuromix.mixing.inference import resolve_model

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for path in _shipped():
        data = bytearray(path.read_bytes())
        data[-1] ^= 0x01
        (folder / path.name).write_bytes(bytes(data))
    monkeypatch.setattr(shipped, "checkpoint_folder", lambda: folder)
    for family in ("console", "blackbox"):
        with pytest.raises(CheckpointError, match="content hash mismatch"):
            resolve_model(family)


# --------------------------------------------------------------------------- path traversal


def _song_with_metadata(root: Path, meta: dict) -> Path:
    song = root / "songs" / "one"
    song.mkdir(parents=True)
    sf.write(str(song / "vox.wav"), (0.1 * np.sin(np.arange(22050) / 5)).astype(np.float32), 22050)
    sf.write(str(root / "outside.wav"), (0.1 * np.sin(np.arange(22050) / 7)).astype(np.float32), 22050)
    (song / "metadata.json").write_text(json.dumps(meta))
    return song


@pytest.mark.parametrize(
    "meta",
    [
        {"mix": "../../outside.wav"},
        {"mix": "/etc/passwd"},
        {"stems": {"../../outside.wav": "vocal"}},
        {"stems": [{"file": "sub/../../../outside.wav"}]},
    ],
    ids=["mix-dotdot", "mix-absolute", "stem-dotdot", "stem-normalised-escape"],
)
def test_song_metadata_cannot_point_outside_the_song_folder(tmp_path: Path, meta: dict) -> None:
    from neuromix.mixing.data import find_songs, load_song_folder

    song = _song_with_metadata(tmp_path, meta)
    with pytest.raises(ConfigError, match="inside the song folder"):
        load_song_folder(song)
    with pytest.raises(ConfigError, match="inside the song folder"):
        find_songs(tmp_path / "songs")


def test_song_metadata_may_name_files_in_sub_folders(tmp_path: Path) -> None:
    from neuromix.mixing.data import load_song_folder

    song = _song_with_metadata(tmp_path, {"mix": "mixes/../mixes/final.wav", "stems": {"vox.wav": "vocal"}})
    (song / "mixes").mkdir()
    sf.write(str(song / "mixes" / "final.wav"), np.zeros((22050, 2), np.float32), 22050)
    folder = load_song_folder(song)
    assert folder.mix_path is not None and folder.mix_path.resolve() == (song / "mixes" / "final.wav").resolve()


def test_medleydb_metadata_cannot_point_outside(tmp_path: Path) -> None:
    from neuromix.mixing.data import load_song_folder

    song = tmp_path / "Song"
    (song / "Song_STEMS").mkdir(parents=True)
    sf.write(str(song / "Song_STEMS" / "Song_STEM_01.wav"), np.zeros(8000, np.float32), 8000)
    sf.write(str(song / "Song_MIX.wav"), np.zeros(8000, np.float32), 8000)
    (song / "Song_METADATA.yaml").write_text("stem_dir: ../../elsewhere\nstems: {}\n")
    with pytest.raises(ConfigError, match="stem_dir"):
        load_song_folder(song, layout="medleydb")


def test_score_references_to_files_outside_are_refused_without_echoing_them(tmp_path: Path) -> None:
    """A score may name patch files (the user's own, relative to the score); one that is not a patch
    (here a secrets file two folders up) is refused, and the message does not repeat its content."""
    from neuromix.synthesis.score import load_score

    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"password": "hunter2-do-not-print", "token": "t0k3n-do-not-print"}))
    scores = tmp_path / "a" / "b"
    scores.mkdir(parents=True)
    for ref in ("../../secret.json", str(secret), "../../../../../../../../etc/passwd", "/etc/shadow.json"):
        score = scores / "s.json"
        score.write_text(json.dumps({"patches": {"x": ref}, "events": [{"time": 0, "duration": 0.1, "patch": "x"}]}))
        with pytest.raises(ConfigError) as info:
            load_score(score)
        message = str(info.value)
        assert "do-not-print" not in message and "root:" not in message, message


def test_patch_network_paths_must_be_checkpoints(tmp_path: Path) -> None:
    """``network.path`` may point anywhere (saved patches pin absolute paths), but only a valid
    safetensors checkpoint is ever used; anything else is refused without showing its bytes."""
    from neuromix.synthesis import Patch

    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2-do-not-print\n" * 10)
    (tmp_path / "patches").mkdir()
    for ref in ("../secret.txt", str(secret), "../../../../../../etc/passwd", "/dev/zero", "/"):
        doc = Patch.load("glass-pluck").to_dict()
        doc["network"] = {"path": ref}
        path = tmp_path / "patches" / "p.json"
        path.write_text(json.dumps(doc))
        patch = Patch.load(path)
        with pytest.raises(NeuromixError) as info:
            patch.render(0.1)
        assert "do-not-print" not in str(info.value) and "root:" not in str(info.value)


def test_settings_track_names_are_names_not_paths(tmp_path: Path) -> None:
    """Track names in a settings document only match stems; a path-like name creates no file anywhere."""
    import torch

    from neuromix.mixing.inference import mix_multitrack

    before = set(os.listdir(tmp_path))
    names = ["../../../tmp/evil", "/etc/passwd"]
    outcome = mix_multitrack(torch.zeros(2, 1, 22050), 22050, model="rules", names=names)
    assert outcome.settings is not None and [t["name"] for t in outcome.settings["tracks"]] == names
    again = mix_multitrack(torch.zeros(2, 1, 22050), 22050, names=names, settings=outcome.settings)
    assert again.mix.shape == (2, 22050)
    assert set(os.listdir(tmp_path)) == before


def test_report_file_names_from_track_and_dataset_names_are_sanitised() -> None:
    from neuromix.mixing.evaluate import _safe

    for hostile in ("../../etc/passwd", "/abs/path", "a\\b", "..", "x/../../y"):
        name = _safe(hostile)
        assert "/" not in name and "\\" not in name and Path(name).name == name
        assert not set(Path(f"{name}_x.png").parts) & {"..", "/"}
