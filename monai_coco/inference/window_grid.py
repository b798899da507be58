"""One sliding-window pass over a slide level, region by region, each window of the level's grid run once.

The windows are those of a single MONAI ``SlidingWindowInferer`` pass over the whole level: the same padding
of a level smaller than a window (zeros after preprocessing, split evenly), the same window starts
(``monai.data.utils.dense_patch_slices`` with ``monai.inferers.utils._get_scan_interval``), the same
importance map (``monai.data.utils.compute_importance_map``, ``sigma_scale=0.125``) and the same blending
(weighted softmax sums). Only the order differs: windows are taken in bands of window rows and, within a
band, in column chunks, so that a chunk is read from the slide once (with no margin) and a band's finished
rows are handed on while the rest of the level is still to come. Each window belongs to exactly one chunk,
so it runs once whatever ``chunk_size`` is, and its blended output reaches every pixel it covers, across
chunk borders: the seams are those of the single pass.

Tissue skipping: a window whose tissue fraction (from a :class:`~monai_coco.data.tissue.TissueMap`) is
below ``min_tissue_fraction`` contributes background probability 1, as a predictor returning
``[1, 0, ...]`` would in MONAI's inferer, without running the network; a chunk whose windows are all
skipped is not read.

Memory: one band's accumulator, ``num_classes x (band height + window height) x level width`` float32,
allocated once, plus one chunk's pixels (the class indices are taken ``1024`` columns at a time). The
argmax of the weighted sums is the class index; MONAI divides them by the summed weights first, a
positive per-pixel factor that leaves the argmax unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Callable, Optional

import numpy as np
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers.utils import _get_scan_interval

from monai_coco.data.tissue import TissueMap

__all__ = ["WindowGrid", "GridSegmenter"]

RegionReader = Callable[[int, int, int, int], np.ndarray]
Runtime = Callable[[torch.Tensor], torch.Tensor]
_SIGMA_SCALE = 0.125  # SlidingWindowInferer's default, for mode="gaussian"


class WindowGrid:
    """The windows of one ``SlidingWindowInferer`` pass over an image of ``shape``.

    Args:
        shape: ``(H, W)`` of the level.
        roi_size: window ``(h, w)``.
        overlap: fraction of overlap of neighbouring windows, in ``[0, 1)``.
        mode: ``"constant"`` or ``"gaussian"`` blending.

    Attributes:
        pad: ``((top, bottom), (left, right))`` zero padding of a level smaller than a window.
        padded_shape: ``(H', W')`` after padding; window starts are in these coordinates.
        starts: ``(row starts, column starts)``; the windows are their product, row-major.
        weights: importance map ``(h, w)`` float32.
    """

    def __init__(self, shape: Sequence[int], roi_size: Sequence[int], overlap: float, mode: str) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.roi = (int(roi_size[0]), int(roi_size[1]))
        diffs = [max(r - s, 0) for r, s in zip(self.roi, self.shape)]
        self.pad = tuple((d // 2, d - d // 2) for d in diffs)
        self.padded_shape = tuple(s + d for s, d in zip(self.shape, diffs))
        interval = _get_scan_interval(self.padded_shape, self.roi, 2, (overlap, overlap))
        self.starts = tuple(
            [int(s[0][0]) for s in dense_patch_slices((size,), (r,), (i,), return_slice=False)]
            for size, r, i in zip(self.padded_shape, self.roi, interval)
        )
        self.weights = compute_importance_map(self.roi, mode=mode, sigma_scale=_SIGMA_SCALE, device="cpu")

    def __len__(self) -> int:
        return len(self.starts[0]) * len(self.starts[1])

    def level_box(self, top: int, left: int) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` of the level under the window at padded ``(top, left)``."""
        (pt, _), (pl, _) = self.pad
        y0, x0 = max(top - pt, 0), max(left - pl, 0)
        y1 = min(top - pt + self.roi[0], self.shape[0])
        x1 = min(left - pl + self.roi[1], self.shape[1])
        return y0, x0, y1, x1


class GridSegmenter:
    """Class indices of a level, by row bands, from one blended pass of a network over its window grid.

    Args:
        runtime: maps windows ``(B, C, h, w)`` float32 to logits ``(B, num_classes, h, w)``
            (:mod:`monai_coco.inference.runtimes`).
        preprocess: maps a region ``(3, h, w)`` ``uint8`` tensor to the network input ``(C, h, w)`` float.
        roi_size, overlap, mode, sw_batch_size, num_classes, chunk_size, min_tissue_fraction: as in
            :class:`~monai_coco.inference.whole_slide.SlideInferenceConfig`.
        device: where windows are stacked and blended.

    ``windows_run`` / ``windows_skipped`` count the windows given to the network / left to background;
    their sum is the number of windows in the grid(s) segmented. ``progress``, when set, is called as
    ``progress(done, total)`` with the windows of the grid being segmented done (run or skipped) and their
    number, once before its first window and after each chunk (e.g.
    :meth:`~monai_coco.inference.progress.InferenceProgress.windows`).
    """

    def __init__(
        self,
        runtime: Runtime,
        preprocess: Callable[[torch.Tensor], torch.Tensor],
        roi_size: Sequence[int],
        overlap: float,
        mode: str,
        sw_batch_size: int,
        num_classes: int,
        chunk_size: int,
        min_tissue_fraction: float,
        device: torch.device,
    ) -> None:
        self.runtime = runtime
        self.preprocess = preprocess
        self.roi = (int(roi_size[0]), int(roi_size[1]))
        self.overlap = overlap
        self.mode = mode
        self.batch = sw_batch_size
        self.num_classes = num_classes
        self.chunk = chunk_size
        self.min_fraction = min_tissue_fraction
        self.device = device
        self.windows_run = 0
        self.windows_skipped = 0
        self.progress: Optional[Callable[[int, int], None]] = None

    def _groups(self, starts: Sequence[int], axis: int) -> list[list[int]]:
        """Consecutive window starts grouped so that a group's windows span about ``chunk_size`` pixels."""
        stride = starts[1] - starts[0] if len(starts) > 1 else self.roi[axis]
        per_group = max(1, math.ceil((self.chunk - self.roi[axis]) / stride) + 1)
        return [list(starts[i : i + per_group]) for i in range(0, len(starts), per_group)]

    def _logits(self, windows: torch.Tensor) -> torch.Tensor:
        logits = self.runtime(windows)
        expected = (windows.shape[0], self.num_classes, *windows.shape[2:])
        if tuple(logits.shape) != expected:
            raise ValueError(
                f"the network returned logits of shape {tuple(logits.shape)} for windows "
                f"{tuple(windows.shape)}; expected {expected} (num_classes={self.num_classes})."
            )
        return logits

    def _read(self, grid: WindowGrid, read_region: RegionReader, box: Sequence[int]) -> torch.Tensor:
        """Network input ``(C, h, w)`` of the padded box ``(top, left, bottom, right)``, zeros outside."""
        top, left, bottom, right = box
        (pt, _), (pl, _) = grid.pad
        y0, x0 = max(top - pt, 0), max(left - pl, 0)
        y1, x1 = min(bottom - pt, grid.shape[0]), min(right - pl, grid.shape[1])
        pixels = np.ascontiguousarray(read_region(y0, x0, y1 - y0, x1 - x0))
        region = self.preprocess(torch.from_numpy(pixels))
        if (y0 + pt, x0 + pl, y1 + pt, x1 + pl) == tuple(box):
            return region.to(self.device)
        out = torch.zeros(region.shape[0], bottom - top, right - left, dtype=region.dtype, device=self.device)
        out[:, y0 + pt - top : y1 + pt - top, x0 + pl - left : x1 + pl - left] = region
        return out

    def _run_chunk(
        self,
        grid: WindowGrid,
        read_region: RegionReader,
        tissue: Optional[TissueMap],
        windows: list[tuple[int, int]],
        acc: torch.Tensor,
        acc_top: int,
        weights: torch.Tensor,
    ) -> None:
        """Blend the ``(top, left)`` windows (padded coordinates) into ``acc`` (rows from ``acc_top``)."""
        h, w = self.roi
        kept = []
        for top, left in windows:
            if tissue is not None and tissue.fraction(*grid.level_box(top, left)) < self.min_fraction:
                acc[0, top - acc_top : top - acc_top + h, left : left + w] += weights
                self.windows_skipped += 1
            else:
                kept.append((top, left))
        if not kept:
            return
        box = (kept[0][0], min(x for _, x in kept), kept[-1][0] + h, max(x for _, x in kept) + w)
        region = self._read(grid, read_region, box)
        for i in range(0, len(kept), self.batch):
            batch = kept[i : i + self.batch]
            x = torch.stack(
                [region[:, t - box[0] : t - box[0] + h, u - box[1] : u - box[1] + w] for t, u in batch]
            )
            probs = torch.softmax(self._logits(x).float(), dim=1)
            if self.mode != "constant":  # constant weights are ones: the product would be the probabilities
                probs *= weights
            for p, (top, left) in zip(probs, batch):
                acc[:, top - acc_top : top - acc_top + h, left : left + w] += p
            self.windows_run += len(batch)

    @torch.inference_mode()
    def bands(
        self, read_region: RegionReader, shape: Sequence[int], tissue: Optional[TissueMap] = None
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(top, labels, probability)`` row bands of the level, top to bottom: ``labels`` ``(h, W)``
        ``uint8`` class indices and ``probability`` ``(h, W)`` ``uint8``, class 1's blended probability
        (its share of the weighted sums, MONAI's blended output) times 255, rounded.

        Args:
            read_region: ``(top, left, height, width) -> (3, height, width)`` ``uint8`` of the level.
            shape: ``(H, W)`` of the level.
            tissue: tissue map of the level; ``None`` runs every window.
        """
        grid = WindowGrid(shape, self.roi, self.overlap, self.mode)
        weights = grid.weights.to(self.device)
        tissue = tissue if self.min_fraction > 0 else None
        (pt, _), (pl, _) = grid.pad
        height, width = grid.padded_shape
        row_groups, col_groups = self._groups(grid.starts[0], 0), self._groups(grid.starts[1], 1)
        # one accumulator for the whole level, allocated once: rows [acc_top, acc_top + capacity) of the band
        # being blended (a band's windows start at acc_top and end within its span plus a window)
        capacity = max(rows[-1] - rows[0] for rows in row_groups) + self.roi[0]
        acc = torch.zeros(self.num_classes, capacity, width, device=self.device)
        acc_top = done_windows = 0
        if self.progress is not None:
            self.progress(0, len(grid))
        for k, rows in enumerate(row_groups):
            for cols in col_groups:
                windows = [(top, left) for top in rows for left in cols]
                self._run_chunk(grid, read_region, tissue, windows, acc, acc_top, weights)
                done_windows += len(windows)
                if self.progress is not None:
                    self.progress(done_windows, len(grid))
            done = row_groups[k + 1][0] if k + 1 < len(row_groups) else height  # no later window above
            y0, y1 = max(acc_top, pt), min(done, pt + grid.shape[0])
            if y1 > y0:
                sums = acc[:, y0 - acc_top : y1 - acc_top, pl : pl + grid.shape[1]]
                yield y0 - pt, self._argmax(sums), self._probability(sums)
            shift = done - acc_top  # rows handed on; the rest (window overlap) moves to the top
            if shift < capacity:
                acc[:, : capacity - shift] = acc[:, shift:].clone()
            acc[:, max(capacity - shift, 0) :] = 0
            acc_top = done

    @staticmethod
    def _argmax(sums: torch.Tensor, block: int = 1024) -> np.ndarray:
        """Class indices ``(h, w)`` ``uint8`` of ``(C, h, w)`` sums: ``argmax`` over the classes (the first
        of equal maxima), ``block`` columns at a time (memory: no band-wide temporaries), taken class by
        class with elementwise comparisons, which read each class's rows contiguously (``torch.argmax``
        over the strided class axis of a band is about 20x slower here) and need no int64 result."""
        labels = np.empty(sums.shape[1:], np.uint8)
        for c0 in range(0, sums.shape[2], block):
            part = sums[:, :, c0 : c0 + block]
            best = part[0].clone()
            index = torch.zeros(best.shape, dtype=torch.uint8, device=sums.device)
            for c in range(1, part.shape[0]):
                index[part[c] > best] = c
                torch.maximum(best, part[c], out=best)
            labels[:, c0 : c0 + block] = index.cpu().numpy()
        return labels

    @staticmethod
    def _probability(sums: torch.Tensor, block: int = 1024) -> np.ndarray:
        """Class 1's share of the ``(C, h, w)`` sums as ``(h, w)`` ``uint8`` (``255 p``, rounded), ``block``
        columns at a time."""
        out = np.empty(sums.shape[1:], np.uint8)
        for c0 in range(0, sums.shape[2], block):
            part = sums[:, :, c0 : c0 + block]
            share = part[1] / part.sum(0).clamp_min_(torch.finfo(part.dtype).tiny)
            out[:, c0 : c0 + block] = share.mul_(255).round_().to(torch.uint8).cpu().numpy()
        return out

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Class indices ``(H, W)`` of a whole in-memory ``(3, H, W)`` ``uint8`` image (every window run)."""
        read = lambda top, left, height, width: image[:, top : top + height, left : left + width]  # noqa: E731
        return np.concatenate([band for _, band, _ in self.bands(read, image.shape[1:])], axis=0)
