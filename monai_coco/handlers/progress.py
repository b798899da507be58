"""Progress in a terminal and loss lines in a log: what a training run prints while it runs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any, Optional

from ignite.engine import Engine
from ignite.handlers import ProgressBar  # its tqdm is a dependency of this package

__all__ = ["TerminalProgressBar", "loss_line_filter"]


class TerminalProgressBar:
    """Ignite's ``ProgressBar`` (tqdm) over each epoch's iterations, only when ``stream`` is a terminal.

    The bar is drawn on ``stream``. When that is a file or a pipe (a batch job, ``| tee``, CI) nothing is
    attached, so the log keeps only ``StatsHandler``'s plain lines instead of carriage-return updates.

    Args:
        output_transform: maps ``engine.state.output`` to ``{name: float}`` shown after the bar (for
            example the loss terms); None shows none.
        stream: the stream whose terminal-ness decides; default ``sys.stdout`` at attach time.
        persist: keep each epoch's finished bar on screen.
        tqdm_kwargs: passed to tqdm, e.g. ``mininterval`` (seconds between redraws, tqdm's default 0.1).
    """

    def __init__(
        self,
        output_transform: Optional[Callable[[Any], Any]] = None,
        stream: Optional[IO] = None,
        persist: bool = False,
        **tqdm_kwargs: Any,
    ) -> None:
        self.output_transform = output_transform
        self.stream = stream
        self.persist = persist
        self.tqdm_kwargs = tqdm_kwargs
        self.attached = False

    def attach(self, engine: Engine) -> None:
        """Attach a ``ProgressBar`` to ``engine`` when the stream is a terminal; else do nothing."""
        stream = self.stream if self.stream is not None else sys.stdout
        isatty = getattr(stream, "isatty", None)
        if not (callable(isatty) and isatty()):
            return
        bar = ProgressBar(persist=self.persist, file=stream, **self.tqdm_kwargs)
        bar.attach(engine, output_transform=self.output_transform)
        self.attached = True


def loss_line_filter(log_interval: int) -> Callable[[Engine, int], bool]:
    """An Ignite event filter for ``StatsHandler(iteration_log=...)``: every ``log_interval``-th iteration
    and always the last iteration of each epoch, so that every epoch logs at least one loss line however
    short it is.

    Args:
        log_interval: iterations between loss lines, >= 1.

    Raises:
        ValueError: ``log_interval`` is not an integer >= 1.
    """
    if isinstance(log_interval, bool) or not isinstance(log_interval, int) or log_interval < 1:
        raise ValueError(f"log_interval must be an integer >= 1, got {log_interval!r}.")

    def event_filter(engine: Engine, iteration: int) -> bool:
        epoch_length = engine.state.epoch_length
        last_of_epoch = epoch_length is not None and iteration % epoch_length == 0
        return iteration % log_interval == 0 or last_of_epoch

    return event_filter
