"""What one image's inference wrote, and its per-slide summary: tissue and tumour areas, tumour fraction.

Areas are counted at the inference level: tumour pixels exactly (class 1 of the mask), tissue pixels from
the thumbnail tissue mask (:func:`~monai_coco.data.tissue.detect_tissue`) scaled to the level. With the
slide's µm/px known, they are also given in mm² (``pixels * mpp_y * mpp_x / 1e6``); the tumour fraction
is ``tumour pixels / tissue pixels`` (0 when no tissue is found), at most 1: the tissue mask is a
thumbnail's, so tumour the network labels at tissue edges finer than it, or on glass inside a window that
holds tissue, can outnumber it (a weakly trained student on a slide with little tissue did).

``<stem>_summary.json`` is the last file written for an image, atomically: its presence marks the image's
outputs complete (a cohort rerun skips such images, :mod:`monai_coco.inference.cohort`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from monai_coco.checkpoints import atomic_path

__all__ = ["InferenceResult", "read_summary", "SUMMARY_FIELDS"]


@dataclass(frozen=True)
class InferenceResult:
    """What :func:`~monai_coco.inference.infer_file` wrote for one image, with its summary.

    Attributes:
        image, mask, overlay, geojson, summary: the input and the files written.
        level: the level segmented (0 for tiles); ``height``, ``width``: its size in pixels.
        mpp: µm/px ``(y, x)`` of that level, ``None`` when unknown.
        tissue_pixels, tumour_pixels: tissue and class-1 pixels of that level.
        windows_run, windows_skipped: sliding windows given to the network / set to background by the
            tissue mask; each window of the level's grid is one or the other, once.
        seconds: wall time of the image's inference, outputs included.
    """

    image: Path
    mask: Path
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
        mpp = values.pop("mpp")
        values["mpp_y"], values["mpp_x"] = mpp if mpp is not None else (None, None)
        values["tissue_area_mm2"] = self.tissue_area_mm2
        values["tumour_area_mm2"] = self.tumour_area_mm2
        values["tumour_fraction"] = self.tumour_fraction
        return {k: values[k] for k in SUMMARY_FIELDS}

    def write(self) -> Path:
        """Write :meth:`row` to ``self.summary`` as JSON, atomically; returns the path."""
        with atomic_path(self.summary) as tmp:
            tmp.write_text(json.dumps(self.row(), indent=1))
        return self.summary


SUMMARY_FIELDS = (
    "image",
    "level",
    "height",
    "width",
    "mpp_y",
    "mpp_x",
    "tissue_pixels",
    "tumour_pixels",
    "tissue_area_mm2",
    "tumour_area_mm2",
    "tumour_fraction",
    "windows_run",
    "windows_skipped",
    "seconds",
    "mask",
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
