"""A command run with a real terminal (a pseudo-terminal of 24 x 120 characters) as its stdout and stderr, and
what the terminal received; the same command with pipes instead, for comparison."""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import subprocess
import sys
import termios
from collections.abc import Mapping, Sequence
from typing import Optional

PYTHON = sys.executable


def run_in_terminal(
    argv: Sequence[str], env: Optional[Mapping[str, str]] = None, timeout: float = 120
) -> str:
    """Run ``argv`` with a pseudo-terminal as stdout and stderr, with ``env`` added to the environment;
    everything it drew, decoded (``\\r`` kept, the terminal's ``\\n`` -> ``\\r\\n`` undone). Fails on a
    non-zero exit."""
    master, replica = os.openpty()
    # a real terminal has a size; tqdm sizes its bars from it (a fresh pty is 0 x 0: an empty bar)
    fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    environment = {**os.environ, **(env or {})}
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=replica, stderr=replica, env=environment
    )
    os.close(replica)
    drawn = b""
    while True:  # read as it comes (a full terminal would block the command), to the end
        try:
            chunk = os.read(master, 65536)
        except OSError as exc:  # EIO: every writer has closed the terminal
            if exc.errno != errno.EIO:
                raise
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    code = process.wait(timeout)
    text = drawn.decode(errors="replace").replace("\r\n", "\n")
    assert code == 0, text
    return text


def run_piped(argv: Sequence[str], env: Optional[Mapping[str, str]] = None, timeout: float = 120) -> str:
    """Run ``argv`` with one pipe as stdout and stderr, with ``env`` added to the environment; what it wrote.
    Fails on a non-zero exit."""
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env={**os.environ, **(env or {})}, timeout=timeout, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout
    return done.stdout
