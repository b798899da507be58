"""Reading tiles and pyramidal slides by regions, and writing masks: a pyramidal TIFF streamed tile by tile.

Slides (TIFF/SVS) are read through MONAI's ``WSIReader`` interface with the backend named explicitly
(METHOD.md §1): ``"openslide"`` is MONAI's ``WSIReader(backend="openslide")``; ``"tifffile"`` is
:class:`LazyTiffFileWSIReader`, MONAI's ``TiffFileWSIReader`` changed in one respect: a region read
decodes only the tiles (or strips) it touches. MONAI's reader decodes the whole level for every patch,
which a 20,000 x 20,000 slide cannot afford, and indexes levels by TIFF page, which differs from the
pyramid levels in SVS files (their page 1 is a thumbnail).

Pyramid convention, read and written: the full-resolution image is page 0; each further level is a
reduced-resolution page (``subfiletype=1``), tiled. Mask pyramids are written with the level sizes of the
slide they belong to, lossless (deflate), with the resolution (microns per pixel) of each level.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import tifffile
from monai.data import WSIReader
from monai.data.wsi_reader import TiffFileWSIReader
from PIL import Image

from .suffixes import SLIDE_SUFFIXES, TIFF_SUFFIXES, TILE_SUFFIXES

__all__ = [
    "LazyTiffFileWSIReader",
    "Slide",
    "read_image",
    "is_slide",
    "write_mask_pyramid",
    "read_tiff_region",
    "SLIDE_BACKENDS",
]

SLIDE_BACKENDS = ("tifffile", "openslide")
_THUMBNAIL_BAND_PIXELS = 1 << 22  # pixels per band when a thumbnail is sampled from a large level


def read_tiff_region(page: tifffile.TiffPage, top: int, left: int, height: int, width: int) -> np.ndarray:
    """Decode the region ``[top, top + height) x [left, left + width)`` of one TIFF page.

    Only the tiles or strips that overlap the region are read and decoded. The region must lie inside
    the page.

    Args:
        page: a tiled or stripped 2D page, chunky (``planarconfig=1``) or single-sample.
        top, left, height, width: the region in the page's pixel coordinates.

    Returns:
        the region, shape ``(height, width, samples)``, the page's dtype.
    """
    samples = page.samplesperpixel
    if page.imagedepth != 1 or (samples > 1 and page.planarconfig != 1):
        raise ValueError(
            f"{page.parent.filehandle.path}: only 2D pages with interleaved samples are supported "
            f"(page {page.index}: depth {page.imagedepth}, planarconfig {page.planarconfig})."
        )
    seg_h, seg_w = page.chunks[0], page.chunks[1]
    per_row = page.chunked[1]
    rows = range(top // seg_h, (top + height - 1) // seg_h + 1)
    cols = range(left // seg_w, (left + width - 1) // seg_w + 1)
    indices = [r * per_row + c for r in rows for c in cols]
    out = np.zeros((height, width, samples), dtype=page.dtype)
    fh = page.parent.filehandle
    offsets = [page.dataoffsets[i] for i in indices]
    counts = [page.databytecounts[i] for i in indices]
    for data, index in fh.read_segments(offsets, counts, indices=indices, sort=True):
        segment, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
        if segment is None:  # a sparse (empty) segment
            continue
        segment = segment.reshape(segment.shape[-3], segment.shape[-2], -1)
        y0, x0 = (index // per_row) * seg_h, (index % per_row) * seg_w
        ys, ye = max(top, y0), min(top + height, y0 + segment.shape[0], page.imagelength)
        xs, xe = max(left, x0), min(left + width, x0 + segment.shape[1], page.imagewidth)
        out[ys - top : ye - top, xs - left : xe - left] = segment[ys - y0 : ye - y0, xs - x0 : xe - x0]
    return out


class LazyTiffFileWSIReader(TiffFileWSIReader):
    """MONAI's tifffile WSI reader, reading a region by decoding only the tiles it overlaps.

    Levels are the pyramid levels of the file's first image series (tifffile's ``series[0].levels``),
    so SVS thumbnails, labels and macro images are not levels. Select regions by ``level``; the ``mpp``
    selection of the parent class still indexes pages. Arguments as ``TiffFileWSIReader``.
    """

    @staticmethod
    def _level_page(wsi: tifffile.TiffFile, level: int) -> tifffile.TiffPage:
        return wsi.series[0].levels[level].keyframe

    @staticmethod
    def get_level_count(wsi: tifffile.TiffFile) -> int:
        return len(wsi.series[0].levels)

    def get_size(self, wsi: tifffile.TiffFile, level: int) -> tuple[int, int]:
        page = self._level_page(wsi, level)
        return (page.imagelength, page.imagewidth)

    def get_downsample_ratio(self, wsi: tifffile.TiffFile, level: int) -> float:
        return float(self._level_page(wsi, 0).imagelength) / float(self._level_page(wsi, level).imagelength)

    def _get_patch(
        self, wsi, location: tuple[int, int], size: tuple[int, int], level: int, dtype, mode: str
    ) -> np.ndarray:
        ratio = self.get_downsample_ratio(wsi, level)
        top, left = (round(v / ratio) for v in location)
        level_h, level_w = self.get_size(wsi, level)
        if top < 0 or left < 0 or top + size[0] > level_h or left + size[1] > level_w:
            raise ValueError(
                f"{self.get_file_path(wsi)}: region at ({top}, {left}) of size {tuple(size)} is outside "
                f"level {level} of size {(level_h, level_w)}."
            )
        patch = read_tiff_region(self._level_page(wsi, level), top, left, size[0], size[1]).astype(dtype)
        if mode in "RGB":
            if patch.shape[-1] not in (3, 4):
                raise ValueError(
                    f"{self.get_file_path(wsi)}: expected 3 or 4 colour channels in '{mode}' mode, "
                    f"found {patch.shape[-1]}."
                )
            patch = patch[..., :3]
        return np.moveaxis(patch, -1, self.channel_dim)


def _make_reader(backend: str):
    if backend == "tifffile":
        return LazyTiffFileWSIReader(channel_dim=0, dtype=np.uint8, mode="RGB")
    if backend == "openslide":
        return WSIReader(backend="openslide", channel_dim=0, dtype=np.uint8, mode="RGB")
    raise ValueError(f"slide reader backend must be one of {SLIDE_BACKENDS}, got {backend!r}.")


class Slide:
    """A pyramidal image file read by regions at one level, as channel-first RGB ``uint8``.

    Args:
        path: a TIFF or SVS slide.
        backend: ``"tifffile"`` (:class:`LazyTiffFileWSIReader`) or ``"openslide"`` (MONAI's
            ``WSIReader``).

    Use as a context manager (or call :meth:`close`). Coordinates passed to :meth:`read` are pixels of
    the level read from.
    """

    def __init__(self, path: str | os.PathLike, backend: str = "tifffile") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"slide {self.path} does not exist.")
        self.backend = backend
        try:
            self._reader = _make_reader(backend)
            self._wsi = self._reader.read(str(self.path))
            count = self._reader.get_level_count(self._wsi)
            self.level_shapes: list[tuple[int, int]] = [
                tuple(self._reader.get_size(self._wsi, level)) for level in range(count)
            ]
        except Exception as exc:
            raise ValueError(f"cannot read slide {self.path} with the {backend} backend: {exc}") from exc

    @property
    def level_count(self) -> int:
        return len(self.level_shapes)

    def check_level(self, level: int) -> None:
        """Raise ``ValueError`` naming the file and its levels when ``level`` does not exist."""
        if not 0 <= level < self.level_count:
            sizes = ", ".join(f"{i}: {h}x{w}" for i, (h, w) in enumerate(self.level_shapes))
            raise ValueError(
                f"slide {self.path} has no level {level}; its levels (height x width) are {sizes}."
            )

    def downsample(self, level: int) -> float:
        """Level-0 pixels per pixel of ``level``."""
        self.check_level(level)
        return float(self._reader.get_downsample_ratio(self._wsi, level))

    def mpp(self) -> Optional[tuple[float, float]]:
        """Microns per pixel ``(y, x)`` at level 0, or ``None`` when the file does not say."""
        try:
            mpp = self._reader.get_mpp(self._wsi, 0)
        except (ValueError, KeyError, TypeError):
            return None
        return (float(mpp[0]), float(mpp[1])) if all(v and v > 0 for v in mpp) else None

    def read(self, level: int, top: int, left: int, height: int, width: int) -> np.ndarray:
        """The region of ``level``, shape ``(3, height, width)``, ``uint8``."""
        ratio = self.downsample(level)
        location = (round(top * ratio), round(left * ratio))
        try:
            patch, _ = self._reader.get_data(self._wsi, location=location, size=(height, width), level=level)
        except Exception as exc:
            raise ValueError(
                f"cannot read a {height}x{width} region at ({top}, {left}) of level {level} from slide "
                f"{self.path}: {exc}"
            ) from exc
        return np.asarray(patch, dtype=np.uint8)

    def thumbnail(self, max_side: int) -> np.ndarray:
        """The whole slide, at most ``max_side`` pixels on its longer side, shape ``(3, h, w)``.

        Read from the coarsest level whose longer side is at least ``max_side`` (level 0 if none is),
        sampled with an integer stride, band by band, so the level is never held in memory at once.
        """
        large = [level for level, shape in enumerate(self.level_shapes) if max(shape) >= max_side]
        level = large[-1] if large else 0
        height, width = self.level_shapes[level]
        stride = max(1, math.ceil(max(height, width) / max_side))
        band = max(stride, (_THUMBNAIL_BAND_PIXELS // width) // stride * stride)
        parts = [
            self.read(level, top, 0, min(band, height - top), width)[:, ::stride, ::stride]
            for top in range(0, height, band)
        ]
        return np.concatenate(parts, axis=1)

    def close(self) -> None:
        self._wsi.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_slide(path: str | os.PathLike) -> bool:
    """Whether ``path`` is read as a slide (by regions) rather than as a tile (whole).

    SVS files are slides; TIFF files are slides when tiled or holding more than one pyramid level;
    JPEG and PNG files are tiles. Other suffixes raise ``ValueError``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SLIDE_SUFFIXES:
        return True
    if suffix in TILE_SUFFIXES:
        return False
    if suffix not in TIFF_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported image type {suffix!r}; expected one of "
            f"{TILE_SUFFIXES + TIFF_SUFFIXES + SLIDE_SUFFIXES}."
        )
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist.")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return len(series.levels) > 1 or series.keyframe.is_tiled
    except Exception as exc:
        raise ValueError(f"{path} is not a readable TIFF file: {exc}") from exc


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A whole tile image (JPEG, PNG or single-level TIFF) as RGB, shape ``(3, H, W)``, ``uint8``.

    Grayscale images are repeated to three channels and an alpha channel is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist.")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            array = tifffile.imread(path)
        else:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"))
    except Exception as exc:
        raise ValueError(f"cannot decode image {path}: {exc}") from exc
    if array.dtype != np.uint8:
        raise ValueError(f"image {path} has dtype {array.dtype}; expected 8-bit (uint8) RGB or gray.")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image {path} has shape {array.shape}; expected (H, W), (H, W, 3) or (H, W, 4).")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(np.moveaxis(array[..., :3], -1, 0))


def _tiles(bands: Iterable[np.ndarray], width: int, tile: int) -> Iterator[np.ndarray]:
    """Tiles of ``(tile, tile)`` (smaller at the right and bottom edges), row-major, from row bands.

    Bands ``(h_i, width)`` of any heights, top to bottom, are regrouped into rows of ``tile`` pixels.
    """
    pending: list[np.ndarray] = []
    rows = 0

    def split(strip: np.ndarray) -> Iterator[np.ndarray]:
        for left in range(0, width, tile):
            yield strip[:, left : left + tile]

    for band in bands:
        pending.append(band)
        rows += band.shape[0]
        while rows >= tile:
            strip = np.concatenate(pending, axis=0)
            yield from split(strip[:tile])
            pending, rows = [strip[tile:]], rows - tile
    if rows:
        yield from split(np.concatenate(pending, axis=0))


def _reduced_bands(page: tifffile.TiffPage, shape: tuple[int, int], band: int) -> Iterator[np.ndarray]:
    """Nearest-neighbour resampling of a written mask page to ``shape``, as row bands."""
    height, width = shape
    src_h, src_w = page.imagelength, page.imagewidth
    cols = np.minimum(((np.arange(width) + 0.5) * src_w / width).astype(np.int64), src_w - 1)
    for top in range(0, height, band):
        rows = np.minimum(
            ((np.arange(top, min(top + band, height)) + 0.5) * src_h / height).astype(np.int64), src_h - 1
        )
        src = read_tiff_region(page, int(rows[0]), 0, int(rows[-1] - rows[0] + 1), src_w)[..., 0]
        yield src[rows - rows[0]][:, cols]


def write_mask_pyramid(
    path: str | os.PathLike,
    bands: Iterable[np.ndarray],
    level_shapes: Sequence[tuple[int, int]],
    mpp: Optional[Sequence[tuple[float, float]]] = None,
    tile: int = 256,
) -> Path:
    """Write a label mask as a tiled, lossless, pyramidal TIFF without holding any level in memory.

    Level 0 is streamed from ``bands``; each further level is resampled (nearest neighbour) from the
    level above, read back tile by tile from the file, and appended as a reduced-resolution page
    (``subfiletype=1``).

    Args:
        path: the output ``.tif`` file.
        bands: row bands ``(h_i, W)`` of level 0, ``uint8`` class indices, top to bottom.
        level_shapes: ``(H, W)`` of every level, level 0 first.
        mpp: microns per pixel ``(y, x)`` of every level, stored as the TIFF resolution; optional.
        tile: tile size (a multiple of 16).

    Returns:
        ``path``.
    """
    path = Path(path)
    if tile % 16:
        raise ValueError(f"mask tile size must be a multiple of 16, got {tile}.")
    bigtiff = sum(h * w for h, w in level_shapes) >= 2**31  # uncompressed size; classic TIFF ends at 4 GiB

    def write(tiles: Iterator[np.ndarray], level: int, append: bool) -> None:
        resolution = {}
        if mpp is not None:
            resolution = {
                "resolution": (1e4 / mpp[level][1], 1e4 / mpp[level][0]),
                "resolutionunit": "CENTIMETER",
            }
        with tifffile.TiffWriter(path, bigtiff=bigtiff, append=append) as writer:
            writer.write(
                tiles,
                shape=level_shapes[level],
                dtype=np.uint8,
                tile=(tile, tile),
                photometric="minisblack",
                compression="zlib",
                subfiletype=1 if level else 0,
                metadata=None,
                **resolution,
            )

    write(_tiles(bands, level_shapes[0][1], tile), 0, append=False)
    for level in range(1, len(level_shapes)):
        with tifffile.TiffFile(path) as tif:
            above = tif.pages[level - 1]
            shape = level_shapes[level]
            write(_tiles(_reduced_bands(above, shape, 4 * tile), shape[1], tile), level, append=True)
    return path
