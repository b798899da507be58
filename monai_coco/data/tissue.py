"""Tissue detection on a slide thumbnail, and the tissue fraction of any window of a slide level.

Background of an H&E slide is bright and grey (low saturation); stained tissue is saturated. The tissue
mask is MONAI's ``ForegroundMask`` on the HSV saturation channel with Otsu's threshold, as MONAI's
``MaskedPatchWSIDataset`` does, except that the threshold is clipped into ``otsu_bounds``: Otsu always
splits a histogram in two, so on a thumbnail that is (almost) all tissue, or all background, its threshold
would cut through the tissue, or through the noise of the glass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np
from monai.transforms import ForegroundMask
from skimage.filters import threshold_otsu

__all__ = ["detect_tissue", "TissueMap"]


def detect_tissue(
    thumbnail: np.ndarray,
    threshold: Optional[float] = None,
    otsu_bounds: Sequence[float] = (0.05, 0.15),
) -> np.ndarray:
    """Tissue mask of an RGB thumbnail.

    Args:
        thumbnail: ``(3, h, w)`` RGB ``uint8``.
        threshold: saturation (in [0, 1]) above which a pixel is tissue; ``None`` (default) uses Otsu's
            threshold of the thumbnail's saturation, clipped into ``otsu_bounds``.
        otsu_bounds: ``(low, high)`` limits of the Otsu threshold.

    Returns:
        boolean ``(h, w)``, ``True`` on tissue.
    """
    if thumbnail.ndim != 3 or thumbnail.shape[0] != 3:
        raise ValueError(f"thumbnail must be RGB of shape (3, h, w), got {thumbnail.shape}.")
    low, high = otsu_bounds
    if threshold is None:

        def saturation_threshold(saturation: np.ndarray) -> float:
            return float(np.clip(threshold_otsu(saturation), low, high))

        rule = saturation_threshold
    elif 0 < threshold < 1:
        rule = float(threshold)
    else:
        raise ValueError(f"tissue saturation threshold must lie in (0, 1), got {threshold}.")
    mask = ForegroundMask(threshold=None, hsv_threshold={"S": rule})(thumbnail)
    return np.asarray(mask, dtype=bool)[0]


class TissueMap:
    """The tissue fraction of any box of an image level, from a (smaller) tissue mask of the same image.

    A summed-area table answers each box in O(1). Boxes are mapped to the mask by the size ratio of the
    level and the mask, each covering at least one mask pixel.

    Args:
        mask: boolean ``(h, w)`` tissue mask of the whole image (e.g. :func:`detect_tissue`).
        level_shape: ``(H, W)`` of the level whose boxes are queried.
    """

    def __init__(self, mask: np.ndarray, level_shape: Sequence[int]) -> None:
        self.mask = np.asarray(mask, dtype=bool)
        self.level_shape = (int(level_shape[0]), int(level_shape[1]))
        self._scale = (self.level_shape[0] / self.mask.shape[0], self.level_shape[1] / self.mask.shape[1])
        self._sums = np.pad(self.mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def _span(self, start: int, stop: int, axis: int) -> tuple[int, int]:
        size = self.mask.shape[axis]
        lo = min(max(int(np.floor(start / self._scale[axis])), 0), size - 1)
        hi = min(max(int(np.ceil(stop / self._scale[axis])), lo + 1), size)
        return lo, hi

    def count(self, top: int, left: int, bottom: int, right: int) -> int:
        """Mask pixels flagged tissue under the level box ``[top, bottom) x [left, right)``."""
        y0, y1 = self._span(top, bottom, 0)
        x0, x1 = self._span(left, right, 1)
        s = self._sums
        return int(s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0])

    def fraction(self, top: int, left: int, bottom: int, right: int) -> float:
        """Fraction of the level box ``[top, bottom) x [left, right)`` that is tissue, in [0, 1]."""
        y0, y1 = self._span(top, bottom, 0)
        x0, x1 = self._span(left, right, 1)
        return self.count(top, left, bottom, right) / ((y1 - y0) * (x1 - x0))
