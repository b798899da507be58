"""Progress in a terminal and loss lines in a log: what a training or validation run prints while it runs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import IO, Any, Optional

from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar  # its tqdm is a dependency of this package
from tqdm.contrib.logging import logging_redirect_tqdm

__all__ = ["TerminalProgressBar", "is_terminal", "log_lines_above_bars", "loss_line_filter"]


def is_terminal(stream: Optional[IO]) -> bool:
    """Whether ``stream`` is a terminal (``isatty()``): where progress bars are drawn; a file or a pipe (a
    batch job, ``| tee``, CI) gets plain log lines instead."""
    isatty = getattr(stream, "isatty", None)
    return callable(isatty) and bool(isatty())


def _writes_to_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.stderr)


@contextmanager
def log_lines_above_bars() -> Iterator[None]:
    """While in the context, every logger's console handler (a ``StreamHandler`` on ``sys.stdout`` or
    ``sys.stderr``: the root logger's from the bundle's ``logging.conf``, and those of MONAI's loggers that
    have their own, such as ``StatsHandler``'s) writes through ``tqdm.write`` (tqdm's
    ``logging_redirect_tqdm``): the bars shown are cleared, the line is printed and the bars redrawn below it,
    so that a log line never lands inside a bar. The handlers are given back on exit."""
    named = [x for x in logging.root.manager.loggerDict.values() if isinstance(x, logging.Logger)]
    console = [x for x in (logging.root, *named) if any(_writes_to_console(h) for h in x.handlers)]
    with logging_redirect_tqdm(loggers=console):
        yield


class TerminalProgressBar:
    """Ignite's ``ProgressBar`` (tqdm) over each epoch's iterations, or over each run's, only when ``stream``
    is a terminal.

    The bar is drawn on ``stream``; while the engine runs, log lines go above it
    (:func:`log_lines_above_bars`). When ``stream`` is a file or a pipe (a batch job, ``| tee``, CI) nothing
    is attached, so the log keeps only ``StatsHandler``'s plain lines instead of carriage-return updates.

    Args:
        output_transform: maps ``engine.state.output`` to ``{name: float}`` shown after the bar (for
            example the loss terms); None shows none.
        stream: the stream whose terminal-ness decides; default ``sys.stdout`` at attach time.
        persist: keep each finished bar on screen.
        per_run: one bar per run of the engine (closed on ``COMPLETED``) rather than per epoch: for a MONAI
            evaluator, which takes the trainer's epoch as its own (a validation run is its last "epoch" of
            as many); with ``desc`` its label, e.g. ``validation``, is shown without an epoch count.
        tqdm_kwargs: passed to tqdm, e.g. ``desc`` (the bar's label; default Ignite's ``Epoch [e/E]`` or
            ``Iteration``) or ``mininterval`` (seconds between redraws, tqdm's default 0.1).
    """

    def __init__(
        self,
        output_transform: Optional[Callable[[Any], Any]] = None,
        stream: Optional[IO] = None,
        persist: bool = False,
        per_run: bool = False,
        **tqdm_kwargs: Any,
    ) -> None:
        self.output_transform = output_transform
        self.stream = stream
        self.persist = persist
        self.per_run = per_run
        self.tqdm_kwargs = tqdm_kwargs
        self.attached = False

    def attach(self, engine: Engine) -> None:
        """Attach a ``ProgressBar`` to ``engine``, and log lines above it while the engine runs, when the
        stream is a terminal; else do nothing."""
        stream = self.stream if self.stream is not None else sys.stdout
        if not is_terminal(stream):
            return
        bar = ProgressBar(persist=self.persist, file=stream, **self.tqdm_kwargs)
        closing = Events.COMPLETED if self.per_run else Events.EPOCH_COMPLETED
        bar.attach(engine, output_transform=self.output_transform, closing_event_name=closing)
        redirect = ExitStack()

        def start(_: Engine) -> None:
            redirect.close()  # a run that raised left its redirect open (Ignite fires no COMPLETED then)
            redirect.enter_context(log_lines_above_bars())

        engine.add_event_handler(Events.STARTED, start)
        engine.add_event_handler(Events.COMPLETED | Events.TERMINATE, lambda _: redirect.close())
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
