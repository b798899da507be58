"""Checkpoint files: written atomically, read with ``weights_only=True``, checked against the architecture.

A checkpoint is one ``torch.save``-d mapping ``{name: obj.state_dict()}``. A checkpoint holding a single
bare ``state_dict`` (as MONAI's ``CheckpointSaver`` writes for a one-entry ``save_dict``) loads into a
one-entry ``objects`` mapping as well. Beside a checkpoint, ``<stem>.preprocessing.json`` records how its
network's inputs were preprocessed (e.g. stain normalisation), so that later stages can refuse to feed it
differently prepared images.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "atomic_path",
    "load_checkpoint",
    "load_module_state",
    "load_preprocessing_record",
    "preprocessing_record_path",
    "save_checkpoint",
    "save_preprocessing_record",
]


def _unwrap(obj: Any) -> Any:
    """The module inside ``DataParallel`` / ``DistributedDataParallel``, else ``obj``."""
    if isinstance(obj, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        return obj.module
    return obj


def save_checkpoint(path: str | os.PathLike, objects: Mapping[str, Any]) -> Path:
    """Save ``{name: obj.state_dict()}`` to ``path`` atomically.

    The data goes to a temporary file in the same folder, is flushed to disk, then renamed over ``path``
    with ``os.replace``: a reader (or a rerun after a crash or ``SIGKILL``) sees either the previous
    complete checkpoint or the new complete one, never a truncated file.

    Args:
        path: the checkpoint file; its folder is created if needed.
        objects: anything with ``state_dict()``: modules, optimisers, LR schedulers, engines, handlers.

    Returns:
        the checkpoint's path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: _unwrap(obj).state_dict() for name, obj in objects.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    return path


def preprocessing_record_path(checkpoint: str | os.PathLike) -> Path:
    """``models/model.pt`` -> ``models/model.preprocessing.json``."""
    return Path(checkpoint).with_suffix(".preprocessing.json")


def save_preprocessing_record(checkpoint: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write ``record`` (JSON-serialisable settings, e.g. ``{"stain_normalization": true}``) beside
    ``checkpoint`` atomically; returns the record's path."""
    path = preprocessing_record_path(checkpoint)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(dict(record), indent=2, sort_keys=True) + "\n")
    return path


def load_preprocessing_record(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """The record beside ``checkpoint``, or None when it has none (made before records were kept).

    Raises:
        ValueError: the record is not a JSON object.
    """
    path = preprocessing_record_path(checkpoint)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}).") from exc
    if not isinstance(record, dict):
        raise ValueError(f"{path} must hold a JSON object of preprocessing settings.")
    return record


def _first_mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, Any]) -> str | None:
    """Describe the first key (in the module's order) that is missing, unexpected or of another shape."""
    for key, value in expected.items():
        if key not in found:
            return f"'{key}' is missing from the checkpoint"
        other = found[key]
        if not isinstance(other, torch.Tensor) or other.shape != value.shape:
            shape = tuple(other.shape) if isinstance(other, torch.Tensor) else type(other).__name__
            return f"'{key}' has shape {shape} in the checkpoint, the model expects {tuple(value.shape)}"
    for key in found:
        if key not in expected:
            return f"'{key}' is in the checkpoint but not in the model"
    return None


def load_module_state(module: torch.nn.Module, state: Mapping[str, Any], name: str = "module") -> None:
    """``module.load_state_dict(state)`` (strict) after checking keys and shapes.

    Raises:
        ValueError: naming ``name``, the module's class and the first mismatching key.
    """
    module = _unwrap(module)
    if not isinstance(state, Mapping):
        raise ValueError(f"'{name}' should be a state_dict (a mapping), found {type(state).__name__}.")
    mismatch = _first_mismatch(module.state_dict(), state)
    if mismatch is not None:
        raise ValueError(
            f"'{name}' does not match the architecture of {type(module).__name__}: "
            f"first mismatching key {mismatch}."
        )
    module.load_state_dict(state)


def load_checkpoint(
    path: str | os.PathLike, objects: Mapping[str, Any], map_location: Any = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (or MONAI's ``CheckpointSaver``) into ``objects``.

    The file is read with ``torch.load(..., weights_only=True)``. Modules are checked key by key before
    loading; every other object (optimiser, scheduler, engine, handler) gets its entry through its own
    ``load_state_dict``.

    Args:
        path: the checkpoint file.
        objects: ``{name: obj}``; each ``name`` must be an entry of the checkpoint. With one object, a
            checkpoint that is a bare ``state_dict`` is loaded into it.
        map_location: passed to ``torch.load``; tensors are loaded on the CPU by default and copied into
            the objects' own devices by ``load_state_dict``.

    Returns:
        the loaded checkpoint mapping.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: naming ``path`` when the file is not a readable checkpoint, lacks an entry, or does not
            fit an object (for modules: the first mismatching key).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {exc}") from exc
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path} should hold a mapping of state_dicts, found {type(checkpoint).__name__}.")
    if len(objects) == 1 and next(iter(objects)) not in checkpoint:
        checkpoint = {next(iter(objects)): checkpoint}
    for name, obj in objects.items():
        if name not in checkpoint:
            entries = sorted(map(str, checkpoint))
            shown = ", ".join(entries[:8]) + (f", ... ({len(entries)} in all)" if len(entries) > 8 else "")
            raise ValueError(f"{path} has no entry '{name}'; its entries: {shown}.")
        try:
            if isinstance(_unwrap(obj), torch.nn.Module):
                load_module_state(obj, checkpoint[name], name)
            else:
                obj.load_state_dict(checkpoint[name])
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise ValueError(f"cannot load checkpoint {path} into '{name}': {exc}") from exc
    return dict(checkpoint)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Write a file of any format atomically: yields a temporary path beside ``path`` to write to, then
    renames it over ``path`` with ``os.replace`` (or removes it when the block raises).

    The temporary name keeps ``path``'s suffix (writers that choose a format by suffix see the right one)
    and starts with a dot.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
