"""What a bundle stage loads before it runs: an earlier stage's checkpoint, the annotated data list, the
unannotated pool; each stops the run with one line naming the setting or file and, for a missing checkpoint,
the command that makes it (:func:`~monai_coco.fail.fail`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from monai_coco.checkpoints import load_checkpoint
from monai_coco.data.datalist import load_paired_datalist
from monai_coco.data.unlabelled import list_unlabelled, slide_patches
from monai_coco.fail import fail

__all__ = ["bundle_datalist", "bundle_unlabelled", "dataset_record", "load_prerequisite"]

logger = logging.getLogger("monai_coco.bundle")


def dataset_record(data_root: str | os.PathLike, bundle_root: str | os.PathLike) -> str:
    """The data set as a training state records it: ``<bundle_root>/<path>`` for data inside the bundle
    (the built-in data sets), so that a bundle folder moved (or copied) with its data still resumes; else
    the absolute real path."""
    data = Path(os.path.realpath(Path(data_root).expanduser()))
    try:
        return "<bundle_root>/" + data.relative_to(os.path.realpath(bundle_root)).as_posix()
    except ValueError:
        return str(data)


def load_prerequisite(
    network: torch.nn.Module, path: str | os.PathLike, made_by: str, setting: str = "network"
) -> torch.nn.Module:
    """Load the checkpoint ``path`` (a bare state dict or ``{"model": ...}``) into ``network``; return it.

    Args:
        network: the module to load into.
        path: the checkpoint an earlier stage wrote, e.g. ``models/teacher.pt``.
        made_by: the command that makes the checkpoint, given in the message when it is missing.
        setting: the config id of the network's definition, named when the checkpoint does not fit it.
    """
    if not Path(path).is_file():
        fail(f"{path} not found; make it first with: {made_by}")
    try:
        load_checkpoint(path, {"model": network})
    except ValueError as exc:
        fail(f"{exc} (was {path} made with other {setting} settings? rerun: {made_by})")
    return network


def bundle_datalist(
    dataset_dir: str | os.PathLike, split: str, setting: str = "dataset_dir", **kwargs: Any
) -> list[dict[str, str]]:
    """:func:`~monai_coco.data.load_paired_datalist` of ``split``, stopping the run with one line
    naming ``setting`` (and the problem file) when the data cannot be used.

    Args:
        dataset_dir: a data folder in any layout ``load_paired_datalist`` takes, or a JSON datalist.
        split: ``"train"``, ``"val"`` or ``"test"``.
        setting: the config id named in the message.
        kwargs: passed to ``load_paired_datalist`` (``val_fraction``, ``seed``, ``label_map``, ...).
    """
    dataset_dir = Path(dataset_dir).expanduser()
    if not dataset_dir.exists():
        fail(
            f"{setting}={str(dataset_dir)!r} does not exist; expected a folder of tiles with same-stem masks "
            "(or a JSON datalist), or leave it unset for the built-in synthetic data."
        )
    try:
        return load_paired_datalist(dataset_dir, split=split, **kwargs)
    except (ValueError, FileNotFoundError) as exc:
        fail(f"{setting}={str(dataset_dir)!r}: {exc}")


def bundle_unlabelled(
    unlabelled_dir: str | os.PathLike | None,
    mpp: float,
    roi_size: Sequence[int],
    reader: str = "auto",
    min_tissue: float = 0.5,
    slide_mpp: float | None = None,
    setting: str = "unlabelled_dir",
) -> dict[str, list[dict]]:
    """The unannotated images of ``unlabelled_dir``: ``{"tiles": [{"image": path}, ...], "patches": [...]}``,
    the patches cut from its slides at ``mpp`` µm/px and ``roi_size`` pixels inside their tissue
    (:func:`~monai_coco.data.unlabelled.slide_patches`, entries for
    :class:`~monai_coco.data.unlabelled.ReadSlidePatchd`); both empty
    when ``unlabelled_dir`` is None. Stops the run with one line naming ``setting`` (and the problem file)
    when the folder cannot be used or yields no image.
    """
    if unlabelled_dir is None:
        return {"tiles": [], "patches": []}
    try:
        images = list_unlabelled(unlabelled_dir, reader, slide_mpp)
        patches = [
            entry
            for slide in images.slides
            for entry in slide_patches(slide, mpp, roi_size, reader, min_tissue, slide_mpp=slide_mpp)
        ]
    except (ValueError, FileNotFoundError) as exc:
        fail(f"{setting}={str(unlabelled_dir)!r}: {exc}")
    if not images.tiles and not patches:
        fail(f"{setting}={str(unlabelled_dir)!r}: its slides {images.slides} hold no patch with tissue.")
    logger.info("%s: %d unannotated tile(s) and %d patch(es) of %d slide(s) added to the training images",
                unlabelled_dir, len(images.tiles), len(patches), len(images.slides))  # fmt: skip
    return {"tiles": images.tile_datalist(), "patches": patches}
