"""Progress of whole-image inference: each image's windows done of its windows, a cohort's images done of its
images and the time left; bars on a terminal, plain log lines in a log file."""

from __future__ import annotations

import logging
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Optional

from ignite.engine import Engine, Events
from tqdm import tqdm

from monai_coco.handlers.progress import is_terminal, log_lines_above_bars
from monai_coco.inference.window_grid import GridSegmenter

__all__ = ["InferenceProgress"]

logger = logging.getLogger("monai_coco.inference")


class InferenceProgress:
    """Progress of segmenting images one after another: an Ignite handler of a
    :class:`~monai_coco.inference.engine.SlideInferenceEvaluator` (:meth:`attach`), or called by a loop
    (:func:`~monai_coco.inference.cohort.run_cohort`: :meth:`start`, then :meth:`image_started` and
    :meth:`image_done` per image, :meth:`close`).

    On a terminal (``stream``): tqdm bars, the images done of the images to do with the time left (when there
    are several), and below it the running image's windows done of its windows (run or skipped as
    background; :attr:`GridSegmenter.progress <monai_coco.inference.window_grid.GridSegmenter>`); log lines
    are written above the bars (:func:`~monai_coco.handlers.progress.log_lines_above_bars`). Elsewhere (a
    file, a pipe): log lines instead, for a long image one each time its windows done pass another
    ``log_percent`` % (once it has run ``log_seconds``). Both: a line per image done, with its seconds, the
    images done of the images to do and the time left (the mean seconds per image so far, times the images
    left).

    Args:
        stream: where bars are drawn; default ``sys.stdout`` at :meth:`start`.
        bars: False: log lines even on a terminal (the workers of a cohort share one).
        log_percent: percent of an image's windows between two log lines, in ``(0, 100]``.
        log_seconds: seconds an image runs before its windows are logged, >= 0.
        prefix: starts every log line, e.g. ``"worker 1/4: "``.
    """

    def __init__(
        self,
        stream: Optional[IO] = None,
        bars: bool = True,
        log_percent: float = 10.0,
        log_seconds: float = 30.0,
        prefix: str = "",
    ) -> None:
        if not 0 < log_percent <= 100:
            raise ValueError(f"log_percent must be in (0, 100], got {log_percent!r}.")
        if log_seconds < 0:
            raise ValueError(f"log_seconds must be >= 0, got {log_seconds!r}.")
        self.stream = stream
        self.bars = bars
        self.log_percent = log_percent
        self.log_seconds = log_seconds
        self.prefix = prefix
        self.total = self.done = 0
        self._terminal = False
        self._redirect = ExitStack()
        self._cohort_bar: Optional[tqdm] = None
        self._image_bar: Optional[tqdm] = None
        self._segmenter: Optional[GridSegmenter] = None
        self._name = ""
        self._started = self._image_started = 0.0
        self._next_percent = log_percent

    def attach(self, engine: Engine) -> None:
        """Report the images of a ``SlideInferenceEvaluator`` run (those to do, ``engine.todo``) and the
        windows of its segmenter."""

        def started(engine: Engine) -> None:
            self.start(len(engine.todo), engine.segmenter)

        def image_started(engine: Engine) -> None:
            image = Path(engine.state.batch["image"])
            if image in engine.todo:
                self.image_started(image.name)

        def image_done(engine: Engine) -> None:
            if engine.state.output["result"] is not None:
                self.image_done()

        engine.add_event_handler(Events.STARTED, started)
        engine.add_event_handler(Events.ITERATION_STARTED, image_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, image_done)
        engine.add_event_handler(Events.COMPLETED | Events.TERMINATE, lambda _: self.close())

    def start(self, total: int, segmenter: Optional[GridSegmenter] = None) -> None:
        """Before the first of ``total`` images; ``segmenter`` (None: no windows shown) reports its windows
        here until :meth:`close`."""
        self.close()  # a run that raised left its bars open
        self.total, self.done, self._started = total, 0, time.perf_counter()
        stream = self.stream if self.stream is not None else sys.stdout
        self._terminal = self.bars and is_terminal(stream)
        if self._terminal:
            self._redirect.enter_context(log_lines_above_bars())
            if total > 1:
                self._cohort_bar = tqdm(total=total, desc="images", unit="image", file=stream)
        self._segmenter = segmenter
        if segmenter is not None:
            segmenter.progress = self.windows

    def image_started(self, name: str) -> None:
        """Before the image ``name`` (a file name) is segmented."""
        self._name, self._image_started, self._next_percent = name, time.perf_counter(), self.log_percent
        if self._terminal:
            stream = self.stream if self.stream is not None else sys.stdout
            self._image_bar = tqdm(desc=name, unit="window", leave=False, file=stream)

    def windows(self, done: int, total: int) -> None:
        """``done`` of the running image's ``total`` windows are done (``GridSegmenter.progress``)."""
        if self._image_bar is not None:
            if self._image_bar.total != total:
                self._image_bar.reset(total=total)
            self._image_bar.update(done - self._image_bar.n)
            return
        percent = 100.0 * done / max(total, 1)
        if percent < self._next_percent:
            return
        if time.perf_counter() - self._image_started >= self.log_seconds:
            logger.info("%s%s: %d of %d windows (%.0f%%)", self.prefix, self._name, done, total, percent)
        self._next_percent = (percent // self.log_percent + 1) * self.log_percent

    def image_done(self, failed: bool = False) -> None:
        """After the running image: done, or ``failed`` (its error said elsewhere)."""
        now = time.perf_counter()
        self.done += 1
        if self._image_bar is not None:
            self._image_bar.close()
            self._image_bar = None
        if self._cohort_bar is not None:
            self._cohort_bar.update(1)
        left = (now - self._started) / self.done * (self.total - self.done)
        logger.info(
            "%s%s %s %.1f s: %d of %d image(s), about %s left",
            self.prefix, self._name, "failed after" if failed else "done in", now - self._image_started,
            self.done, self.total, tqdm.format_interval(left),
        )  # fmt: skip

    def close(self) -> None:
        """After the last image: the bars closed, the log handlers and the segmenter given back."""
        for bar in (self._image_bar, self._cohort_bar):
            if bar is not None:
                bar.close()
        self._image_bar = self._cohort_bar = None
        if self._segmenter is not None:
            self._segmenter.progress = None
            self._segmenter = None
        self._redirect.close()
