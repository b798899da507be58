"""Writing a per-pixel map of a slide (class mask, probability) as a pyramidal OME-TIFF, band by band.

The layout is the one bfconvert, QuPath and tifffile write for pyramids, and QuPath, Bio-Formats, tifffile
and OpenSlide (its generic TIFF reader, full resolution) read: the full-resolution image is the first IFD,
its reduced levels (each half the one above, to :data:`MIN_LEVEL_SIDE`) are SubIFDs of it
(``subfiletype=1``), tiled, lossless (deflate), with the OME-XML ``PhysicalSizeX/Y`` in µm and the TIFF
resolution tags in pixels per centimetre. A map covering the slide's level-0 extent at ``mpp`` µm/px lies
over the slide in any viewer that scales by physical size (QuPath's overlays, napari).

Memory: level 0 is given as an array or a map read by row slices (whole-slide inference's
:class:`~monai_coco.data.raw_map.RawMap`); it and every reduced level (sampled from it, nearest neighbour
at pixel centres) are read one tile row at a time, so no level is held in memory whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tifffile

__all__ = ["write_ome_pyramid", "pyramid_shapes", "MIN_LEVEL_SIDE"]

MIN_LEVEL_SIDE = 256
"""The pyramid stops at the first level whose longer side is at most this many pixels."""


def pyramid_shapes(shape: Sequence[int], min_side: int = MIN_LEVEL_SIDE) -> list[tuple[int, int]]:
    """``(H, W)`` of level 0 and of each level half the one above (rounded up), down to ``min_side``."""
    shapes = [(int(shape[0]), int(shape[1]))]
    while max(shapes[-1]) > min_side:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def _level_tiles(image: np.ndarray, shape: tuple[int, int], tile: int) -> Iterator[np.ndarray]:
    """Tiles ``(tile, tile)`` (smaller at the right and bottom edges), row-major, of ``image`` sampled to
    ``shape`` (nearest neighbour at pixel centres; ``image`` itself when the shapes agree), read one tile
    row at a time: at most ``tile`` rows of ``image`` in memory."""
    height, width = shape
    src_h, src_w = image.shape
    cols = np.minimum(((np.arange(width) + 0.5) * src_w / width).astype(np.int64), src_w - 1)
    for top in range(0, height, tile):
        rows = np.minimum(
            ((np.arange(top, min(top + tile, height)) + 0.5) * src_h / height).astype(np.int64), src_h - 1
        )
        if height == src_h:  # level 0: its rows, read at once
            band = np.asarray(image[int(rows[0]) : int(rows[-1]) + 1])
        else:  # a reduced level: only the rows it samples, one by one (not the span between them)
            band = np.concatenate([np.asarray(image[int(r) : int(r) + 1]) for r in rows])
        band = band if width == src_w else band[:, cols]
        for left in range(0, width, tile):
            yield np.ascontiguousarray(band[:, left : left + tile])


def write_ome_pyramid(
    path: str | os.PathLike,
    image: np.ndarray,
    mpp: Sequence[float] | None = None,
    name: str = "mask",
    tile: int = 256,
) -> Path:
    """Write a ``uint8`` map as a tiled, lossless, pyramidal OME-TIFF without holding a level in memory.

    Args:
        path: the output file (``.ome.tif``); written in place (wrap it in an atomic write).
        image: level 0, ``(H, W)`` ``uint8``: an array, or a map read by row slices (``RawMap``).
        mpp: µm/px ``(y, x)`` of level 0 (OME ``PhysicalSizeY/X`` and TIFF resolution), optional.
        name: the OME image name.
        tile: tile side, pixels (a multiple of 16).

    Returns:
        ``path``.

    Raises:
        ValueError: ``tile`` is not a multiple of 16, or ``image`` is not 2D ``uint8``.
    """
    path = Path(path)
    if tile % 16:
        raise ValueError(f"tile size must be a multiple of 16, got {tile}.")
    if len(image.shape) != 2 or image.dtype != np.uint8:
        raise ValueError(f"expected a (H, W) uint8 map, got {image.shape} {image.dtype}.")
    shapes = pyramid_shapes(image.shape)
    bigtiff = sum(h * w for h, w in shapes) >= 2**31  # uncompressed size; classic TIFF ends at 4 GiB
    options = {"tile": (tile, tile), "photometric": "minisblack", "compression": "zlib", "dtype": np.uint8}
    metadata: dict = {"axes": "YX", "Name": name}
    if mpp is not None:
        metadata.update(PhysicalSizeY=float(mpp[0]), PhysicalSizeX=float(mpp[1]))
        metadata.update(PhysicalSizeYUnit="µm", PhysicalSizeXUnit="µm")
    with tifffile.TiffWriter(path, bigtiff=bigtiff, ome=True) as out:
        for level, shape in enumerate(shapes):
            resolution: dict = {}
            if mpp is not None:
                scale = (shapes[0][0] / shape[0], shapes[0][1] / shape[1])
                resolution = {
                    "resolution": (1e4 / (mpp[1] * scale[1]), 1e4 / (mpp[0] * scale[0])),
                    "resolutionunit": "CENTIMETER",
                }
            out.write(
                _level_tiles(image, shape, tile),
                shape=shape,
                subifds=len(shapes) - 1 if level == 0 else None,
                subfiletype=1 if level else 0,
                metadata=metadata if level == 0 else None,
                **options,
                **resolution,
            )
    return path
