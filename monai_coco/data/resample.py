"""Antialiased resampling of image regions on one global pixel grid: regions read apart tile seamlessly.

An output pixel ``i`` of an axis resampled by ``factor`` (source pixels per output pixel) is centred at the
source coordinate ``(i + 0.5) * factor`` and is the weighted mean of the source pixels ``j`` under the
triangle (tent) filter ``max(0, 1 - |j + 0.5 - (i + 0.5) * factor| / s)``, ``s = max(factor, 1)``,
normalised over the pixels inside the image. This is the antialiased bilinear filter of Pillow's
``Image.resize(..., Image.BILINEAR, reducing_gap=None)`` and of ``torch.nn.functional.interpolate(...,
mode="bilinear", antialias=True)`` (both stretch the tent by the reduction factor), with the one difference
that the grid is fixed by ``factor`` and the output index, not by a region's size: a region
``[top, top + h)`` of the output depends only on the source pixels under it, so chunks of a slide resampled
one by one give the same pixels as the whole level resampled at once.

Cost: ``O(taps)`` multiply-adds per output pixel and axis (``taps = ceil(2 s) + 2``); memory: the source
region in ``uint8`` and the row pass, ``(C, height, source width)``, in float32; the filter is separable
(rows, then columns).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["axis_taps", "resample_region"]


def axis_taps(start: int, count: int, factor: float, size: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """The source pixels and tent weights of output pixels ``[start, start + count)`` of one axis.

    Args:
        start, count: the output pixels.
        factor: source pixels per output pixel (> 0; above 1 reduces).
        size: the source axis's length (pixels outside ``[0, size)`` get no weight).

    Returns:
        ``(first, stop, index, weight)``: the source pixels ``[first, stop)`` the outputs read, and per
        output pixel its taps, ``index`` ``(count, taps)`` relative to ``first`` and ``weight``
        ``(count, taps)`` float32 summing to 1.
    """
    support = max(factor, 1.0)
    centres = (np.arange(start, start + count, dtype=np.float64) + 0.5) * factor
    taps = int(math.ceil(2 * support)) + 2
    first_tap = np.floor(centres - support - 0.5).astype(np.int64)
    index = first_tap[:, None] + np.arange(taps)
    weight = np.maximum(0.0, 1.0 - np.abs(index + 0.5 - centres[:, None]) / support)
    weight[(index < 0) | (index >= size)] = 0.0
    total = weight.sum(axis=1, keepdims=True)
    nearest = np.clip(np.floor(centres).astype(np.int64), 0, size - 1)  # a centre beyond the image's edge
    weight = np.where(total > 0, weight / np.where(total > 0, total, 1.0), (index == nearest[:, None]) * 1.0)
    used = index[weight > 0]
    first, stop = int(used.min()), int(used.max()) + 1
    return first, stop, np.clip(index, first, stop - 1) - first, weight.astype(np.float32)


def _along(image: torch.Tensor, index: np.ndarray, weight: np.ndarray, dim: int) -> torch.Tensor:
    """The tent-weighted sum of ``image``'s taps along ``dim``, float32 (a ``uint8`` image is gathered as it
    is and converted tap by tap: the source region is never held as float)."""
    out = None
    for k in range(index.shape[1]):
        part = image.index_select(dim, torch.from_numpy(index[:, k])).float()
        w = torch.from_numpy(weight[:, k]).reshape([-1 if d == dim else 1 for d in range(image.dim())])
        out = part * w if out is None else out.add_(part * w)
    return out


def resample_region(
    read_source: Callable[[int, int, int, int], np.ndarray],
    source_shape: tuple[int, int],
    factor: tuple[float, float],
    top: int,
    left: int,
    height: int,
    width: int,
) -> np.ndarray:
    """The region ``[top, top + height) x [left, left + width)`` of a source resampled by ``factor``.

    Args:
        read_source: ``(top, left, height, width) -> (C, height, width)`` ``uint8`` of the source.
        source_shape: ``(H, W)`` of the source.
        factor: source pixels per output pixel ``(y, x)``.
        top, left, height, width: the region, in output pixels.

    Returns:
        ``(C, height, width)`` ``uint8`` (rounded to nearest).
    """
    y0, y1, rows, row_w = axis_taps(top, height, factor[0], source_shape[0])
    x0, x1, cols, col_w = axis_taps(left, width, factor[1], source_shape[1])
    source = torch.from_numpy(np.ascontiguousarray(read_source(y0, x0, y1 - y0, x1 - x0)))
    out = _along(_along(source, rows, row_w, 1), cols, col_w, 2)
    return out.round_().clamp_(0, 255).to(torch.uint8).numpy()
