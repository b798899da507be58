"""A folder held by one process at a time (a training run's checkpoint folder, a cohort's output folder)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

__all__ = ["FolderLock"]


class FolderLock:
    """An exclusive lock on a folder (``fcntl.flock`` on ``<folder>/<name>``) against other processes.

    The operating system releases the lock when the process ends in any way (``SIGKILL`` included), so
    a killed run never leaves the folder locked; its file then stays and means nothing on its own. A
    release removes the file (a later holder that opened the removed file sees it and retries).
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
        ValueError: when another process holds the folder, naming the folder and that process's id; when the
            folder cannot be made or written to.
    """

    _held: dict[str, list[int]] = {}  # realpath of the lock file -> [descriptor, holders] in this process

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
            fd = self._lock_file()
            os.ftruncate(fd, 0)
            os.write(fd, f"{self.purpose} (process {os.getpid()})".encode())
            self._held[key] = [fd, 0]
        self._held[key][1] += 1
        self.held = True
        return self

    def _lock_file(self) -> int:
        """A descriptor of the lock file, flocked; retried when the file was removed by its previous holder
        between our ``open`` and our ``flock`` (the lock would then be on a file nobody else sees)."""
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:  # a read-only folder, no permission
                reason = exc.strerror or exc
                raise ValueError(
                    f"{self.path.parent} cannot be written to: {reason}; expected a writable folder."
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise ValueError(
                    f"{self.path.parent} is in use by {holder}; wait for it to finish, or {self.instead}."
                ) from None
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                return fd
            os.close(fd)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        key = os.path.realpath(self.path)
        entry = self._held[key]
        entry[1] -= 1
        if entry[1] == 0:  # the file goes first, then the flock with the descriptor (see _lock_file)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(entry[0])
            del self._held[key]

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()
