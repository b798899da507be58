"""Cohort inference: a folder or CSV list of slides split across processes, resumable, with one summary CSV.

Launch one process per worker with ``torchrun`` (as multi-GPU training does), e.g. on a CPU server::

    MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \\
    torchrun --standalone --nproc_per_node 4 -m monai_coco.inference slides/ out/ --checkpoint models/model.pt

Worker ``r`` of ``n`` takes slides ``r, r + n, r + 2n, ...`` of the sorted list, one at a time, and says how
far it is (:class:`~monai_coco.inference.progress.InferenceProgress`: bars for one process on a terminal, else
a line per slide done with the slides done and the time left, and lines through a long slide). A slide whose
``<stem>_summary.json`` (written last and atomically by :func:`~monai_coco.inference.infer_file`) exists
is complete and skipped, so an interrupted cohort resumes where it stopped. When every worker is done,
worker 0 gathers the summaries of all listed slides into ``cohort_summary.csv`` (atomically). Under
``torchrun`` the workers meet at a ``gloo`` barrier; without it, the one process does everything.

A slide that fails (unreadable file, ...) is reported in one line and left out; the others go on, and the
cohort then ends with a ``ValueError`` naming the slides without outputs (a non-zero exit), after its table.
Each worker holds its own lock on the output folder (:func:`~monai_coco.inference.whole_slide.output_lock`):
a second cohort on the same folder is refused in one line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Optional, Union

import torch
import torch.distributed as dist

from monai_coco.inference.progress import InferenceProgress
from monai_coco.inference.summary import COHORT_CSV, write_cohort_table
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

__all__ = ["run_cohort", "COHORT_CSV"]

logger = logging.getLogger("monai_coco.inference")


def _world() -> tuple[int, int]:
    """``(rank, world size)``; joins ``torchrun``'s process group (``gloo``) when launched by it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def run_cohort(
    network: torch.nn.Module,
    source: Union[str, os.PathLike],
    output_dir: Union[str, os.PathLike],
    config: Optional[SlideInferenceConfig] = None,
    suffixes: Optional[Sequence[str]] = None,
    overwrite: bool = False,
) -> Optional[Path]:
    """Segment this worker's share of a cohort; worker 0 then writes ``cohort_summary.csv``.

    Args:
        network: as for :func:`~monai_coco.inference.infer_file`.
        source: a folder or a CSV list of slides (:func:`~monai_coco.inference.list_images`).
        output_dir: where every slide's outputs and the cohort CSV go.
        config: inference settings; with ``num_threads=None`` each of ``n`` workers takes
            ``os.cpu_count() // n`` threads (at least 1), so that the workers do not oversubscribe the CPU.
        suffixes: see :func:`~monai_coco.inference.list_images`.
        overwrite: redo slides whose outputs are complete.

    Returns:
        the cohort CSV's path on worker 0, ``None`` on the others.

    Raises:
        ValueError: after the table, naming them, when slides failed in this run (on the worker that ran
            them; an earlier run's outputs of a failed slide are kept, but the run is not complete) or, on
            worker 0, have no complete outputs; on any worker, when another run holds its lock on
            ``output_dir``.
    """
    config = config or SlideInferenceConfig()
    output_dir = Path(output_dir)
    images = list_images(source, suffixes)
    check_inputs(images, config, str(source))
    rank, world = _world()
    if config.num_threads is None:
        config = replace(config, num_threads=max(1, (os.cpu_count() or 1) // world))
    mine = images[rank::world]
    failed: list[Path] = []
    with output_lock(output_dir, rank):
        remove_staging(output_dir, mine)
        todo = unfinished(mine, output_dir, overwrite, config.checkpoint)
        logger.info("worker %d/%d: %d of its %d slides to do", rank, world, len(todo), len(mine))
        if todo:
            segmenter = make_segmenter(network, config)
            prefix = f"worker {rank}/{world}: " if world > 1 else ""
            progress = InferenceProgress(bars=world == 1, prefix=prefix)  # workers sharing a terminal: lines
            progress.start(len(todo), segmenter)
            try:
                for image in todo:
                    progress.image_started(image.name)
                    try:
                        infer_file(segmenter, image, output_dir, config)
                    except (ValueError, FileNotFoundError) as exc:
                        logger.error("worker %d: %s", rank, exc)
                        failed.append(image)
                        progress.image_done(failed=True)
                        continue
                    progress.image_done()
            finally:
                progress.close()
        if dist.is_initialized():
            dist.barrier()
        path, incomplete = None, []
        if rank == 0:
            path, done = write_cohort_table(output_dir, images)
            incomplete = unfinished(images, output_dir, False, config.checkpoint)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    unfinished_here = list(dict.fromkeys([*failed, *incomplete]))
    if unfinished_here:
        shown = ", ".join(p.name for p in unfinished_here[:5]) + (" ..." if len(unfinished_here) > 5 else "")
        listed = f"; {path} lists the others" if path is not None else ""
        raise ValueError(
            f"{len(unfinished_here)} of {len(images)} slides failed in this run or have no complete outputs "
            f"in {output_dir}: {shown} (their errors are above{listed})."
        )
    return path
