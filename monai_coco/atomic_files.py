"""Atomic file writes: every file the project writes appears whole or not at all.

A writer writes to a dotted temporary file beside the target, which is then renamed over it with
``os.replace`` (atomic within one folder): a reader, or a rerun after a crash, ``SIGKILL`` or a full disk,
sees the previous complete file or the new complete one, never a truncated one (``bundle/docs/design.md``,
"Conventions").
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write", "remove_partial_writes"]

_TEMPORARY = ".{name}.*.tmp"  # the temporary files of atomic_write, found by remove_partial_writes


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
