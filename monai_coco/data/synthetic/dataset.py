"""The built-in synthetic data set of the MONAI bundle, generated once and cached.

The synthetic data set is a folder::

    <folder>/train/gastric_0000.jpg + gastric_0000.png, ...   (the authors' layout, masks in {0, 1})
    <folder>/val/...
    <folder>/test/...
    <folder>/slide/gastric_slide.tif + gastric_slide_mask.tif  (a pyramidal slide and its mask pyramid)
    <folder>/synthetic.json                                      (the settings it was made with)

written by :mod:`monai_coco.data.synthetic.writers`. It is made when missing, remade when asked for with other
settings, and otherwise reused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .writers import (
    HISTOLOGY_SPLITS,
    _histology_settings,
    write_histology_dataset,
    write_synthetic_dataset,
    write_synthetic_slide,
)

__all__ = ["SYNTHETIC_SPLITS", "histology_dataset", "synthetic_dataset"]

SYNTHETIC_SPLITS = ("train", "val", "test")
_MANIFEST = "synthetic.json"
_SLIDE = Path("slide") / "gastric_slide.tif"
logger = logging.getLogger(__name__)


def synthetic_dataset(
    folder: str | os.PathLike,
    n_train: int = 160,
    n_val: int = 32,
    n_test: int = 32,
    size: int = 256,
    mpp: float = 2.0,
    seed: int = 0,
    slide_size: int = 2048,
    slide_mpp: float = 0.5,
) -> str:
    """The synthetic data set folder, written first if it is missing or was made with other settings.

    Args:
        folder: where the data set lives (e.g. ``<bundle_root>/data/synthetic``).
        n_train, n_val, n_test: tiles per split; each split is its own set of worlds (seeds ``seed``,
            ``seed + 1``, ``seed + 2``).
        size: tile side in pixels (the bundle makes it ``roi_size``, so tiles need no resizing).
        mpp: micrometres per pixel of the tiles; 2.0 is the paper's scale (1024-pixel windows at about
            0.5 µm/px resized to 256).
        seed: the data set's seed; the same settings write the same bytes.
        slide_size: side of the pyramidal slide in level-0 pixels; 0 writes no slide.
        slide_mpp: micrometres per pixel of the slide's level 0 (level 2 is then at 4 x ``slide_mpp``).

    Returns:
        ``folder`` as a string.
    """
    settings = {
        "n_train": int(n_train),
        "n_val": int(n_val),
        "n_test": int(n_test),
        "size": int(size),
        "mpp": float(mpp),
        "seed": int(seed),
        "slide_size": int(slide_size),
        "slide_mpp": float(slide_mpp),
    }

    def write(root: Path) -> None:
        for offset, (split, n) in enumerate(zip(SYNTHETIC_SPLITS, (n_train, n_val, n_test))):
            shutil.rmtree(root / split, ignore_errors=True)
            write_synthetic_dataset(root / split, int(n), int(size), seed=int(seed) + offset, mpp=float(mpp))
        shutil.rmtree(root / _SLIDE.parent, ignore_errors=True)
        if slide_size > 0:
            write_synthetic_slide(root / _SLIDE, int(slide_size), int(seed), float(slide_mpp))

    return _cached(folder, _MANIFEST, settings, write)


def _cached(
    folder: str | os.PathLike, manifest_name: str, settings: dict, write: Callable[[Path], None]
) -> str:
    """``folder`` as a string, after ``write(folder)`` unless its manifest records ``settings``.

    The manifest ``folder/<manifest_name>`` is removed before writing and written last, atomically, so a
    half-written data set is remade on the next call.
    """
    root = Path(folder)
    manifest = root / manifest_name
    if manifest.is_file() and _read_json(manifest) == settings:
        return str(root)
    logger.info(f"writing the data set {root} ({settings})")
    manifest.unlink(missing_ok=True)
    write(root)
    partial = manifest.with_name(manifest.name + ".tmp")
    partial.write_text(json.dumps(settings, indent=2) + "\n")
    partial.replace(manifest)
    return str(root)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def histology_dataset(
    folder: str | Path,
    n_train: int = 96,
    n_val: int = 16,
    n_test: int = 32,
    n_unlabelled: int = 0,
    tiles_per_slide: int = 8,
    size: int = 128,
    mpp: float = 1.5,
    seed: int = 0,
) -> str:
    """The fine-structure data set folder, written by :func:`write_histology_dataset` if it is missing or
    was made with other settings, otherwise reused.

    The settings are kept in ``folder/histology.json``, written last, so a half-written data set is remade
    on the next call. Arguments as in :func:`write_histology_dataset`.

    Returns:
        ``folder`` as a string.

    Raises:
        ValueError: a count, ``size`` or ``mpp`` out of range (the message names it).
    """
    settings = _histology_settings(n_train, n_val, n_test, n_unlabelled, tiles_per_slide, size, mpp, seed)

    def write(root: Path) -> None:
        for split in HISTOLOGY_SPLITS:
            shutil.rmtree(root / split, ignore_errors=True)
        write_histology_dataset(root, **settings)

    return _cached(folder, "histology.json", settings, write)
