"""Checkpoint files: written atomically, read with ``weights_only=True``, checked against the architecture.

A checkpoint is one ``torch.save``-d mapping ``{name: obj.state_dict()}``. A checkpoint holding a single
bare ``state_dict`` (as MONAI's ``CheckpointSaver`` writes for a one-entry ``save_dict``) loads into a
one-entry ``objects`` mapping as well. Beside a checkpoint, ``<stem>.preprocessing.json`` records how its
network's inputs were preprocessed (e.g. stain normalisation), so that later stages can refuse to feed it
differently prepared images. A folder that training writes to is held with :class:`FolderLock`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "FolderLock",
    "atomic_path",
    "atomic_write",
    "load_checkpoint",
    "load_module_state",
    "load_preprocessing_record",
    "preprocessing_record_path",
    "read_checkpoint",
    "remove_partial_writes",
    "save_checkpoint",
    "save_preprocessing_record",
]

# numpy values that older checkpoints keep beside the weights (a best metric as ``np.float64``, an epoch
# as ``np.int64``, a small array): rebuilding them runs no code of the file's choosing, so they are
# allowed on top of ``weights_only=True``'s tensors and plain Python values.
_NUMERIC = "bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64 complex128"
_NUMPY_GLOBALS = [np.dtype, np.ndarray, np._core.multiarray.scalar, np._core.multiarray._reconstruct] + [
    type(np.dtype(name)) for name in _NUMERIC.split()
]
_TEMPORARY = ".{name}.*.tmp"  # the temporary files of atomic_write, found by remove_partial_writes


def _unwrap(obj: Any) -> Any:
    """The module inside ``DataParallel`` / ``DistributedDataParallel``, else ``obj``."""
    if isinstance(obj, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        return obj.module
    return obj


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path`` atomically.

    The data goes to ``.<name>.<random>.tmp`` in the same folder, is flushed to disk, then renamed over
    ``path`` with ``os.replace``: a reader (or a rerun after a crash, ``SIGKILL`` or a full disk) sees
    either the previous complete file or the new complete one, never a truncated file. On an error the
    temporary file is removed; after a ``SIGKILL`` it is left, and :func:`remove_partial_writes` removes it.

    Raises:
        OSError: naming ``path`` when the folder cannot be made or written (full disk, read-only, a file in
            the way), with the system's reason; ``path`` is then unchanged.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        message = f"cannot write {path}: {reason}; the previous file (if any) is kept"
        raise OSError(exc.errno, message) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def remove_partial_writes(folder: str | os.PathLike, name: str = "*") -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` left in ``folder`` when killed; return them.

    Call it only while no other process writes to ``folder`` (e.g. holding its :class:`FolderLock`).
    """
    removed = sorted(Path(folder).glob(_TEMPORARY.format(name=name))) if Path(folder).is_dir() else []
    for path in removed:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return removed


def save_checkpoint(path: str | os.PathLike, objects: Mapping[str, Any], bare: bool = False) -> Path:
    """Save ``{name: obj.state_dict()}`` to ``path`` atomically (:func:`atomic_write`).

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
    with atomic_write(path) as f:
        f.write(buffer.getbuffer())
    return path


class FolderLock:
    """An exclusive lock on a folder (``fcntl.flock`` on ``<folder>/.lock``) against other processes.

    The operating system releases the lock when the process ends in any way (``SIGKILL`` included), so
    a killed run never leaves the folder locked; the file itself may stay and means nothing on its own.
    Within one process the lock is shared: every ``FolderLock`` of the same folder holds it (a config built
    twice in one Python session is no second run), and it is released when the last one releases it.

    Args:
        folder: the folder to hold; created if needed.
        purpose: what holds it, for the message a second process gets, e.g. ``"training"``.

    Raises (from :meth:`acquire`):
        ValueError: when another process holds the folder, naming the folder and that process's id.
    """

    _held: dict[str, list[int]] = {}  # realpath of the lock file -> [descriptor, holders] in this process

    def __init__(self, folder: str | os.PathLike, purpose: str = "a run") -> None:
        self.path = Path(folder).expanduser() / ".lock"
        self.purpose = purpose
        self.held = False

    def acquire(self) -> FolderLock:
        if self.held:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.path)
        if key not in self._held:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise ValueError(
                    f"{self.path.parent} is in use by {holder}; wait for it to finish, or give this run its "
                    "own folder (e.g. another --ckpt_dir or --bundle_root)."
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{self.purpose} (process {os.getpid()})".encode())
            self._held[key] = [fd, 0]
        self._held[key][1] += 1
        self.held = True
        return self

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        key = os.path.realpath(self.path)
        entry = self._held[key]
        entry[1] -= 1
        if entry[1] == 0:
            os.close(entry[0])  # closing the descriptor releases the flock
            del self._held[key]

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()


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


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, also allowing numpy scalars, dtypes and arrays.

    Raises:
        ValueError: one line naming ``path``: empty, truncated or not a PyTorch file; or holding pickled
            Python objects (a whole module, a custom class), named, with how to re-save the weights alone.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_NUMPY_GLOBALS):
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
