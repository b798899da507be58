"""Checkpoint files: written atomically (:mod:`monai_coco.atomic_files`), read with ``weights_only=True``,
checked against the architecture.

A checkpoint is one ``torch.save``-d mapping ``{name: obj.state_dict()}``. A checkpoint holding a single
bare ``state_dict`` (as MONAI's ``CheckpointSaver`` writes for a one-entry ``save_dict``) loads into a
one-entry ``objects`` mapping as well. Beside a checkpoint, ``<stem>.preprocessing.json`` records how its
network's inputs were preprocessed (e.g. stain normalisation), so that later stages can refuse to feed it
differently prepared images.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_coco import atomic_files

__all__ = [
    "load_checkpoint",
    "load_module_state",
    "load_preprocessing_record",
    "preprocessing_record_path",
    "read_checkpoint",
    "save_checkpoint",
    "save_preprocessing_record",
]

# numpy values that older checkpoints keep beside the weights (a best metric as ``np.float64``, an epoch
# as ``np.int64``, a small array): rebuilding them runs no code of the file's choosing, so they are
# allowed on top of ``weights_only=True``'s tensors and plain Python values.
_NUMERIC = "bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64 complex128"
# numpy 2 keeps them in numpy._core; numpy 1 in numpy.core, and reads numpy 2's files by their numpy._core
# names (torch's allow-list then takes (object, name) pairs)
if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
    _MULTIARRAY, _FROM_NUMPY_2 = np._core.multiarray, []
else:
    _MULTIARRAY = np.core.multiarray
    _FROM_NUMPY_2 = [
        (getattr(_MULTIARRAY, n), f"numpy._core.multiarray.{n}") for n in ("scalar", "_reconstruct")
    ]
_NUMPY_GLOBALS = [np.dtype, np.ndarray, _MULTIARRAY.scalar, _MULTIARRAY._reconstruct] + [
    type(np.dtype(name)) for name in _NUMERIC.split()
]


def _unwrap(obj: Any) -> Any:
    """The module inside ``DataParallel`` / ``DistributedDataParallel``, else ``obj``."""
    if isinstance(obj, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        return obj.module
    return obj


def save_checkpoint(path: str | os.PathLike, objects: Mapping[str, Any], bare: bool = False) -> Path:
    """Save ``{name: obj.state_dict()}`` to ``path`` atomically
    (:func:`~monai_coco.atomic_files.atomic_write`).

    Args:
        path: the checkpoint file; its folder is created if needed.
        objects: anything with ``state_dict()``: modules, optimisers, LR schedulers, engines, handlers.
        bare: with one object, write its ``state_dict`` alone (as MONAI's ``CheckpointSaver`` does and the
            model zoo's ``models/model.pt`` is read by ``ckpt_export``).

    Returns:
        the checkpoint's path.

    Raises:
        OSError: naming ``path`` when it cannot be written (full disk, read-only); the previous file stays.
    """
    path = Path(path)
    state = {name: _unwrap(obj).state_dict() for name, obj in objects.items()}
    if bare:
        if len(state) != 1:
            raise ValueError(f"a bare checkpoint holds one state_dict, got {len(state)} objects for {path}.")
        state = next(iter(state.values()))
    buffer = io.BytesIO()  # torch.save turns a failed write (full disk) into a RuntimeError, f.write does not
    torch.save(state, buffer)
    with atomic_files.atomic_write(path) as f:
        f.write(buffer.getbuffer())
    return path


def preprocessing_record_path(checkpoint: str | os.PathLike) -> Path:
    """``models/model.pt`` -> ``models/model.preprocessing.json``."""
    return Path(checkpoint).with_suffix(".preprocessing.json")


def save_preprocessing_record(checkpoint: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write ``record`` (JSON-serialisable settings, e.g. ``{"stain_normalization": true}``) beside
    ``checkpoint`` atomically; returns the record's path."""
    path = preprocessing_record_path(checkpoint)
    with atomic_files.atomic_path(path) as tmp:
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


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, also allowing numpy scalars, dtypes and arrays.

    Raises:
        ValueError: one line naming ``path``: empty, truncated or not a PyTorch file; or holding pickled
            Python objects (a whole module, a custom class), named, with how to re-save the weights alone.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_NUMPY_GLOBALS + _FROM_NUMPY_2):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # torch raises UnpicklingError, RuntimeError, EOFError, ... by cause
        unsafe = _unsafe_globals(path)
        if unsafe:
            shown = ", ".join(unsafe[:3]) + (f" and {len(unsafe) - 3} more" if len(unsafe) > 3 else "")
            raise ValueError(
                f"{path} holds pickled Python objects ({shown}), which are not loaded for safety; where you "
                "trust the file, re-save its weights alone: obj = torch.load(path, weights_only=False); "
                "torch.save(obj.state_dict() if hasattr(obj, 'state_dict') else obj, path)."
            ) from None
        size = path.stat().st_size
        reason = "it is empty" if size == 0 else f"{size} bytes, truncated or not PyTorch"
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {reason}.") from None


def _unsafe_globals(path: Path) -> list[str]:
    """The Python objects (beyond the allowed numpy ones) that the checkpoint's pickle names, if readable."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        return []
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in _NUMPY_GLOBALS} | {"numpy.dtype", "numpy.ndarray"}
    allowed |= {name for _, name in _FROM_NUMPY_2}
    return [name for name in names if name not in allowed and not name.startswith("numpy.dtypes.")]


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
    checkpoint = read_checkpoint(path, map_location)
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
