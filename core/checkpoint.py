"""Model checkpoints: safetensors weights plus the model type, config and format version.

A checkpoint is a `safetensors <https://github.com/huggingface/safetensors>`_ file
whose string metadata carries everything needed to rebuild the model::

    neuromix_format  "1"                      (FORMAT_VERSION)
    model_type       "console_mixer"          (a key of the caller's registry)
    config           '{"channels": 64, ...}'  (JSON of dataclasses.asdict(config))
    sample_rate      "44100"
    neuromix_aliases '{"b.weight": "a.weight"}' (only when parameters are tied)
    ...              any extra string entries given by the caller (training command, ...)

:func:`load` rebuilds ``ModelClass(ConfigClass(**config))`` from an explicit registry
(no import-time magic) and loads the weights with ``strict=True``. The file's header
is parsed and validated *before* safetensors sees the file; pickled checkpoints
(``torch.save`` files, zip archives) are refused, and no code here ever unpickles.

Shipped ("release") files carry the first 8 hex digits of the SHA-256 of their
content in their name, ``name-1a2b3c4d.safetensors``; :func:`load` checks it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import stat
import struct
import tempfile
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch as safetensors_torch
import torch
from torch import Tensor, nn

from .errors import CheckpointError, NeuromixError

__all__ = [
    "FORMAT_VERSION",
    "CheckpointInfo",
    "save",
    "save_release",
    "read_info",
    "load",
    "content_hash",
    "release_name_hash",
    "unwrap_model",
]

FORMAT_VERSION = 1
"""Version of the metadata layout written by :func:`save`; newer files are refused."""

_RESERVED_KEYS = frozenset({"neuromix_format", "model_type", "config", "sample_rate", "neuromix_aliases"})
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit
_HASH_CHARS = 8
_RELEASE_NAME = re.compile(r"^(?P<base>.+)-(?P<hash>[0-9a-f]{8})\.safetensors$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint's header says, read without loading its weights.

    Attributes:
        model_type: registry key of the model class.
        config: the model config as a JSON-decoded dict.
        sample_rate: audio rate the model was trained at, in Hz.
        format_version: metadata layout version (<= :data:`FORMAT_VERSION`).
        extra: the other metadata entries (strings), e.g. training command or data.
        sha256: hex SHA-256 of the whole file.
    """

    model_type: str
    config: dict[str, Any]
    sample_rate: int
    format_version: int
    extra: dict[str, str]
    sha256: str

    @property
    def short_hash(self) -> str:
        """First 8 hex digits of :attr:`sha256` (as used in release file names)."""
        return self.sha256[:_HASH_CHARS]


# --------------------------------------------------------------------------- saving


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the plain module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    module = model
    for _ in range(8):
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif isinstance(getattr(module, "_orig_mod", None), nn.Module):  # torch.compile
            module = module._orig_mod
        else:
            break
    return module


def _state_tensors(module: nn.Module) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Independent contiguous CPU copies of the state dict, and aliases of tied tensors.

    Tensors that are the very same view of the same storage (tied weights) are stored
    once; the other names are recorded as aliases. Anything else gets its own copy
    (safetensors refuses tensors that share memory).
    """
    tensors: dict[str, Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for name, value in module.state_dict().items():
        if not isinstance(value, Tensor):
            raise ValueError(
                f"state dict entry {name!r} is a {type(value).__name__}, not a tensor; "
                "only tensors can be saved in a safetensors checkpoint"
            )
        if value.numel() > 0 and value.device.type != "meta":
            key = (
                value.device,
                value.untyped_storage().data_ptr(),
                value.storage_offset(),
                tuple(value.shape),
                tuple(value.stride()),
                value.dtype,
            )
            if key in seen:
                aliases[name] = seen[key]
                continue
            seen[key] = name
        tensors[name] = value.detach().to("cpu", copy=True).contiguous()
    return tensors, aliases


def _serialize(
    model: nn.Module,
    model_type: str,
    config: Any,
    sample_rate: int,
    extra: Mapping[str, str] | None,
) -> bytes:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(model_type, str) or not model_type:
        raise ValueError("model_type must be a non-empty string")
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    try:
        config_json = json.dumps(dataclasses.asdict(config), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config {type(config).__name__} is not JSON serialisable: {exc}") from exc
    tensors, aliases = _state_tensors(unwrap_model(model))
    metadata = {
        "neuromix_format": str(FORMAT_VERSION),
        "model_type": model_type,
        "config": config_json,
        "sample_rate": str(int(sample_rate)),
    }
    if aliases:
        metadata["neuromix_aliases"] = json.dumps(aliases, sort_keys=True)
    for key, value in (extra or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"extra metadata must map str to str, got {key!r}: {type(value).__name__}")
        if key in _RESERVED_KEYS:
            raise ValueError(f"extra metadata key {key!r} is reserved")
        metadata[key] = value
    return safetensors_torch.save(tensors, metadata=metadata)


def _atomic_write(path: Path, data: bytes) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise CheckpointError(f"{path}: folder {folder} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        try:
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass
    finally:
        if tmp.exists():
            tmp.unlink()


def save(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    model_type: str,
    config: Any,
    sample_rate: int,
    extra: dict[str, str] | None = None,
) -> Path:
    """Save a model's weights and what rebuilds it, atomically (replaces an existing file).

    The plain module is saved (DDP / DataParallel / ``torch.compile`` wrappers are
    removed), as independent contiguous CPU tensors; tied tensors are stored once.

    Args:
        path: output file (conventionally ``*.safetensors``).
        model: the model.
        model_type: registry key that :func:`load` will look up.
        config: the model's config, a dataclass instance (stored as JSON).
        sample_rate: audio rate of the model in Hz.
        extra: further metadata, string to string (keys must not be reserved ones).

    Returns:
        The path written.

    Raises:
        TypeError / ValueError: invalid arguments (programming errors).
        CheckpointError: the output folder does not exist.
    """
    p = Path(path)
    _atomic_write(p, _serialize(model, model_type, config, sample_rate, extra))
    return p


def save_release(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    model_type: str,
    config: Any,
    sample_rate: int,
    extra: dict[str, str] | None = None,
) -> Path:
    """Save a shipped checkpoint whose name carries its content hash.

    ``path`` gives the folder and base name: ``models/mixer.safetensors`` is written
    as ``models/mixer-<8 hex>.safetensors``, the hex digits being the start of the
    SHA-256 of the file content. Arguments as for :func:`save`.

    Returns:
        The path written (with the hash in its name).
    """
    p = Path(path)
    base = p.name[: -len(".safetensors")] if p.name.endswith(".safetensors") else p.name
    data = _serialize(model, model_type, config, sample_rate, extra)
    digest = hashlib.sha256(data).hexdigest()[:_HASH_CHARS]
    final = p.with_name(f"{base}-{digest}.safetensors")
    _atomic_write(final, data)
    return final


# --------------------------------------------------------------------------- reading


def _not_safetensors(path: Path, detail: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: is not a safetensors file; pickled checkpoints are never loaded ({detail})"
    )


def _looks_pickled(first: bytes) -> str | None:
    if first.startswith(b"PK\x03\x04"):
        return "it is a zip archive, e.g. a torch.save checkpoint"
    if len(first) >= 2 and first[0] == 0x80 and 2 <= first[1] <= 5:
        return "it starts like a pickle stream, e.g. a legacy torch.save checkpoint"
    return None


def _open_regular(path: Path) -> Any:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be accessed ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: is not a regular file")
    try:
        return open(path, "rb")
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _read_header(handle: Any, size: int, path: Path) -> tuple[dict[str, Any], bytes]:
    """Read and validate the safetensors header; return it and the raw prefix bytes.

    Layout: 8-byte little-endian header length ``n``, ``n`` bytes of UTF-8 JSON, then
    the tensor data. Only a bounded number of bytes is read.
    """
    first = handle.read(8)
    reason = _looks_pickled(first)
    if reason is not None:
        raise _not_safetensors(path, reason)
    if len(first) < 8:
        raise _not_safetensors(path, f"only {size} bytes long")
    (n,) = struct.unpack("<Q", first)
    if n < 2 or n > _MAX_HEADER_BYTES:
        raise _not_safetensors(path, "no valid safetensors header length")
    if 8 + n > size:
        peek = handle.read(1)
        if peek == b"{":
            raise CheckpointError(
                f"{path}: is truncated: its header needs {n} bytes but the file has {size - 8} after the length"
            )
        raise _not_safetensors(path, "no valid safetensors header")
    raw = handle.read(n)
    if len(raw) != n:
        raise CheckpointError(f"{path}: is truncated (the header could not be read completely)")
    if not raw.startswith(b"{"):
        raise _not_safetensors(path, "the header is not JSON")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _not_safetensors(path, "the header is not valid JSON") from None
    if not isinstance(header, dict):
        raise _not_safetensors(path, "the header is not a JSON object")
    data_len = size - 8 - n
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in entry.items()
            ):
                raise CheckpointError(f"{path}: invalid safetensors metadata (must map strings to strings)")
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]
            or not isinstance(entry.get("dtype"), str)
            or not isinstance(entry.get("shape"), list)
        ):
            raise CheckpointError(f"{path}: invalid safetensors header entry for tensor {name!r}")
        end = max(end, offsets[1])
    if end > data_len:
        raise CheckpointError(
            f"{path}: is truncated: the header describes {end} bytes of tensor data but only "
            f"{data_len} are present"
        )
    return header, first + raw


def _scan(path: Path, keep_data: bool) -> tuple[dict[str, Any], str, bytes | None]:
    """Validate the header, hash the whole file, and optionally return its bytes."""
    with _open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        header, prefix = _read_header(handle, size, path)
        hasher = hashlib.sha256(prefix)
        parts = [prefix] if keep_data else None
        while True:
            chunk = handle.read(_CHUNK)
            if not chunk:
                break
            hasher.update(chunk)
            if parts is not None:
                parts.append(chunk)
    return header, hasher.hexdigest(), (b"".join(parts) if parts is not None else None)


def _check_release_hash(path: Path, sha256: str) -> None:
    match = _RELEASE_NAME.match(path.name)
    if match is not None and match.group("hash") != sha256[:_HASH_CHARS]:
        raise CheckpointError(
            f"{path}: content hash mismatch: the name says {match.group('hash')} but the content "
            f"hashes to {sha256[:_HASH_CHARS]}; the file was modified or corrupted"
        )


def _info_from_header(path: Path, header: dict[str, Any], sha256: str) -> CheckpointInfo:
    meta: dict[str, str] = dict(header.get("__metadata__") or {})
    if "neuromix_format" not in meta:
        raise CheckpointError(f"{path}: is a safetensors file but not a neuromix checkpoint (no neuromix_format)")
    try:
        version = int(meta["neuromix_format"])
    except ValueError:
        raise CheckpointError(f"{path}: invalid neuromix_format {meta['neuromix_format']!r}") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: was written in checkpoint format {version} by a newer neuromix; this "
            f"version reads format {FORMAT_VERSION} and older; upgrade neuromix"
        )
    if version < 1:
        raise CheckpointError(f"{path}: invalid neuromix_format {version}")
    missing = sorted({"model_type", "config", "sample_rate"} - set(meta))
    if missing:
        raise CheckpointError(f"{path}: metadata lacks {', '.join(missing)}")
    try:
        config = json.loads(meta["config"])
    except ValueError:
        raise CheckpointError(f"{path}: the config metadata is not valid JSON") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: the config metadata is not a JSON object")
    try:
        sample_rate = int(meta["sample_rate"])
    except ValueError:
        raise CheckpointError(f"{path}: invalid sample_rate {meta['sample_rate']!r}") from None
    extra = {k: v for k, v in meta.items() if k not in _RESERVED_KEYS}
    return CheckpointInfo(
        model_type=meta["model_type"],
        config=config,
        sample_rate=sample_rate,
        format_version=version,
        extra=extra,
        sha256=sha256,
    )


def read_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Read a checkpoint's metadata and hash without building any tensor.

    Raises:
        CheckpointError: missing file, not a safetensors file (e.g. pickled), truncated,
            not a neuromix checkpoint, newer format version, or malformed metadata.
            The content hash in a release name is *not* checked here (see :func:`load`).
    """
    p = Path(path)
    header, sha256, _ = _scan(p, keep_data=False)
    return _info_from_header(p, header, sha256)


def content_hash(path: str | os.PathLike[str], *, length: int = _HASH_CHARS) -> str:
    """Return the first ``length`` hex digits of the SHA-256 of a file's content (64 = all).

    Raises:
        CheckpointError: the file cannot be read.
    """
    p = Path(path)
    hasher = hashlib.sha256()
    with _open_regular(p) as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()[:length]


def release_name_hash(path: str | os.PathLike[str]) -> str | None:
    """Return the 8-hex content hash carried by a release file name, or ``None``."""
    match = _RELEASE_NAME.match(Path(path).name)
    return None if match is None else match.group("hash")


# --------------------------------------------------------------------------- config rebuild


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Turn JSON values back into what a dataclass field annotation asks for.

    JSON has no tuples and no nested dataclasses: lists become tuples where the
    annotation is a tuple, dicts become dataclass instances where it is a dataclass.
    """
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _build_config(hint, value, where)
    if (hint is tuple or origin is tuple) and isinstance(value, list):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) == len(value):
            return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        return tuple(value)
    if origin is list and isinstance(value, list):
        args = typing.get_args(hint)
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)] if args else value
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            if arm is type(None):
                continue
            converted = _coerce(arm, value, where)
            if converted is not value:
                return converted
    return value


def _build_config(cls: type, data: Mapping[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    missing = sorted(set(fields) - set(data))
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"unknown field(s) {', '.join(unknown)}")
        if missing:
            parts.append(f"missing field(s) {', '.join(missing)}")
        raise CheckpointError(f"{where}: config does not match {cls.__name__}: {'; '.join(parts)}")
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: use the JSON values as they are
        hints = {}
    kwargs = {name: _coerce(hints.get(name, Any), data[name], f"{where}.{name}") for name in fields}
    try:
        return cls(**kwargs)
    except NeuromixError as exc:
        raise CheckpointError(f"{where}: config is invalid for {cls.__name__}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: config is invalid for {cls.__name__}: {exc}") from exc


# --------------------------------------------------------------------------- loading


def _short_list(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def load(
    path: str | os.PathLike[str],
    registry: Mapping[str, tuple[type[nn.Module], type]],
    *,
    map_location: str | torch.device = "cpu",
) -> tuple[nn.Module, CheckpointInfo]:
    """Rebuild a model from a checkpoint and load its weights strictly.

    Steps: validate the safetensors header (refusing pickles), hash the file and
    check the hash in a release name, check the format version, look ``model_type``
    up in ``registry``, build ``ConfigClass(**config)`` (lists become tuples where
    the annotation says tuple), ``ModelClass(config)``, ``load_state_dict(strict=True)``,
    move to ``map_location`` and switch to eval mode.

    Args:
        path: the checkpoint.
        registry: ``model_type -> (ModelClass, ConfigClass)``.
        map_location: device the model ends up on.

    Returns:
        ``(model in eval mode, info)``.

    Raises:
        CheckpointError: not a safetensors file (pickles are refused), truncated,
            content hash mismatch, newer format, unknown model type, config fields
            unknown or missing, model cannot be built, or weights that do not match
            the model (missing / unexpected keys, shape mismatches).
    """
    p = Path(path)
    header, sha256, data = _scan(p, keep_data=True)
    assert data is not None
    _check_release_hash(p, sha256)
    info = _info_from_header(p, header, sha256)
    if info.model_type not in registry:
        known = ", ".join(sorted(registry)) or "none"
        raise CheckpointError(f"{p}: unknown model type {info.model_type!r} (known: {known})")
    model_cls, config_cls = registry[info.model_type]
    config = _build_config(config_cls, info.config, str(p))
    try:
        model = model_cls(config)
    except NeuromixError as exc:
        raise CheckpointError(f"{p}: cannot build {model_cls.__name__}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{p}: cannot build {model_cls.__name__}: {exc}") from exc

    try:
        state = safetensors_torch.load(data)
    except Exception as exc:
        raise CheckpointError(f"{p}: the tensor data cannot be decoded ({exc})") from exc
    aliases_json = header.get("__metadata__", {}).get("neuromix_aliases")
    if aliases_json:
        try:
            aliases = json.loads(aliases_json)
            for alias, target in aliases.items():
                state[alias] = state[target]
        except (ValueError, KeyError, AttributeError, TypeError):
            raise CheckpointError(f"{p}: invalid neuromix_aliases metadata") from None

    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short_list(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches (file vs model): {_short_list(shapes)}")
        raise CheckpointError(
            f"{p}: weights do not match {model_cls.__name__}({config_cls.__name__}): " + "; ".join(parts)
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{p}: weights cannot be loaded into {model_cls.__name__}: {exc}") from exc
    model.to(map_location)
    model.eval()
    return model, info
