"""A folder held by one process at a time (a training run's checkpoint folder, a cohort's output folder)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

__all__ = ["FolderLock"]


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
