"""What one image's inference wrote, and its per-slide summary for a pathologist.

Areas are counted at the scale the network ran (the view of :meth:`~monai_coco.data.Slide.view`, or a
tile): tumour pixels exactly (class 1 of the mask), tissue pixels from the thumbnail tissue mask
(:func:`~monai_coco.data.tissue.detect_tissue`) scaled to it. With the µm/px known they are given in mm²
(``pixels * mpp_y * mpp_x / 1e6``); the tumour fraction is ``tumour pixels / tissue pixels`` (0 when no
tissue is found), at most 1: the tissue mask is a thumbnail's, so tumour the network labels at tissue edges
finer than it can outnumber it. Tumour foci are the class-1 regions of the GeoJSON (4-connected, specks
below ``min_region_pixels`` dropped); the largest focus's diameter is its maximum Feret diameter, in mm.
The written summary rounds areas, the fraction and the diameter to 3 significant digits and names the model
(checkpoint path and sha256) and this package's version, so that a number can be traced to what made it.

``<stem>_summary.json`` is the last file written for an image, atomically: its presence marks the image's
outputs complete (a cohort rerun skips such images, :mod:`monai_coco.inference.cohort`).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Optional

from monai_coco.atomic_files import atomic_path

__all__ = [
    "InferenceResult",
    "read_summary",
    "write_cohort_table",
    "COHORT_CSV",
    "SUMMARY_FIELDS",
    "checkpoint_sha256",
    "package_version",
]

COHORT_CSV = "cohort_summary.csv"
"""The cohort table's file name in the output folder: one row per complete image, :data:`SUMMARY_FIELDS`."""


def package_version() -> str:
    """The installed ``monai-coco`` version (``"unknown"`` when run from a tree that is not installed)."""
    try:
        return version("monai-coco")
    except PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=8)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_sha256(path: Optional[str | os.PathLike]) -> Optional[str]:
    """SHA-256 (hex) of a checkpoint file, computed once per file version; ``None`` for no file."""
    if path is None or not Path(path).is_file():
        return None
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


def _significant(value: Optional[float], digits: int = 3) -> Optional[float]:
    if value is None or value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


@dataclass(frozen=True)
class InferenceResult:
    """What :func:`~monai_coco.inference.infer_file` wrote for one image, with its summary.

    Attributes:
        image, mask, probability, overlay, geojson, summary: the input and the files written.
        level: the slide level read (0 for tiles); ``height``, ``width``: the size in pixels of the map the
            network made (the level, resampled to the training scale when it was).
        mpp: µm/px ``(y, x)`` of that map (the scale the network ran at), ``None`` when unknown.
        slide_mpp: µm/px ``(y, x)`` of the slide's level 0 (file or ``slide_mpp``), ``None`` when unknown.
        checkpoint: the weights' file, when known; ``checkpoint_sha256`` its SHA-256.
        foci: tumour regions in the GeoJSON; ``largest_focus_mm``: the largest one's Feret diameter (mm,
            ``None`` without µm/px or foci).
        tissue_pixels, tumour_pixels: tissue and class-1 pixels of that level.
        windows_run, windows_skipped: sliding windows given to the network / set to background by the
            tissue mask; each window of the level's grid is one or the other, once.
        seconds: wall time of the image's inference, outputs included.
    """

    image: Path
    mask: Path
    probability: Path
    overlay: Path
    geojson: Path
    summary: Path
    level: int
    height: int
    width: int
    mpp: Optional[tuple[float, float]]
    tissue_pixels: int
    tumour_pixels: int
    windows_run: int
    windows_skipped: int
    seconds: float
    slide_mpp: Optional[tuple[float, float]] = None
    foci: int = 0
    largest_focus_mm: Optional[float] = None
    checkpoint: Optional[str] = None
    checkpoint_sha256: Optional[str] = None
    version: str = ""

    def _mm2(self, pixels: int) -> Optional[float]:
        return None if self.mpp is None else pixels * self.mpp[0] * self.mpp[1] / 1e6

    @property
    def tissue_area_mm2(self) -> Optional[float]:
        return self._mm2(self.tissue_pixels)

    @property
    def tumour_area_mm2(self) -> Optional[float]:
        return self._mm2(self.tumour_pixels)

    @property
    def tumour_fraction(self) -> float:
        return min(1.0, self.tumour_pixels / self.tissue_pixels) if self.tissue_pixels else 0.0

    def row(self) -> dict[str, Any]:
        """Flat mapping of :data:`SUMMARY_FIELDS` (paths as strings, mpp as ``mpp_y``, ``mpp_x``)."""
        values = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        for name in ("mpp", "slide_mpp"):
            mpp = values.pop(name)
            values[f"{name}_y"], values[f"{name}_x"] = mpp if mpp is not None else (None, None)
        values["tissue_area_mm2"] = _significant(self.tissue_area_mm2)
        values["tumour_area_mm2"] = _significant(self.tumour_area_mm2)
        values["tumour_fraction"] = _significant(self.tumour_fraction)
        values["largest_focus_mm"] = _significant(self.largest_focus_mm)
        values["seconds"] = round(self.seconds, 2)
        return {k: values[k] for k in SUMMARY_FIELDS}

    def write(self) -> Path:
        """Write :meth:`row` to ``self.summary`` as JSON, atomically; returns the path."""
        with atomic_path(self.summary) as tmp:
            tmp.write_text(json.dumps(self.row(), indent=1))
        return self.summary


SUMMARY_FIELDS = (
    "image",
    "checkpoint",
    "checkpoint_sha256",
    "version",
    "slide_mpp_y",
    "slide_mpp_x",
    "mpp_y",
    "mpp_x",
    "level",
    "height",
    "width",
    "tissue_area_mm2",
    "tumour_area_mm2",
    "tumour_fraction",
    "foci",
    "largest_focus_mm",
    "tissue_pixels",
    "tumour_pixels",
    "windows_run",
    "windows_skipped",
    "seconds",
    "mask",
    "probability",
    "overlay",
    "geojson",
    "summary",
)


def read_summary(path: str | os.PathLike) -> Optional[dict[str, Any]]:
    """The summary row written by :meth:`InferenceResult.write`, or ``None`` when absent or unreadable."""
    try:
        row = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) and set(SUMMARY_FIELDS) <= set(row) else None


def write_cohort_table(output_dir: str | os.PathLike, images: Sequence[Path]) -> tuple[Path, int]:
    """Gather the summaries of ``images`` found in ``output_dir`` into ``output_dir/cohort_summary.csv``
    (atomically, in the order given; incomplete images left out). Returns the path and the rows written."""
    output_dir = Path(output_dir)
    rows = [read_summary(output_dir / f"{image.stem}_summary.json") for image in images]
    rows = [row for row in rows if row is not None]
    path = output_dir / COHORT_CSV
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path, len(rows)
