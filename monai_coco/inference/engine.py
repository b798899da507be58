"""Whole-image inference as a MONAI engine: one iteration per image (a tile or a whole slide) of a data set.

:class:`SlideInferenceEvaluator` is a MONAI ``Evaluator`` (an Ignite ``Engine``) whose iteration is
:func:`~monai_coco.inference.whole_slide.infer_file` on one image, so that the bundle's inference stage has
MONAI's workflow properties (``dataset``, ``evaluator``, ``inferer``: ``ConfigWorkflow(...,
workflow_type="infer").check_properties()``, as MONAI Label, MONAI Deploy's bundle operator and NVFlare read
them) and Ignite's events (``ITERATION_COMPLETED`` after each image, for progress and handlers).
:func:`infer_path` runs it over a file, a folder or a CSV list.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import torch
from monai.data import DataLoader, Dataset
from monai.engines import Evaluator
from monai.inferers import SlidingWindowInferer

from monai_coco.inference.progress import InferenceProgress
from monai_coco.inference.summary import InferenceResult, write_cohort_table
from monai_coco.inference.whole_slide import (
    SlideInferenceConfig,
    check_inputs,
    infer_file,
    list_images,
    make_segmenter,
    output_lock,
    remove_staging,
    unfinished,
)

__all__ = [
    "SlideInferenceEvaluator",
    "infer_path",
    "inference_dataset",
    "is_cohort",
    "sliding_window_inferer",
]

logger = logging.getLogger(__name__)


def is_cohort(source: Union[str, os.PathLike]) -> bool:
    """Whether ``source`` is a cohort (a folder or a ``.csv`` list), not one image file."""
    source = Path(source)
    return not source.is_file() or source.suffix.lower() == ".csv"


def inference_dataset(
    source: Union[str, os.PathLike],
    suffixes: Optional[Sequence[str]] = None,
    config: Optional[SlideInferenceConfig] = None,
) -> Dataset:
    """A MONAI ``Dataset`` of ``{"image": path}``, one item per image of ``source``: a file (a tile or a
    slide), or the images of a folder or CSV list (:func:`~monai_coco.inference.whole_slide.list_images`,
    with ``suffixes``), every image checked first with ``config``'s settings
    (:func:`~monai_coco.inference.whole_slide.check_inputs`).

    Raises:
        FileNotFoundError, ValueError: one line: the missing files of a list (all named), or the first
            problem of an image, naming it, with the count of the others.
    """
    source = Path(source)
    images = list_images(source, suffixes) if is_cohort(source) else [source]
    check_inputs(images, config or SlideInferenceConfig(), str(source))
    return Dataset([{"image": str(p)} for p in images])


def sliding_window_inferer(config: SlideInferenceConfig) -> SlidingWindowInferer:
    """MONAI's ``SlidingWindowInferer`` with ``config``'s windows (``roi_size``, ``overlap``, ``blend_mode``,
    ``sw_batch_size``, default 1): on an image in memory ``(1, C, H, W)`` it blends the windows that
    :class:`~monai_coco.inference.window_grid.GridSegmenter` runs region by region over a slide (the same
    grid and weights, ``tests/inference/test_window_grid.py``); the bundle's ``inferer`` property."""
    return SlidingWindowInferer(
        roi_size=config.roi_size,
        sw_batch_size=config.sw_batch_size or 1,
        overlap=config.overlap,
        mode=config.blend_mode,
    )


def _first(batch: list[Any]) -> Any:
    """The collate of a batch of one item: the item itself."""
    return batch[0]


class SlideInferenceEvaluator(Evaluator):
    """A MONAI ``Evaluator`` that segments one image per iteration and writes its outputs
    (:func:`~monai_coco.inference.whole_slide.infer_file`), in this process.

    On :meth:`run`: the images whose outputs are complete in ``output_dir`` (their ``<stem>_summary.json``)
    are skipped unless ``overwrite`` (one log line says how many), so an interrupted run resumes where it
    stopped; the network's runtime is built once (:func:`~monai_coco.inference.whole_slide.make_segmenter`)
    before anything is written, then ``output_dir`` is held against a second run
    (:func:`~monai_coco.inference.whole_slide.output_lock`) until the last image; with ``cohort_table``,
    ``cohort_summary.csv`` of every image of the data set is written last
    (:func:`~monai_coco.inference.summary.write_cohort_table`).

    Args:
        dataset: items ``{"image": path}`` (:func:`inference_dataset`).
        network: maps windows ``(B, C, h, w)`` to logits ``(B, num_classes, h, w)``.
        output_dir: the outputs' folder, created if needed.
        config: settings, default ``SlideInferenceConfig()``.
        overwrite: redo images whose outputs are complete.
        cohort_table: write ``cohort_summary.csv`` (a folder or list; not for one file).
        val_handlers: Ignite handlers with ``attach(engine)``, e.g. a progress bar.

    ``state.output`` after an iteration: ``{"image": path, "result": InferenceResult or None (skipped)}``;
    ``state.results``: the results of the images segmented by the last :meth:`run`.

    Raises (from :meth:`run`): as :func:`~monai_coco.inference.whole_slide.infer_file`, naming the image;
    ``ValueError`` when another run holds ``output_dir``.
    """

    def __init__(
        self,
        dataset: Dataset,
        network: torch.nn.Module,
        output_dir: Union[str, os.PathLike],
        config: Optional[SlideInferenceConfig] = None,
        overwrite: bool = False,
        cohort_table: bool = True,
        val_handlers: Optional[Sequence] = None,
    ) -> None:
        self.config = config or SlideInferenceConfig()
        device = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        loader = DataLoader(dataset, batch_size=1, num_workers=0, collate_fn=_first)
        super().__init__(
            device=torch.device(device), val_data_loader=loader, val_handlers=val_handlers, decollate=False
        )
        self.network = network
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        self.cohort_table = cohort_table
        self.images = [Path(item["image"]) for item in dataset]
        self.todo: set[Path] = set()
        self.segmenter = None

    def run(self, global_epoch: int = 1) -> None:
        """Segment every image not done yet (see the class doc); ``state.results`` holds their results."""
        todo = unfinished(self.images, self.output_dir, self.overwrite, self.config.checkpoint)
        if len(todo) < len(self.images):
            logger.info(
                "%d of %d image(s) already done in %s, skipped (overwrite redoes them)",
                len(self.images) - len(todo),
                len(self.images),
                self.output_dir,
            )
        self.todo = set(todo)
        self.segmenter = make_segmenter(self.network, self.config) if todo else None
        self.state.results = []
        with output_lock(self.output_dir):  # nothing is written before the network is known to run
            remove_staging(self.output_dir, self.images)
            super().run(global_epoch)
            if self.cohort_table:
                table, done = write_cohort_table(self.output_dir, self.images)
                logger.info("cohort summary: %s (%d of %d images)", table, done, len(self.images))

    def _iteration(self, engine: Evaluator, batchdata: dict[str, Any]) -> dict[str, Any]:
        image = Path(batchdata["image"])
        result: Optional[InferenceResult] = None
        if image in self.todo:
            result = infer_file(self.segmenter, image, self.output_dir, self.config)
            engine.state.results.append(result)
        return {"image": image, "result": result}


def infer_path(
    network: torch.nn.Module,
    path: Union[str, os.PathLike],
    output_dir: Union[str, os.PathLike],
    config: Optional[SlideInferenceConfig] = None,
    suffixes: Optional[Sequence[str]] = None,
    overwrite: bool = False,
) -> list[InferenceResult]:
    """:class:`SlideInferenceEvaluator` on one file, or on every image of a folder or CSV list
    (:func:`~monai_coco.inference.whole_slide.list_images`), in this process, with the cohort table
    ``cohort_summary.csv`` for a folder or list (across processes, see
    :func:`~monai_coco.inference.cohort.run_cohort`).

    An image whose outputs are complete (its ``<stem>_summary.json``, written last, is in ``output_dir``)
    is skipped unless ``overwrite``, so an interrupted run resumes where it stopped (as a cohort does).
    Progress: :class:`~monai_coco.inference.progress.InferenceProgress` (bars on a terminal, else lines).

    Args:
        suffixes: image suffixes taken from a folder (default: all supported). In the authors' layout,
            where ``<id>.png`` masks lie beside ``<id>.jpg`` images, those masks are left out anyway
            (:func:`~monai_coco.inference.whole_slide.list_images`).
        overwrite: redo images whose outputs are complete.

    Returns:
        the results of the images segmented in this call.
    """
    engine = SlideInferenceEvaluator(
        inference_dataset(path, suffixes, config), network, output_dir, config, overwrite, is_cohort(path),
        val_handlers=[InferenceProgress()],
    )  # fmt: skip
    engine.run()
    return engine.state.results
