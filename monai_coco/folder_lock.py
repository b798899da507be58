"""A folder held by one process at a time (a training run's checkpoint folder, a cohort's output folder)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import filelock

__all__ = ["FolderLock"]


class FolderLock:
    """An exclusive lock on a folder (filelock's ``FileLock`` on ``<folder>/<name>``: ``flock`` on POSIX,
    ``msvcrt.locking`` on Windows) against other processes.

    The operating system releases the lock when the process ends in any way (``SIGKILL`` included), so
    a killed run never leaves the folder locked (its file then stays and means nothing on its own). The file
    holds the holder's description, which a second process's message quotes; a release removes it, first,
    and a holder that finds its file gone after locking it (removed by the previous holder between its open
    and its lock) lets go and locks anew, so that no two processes hold a folder.
    Within one process the lock is shared: every ``FolderLock`` of the same folder holds it (a config built
    twice in one Python session is no second run), and it is released when the last one releases it.

    Args:
        folder: the folder to hold; created if needed.
        purpose: what holds it, for the message a second process gets, e.g. ``"training"``.
        name: the lock file's name in ``folder``; locks of different names are independent (the workers of
            one cohort each hold their own).
        instead: what the message suggests instead of waiting.

    ``with FolderLock(...):`` holds it for the block.

    Raises (from :meth:`acquire`):
        ValueError: when another process holds the folder, naming the folder and that process; when the
            folder cannot be made or written to.
    """

    _held: dict[str, list] = {}  # realpath of the lock file -> [filelock.FileLock, holders] in this process

    def __init__(
        self,
        folder: str | os.PathLike,
        purpose: str = "a run",
        name: str = ".lock",
        instead: str = "give this run its own folder (e.g. another --ckpt_dir or --bundle_root)",
    ) -> None:
        self.path = Path(folder).expanduser() / name
        self.purpose = purpose
        self.instead = instead
        self.held = False

    def acquire(self) -> FolderLock:
        if self.held:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"{self.path.parent} cannot be made: {exc.strerror or exc}.") from None
        key = os.path.realpath(self.path)
        if key not in self._held:
            self._held[key] = [self._lock_file(), 0]
        self._held[key][1] += 1
        self.held = True
        return self

    def _lock_file(self) -> filelock.FileLock:
        """The lock file, locked without waiting, with this holder's description written in it."""
        lock = filelock.FileLock(self.path, timeout=0, thread_local=False)
        try:
            lock.acquire()
            while not self.path.exists():  # the previous holder removed the file we locked: lock the new one
                lock.release()
                lock = filelock.FileLock(self.path, timeout=0, thread_local=False)
                lock.acquire()
        except filelock.Timeout:
            holder = ""
            with contextlib.suppress(OSError):
                holder = self.path.read_text(errors="replace").strip()[:64]
            raise ValueError(
                f"{self.path.parent} is in use by {holder or 'another process'}; wait for it to finish, or "
                f"{self.instead}."
            ) from None
        except OSError as exc:  # a read-only folder, no permission
            raise ValueError(
                f"{self.path.parent} cannot be written to: {exc.strerror or exc}; expected a writable folder."
            ) from None
        with contextlib.suppress(OSError):  # only a description: Windows may refuse a second handle
            self.path.write_text(f"{self.purpose} (process {os.getpid()})")
        return lock

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        key = os.path.realpath(self.path)
        entry = self._held[key]
        entry[1] -= 1
        if entry[1] == 0:  # the file goes first, then the lock (see _lock_file)
            with contextlib.suppress(OSError):
                self.path.unlink()
            entry[0].release()
            del self._held[key]

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()
